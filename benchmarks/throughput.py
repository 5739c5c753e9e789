"""Training throughput (views/s) of simclr's device path, its DataLoader path, and lightly's CIFAR-10 recipe.

All three train the same network (ResNet-18 with the CIFAR stem, simclr's encoder) at the same batch size on
CIFAR-10 from ../shared/data, in one process on one machine, one after the other:

(a) simclr device path: the dataset decoded once into a uint8 tensor on the device, batched augmentation there
    (``MemoryViews``), NT-Xent, LARS;
(b) simclr DataLoader path: per-image PIL/torchvision augmentation in DataLoader workers (``LoaderViews``);
(a') the same with ``compile=auto`` (CUDA graphs via torch.compile on CUDA; Inductor on CPU), path
    ``device+compile``;
(c) lightly 1.6's published CIFAR-10 SimCLR recipe: ``LightlyDataset`` over the image folder with
    ``SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0)`` in DataLoader workers,
    ``SimCLRProjectionHead(512, 512, 128)``, ``NTXentLoss``, SGD (lightly is a benchmark-only extra:
    ``pip install -e ".[bench]"``).

Path ``augment`` times the device path's data alone (index, two augmented views), the ceiling it sets.
Each path runs ``--warmup`` untimed steps, then ``--steps`` timed ones (wall clock, data loading included).
It also prints the model's training FLOPs per view (torch's FlopCounterMode, forward + backward) and the
fraction of the machine's peak they reach (``--peak-tflops``; default: a CPU's fp32 FMA peak from its core
count and clock, or 989 dense bf16 TFLOP/s on an H100).

Usage: python benchmarks/throughput.py [--batch 512] [--steps 3] [--device cpu|cuda] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from machine import cpu_mhz, cpu_name  # benchmarks/machine.py
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"


def _peak_tflops(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return 989.0, f"{torch.cuda.get_device_name(device)}, dense bf16 peak 989 TFLOP/s (H100 SXM)"
    name, mhz = cpu_name(), cpu_mhz()
    cores = os.cpu_count() or 1
    flops_per_cycle = 32  # AVX2: 2 FMA units x 8 fp32 lanes x 2 (AVX-512 would double it)
    return cores * mhz * 1e6 * flops_per_cycle / 1e12, f"{name}, {cores} cores at {mhz:.0f} MHz, fp32 FMA peak"


def _train_flops_per_view(model: nn.Module, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(8, 3, 32, 32, device=device)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        (out[1] if isinstance(out, tuple) else out).float().pow(2).mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 8


def _time(steps: Iterator[None], warmup: int, timed: int, views_per_step: int, sync: Callable[[], None]) -> float:
    for _ in range(warmup):
        next(steps)
    sync()
    t0 = time.perf_counter()
    for _ in range(timed):
        next(steps)
    sync()
    return timed * views_per_step / (time.perf_counter() - t0)


def _forever(make: Callable[[], Iterator]) -> Iterator:
    while True:
        yield from make()


def simclr_steps(path: str, args: argparse.Namespace, device: torch.device) -> Iterator[None]:
    from simclr.data.augment_spec import AugmentSpec
    from simclr.data.decode import decode_source
    from simclr.data.sources import load_source
    from simclr.data.views import LoaderViews, MemoryViews
    from simclr.losses import Objective
    from simclr.models.heads import HeadSpec
    from simclr.models.resnet import EncoderSpec
    from simclr.models.simclr import SimCLRNet
    from simclr.optim import LARS, split_decay_groups
    from simclr.runtime.device import Precision
    from simclr.training.step import ContrastiveStep, StepOptions

    source = load_source(args.data, "train")
    spec = AugmentSpec(size=32, color_strength=0.5, blur_p=0.0)
    if path.startswith(("device", "augment")):
        images = decode_source(source, 32, progress=False).images.to(device)
        views: MemoryViews | LoaderViews = MemoryViews(images, spec, args.batch, 0,
                                                       compile=path.endswith("+compile") and device.type == "cuda")
    else:
        views = LoaderViews(source, spec, args.batch, 0, args.workers, pin_memory=device.type == "cuda")
    if path.startswith("augment"):
        for _ in _forever(views.batches):
            yield
    model = SimCLRNet(EncoderSpec("resnet18", 1.0, True), HeadSpec()).to(device, memory_format=torch.channels_last)
    opt = LARS(split_decay_groups(model, 1e-6), lr=0.3 * args.batch / 256, weight_decay=1e-6)
    precision = Precision(torch.bfloat16 if device.type == "cuda" else None, False)
    step = ContrastiveStep(model, opt, torch.amp.GradScaler(device.type, enabled=False), precision, device,
                           Objective(temperature=0.5),
                           StepOptions(compile="auto" if path.endswith("+compile") else "off"))
    for v1, v2 in _forever(views.batches):
        step(v1, v2)
        yield


def lightly_steps(args: argparse.Namespace, device: torch.device) -> Iterator[None]:
    from lightly_recipe import lightly_recipe, lightly_step  # benchmarks/lightly_recipe.py

    recipe = lightly_recipe(args.data, args.batch, args.workers, device)
    for (x0, x1), _, _ in _forever(lambda: iter(recipe.loader)):
        lightly_step(recipe, x0, x1, device)
        yield


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--paths", default="device,loader,lightly")
    p.add_argument("--peak-tflops", type=float, default=0.0)
    args = p.parse_args()
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    from simclr.models.heads import HeadSpec
    from simclr.models.resnet import EncoderSpec
    from simclr.models.simclr import SimCLRNet

    flops = _train_flops_per_view(SimCLRNet(EncoderSpec("resnet18", 1.0, True), HeadSpec()).to(device), device)
    peak, peak_desc = _peak_tflops(device)
    peak = args.peak_tflops or peak
    results = {}
    for path in args.paths.split(","):
        steps = lightly_steps(args, device) if path == "lightly" else simclr_steps(path, args, device)
        results[path] = _time(steps, args.warmup, args.steps, 2 * args.batch, sync)
        print(f"{path}: {results[path]:.1f} views/s", file=sys.stderr, flush=True)
        del steps
    names = {"device": "simclr, device path", "device+compile": "simclr, device path, compile=auto",
             "augment": "simclr device path, augmentation only",
             "augment+compile": "simclr device path, augmentation only, compiled", "loader": "simclr, DataLoader path", "lightly": "lightly 1.6 recipe"}
    print(f"\n### Throughput: ResNet-18 (CIFAR stem), batch {args.batch}, CIFAR-10, device {args.device}\n")
    print(f"- machine: {peak_desc}; {flops / 1e9:.2f} GFLOP per view (forward + backward)")
    print(f"- command: `python benchmarks/throughput.py --batch {args.batch} --steps {args.steps} "
          f"--warmup {args.warmup} --device {args.device} --workers {args.workers} --paths {args.paths}`\n")
    print("| path | views/s | vs lightly | fraction of peak |\n|---|---|---|---|")
    for path, rate in results.items():
        ratio = f"{rate / results['lightly']:.2f}x" if "lightly" in results else "-"
        frac = "-" if path.startswith("augment") else f"{rate * flops / (peak * 1e12):.1%}"
        ratio = "-" if path.startswith("augment") else ratio
        print(f"| {names.get(path, path)} | {rate:.1f} | {ratio} | {frac} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
