"""Labelled subsets of a train split: the paper's class-balanced 1% and 10% of the labels (Section 4), saved
and read again as JSON, or read from a list of image names (google-research/simclr's
``imagenet_subsets/1percent.txt``)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simclr.errors import InputError
from simclr.files import atomic_write_text

__all__ = ["SUBSET_FORMAT", "label_subset", "load_subset", "save_subset", "subset_from_names"]

SUBSET_FORMAT = "simclr-subset-v1"


def label_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of a class-balanced subset with ``fraction`` of the images of every class.

    Args:
        labels: Int labels ``[N]``; negative labels (unlabelled images) are never selected.
        fraction: In (0, 1]; each class keeps ``round(fraction * count)`` images (halves up), at least 1.
        seed: Seed of the ``numpy.random.Generator`` that draws the images (classes in ascending order).

    Returns:
        Sorted int64 indices into ``labels``.

    Raises:
        ValueError: If ``fraction`` is not in (0, 1] or ``labels`` is not one-dimensional.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels.shape}")
    rng = np.random.default_rng(seed)
    picked = []
    for cls in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == cls)
        count = max(1, math.floor(fraction * len(members) + 0.5))
        picked.append(rng.choice(members, size=min(count, len(members)), replace=False))
    return np.sort(np.concatenate(picked)).astype(np.int64) if picked else np.zeros(0, np.int64)


def save_subset(path: str | Path, indices: np.ndarray, *, fraction: float, seed: int, dataset: str,
                num_images: int) -> None:
    """Write a subset as JSON (format ``simclr-subset-v1``), atomically via a temporary file.

    Args:
        path: Destination file.
        indices: Selected image indices, e.g. from :func:`label_subset`.
        fraction, seed: What the subset was drawn with (recorded for reference).
        dataset: Name of the dataset (informational).
        num_images: Size of the full training split; :func:`load_subset` checks it.
    """
    path = Path(path)
    doc = {"format": SUBSET_FORMAT, "fraction": float(fraction), "seed": int(seed), "dataset": dataset,
           "num_images": int(num_images), "indices": [int(i) for i in np.asarray(indices).ravel()]}
    atomic_write_text(path, json.dumps(doc) + "\n")


def load_subset(path: str | Path, num_images: int, paths: Sequence[str] | None = None) -> np.ndarray:
    """Read a label subset for a training split of ``num_images`` images: a file written by
    :func:`save_subset`, or a text file naming one image per line (see :func:`subset_from_names`; needs the
    split's ``paths``), such as the paper's ImageNet ``1percent.txt`` and ``10percent.txt``.

    Returns:
        Sorted, unique int64 indices.

    Raises:
        InputError: (one line) if the file is missing, unreadable, not a subset file, was made for a split
            of another size, holds an index out of range, or names an image the split does not have.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
        if not text.lstrip().startswith("{"):
            if paths is None:
                raise InputError(f"label subset {path} is not a simclr subset file (JSON)")
            return subset_from_names(text.splitlines(), paths, str(path))
        doc: Any = json.loads(text)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read label subset {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict) or doc.get("format") != SUBSET_FORMAT:
        raise InputError(f"{path} is not a label subset file (expected format {SUBSET_FORMAT!r})")
    if doc.get("num_images") != num_images:
        raise InputError(f"label subset {path} was made for {doc.get('num_images')} training images, "
                         f"but the dataset has {num_images}")
    raw = doc.get("indices")
    if not isinstance(raw, list) or not all(type(i) is int for i in raw):
        raise InputError(f"label subset {path}: 'indices' must be a list of integers")
    if not raw:
        raise InputError(f"label subset {path} selects no images")
    bad = [i for i in raw if not 0 <= i < num_images]
    if bad:
        raise InputError(f"label subset {path}: index {bad[0]} out of range for {num_images} images")
    return np.unique(np.asarray(raw, dtype=np.int64))


def subset_from_names(lines: Sequence[str], paths: Sequence[str], what: str = "label subset") -> np.ndarray:
    """Indices of the images named in ``lines``, one per line, among the split's ``paths``.

    A name matches the path that ends with it, whole components only: a bare file name (as in
    google-research/simclr's ``imagenet_subsets/1percent.txt``: ``n01440764_10026.JPEG``) matches on the file
    name, ``airplane/0001.jpg`` on the last two components. Blank lines and lines starting with ``#`` are
    ignored. Raises InputError (one line) for a name the split does not have (or an image of it that could not
    be read), a name that fits two images, or no names at all."""
    names = [n.strip().strip("/") for n in lines if n.strip() and not n.lstrip().startswith("#")]
    if not names:
        raise InputError(f"{what} names no images")
    tails: dict[int, dict[str, int]] = {}  # components -> path tail -> index (-1: two images share it)
    picked: list[int] = []
    missing: list[str] = []
    for n in names:
        k = n.count("/") + 1
        if k not in tails:
            tails[k] = {}
            for i, p in enumerate(paths):
                tail = "/".join(p.split("/")[-k:])
                tails[k][tail] = -1 if tail in tails[k] else i
        hit = tails[k].get(n)
        if hit is None:
            missing.append(n)
        elif hit == -1:
            raise InputError(f"{what}: {n} fits more than one image of the split; give more of its path")
        else:
            picked.append(hit)
    if missing:
        raise InputError(f"{what}: {len(missing)} of {len(names)} named images are not in the train split "
                         f"(or could not be read), e.g. {missing[0]}")
    return np.unique(np.asarray(picked, dtype=np.int64))
