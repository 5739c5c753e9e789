"""Peak memory and time per step against batch size: plain back-propagation vs gradient caching, 1 vs 2 processes.

Each cell runs in a fresh process (or a fresh ``torchrun`` job of two gloo processes), so its peak resident
memory (``ru_maxrss``) is its own; the figure reported is the peak minus the memory held before the first step
(model, optimizer and the random uint8 dataset), i.e. what the step itself needs. The network is simclr's
ResNet-18 at width 0.125 with the CIFAR stem on 16x16 views (small enough for batch 8192 on a CPU), the step
is the product's ``ContrastiveStep`` (batched augmentation on the CPU, NT-Xent, LARS); two processes use global
batch norm, gathered negatives and DDP, each with half the global batch.

Usage: python benchmarks/scale.py [--batches 256,1024,4096,8192] [--chunk 256] [--steps 2] [--procs 1,2]
Prints a Markdown table (one row per batch size and mode).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker(batch: int, chunk: int, steps: int, out: str) -> None:
    """One cell: ``steps`` training steps (the first untimed) at global batch ``batch``."""
    import torch

    from simclr.data.augment_spec import AugmentSpec
    from simclr.data.views import MemoryViews
    from simclr.losses import Objective
    from simclr.models.global_bn import convert_global_bn
    from simclr.models.heads import HeadSpec
    from simclr.models.resnet import EncoderSpec
    from simclr.models.simclr import SimCLRNet
    from simclr.optim import LARS, split_decay_groups
    from simclr.runtime import distributed as dist
    from simclr.runtime.device import Precision
    from simclr.training.step import ContrastiveStep, StepOptions

    ctx = dist.DistContext.from_env()
    cpu = torch.device("cpu")
    dist.init_process_group(ctx, cpu, 30.0)
    torch.manual_seed(0)
    net = SimCLRNet(EncoderSpec("resnet18", 0.125, True), HeadSpec(hidden_dim=128, out_dim=64))
    if ctx.enabled:
        net = convert_global_bn(net)
    model = dist.data_parallel(net, cpu)
    opt = LARS(split_decay_groups(net, 1e-6), lr=0.3 * batch / 256, weight_decay=1e-6)
    images = torch.randint(0, 256, (max(batch, 2 * 256), 3, 16, 16), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    views = MemoryViews(images, AugmentSpec(size=16, blur_p=0.0), batch, 0, rank=ctx.rank,
                        world_size=ctx.world_size)
    options = StepOptions(channels_last=False, rank=ctx.rank, grad_cache_chunk=chunk)
    step = ContrastiveStep(model, opt, torch.amp.GradScaler("cpu", enabled=False), Precision(None, False), cpu,
                           Objective(temperature=0.2), options)
    base = _current_rss_mib()
    times = []
    batches = iter(views.batches())
    for _ in range(steps):
        v1, v2 = next(batches, None) or next(iter(views.batches()))
        t0 = time.perf_counter()
        loss, _ = step(v1, v2)
        float(loss)
        times.append(time.perf_counter() - t0)
    result = {"rank": ctx.rank, "peak_mib": _rss_mib() - base, "step_s": min(times[1:] or times)}
    with open(f"{out}.{ctx.rank}", "w") as f:
        json.dump(result, f)
    dist.destroy_process_group(wait_for_peers=True)


def _cell(batch: int, chunk: int, steps: int, procs: int, tmp: Path) -> dict[str, float]:
    out = tmp / f"cell-{batch}-{chunk}-{procs}"
    args = [str(Path(__file__).resolve()), "--worker", str(batch), str(chunk), str(steps), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // procs))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    if procs == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": " / ".join(tail)[-200:]}
    ranks = [json.loads(Path(f"{out}.{r}").read_text()) for r in range(procs)]
    return {"peak_mib": max(r["peak_mib"] for r in ranks), "step_s": max(r["step_s"] for r in ranks)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="256,1024,4096,8192")
    p.add_argument("--chunk", type=int, default=256, help="views per chunk in gradient-caching mode")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--procs", default="1,2")
    p.add_argument("--modes", default="plain,cached")
    p.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        batch, chunk, steps, out = args.worker
        worker(int(batch), int(chunk), int(steps), out)
        return 0
    import tempfile

    print(f"\n### Memory and time per step against batch size (ResNet-18 x0.125, CIFAR stem, 16x16 views, "
          f"{os.cpu_count()} CPU cores)\n")
    print(f"- command: `python benchmarks/scale.py --batches {args.batches} --chunk {args.chunk} "
          f"--steps {args.steps} --procs {args.procs} --modes {args.modes}`\n")
    print("| global batch | processes | mode | peak step memory per process (MiB) | s / step | views / s |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (int(b) for b in args.batches.split(",")):
            for procs in (int(n) for n in args.procs.split(",")):
                for mode in args.modes.split(","):
                    chunk = args.chunk if mode == "cached" else 0
                    r = _cell(batch, chunk, args.steps, procs, Path(tmp))
                    label = f"cached ({args.chunk} views/chunk)" if chunk else "plain"
                    if "error" in r:
                        print(f"| {batch} | {procs} | {label} | failed: {r['error']} | - | - |", flush=True)
                        continue
                    print(f"| {batch} | {procs} | {label} | {r['peak_mib']:.0f} | {r['step_s']:.2f} | "
                          f"{2 * batch / r['step_s']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
