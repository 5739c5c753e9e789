"""Large photos: images per second of decoding + preparing them, full JPEG decode vs the reduced-scale decode.

Phone-sized catalogue photos (12 MP) cost far more to decode than the network costs to embed them at 224 on a
CPU. simclr decodes a JPEG at 1/2, 1/4 or 1/8 scale (the decoder's DCT scaling) when the image keeps at least
twice the side the pipeline shrinks it to (simclr.data.images.open_rgb, min_side). This measures, on the same
files in one run: the evaluation/embedding preparation (shorter side to S, centre crop) and the training
preparation (two random views, both crops drawn before decoding: simclr.data.crop_views), each with a full
decode (what a per-image PIL pipeline does) and with simclr's reduced decode; and ``simclr.embed`` of the folder end to end (ResNet-18, one process, no workers)
with the reduced decode switched off and on.

Usage: python benchmarks/decode.py [--photos N] [--side 4032] [--embed-size 224] [--view-sizes 96 224]
The photos are real ImageNet JPEGs from ../shared/data/small-extras.tar.gz, enlarged to the given longer side
(aspect 4:3) and saved at JPEG quality 90 in a temporary folder.
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

from machine import machine  # benchmarks/machine.py
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "small-extras.tar.gz"


def make_photos(folder: Path, count: int, side: int) -> list[Path]:
    with tarfile.open(DATA) as tar:
        members = sorted((m for m in tar.getmembers() if "/imagenet/" in m.name and m.name.endswith(".jpg")),
                         key=lambda m: m.name)[:count]
        paths = []
        for m in members:
            data = tar.extractfile(m)
            assert data is not None
            with Image.open(io.BytesIO(data.read())) as img:
                big = img.convert("RGB").resize((side, side * 3 // 4), Image.Resampling.BICUBIC)
            path = folder / Path(m.name).name
            big.save(path, "JPEG", quality=90)
            paths.append(path)
    return paths


def rate(fn: Callable[[Path], object], paths: list[Path], repeats: int) -> float:
    """Images per second of ``fn`` over ``paths`` (best of ``repeats`` passes, after one warm-up image)."""
    fn(paths[0])
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p in paths:
            fn(p)
        best = min(best, time.perf_counter() - t0)
    return len(paths) / best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", type=int, default=12)
    p.add_argument("--side", type=int, default=4032, help="longer side of the enlarged photos (4:3)")
    p.add_argument("--embed-size", type=int, default=224)
    p.add_argument("--view-sizes", type=int, nargs="+", default=[96, 224])
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()

    import torch

    import simclr
    from simclr.build import build_model
    from simclr.config_io import build_config, config_to_dict
    from simclr.data import sources
    from simclr.data.augment import eval_transform
    from simclr.data.augment_spec import AugmentSpec
    from simclr.data.crop_views import CropFirstViews
    from simclr.data.images import open_rgb
    from simclr.runtime.checkpoint import save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        paths = make_photos(folder, args.photos, args.side)
        w, h = Image.open(paths[0]).size
        print(f"\n### Large photos: {len(paths)} JPEGs of {w}x{h} (q90), {machine()}\n")
        print(f"`python benchmarks/decode.py --photos {args.photos} --side {args.side} --embed-size "
              f"{args.embed_size} --view-sizes {' '.join(map(str, args.view_sizes))}`\n")
        print("| work | full decode (img/s) | reduced-scale decode (img/s) | speed-up |\n|---|---|---|---|")
        prep = eval_transform(args.embed_size)
        full = rate(lambda q: prep(open_rgb(q)), paths, args.repeats)
        fast = rate(lambda q: prep(open_rgb(q, min_side=args.embed_size)), paths, args.repeats)
        print(f"| decode + prepare for embedding at {args.embed_size} | {full:.1f} | {fast:.1f} | "
              f"{fast / full:.2f}x |", flush=True)
        source = sources.load_source(str(folder), "all")
        at = {Path(p).name: i for i, p in enumerate(source.paths)}
        for view in args.view_sizes:
            plain = CropFirstViews(AugmentSpec(size=view), reduce=False)
            crops_first = CropFirstViews(AugmentSpec(size=view))
            torch.manual_seed(0)  # the same crops and colours for both, image by image
            whole = rate(lambda q, v=plain: v(source, at[q.name]), paths, args.repeats)
            torch.manual_seed(0)
            reduced = rate(lambda q, v=crops_first: v(source, at[q.name]), paths, args.repeats)
            print(f"| decode + two training views at {view} (crops drawn first) | {whole:.1f} | {reduced:.1f} | "
                  f"{reduced / whole:.2f}x |", flush=True)

        config = build_config({"data": {"spec": str(folder), "image_size": args.embed_size},
                               "model": {"arch": "resnet18"}, "train": {"device": "cpu", "precision": "fp32"}})
        torch.manual_seed(0)
        ckpt = Path(tmp) / "model.pt"
        save_checkpoint({"config": config_to_dict(config), "model": build_model(config).state_dict()}, ckpt)

        def embed_rate() -> float:
            t0 = time.perf_counter()
            simclr.embed(ckpt, folder, device="cpu", workers=0, progress=False)
            return len(paths) / (time.perf_counter() - t0)

        simclr.embed(ckpt, folder, device="cpu", workers=0, progress=False)  # warm-up

        def full_decode(data: Path, *, name: str | None = None, min_side: int = 0) -> Image.Image:
            return open_rgb(data, name=name)  # min_side ignored: what a per-image PIL pipeline does

        with mock.patch.object(sources, "open_rgb", full_decode):  # ImageSource.load's decoder
            full = max(embed_rate() for _ in range(args.repeats))
        fast = max(embed_rate() for _ in range(args.repeats))
        print(f"| simclr.embed end to end (ResNet-18 at {args.embed_size}, no workers) | {full:.1f} | {fast:.1f} | "
              f"{fast / full:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
