"""Near-duplicate detection on real images: planted edited copies among CIFAR-10's 10,000 test images.

Writes a catalogue folder (class subfolders): every CIFAR-10 test image as it is (JPEG), plus ``--copies`` of them,
drawn with a seed, each saved again after one everyday edit (re-encoded at JPEG quality 30, shrunk to 3/4 and back,
a centre crop of 85% resized back, brightened by 20%, mirrored, or a grey-scale copy). Embeds the folder with a
checkpoint (``simclr.embed``), then groups near-duplicates (``Index.duplicates``, on h and on z) at several
thresholds and prints, for each: the planted copies found in their original's group (recall, per edit and over
all); the images in a group holding another class (surely wrong); the other grouped images of one class (CIFAR-10's
test split holds genuine near-duplicates of its own, the same car or aeroplane photographed twice, so these are
partly right: look at the sheet of ``simclr duplicates``); the groups, the largest group, and the time. Prints the
table for BENCHMARKS.md.

Usage: python benchmarks/duplicates.py --checkpoint runs/bench-cifar10-budget [--copies 300]
           [--h-thresholds 0.97,0.98,0.99,0.995] [--z-thresholds 0.9,0.93,0.95,0.97] [--folder /tmp/simclr-dups]
"""

from __future__ import annotations

import argparse
import io
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from machine import machine  # benchmarks/machine.py
from PIL import Image, ImageEnhance, ImageOps

import simclr
from simclr.data.sources import load_source

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10-jpg.tar.gz"


def _jpeg(img: Image.Image) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=30)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _shrink(img: Image.Image) -> Image.Image:
    w, h = img.size
    return img.resize((w * 3 // 4, h * 3 // 4), Image.Resampling.BICUBIC).resize((w, h), Image.Resampling.BICUBIC)


def _crop(img: Image.Image) -> Image.Image:
    w, h = img.size
    cw, ch = round(w * 0.85), round(h * 0.85)
    left, top = (w - cw) // 2, (h - ch) // 2
    return img.crop((left, top, left + cw, top + ch)).resize((w, h), Image.Resampling.BICUBIC)


EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "jpeg30": _jpeg, "shrink": _shrink, "crop85": _crop,
    "bright": lambda img: ImageEnhance.Brightness(img).enhance(1.2),
    "mirror": ImageOps.mirror, "grey": lambda img: ImageOps.grayscale(img).convert("RGB"),
}


def write_catalogue(folder: Path, copies: int, seed: int) -> dict[str, tuple[str, str]]:
    """The catalogue folder; returns each planted copy's file name -> (its original's file name, the edit)."""
    source = load_source(str(DATA), "test")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    assert source.root is not None
    name = [f"{source.classes[int(y)]}/{i:05d}" for i, y in enumerate(source.labels)]
    for c in source.classes:
        (folder / c).mkdir()
    for i, rel in enumerate(source.paths):
        shutil.copyfile(source.root / rel, folder / f"{name[i]}.jpg")
    rng = np.random.default_rng(seed)
    names = list(EDITS)
    planted = {}
    for n, i in enumerate(rng.choice(len(source), copies, replace=False)):
        edit = names[n % len(names)]
        copy = f"{name[i]}_{edit}.jpg"
        EDITS[edit](source.load(int(i))).save(folder / copy, quality=95)
        planted[copy] = (f"{name[i]}.jpg", edit)
    return planted


def score(index: simclr.Index, planted: dict[str, tuple[str, str]], threshold: float, z: bool, k: int) -> dict:
    """What the groups at ``threshold`` get right and wrong (see the module's docstring)."""
    start = time.perf_counter()
    groups = index.duplicates(threshold, k=k, z=z, device="cpu")
    seconds = time.perf_counter() - start
    group_of = {hit.path: g for g, group in enumerate(groups) for hit in group}
    found = {edit: 0 for edit in EDITS}
    for copy, (orig, edit) in planted.items():
        found[edit] += copy in group_of and group_of[copy] == group_of.get(orig)
    partner = {copy: orig for copy, (orig, _) in planted.items()}
    partner.update({orig: copy for copy, orig in list(partner.items())})
    mixed = sum(len(g) for g in groups if len({hit.label for hit in g}) > 1)
    unplanted = sum(1 for g in groups if len({hit.label for hit in g}) == 1 for hit in g
                    if not any(partner.get(hit.path) == other.path for other in g))
    per_edit = len(planted) / len(EDITS)
    return {"threshold": threshold, "on": "z" if z else "h", "recall": sum(found.values()) / len(planted),
            "per_edit": {e: c / per_edit for e, c in found.items()}, "mixed": mixed, "unplanted": unplanted,
            "groups": len(groups), "largest": max((len(g) for g in groups), default=0), "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--copies", type=int, default=300)
    ap.add_argument("--h-thresholds", default="0.97,0.98,0.99,0.995")
    ap.add_argument("--z-thresholds", default="0.9,0.93,0.95,0.97")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--folder", type=Path, default=Path("/tmp/simclr-dups"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    planted = write_catalogue(args.folder, args.copies, args.seed)
    start = time.perf_counter()
    index = simclr.embed(args.checkpoint, args.folder, z=True, device="cpu", progress=False)
    print(f"embedded {len(index)} images in {time.perf_counter() - start:.1f} s")
    rows = []
    for z, thresholds in ((False, args.h_thresholds), (True, args.z_thresholds)):
        for t in (float(x) for x in thresholds.split(",")):
            rows.append(score(index, planted, t, z, args.k))
            r = rows[-1]
            print(f"{r['on']} >= {t}: recall {r['recall']:.3f}, mixed-class {r['mixed']}, unplanted same-class "
                  f"{r['unplanted']}, {r['groups']} groups (largest {r['largest']}), {r['seconds']:.2f} s")
    command = (f"python benchmarks/duplicates.py --checkpoint {args.checkpoint} --copies {args.copies} "
               f"--h-thresholds {args.h_thresholds} --z-thresholds {args.z_thresholds}")
    print(f"\nMachine: {machine()}\nCommand: `{command}`\n")
    print("| on | threshold | planted copies found | " + " | ".join(EDITS)
          + " | images in mixed-class groups | others grouped (one class) | groups | largest | time |")
    print("|---|---|---|" + "---|" * len(EDITS) + "---|---|---|---|---|")
    for r in rows:
        print(f"| {r['on']} | {r['threshold']:g} | {100 * r['recall']:.1f}% | "
              + " | ".join(f"{100 * r['per_edit'][e]:.0f}%" for e in EDITS)
              + f" | {r['mixed']} | {r['unplanted']} | {r['groups']} | {r['largest']} | {r['seconds']:.2f} s |")


if __name__ == "__main__":
    main()
