"""Folders of larger photos made from CIFAR-10 for benchmarks (never committed): each image upscaled
(bicubic) to a side and written as a JPEG in its class's subfolder, ``DEST/<class>/<name>.jpg``."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CIFAR10 = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"


def upscaled_cifar(side: int, dest: Path, per_class: int, split: str = "train", quality: int = 90) -> Path:
    """``dest`` holding the first ``per_class`` images of each class of CIFAR-10's ``split`` at ``side`` x
    ``side`` pixels; made once (a folder already holding that many images is kept). Returns ``dest``."""
    from PIL import Image
    from tqdm import tqdm

    from simclr.data.sources import load_source

    if dest.is_dir() and sum(1 for _ in dest.glob("*/*.jpg")) == 10 * per_class:
        return dest
    source = load_source(str(CIFAR10), split)
    taken: dict[int, int] = {}
    chosen = []
    for i, label in enumerate(source.labels):
        if taken.get(int(label), 0) < per_class:
            taken[int(label)] = taken.get(int(label), 0) + 1
            chosen.append(i)
    for i in tqdm(chosen, desc=f"writing {side}-px photos to {dest}", unit="img", file=sys.stderr):
        folder = dest / source.classes[int(source.labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        with Image.open(Path(source.root or "") / source.paths[i]) as im:
            im.convert("RGB").resize((side, side), Image.BICUBIC).save(
                folder / (Path(source.paths[i]).stem + ".jpg"), quality=quality)
    return dest
