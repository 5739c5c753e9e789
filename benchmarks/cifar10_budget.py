"""CIFAR-10 accuracy per CPU budget: pretrain for a fixed wall-clock budget, then kNN top-1 on the test set.

Runs, from the repository root:
  simclr pretrain --data ../shared/data/cifar10-jpg.tar.gz --config configs/cifar10_cpu.yaml \
      --time-budget MINUTES --out RUN
  simclr eval compare --checkpoint RUN --data ../shared/data/cifar10-jpg.tar.gz --no-linear --json
and prints the kNN top-1 (k=200, T=0.1, cosine; bank = the 50k train images) of raw pixels, a random-init
encoder and the learned h, plus the run's throughput, as a Markdown block for BENCHMARKS.md.

Usage: python benchmarks/cifar10_budget.py [--minutes 15] [--config configs/cifar10_cpu.yaml | --config none]
       [--out DIR]   (--config none: no config, the recipe planned by simclr pretrain, whose plan is printed)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from machine import cpu_name  # benchmarks/machine.py

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--config", default="configs/cifar10_cpu.yaml")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--out", default="runs/bench-cifar10-budget")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    simclr = [sys.executable, "-m", "simclr"]
    out = Path(args.out)
    if out.exists():
        import shutil

        shutil.rmtree(out)
    recipe = ["--recipe", "auto"] if args.config == "none" else ["--config", args.config]
    pre = simclr + ["pretrain", "--data", args.data, *recipe, "--time-budget", str(args.minutes),
                    "--out", str(out), "--device", args.device]
    if args.config != "none":
        pre.append("--quiet")  # (a planned run prints its plan, with the progress bar)
    # Extract the archive into the cache once, outside the budget (a one-off per machine, ~20 s here);
    # decoding the 50,000 JPEGs stays inside the budget.
    from simclr.data.sources import load_source

    load_source(args.data, "all")
    t0 = time.perf_counter()
    subprocess.run(pre, check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    ev = simclr + ["eval", "compare", "--checkpoint", str(out), "--data", args.data, "--no-linear", "--json",
                   "--quiet", "--device", args.device]
    rows = json.loads(subprocess.run(ev, check=True, cwd=ROOT, capture_output=True, text=True).stdout)["rows"]
    metrics = [json.loads(x) for x in (ROOT / out / "metrics.jsonl").read_text().splitlines()]
    train = [m for m in metrics if "loss" in m]
    views = sorted(m["views_per_s"] for m in train)
    print(f"\n### CIFAR-10, {args.minutes:g}-minute pretraining budget ({args.config})\n")
    print(f"- machine: {cpu_name()}, {os.cpu_count()} cores; torch threads default; device {args.device}")
    print(f"- command: `python benchmarks/cifar10_budget.py --minutes {args.minutes:g} --config {args.config}`")
    if args.config == "none":
        import yaml

        saved = yaml.safe_load((ROOT / out / "config.yaml").read_text())
        m, d, o, t = saved["model"], saved["data"], saved["optim"], saved["train"]
        print(f"- plan: {m['arch']} x{m['width']:g}, {d['view_size'] or d['image_size']}-px views of "
              f"{d['image_size']}-px images, batch {t['batch_size']}, {o['name']} {o['base_lr']:g} "
              f"({o['lr_scaling']}), temperature {saved['loss']['temperature']:g}, "
              f"budget left after the trial steps {t['time_budget']:g} min")
    print(f"- pretraining: {train[-1]['step']} steps, {train[-1]['epoch']} epochs (last partial), "
          f"wall {wall / 60:.2f} min incl. decoding; median {views[len(views) // 2]:.0f} views/s; "
          f"final loss {train[-1]['loss']:.3f}")
    print("\n| features | dim | kNN top-1 | kNN top-5 |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['features']} | {r['dim']} | {100 * r['knn_top1']:.2f}% | {100 * r['knn_top5']:.2f}% |")
    print(f"\n(pretrain command: `{shlex.join(pre[2:])}`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
