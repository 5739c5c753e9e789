"""The planned recipe on folders of larger photos: `simclr pretrain` with no config and a time budget, then
kNN top-1 of the learned h against raw pixels and a random-init encoder of the same network.

Folders (made once under --work, never committed): CIFAR-10's first --per-class train images of each class
upscaled to 96 and to 224 px (stand-ins for photo folders; the evaluation holds out a seeded, class-stratified
fifth as queries), and the 20 ImageNet JPEGs of ../shared/data/small-extras.tar.gz (one image per class:
planned and trained, no kNN). For each, from the repository root:
  simclr pretrain --data DIR --out RUN --time-budget MINUTES        (the plan's block is kept)
  simclr eval compare --checkpoint RUN --data DIR --holdout 0.2 --no-linear --json --quiet

Usage: python benchmarks/planned_folders.py [--minutes 5] [--per-class 1000] [--sides 96,224]
       [--work /tmp/simclr-planned-folders] [--no-extras]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from folders import upscaled_cifar  # benchmarks/folders.py
from machine import cpu_name  # benchmarks/machine.py

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ROOT.parent / "shared" / "data" / "small-extras.tar.gz"


def simclr(*args: str, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "simclr", *args], check=True, cwd=ROOT, capture_output=capture,
                          text=True)


def plan_lines(stderr: str) -> list[str]:
    """The plan's block in what `simclr pretrain` wrote on stderr (progress bars left out)."""
    lines = [x.rstrip() for x in re.split(r"[\r\n]", stderr)]
    return [x for x in lines if x.startswith(("planning:", "plan (", "  ")) and "step/s" not in x
            and "img/s" not in x and "file/s" not in x]


def run_one(name: str, data: Path, minutes: float, work: Path, knn: bool) -> dict:
    run = work / f"run-{name}"
    if run.exists():
        import shutil

        shutil.rmtree(run)
    t0 = time.perf_counter()
    pre = simclr("pretrain", "--data", str(data), "--out", str(run), "--time-budget", str(minutes))
    wall = time.perf_counter() - t0
    rows = []
    if knn:
        rows = json.loads(simclr("eval", "compare", "--checkpoint", str(run), "--data", str(data), "--holdout",
                                 "0.2", "--no-linear", "--json", "--quiet").stdout)["rows"]
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [m for m in metrics if "loss" in m]
    return {"name": name, "plan": plan_lines(pre.stderr), "wall": wall, "rows": rows,
            "steps": train[-1]["step"] if train else 0, "epochs": train[-1]["epoch"] if train else 0,
            "loss": train[-1]["loss"] if train else float("nan"), "done": pre.stdout.strip().splitlines()[-1]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--per-class", type=int, default=1000)
    p.add_argument("--sides", default="96,224")
    p.add_argument("--work", default="/tmp/simclr-planned-folders")
    p.add_argument("--no-extras", action="store_true")
    args = p.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for side in (int(s) for s in args.sides.split(",") if s):
        folder = upscaled_cifar(side, work / f"cifar10-{side}px", args.per_class)
        results.append(run_one(f"cifar10-{side}px", folder, args.minutes, work, knn=True))
    if not args.no_extras:
        extras = work / "extras"
        if not (extras / "foolbox-samples" / "imagenet").is_dir():
            with tarfile.open(EXTRAS) as tar:
                tar.extractall(extras, filter="data")
        results.append(run_one("imagenet-20", extras / "foolbox-samples" / "imagenet", min(args.minutes, 1.0),
                               work, knn=False))
    print(f"\n### The planned recipe on folders of larger photos ({args.minutes:g}-minute budgets)\n")
    print(f"- machine: {cpu_name()}, {os.cpu_count()} cores; torch threads default")
    print(f"- command: `python benchmarks/planned_folders.py --minutes {args.minutes:g} --per-class "
          f"{args.per_class} --sides {args.sides}`")
    for r in results:
        print(f"\n#### {r['name']}\n\n```\n" + "\n".join(r["plan"]) + "\n```\n")
        print(f"- trained: {r['steps']} steps (`{r['done']}`), wall {r['wall'] / 60:.2f} min (planning and "
              f"decoding included); final loss {r['loss']:.3f}")
        if r["rows"]:
            print("\n| features | dim | kNN top-1 | kNN top-5 |\n|---|---|---|---|")
            for row in r["rows"]:
                print(f"| {row['features']} | {row['dim']} | {100 * row['knn_top1']:.2f}% | "
                      f"{100 * row['knn_top5']:.2f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
