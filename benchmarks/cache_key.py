"""Keying the decoded-dataset cache: every file's bytes hashed, vs digests remembered with their files' stat.

Before a decoded dataset can come from the cache, its content key must be computed (simclr.data.cache.content_key).
Without the digest memo that reads every byte of every image on every run; with it (the default), files whose size,
times and inode are unchanged keep their digest, so a later run only stats them. This times, in one run: the key
of the full CIFAR-10 train split (50,000 small JPEGs), and of a folder of large files (``--large`` files of
``--mb`` MB of random bytes, standing in for a folder of photos), each with no memo, with the memo on its first run
(every file read, digests written) and on a later run; it checks the three keys agree. Files are in the page cache
(warm) in every case, so reading them costs what hashing costs, not what a cold disk would.

Usage: python benchmarks/cache_key.py [--large 400] [--mb 5] [--folder /tmp/simclr-large-files]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from machine import machine  # benchmarks/machine.py

from simclr.data.cache import content_key
from simclr.data.image_source import ImageSource
from simclr.data.sources import load_source

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpg.tar.gz"
OLD = time.time() - 3600  # modified an hour ago: outside the memo's two-second racy window


def _large_folder(folder: Path, n: int, mb: int) -> ImageSource:
    import numpy as np

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        path = folder / f"{i:05d}.jpg"
        path.write_bytes(rng.integers(0, 256, mb * 2**20, dtype=np.uint8).tobytes())
        os.utime(path, (OLD, OLD))
    return load_source(str(folder), "all")


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 0.1 else f"{1000 * seconds:.1f} ms"


def _time(source: ImageSource, memo: Path | None) -> tuple[float, str]:
    start = time.perf_counter()
    key = content_key(source, 32, memo_dir=memo)
    return time.perf_counter() - start, key


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--large", type=int, default=400, help="large files in the second collection")
    p.add_argument("--mb", type=int, default=5, help="size of each large file, MB")
    p.add_argument("--folder", type=Path, default=Path("/tmp/simclr-large-files"))
    args = p.parse_args()

    collections = {"CIFAR-10 train (50,000 JPEGs, 44 MB)": load_source(str(DATA), "train"),
                   f"{args.large} files of {args.mb} MB": _large_folder(args.folder, args.large, args.mb)}
    rows = []
    for name, source in collections.items():
        content_key(source, 32)  # pull every file into the page cache first: all three runs read warm files
        with tempfile.TemporaryDirectory() as tmp:
            plain, k0 = _time(source, None)
            first, k1 = _time(source, Path(tmp))
            later, k2 = _time(source, Path(tmp))
        assert k0 == k1 == k2, "the memo changed the key"
        rows.append((name, plain, first, later))
        print(f"{name}: every byte {_s(plain)}, memo first run {_s(first)}, memo later run {_s(later)} "
              f"({plain / later:.0f}x)")
    shutil.rmtree(args.folder, ignore_errors=True)
    print(f"\nMachine: {machine()}\nCommand: `python benchmarks/cache_key.py --large {args.large} --mb {args.mb}`\n")
    print("| collection | every byte read | memo, first run | memo, later run | later run vs every byte |")
    print("|---|---|---|---|---|")
    for name, plain, first, later in rows:
        print(f"| {name} | {_s(plain)} | {_s(first)} | {_s(later)} | {plain / later:.1f}x faster |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
