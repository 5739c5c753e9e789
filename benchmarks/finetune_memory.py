"""Fine-tuning on large images: peak memory and time, the labelled split decoded into memory vs streamed from files.

``simclr eval finetune`` holds small images decoded in one uint8 tensor; images over 64 px (an ImageNet run) are read
from their files batch by batch instead (``--in-memory false``), each training image a random crop of the full file.
This runs the same fine-tuning both ways, each in a fresh process, on a folder of real ImageNet photos (the 20 JPEGs
of ../shared/data/small-extras.tar.gz, about 500 x 375, hard-linked many times into ``--classes`` class folders) at
224 x 224, from an untrained ResNet-18 checkpoint of width ``--width`` (the network's cost does not change the memory
the images take), one epoch of all the labels, no baseline; and prints each process's peak resident memory (that of
its largest worker process too), its wall time and the images per second of the epoch.

Usage: python benchmarks/finetune_memory.py [--train 3000] [--test 300] [--classes 10] [--width 0.25]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from machine import machine  # benchmarks/machine.py

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "small-extras.tar.gz"


def make_folder(root: Path, train: int, test: int, classes: int) -> None:
    """``root/{train,test}/cK/NNNNN.jpg``: the 20 photos hard-linked round-robin (same bytes, same decode cost)."""
    originals = root / "originals"
    originals.mkdir(parents=True)
    with tarfile.open(DATA) as tar:
        members = [m for m in tar.getmembers() if "/imagenet/" in m.name and m.name.endswith(".jpg")]
        photos = []
        for m in sorted(members, key=lambda m: m.name):
            data = tar.extractfile(m)
            assert data is not None
            path = originals / Path(m.name).name
            path.write_bytes(data.read())
            photos.append(path)
    for split, count in (("train", train), ("test", test)):
        for i in range(count):
            folder = root / split / f"c{i % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            os.link(photos[i % len(photos)], folder / f"{i:05d}.jpg")


def make_checkpoint(path: Path, width: float) -> None:
    import torch

    from simclr.build import build_model
    from simclr.config_io import build_config, config_to_dict
    from simclr.runtime.checkpoint import save_checkpoint

    config = build_config({"data": {"spec": "photos", "image_size": 224, "in_memory": "false"},
                           "model": {"arch": "resnet18", "width": width, "cifar_stem": False},
                           "train": {"precision": "fp32", "device": "cpu"}})
    torch.manual_seed(0)
    save_checkpoint({"config": config_to_dict(config), "model": build_model(config).state_dict()}, path)


def child(args: argparse.Namespace) -> int:
    import simclr

    start = time.perf_counter()
    result = simclr.evaluate(args.checkpoint, args.folder, "finetune", label_fraction=1.0, epochs=1, baseline=False,
                             in_memory=args.child, batch_size=args.batch_size, workers=args.workers, device="cpu",
                             progress=False)
    wall = time.perf_counter() - start
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"peak_mib": me.ru_maxrss / 1024, "worker_peak_mib": kids.ru_maxrss / 1024, "wall_s": wall,
                      "labelled": result["labelled_images"], "streamed": result["streamed"],
                      "top1": result["top1"]}))
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=3000, help="labelled train images")
    p.add_argument("--test", type=int, default=300, help="test images")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--width", type=float, default=0.25, help="ResNet-18 width multiplier")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--child", choices=("true", "false"), help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    if not DATA.is_file():
        print(f"missing {DATA}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="simclr-ft-memory-"))
    try:
        make_folder(tmp / "photos", args.train, args.test, args.classes)
        make_checkpoint(tmp / "ckpt.pt", args.width)
        env = {**os.environ, "SIMCLR_CACHE": str(tmp / "cache")}  # a first decode, not an earlier run's cache
        rows = {}
        for mode in ("true", "false"):
            cmd = [sys.executable, __file__, "--child", mode, "--folder", str(tmp / "photos"), "--checkpoint",
                   str(tmp / "ckpt.pt"), "--batch-size", str(args.batch_size), "--workers", str(args.workers)]
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            rows[mode] = json.loads(out.strip().splitlines()[-1])
            shutil.rmtree(tmp / "cache", ignore_errors=True)
            print(mode, rows[mode], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    decoded_mib = (args.train + args.test) * 3 * 224 * 224 / 2**20
    print(f"\nMachine: {machine()}\nCommand: `python benchmarks/finetune_memory.py --train {args.train} --test "
          f"{args.test} --classes {args.classes} --width {args.width} --batch-size {args.batch_size} --workers "
          f"{args.workers}`\n")
    print(f"The {args.train} + {args.test} images decoded at 224: {decoded_mib:.0f} MiB.\n")
    print("| images | peak memory, main process | largest worker | wall time (decode, 1 epoch, test) |")
    print("|---|---|---|---|")
    for mode, name in (("true", "decoded into memory (`--in-memory true`)"),
                       ("false", "streamed from files (`--in-memory false`)")):
        r = rows[mode]
        print(f"| {name} | {r['peak_mib']:.0f} MiB | {r['worker_peak_mib']:.0f} MiB | {r['wall_s']:.0f} s |")
    saved = rows["true"]["peak_mib"] - rows["false"]["peak_mib"]
    print(f"\nStreaming saves {saved:.0f} MiB of peak memory here ({saved / decoded_mib:.2f} x the decoded size); "
          f"time ratio streamed / in memory: {rows['false']['wall_s'] / rows['true']['wall_s']:.2f}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
