"""Time to a kNN top-1 target: pretrain with the kNN monitor on, then report when the target was first reached.

Runs, from the repository root:
  simclr pretrain --data DATA --config CONFIG --out RUN --set train.knn_every=E [--set ...]
(or, when RUN already holds last.pt, `simclr pretrain --out RUN --resume`), and reads RUN/metrics.jsonl: the
kNN monitor's top-1 on the test split (k = 200, T = 0.1, cosine; bank = the train split) every E epochs,
each stamped with `time_s`, the run's training time (setup and steps; the monitor's own evaluations left out;
a resumed run adds its restart's setup). Prints the curve and the first time the target was reached, as a
Markdown block for BENCHMARKS.md.

`--minutes M` stops this invocation after M minutes (Ctrl-C to the run: last.pt is saved) so a long run can
be done in parts, e.g. on a machine lent for 10-minute commands; the same command continues it.

Usage: python benchmarks/time_to_accuracy.py --data .data/cifar10-jpg.tar.gz --config configs/cifar10_gpu.yaml \
           --out /tmp/t90 --target 0.9 --knn-every 50 [--minutes 9.3] [--report-only]
"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from machine import machine  # benchmarks/machine.py

from simclr.runtime.metrics import knn_curve, read_metrics, time_to

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], minutes: float) -> int:
    """Run ``cmd``; after ``minutes`` (0 = no limit) interrupt it as Ctrl-C would and wait for its checkpoint."""
    proc = subprocess.Popen(cmd, cwd=ROOT)
    try:
        return proc.wait(timeout=minutes * 60 if minutes > 0 else None)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        return proc.wait()


def report(out: Path, target: float) -> str:
    records = read_metrics(out / "metrics.jsonl")
    train = [r for r in records if "loss" in r]
    curve = knn_curve(records)
    minutes = train[-1].get("time_s", 0.0) / 60 if train else 0.0
    lines = [f"- machine: {machine()}",
             f"- run: {out}, {train[-1]['step'] if train else 0} steps logged, training time {minutes:.1f} min"]
    hit = time_to(records, target)
    if hit is None:
        best = max((r["knn_top1"] for r in curve), default=0.0)
        lines.append(f"- **{100 * target:g}% kNN top-1: not reached** (best {100 * best:.2f}%)")
    else:
        lines.append(f"- **{100 * target:g}% kNN top-1 first reached at epoch {hit['epoch']}, after "
                     f"{hit['time_s'] / 60:.1f} min of training** ({100 * hit['knn_top1']:.2f}%)")
    lines += ["", "| epoch | step | training time (min) | kNN top-1 | kNN top-5 |", "|---|---|---|---|---|"]
    for r in curve:
        lines.append(f"| {r['epoch']} | {r['step']} | {r.get('time_s', float('nan')) / 60:.2f} | "
                     f"{100 * r['knn_top1']:.2f}% | {100 * r['knn_top5']:.2f}% |")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"))
    p.add_argument("--config", default="configs/cifar10_gpu.yaml")
    p.add_argument("--out", default="runs/time-to-accuracy")
    p.add_argument("--target", type=float, default=0.9, help="kNN top-1 to reach, as a fraction (default 0.9)")
    p.add_argument("--knn-every", type=int, default=50, help="epochs between kNN evaluations (default 50)")
    p.add_argument("--minutes", type=float, default=0.0,
                   help="stop this invocation after M minutes (last.pt saved; rerun to continue); 0 = no limit")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (new runs)")
    p.add_argument("--report-only", action="store_true", help="only print the report of the run in --out")
    args = p.parse_args()
    if not 0.0 < args.target <= 1.0:
        p.error("--target is a fraction in (0, 1]")
    out = Path(args.out)
    if not args.report_only:
        cmd = [sys.executable, "-m", "simclr", "pretrain", "--out", str(out), "--quiet"]
        if (out / "last.pt").is_file():
            cmd.append("--resume")
        else:
            cmd += ["--data", args.data, "--config", args.config, "--set", f"train.knn_every={args.knn_every}"]
            for kv in args.set:
                cmd += ["--set", kv]
        print(f"$ {shlex.join(cmd[2:])}", flush=True)
        t0 = time.perf_counter()
        rc = _run(cmd, args.minutes)
        print(f"(this part: {(time.perf_counter() - t0) / 60:.1f} min, exit code {rc})", flush=True)
        if rc == 130:
            print("stopped after --minutes with last.pt saved: run the same command again to continue", flush=True)
        elif rc != 0:
            return rc
    if not (out / "metrics.jsonl").is_file():
        print(f"no metrics in {out}", file=sys.stderr)
        return 2
    print()
    print(report(out, args.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
