"""CPU inference speed of an exported encoder f: PyTorch eager, PyTorch with batch norms folded (what
``simclr export --format onnx`` exports, and what evaluation and ``embed`` run) and ONNX Runtime on that ONNX
file, side by side in one run (issue 22).

Networks: simclr's ResNet-18 x0.25 with the CIFAR stem at 32 px (the CPU recipe's), and full-width ResNet-18
and ResNet-50 at 224 px (ImageNet stem). Random weights with batch-norm statistics as after training; fp32,
eval mode, ``torch.inference_mode``, NCHW input; ONNX Runtime with as many intra-op threads as torch uses. The
ONNX graph is written by simclr's exporter (:func:`simclr.export.onnx_format.onnx_bytes`) and its h is checked
against PyTorch's. The rounds are interleaved and each figure is the best of ``--rounds``, so that the
machine's noise hits every engine alike: on a shared machine the figures are lower bounds and the ratios are
what count.

Usage: python benchmarks/export_speed.py [--rounds 3] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import onnxruntime
import torch
from inference import _encoder  # benchmarks/inference.py: an encoder with trained-looking batch norms
from machine import machine  # benchmarks/machine.py

from simclr.export.onnx_format import onnx_bytes
from simclr.models.fold import folded_for_inference

CASES = (("resnet18", 0.25, 32, 256, 4, "ResNet-18 x0.25, CIFAR stem, 32 px"),
         ("resnet18", 1.0, 224, 16, 2, "ResNet-18, 224 px"),
         ("resnet50", 1.0, 224, 8, 2, "ResNet-50, 224 px"))
"""(arch, width, image side, batch, batches per timing, label)."""


def _time(run: Callable[[], object], batch: int, batches: int) -> float:
    """Images per second of ``batches`` calls of ``run`` on a batch of ``batch`` images."""
    start = time.perf_counter()
    for _ in range(batches):
        run()
    return batches * batch / (time.perf_counter() - start)


def _case(arch: str, width: float, size: int, batch: int, batches: int, rounds: int,
          threads: int) -> dict[str, float]:
    net = _encoder(arch, width, size)
    folded = folded_for_inference(net)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    data, _ = onnx_bytes(net, size, {})
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    x = torch.rand(batch, 3, size, size)
    xn = x.numpy()
    with torch.inference_mode():
        ref = net(x)
        theirs = torch.from_numpy(session.run(None, {"images": xn})[0])
        diff = float((theirs - ref).abs().max() / ref.abs().max())  # relative: h grows with depth
        engines: dict[str, Callable[[], object]] = {
            "PyTorch eager": lambda: net(x), "PyTorch, batch norms folded": lambda: folded(x),
            "ONNX Runtime": lambda: session.run(None, {"images": xn})}
        for run in engines.values():
            run()  # warm-up
        best = dict.fromkeys(engines, 0.0)
        for _ in range(rounds):
            for name, run in engines.items():
                best[name] = max(best[name], _time(run, batch, batches))
    return {**best, "max_abs_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{machine()}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {args.threads} "
          f"threads, fp32, best of {args.rounds} interleaved rounds")
    print("| network | batch | PyTorch eager | PyTorch, batch norms folded | ONNX Runtime "
          "| ONNX vs eager: max abs diff / max abs h |")
    print("|---|---|---|---|---|---|")
    for arch, width, size, batch, batches, label in CASES:
        r = _case(arch, width, size, batch, batches, args.rounds, args.threads)
        base = r["PyTorch eager"]
        cells = " | ".join(f"{r[k]:,.0f}/s ({r[k] / base:.2f}x)" for k in
                           ("PyTorch eager", "PyTorch, batch norms folded", "ONNX Runtime"))
        print(f"| {label} | {batch} | {cells} | {r['max_abs_diff']:.1e} |", flush=True)


if __name__ == "__main__":
    main()
