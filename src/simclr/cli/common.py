"""What the ``simclr`` commands share: the flags that say where datasets are and how images are read, their
checks with the flags' names, and the choice between JSON and text output."""

from __future__ import annotations

import argparse
from typing import Any

from simclr.errors import InputError
from simclr.files import json_text

SPEC_HELP = ("cifar10, cifar100, digits, a transfer dataset (food101, sun397, cars, aircraft, dtd, pets, "
             "caltech101, flowers102, voc2007, stl10, stl10-unlabeled), an image folder, or a "
             ".tar/.tar.gz/.zip archive of one")


def reading_options(p: argparse.ArgumentParser) -> None:
    """Where datasets are found, and how images are read and run through a trained network."""
    p.add_argument("--data-root", default="",
                   help="folder holding the named datasets (cifar-10-batches-py, food-101, ...)")
    p.add_argument("--cache-dir", default="", help="where archives are extracted")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def positive(name: str, value: float | None) -> None:
    """InputError naming the flag ``name`` unless ``value`` (None: not given) is > 0."""
    if value is not None and value <= 0:
        raise InputError(f"{name} must be > 0, got {value}")


def check_reading(args: argparse.Namespace) -> None:
    """The reading flags' own checks, with the flags' names (before the library's checks of the values)."""
    positive("--batch-size", args.batch_size)
    image_size = getattr(args, "image_size", 0)  # search has no --image-size (the index's checkpoint decides)
    if image_size and image_size < 8:
        raise InputError(f"--image-size must be >= 8, got {image_size}")


def reading(args: argparse.Namespace) -> dict[str, Any]:
    """The reading flags as the keywords of ``simclr.evaluate`` and ``simclr.embed``."""
    return {"image_size": getattr(args, "image_size", 0), "device": args.device,
            "batch_size": args.batch_size, "workers": args.workers, "progress": not args.quiet,
            "data_root": args.data_root, "cache_dir": args.cache_dir,
            **{name: getattr(args, name, None) for name in ("holdout", "eval_crop", "in_memory")}}


def setup(args: argparse.Namespace) -> Any:
    """The :class:`~simclr.evaluation.setup.EvalSetup` of the reading flags (and ``--data``), checked."""
    from simclr.evaluation.setup import eval_setup

    check_reading(args)
    return eval_setup(getattr(args, "data", ""), **reading(args))


def report(args: argparse.Namespace, obj: Any, text: str) -> None:
    """One JSON object with --json, else the human-readable text."""
    print(json_text(obj) if args.json else text)
