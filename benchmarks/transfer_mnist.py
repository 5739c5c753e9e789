"""The transfer protocol (Appendix B.8) on real images a CPU can afford: a CIFAR-10 checkpoint transferred to MNIST.

Writes the 10,000 lossless MNIST digits of ../shared/data/small-extras.tar.gz (``mnist10k-npm/mnist10k.npz``) as an
image folder with class subfolders (PNG; the folder's seeded, class-stratified 20% holdout is the test split),
then runs ``simclr eval transfer`` on it: linear evaluation on frozen h, fine-tuning from the checkpoint and the
same network from random initialisation, each with its learning rate and weight decay picked from
``--finetune-grid`` on held-out training images. Prints the command-line equivalent, every grid cell, and the
table for BENCHMARKS.md.

Usage: python benchmarks/transfer_mnist.py --checkpoint runs/bench-cifar10-budget [--label-fraction 0.1]
           [--steps 300 | --steps 0 --epochs 10] [--batch-size 64] [--finetune-grid 0.01,0.05/0]
           [--folder /tmp/simclr-mnist10k]
"""

from __future__ import annotations

import argparse
import json
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import machine  # benchmarks/machine.py
from PIL import Image

import simclr

EXTRAS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "small-extras.tar.gz"


def write_folder(extras: Path, folder: Path) -> None:
    """MNIST's 10,000 digits as ``folder/<digit>/<index>.png`` (written once)."""
    if (folder / "9").is_dir():
        return
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(extras) as tar:
        tar.extract("./mnist10k-npm/mnist10k.npz", tmp, filter="data")
        with np.load(Path(tmp) / "mnist10k-npm" / "mnist10k.npz") as f:
            images, labels = f["images"], f["labels"]
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = folder / str(int(label)) / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "L").save(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--extras", type=Path, default=EXTRAS)
    p.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "simclr-mnist10k")
    p.add_argument("--label-fraction", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps", type=int, default=300, help="fine-tuning updates (0: --epochs instead)")
    p.add_argument("--finetune-grid", default="0.01,0.05/0")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()
    write_folder(args.extras, args.folder)
    print(f"machine: {machine()}")
    print(f"command: simclr eval transfer --checkpoint {args.checkpoint} --data {args.folder} --label-fraction "
          f"{args.label_fraction} --epochs {args.epochs} --steps {args.steps} --finetune-grid {args.finetune_grid} "
          f"--batch-size {args.batch_size} --holdout 0.2 --json")
    t0 = time.perf_counter()
    out = simclr.evaluate(args.checkpoint, args.folder, "transfer", batch_size=args.batch_size, progress=False,
                          holdout=0.2, label_fraction=args.label_fraction, epochs=args.epochs, steps=args.steps,
                          finetune_grid=args.finetune_grid)
    wall = time.perf_counter() - t0
    print(json.dumps(out))
    for name in ("finetune", "scratch"):
        for row in out.get(f"{name}_grid", []):
            print(f"{name}: lr {row['lr']:g}, weight decay {row['weight_decay']:g}: validation top-1 "
                  f"{100 * row['val']:.2f}%")
    print(f"\n{out['train_images']} train images ({out['label_fraction']:g} of them labelled), "
          f"{out['test_images']} test; {wall / 60:.1f} min in all\n")
    print("| | top-1 | top-5 | lr | weight decay |")
    print("|---|---|---|---|---|")
    print(f"| linear on frozen h (L-BFGS) | {100 * out['linear_top1']:.2f}% | {100 * out['linear_top5']:.2f}% | | "
          f"{out['linear_weight_decay']:g} |")
    length = (lambda k: f"{k * args.steps} steps") if args.steps else (lambda k: f"{k * args.epochs} epochs")
    for name, title in (("finetune", f"fine-tuned, {length(1)}"),
                        ("scratch", f"from random initialisation, {length(2)}")):
        print(f"| {title} | {100 * out[f'{name}_top1']:.2f}% | {100 * out[f'{name}_top5']:.2f}% | "
              f"{out[f'{name}_lr']:g} | {out[f'{name}_weight_decay']:g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
