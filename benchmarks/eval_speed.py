"""Evaluation and embedding at inference speed: `simclr eval compare`, `eval knn` and `embed` timed on a folder
of 20,000 photos of 64 x 64 pixels (CIFAR-10's first 2,000 train images of each class, upscaled; made once
under --work), with the encoder `simclr pretrain` plans for that folder (a short planned run, or --checkpoint).

Runs, from the repository root (the evaluations hold out a seeded, class-stratified fifth: 16,000 bank images,
4,000 queries):
  simclr pretrain --data DIR --out RUN --time-budget 2 --quiet          (unless --checkpoint)
  simclr eval compare --checkpoint RUN --data DIR --holdout 0.2 --json --quiet
  simclr eval knn --checkpoint RUN --data DIR --holdout 0.2 --json --quiet
  simclr embed --checkpoint RUN --data DIR --out EMB.npz --quiet
and prints each command's wall time (start-up included) as a Markdown block for BENCHMARKS.md.

Usage: python benchmarks/eval_speed.py [--work /tmp/simclr-eval-speed] [--checkpoint RUN] [--minutes 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from folders import upscaled_cifar  # benchmarks/folders.py
from machine import cpu_name  # benchmarks/machine.py

ROOT = Path(__file__).resolve().parents[1]


def timed(args: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "simclr", *args], check=True, cwd=ROOT, capture_output=True,
                         text=True).stdout
    return time.perf_counter() - t0, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/simclr-eval-speed")
    p.add_argument("--checkpoint", default="")
    p.add_argument("--minutes", type=float, default=2.0, help="budget of the planned run (no --checkpoint)")
    args = p.parse_args()
    work = Path(args.work)
    photos = upscaled_cifar(64, work / "photos", per_class=2000)
    run = args.checkpoint
    if not run:
        run = str(work / "run")
        subprocess.run([sys.executable, "-m", "simclr", "pretrain", "--data", str(photos), "--out", run,
                        "--time-budget", str(args.minutes), "--quiet"], check=True, cwd=ROOT)
    import yaml

    saved = yaml.safe_load((Path(run) / "config.yaml").read_text())
    m, d = saved["model"], saved["data"]
    data = ["--checkpoint", run, "--data", str(photos)]
    rows = []
    secs, out = timed(["eval", "compare", *data, "--holdout", "0.2", "--json", "--quiet"])
    table = json.loads(out)["rows"]
    rows.append(("`eval compare` (kNN and linear; raw pixels, random init, learned h)", secs))
    secs, out = timed(["eval", "knn", *data, "--holdout", "0.2", "--json", "--quiet"])
    knn = json.loads(out)
    rows.append(("`eval knn`", secs))
    secs, _ = timed(["embed", *data, "--out", str(work / "embeddings.npz"), "--quiet"])
    rows.append(("`embed` (all 20,000)", secs))
    print("\n### Evaluation and embedding of 20,000 photos of 64 px\n")
    print(f"- machine: {cpu_name()}, {os.cpu_count()} cores; torch threads default")
    given = f" --checkpoint {args.checkpoint}" if args.checkpoint else ""
    print(f"- command: `python benchmarks/eval_speed.py{given}`")
    print(f"- encoder: {m['arch']} x{m['width']:g}{', CIFAR stem' if m['cifar_stem'] else ''}, evaluated at "
          f"{d['image_size']} px (views of {d['view_size'] or d['image_size']} px in training)")
    print(f"- kNN top-1 of the learned h: {100 * knn['top1']:.2f}% ({knn['train_images']} bank images, "
          f"{knn['test_images']} queries)\n")
    print("| command | wall time |\n|---|---|")
    for name, s in rows:
        print(f"| {name} | {s:.1f} s |")
    print("\n| features | dim | kNN top-1 | linear top-1 |\n|---|---|---|---|")
    for r in table:
        print(f"| {r['features']} | {r['dim']} | {100 * r['knn_top1']:.2f}% | {100 * r['linear_top1']:.2f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
