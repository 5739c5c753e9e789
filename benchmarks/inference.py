"""Inference speed of the encoder f (what embed, search and every evaluation on frozen h spend their time on) in
each memory layout, side by side in one run.

Layouts: NCHW weights and inputs; channels-last inputs with NCHW weights (what evaluation ran before this
benchmark); channels-last weights and inputs (a loaded checkpoint's layout now when ``train.channels_last`` is on,
the default); and the same with each batch norm folded into the convolution before it
(``simclr.models.fold.folded_for_inference``, what evaluation, embed and search run now). The rounds are interleaved and each figure is the best
of ``--rounds``, so that the machine's noise hits every layout alike. Eval mode, ``torch.inference_mode``, fp32.
Then a fine-tuning step (forward, backward and SGD update of f and a linear layer, fp32) with f's weights in the
default layout and in channels-last, the layout loaded checkpoints and the from-scratch networks now take.

Usage: python benchmarks/inference.py [--rounds 5] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from machine import machine  # benchmarks/machine.py

from simclr.build import build_model
from simclr.config_io import build_config
from simclr.models.fold import folded_for_inference

CASES = (("resnet18", 0.25, 32, 256, "the CPU recipe's network (configs/cifar10_cpu.yaml), CIFAR stem"),
         ("resnet18", 1.0, 32, 256, "ResNet-18, CIFAR stem"),
         ("resnet50", 1.0, 224, 32, "ResNet-50 at 224 (ImageNet stem)"))


def _encoder(arch: str, width: float, size: int) -> torch.nn.Module:
    config = build_config({"data": {"spec": "digits", "image_size": size},
                           "model": {"arch": arch, "width": width, "cifar_stem": size <= 64}})
    torch.manual_seed(0)
    net = build_model(config).encoder.eval()
    with torch.no_grad():  # batch-norm statistics and scales as after training
        for name, t in net.state_dict().items():
            if "running_var" in name or name.endswith(".weight") and t.ndim == 1:
                t.uniform_(0.5, 2.0)
            elif "running_mean" in name:
                t.normal_(0.0, 0.1)
    return net


TRAIN_CASES = (("resnet18", 0.25, 32, 128), ("resnet18", 0.25, 96, 32))


def _train_steps(rounds: int) -> list[tuple[str, dict[str, float]]]:
    """Images per second of one fine-tuning step (f and a linear layer: forward, cross-entropy, backward, SGD) with
    f's weights in the default layout and in channels-last (the inputs as they come, NCHW)."""
    table = []
    for arch, width, size, batch in TRAIN_CASES:
        net = _encoder(arch, width, size).train()
        x, y = torch.rand(batch, 3, size, size), torch.randint(0, 10, (batch,))
        layouts = {"default layout": copy.deepcopy(net),
                   "channels-last weights (now)": copy.deepcopy(net).to(memory_format=torch.channels_last)}
        models = {k: torch.nn.Sequential(f, torch.nn.Linear(net.num_features, 10)) for k, f in layouts.items()}
        best = dict.fromkeys(models, float("inf"))
        for r in range(rounds + 1):  # the first round warms up
            for name, model in models.items():
                sgd = torch.optim.SGD(model.parameters(), lr=0.01)
                start = time.perf_counter()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                sgd.step()
                sgd.zero_grad()
                if r:
                    best[name] = min(best[name], time.perf_counter() - start)
        name = f"{arch} x{width:g} at {size}, batch {batch}"
        rates = {k: batch / v for k, v in best.items()}
        print(name + " (fine-tuning step): " + ", ".join(f"{k} {v:,.0f} images/s" for k, v in rates.items()),
              flush=True)
        table.append((name, rates))
    return table


def _markdown(first: str, table: list[tuple[str, dict[str, float]]], base: int) -> None:
    """A Markdown table of images per second, each as a ratio to the ``base``-th column."""
    names = list(table[0][1])
    print(f"| {first} | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for name, rates in table:
        ref = rates[names[base]]
        print(f"| {name} | " + " | ".join(f"{v:,.0f}/s ({v / ref:.2f}x)" for v in rates.values()) + " |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cl = torch.channels_last
    table = []
    for arch, width, size, batch, what in CASES:
        net = _encoder(arch, width, size)
        x = torch.rand(batch, 3, size, size)
        last = copy.deepcopy(net).to(memory_format=cl)
        x_last = x.contiguous(memory_format=cl)
        layouts = {"NCHW": (net, x),
                   "channels-last input only (before)": (net, x_last),
                   "channels-last weights and input": (last, x_last),
                   "channels-last, batch norm folded (now)": (folded_for_inference(last), x_last)}
        best = dict.fromkeys(layouts, float("inf"))
        with torch.inference_mode():
            reference = net(x)
            for model, inputs in layouts.values():  # warm-up, and every layout computes the same h
                error = float((model(inputs) - reference).norm() / reference.norm())
                assert error < 1e-4, f"a layout changed h by {error:.1e} (relative)"
            for _ in range(args.rounds):
                for name, (model, inputs) in layouts.items():
                    start = time.perf_counter()
                    model(inputs)
                    best[name] = min(best[name], time.perf_counter() - start)
        name = f"{arch} x{width:g} at {size} ({what}), batch {batch}"
        rates = {k: batch / v for k, v in best.items()}
        print(name + ": " + ", ".join(f"{k} {v:,.0f} images/s" for k, v in rates.items()), flush=True)
        table.append((name, rates))
    print(f"\nMachine: {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads\n"
          f"Command: `python benchmarks/inference.py --rounds {args.rounds}`\n")
    _markdown("network", table, base=1)
    print()
    _markdown("fine-tuning step", _train_steps(args.rounds), base=0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
