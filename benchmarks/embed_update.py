"""Keeping an index up to date: `simclr embed --update` after a catalogue changed, vs embedding it all again.

The catalogue is CIFAR-10's train split (50,000 JPEGs) as a folder; the encoder the CPU recipe's network
(configs/cifar10_cpu.yaml: ResNet-18 x0.25, CIFAR stem; random weights: embedding costs the same as with trained
ones). In one run, each a `simclr embed` command timed from start to exit (process start included), with its own
empty cache folder:

1. the first embedding (every file hashed and decoded),
2. `--update` with nothing changed,
3. `--update` after ``--changed`` images changed: a third edited in place, a third deleted, a third added,
4. the whole catalogue embedded again after the same change (what a user without --update runs),

and checks that 3 and 4 give the same file (paths, labels, digests; vectors to float tolerance).

Usage: python benchmarks/embed_update.py [--changed 500] [--folder /tmp/simclr-catalogue]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import machine  # benchmarks/machine.py
from PIL import Image

from simclr.build import build_model
from simclr.config_io import build_config, config_to_dict, read_yaml
from simclr.runtime.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "cifar10-jpg.tar.gz"


def _catalogue(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    with tarfile.open(DATA) as tar:
        tar.extractall(folder, members=[m for m in tar.getmembers() if m.name.startswith("./train/")],
                       filter="data")
    return folder / "train"


def _checkpoint(path: Path) -> Path:
    raw = read_yaml(ROOT / "configs" / "cifar10_cpu.yaml")
    config = build_config(raw, {"data": {"spec": "cifar10", "image_size": 32, "in_memory": "true"},
                                "train": {"precision": "fp32", "device": "cpu"}})
    save_checkpoint({"config": config_to_dict(config), "model": build_model(config).state_dict()}, path)
    return path


def _change(catalogue: Path, n: int, seed: int = 0) -> None:
    """Edit n/3 images in place (flipped), delete n/3, add n/3 (copies of others, flipped, under new names)."""
    files = sorted(catalogue.rglob("*.jpg"))
    rng = np.random.default_rng(seed)
    picked = [files[i] for i in rng.choice(len(files), size=n, replace=False)]
    third = n // 3
    for path in picked[:third]:
        Image.open(path).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(path, quality=75)
    for path in picked[third:2 * third]:
        path.unlink()
    for i, path in enumerate(picked[2 * third:]):
        Image.open(path).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(path.parent / f"new{i:04d}.jpg",
                                                                         quality=75)


def _embed(ckpt: Path, catalogue: Path, out: Path, cache: Path, *extra: str) -> tuple[float, str]:
    command = [sys.executable, "-m", "simclr", "embed", "--checkpoint", str(ckpt), "--data", str(catalogue),
               "--split", "all", "--out", str(out), "--device", "cpu", "--quiet", *extra]
    env = {**os.environ, "SIMCLR_CACHE": str(cache), "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout.strip()


def _same(a: Path, b: Path) -> float:
    """The largest difference between the two files' vectors (their other arrays must be equal)."""
    with np.load(a) as x, np.load(b) as y:
        for key in ("paths", "labels", "digests"):
            assert np.array_equal(x[key], y[key]), f"{key} differ"
        return float(np.abs(x["features"] - y["features"]).max())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--changed", type=int, default=500, help="images changed between the embeddings (1%% default)")
    p.add_argument("--folder", type=Path, default=Path("/tmp/simclr-catalogue"))
    args = p.parse_args()
    catalogue = _catalogue(args.folder)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        ckpt = _checkpoint(t / "model.pt")
        first, said = _embed(ckpt, catalogue, t / "index.npz", t / "cache")
        print(f"first embedding: {first:.1f} s ({said})")
        same, said = _embed(ckpt, catalogue, t / "index.npz", t / "cache", "--update")
        print(f"--update, nothing changed: {same:.1f} s ({said})")
        _change(catalogue, args.changed)
        update, said = _embed(ckpt, catalogue, t / "index.npz", t / "cache", "--update")
        print(f"--update, {args.changed} images changed: {update:.1f} s ({said})")
        again, said = _embed(ckpt, catalogue, t / "again.npz", t / "cache")
        print(f"everything again after the change: {again:.1f} s ({said})")
        diff = _same(t / "index.npz", t / "again.npz")
    shutil.rmtree(args.folder, ignore_errors=True)
    print(f"updated file vs embedding everything again: same paths, labels and digests; vectors differ by at "
          f"most {diff:.2e}")
    print(f"\nMachine: {machine()}\nCommand: `python benchmarks/embed_update.py --changed {args.changed}`\n")
    print("| `simclr embed` on CIFAR-10 train as a folder (50,000 JPEGs) | wall time | vs embedding everything |")
    print("|---|---|---|")
    for name, seconds in (("first embedding (every file hashed and decoded)", first),
                          ("`--update`, nothing changed", same),
                          (f"`--update`, {args.changed} images changed (edited, deleted, added)", update),
                          ("everything again after the same change", again)):
        print(f"| {name} | {seconds:.1f} s | {again / seconds:.1f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
