"""Cost of the NT-Xent loss (one [2N, D] x [D, 2N] matmul, masked log-softmax), forward + backward, up to 2N = 16,384.

Usage: python benchmarks/ntxent_cost.py [--device cpu|cuda] [--dim 128] [--max 16384]
Prints a Markdown table: 2N, milliseconds per forward + backward, and the peak memory on CUDA.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from simclr.losses import nt_xent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--max", type=int, default=16384)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    print(f"\n### NT-Xent forward + backward, D = {args.dim}, device {args.device}\n")
    print("| 2N | ms | matmul GFLOP (fwd+bwd) | peak CUDA memory |\n|---|---|---|---|")
    two_n = 512
    while two_n <= args.max:
        n = two_n // 2
        z = torch.randn(two_n, args.dim, device=device, requires_grad=True)
        times = []
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.repeats + 1):
            sync()
            t0 = time.perf_counter()
            nt_xent(z[:n], z[n:], 0.1).loss.backward()
            sync()
            times.append(time.perf_counter() - t0)
        ms = 1000 * min(times[1:])
        gflop = 3 * 2 * two_n * two_n * args.dim / 1e9
        mem = f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB" if device.type == "cuda" else "-"
        print(f"| {two_n} | {ms:.1f} | {gflop:.1f} | {mem} |", flush=True)
        two_n *= 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
