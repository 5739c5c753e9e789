"""Decoding a whole dataset into memory (simclr.data.decode.decode_source): one process vs worker processes.

Small-image datasets are decoded once into a uint8 tensor before pretraining (then cached), and evaluation,
fine-tuning and transfer decode their labelled splits the same way. This times the full CIFAR-10 train split
(50,000 JPEGs) decoded at its own side with no cache, in one process and with ``--workers`` processes, in one
run, checks that both give the same tensor, and prints the ratio.

Usage: python benchmarks/dataset_decode.py [--data ../shared/data/cifar10-jpg.tar.gz] [--size 32] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from machine import machine  # benchmarks/machine.py

from simclr.data.decode import decode_source
from simclr.data.sources import load_source

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpg.tar.gz"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DATA), help="dataset SPEC (default: the full CIFAR-10 as JPEG)")
    p.add_argument("--split", default="train")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        source = load_source(args.data, args.split, cache_dir=Path(cache))  # archives are extracted once here
        times, results = {}, {}
        for workers in (0, args.workers):
            t0 = time.perf_counter()
            results[workers] = decode_source(source, args.size, progress=False, workers=workers)
            times[workers] = time.perf_counter() - t0
    same = torch.equal(results[0].images, results[args.workers].images)
    n = len(results[0].images)
    print(f"machine: {machine()}; {n} images of {args.data} ({args.split}) at {args.size}x{args.size}")
    print("| processes | seconds | images/s |")
    print("|---|---|---|")
    for workers, seconds in times.items():
        label = "1 (workers=0)" if workers == 0 else f"{workers} workers"
        print(f"| {label} | {seconds:.1f} | {n / seconds:,.0f} |")
    print(f"speed-up {times[0] / times[args.workers]:.2f}x; identical tensors: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
