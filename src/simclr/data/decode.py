"""Decode a whole dataset once into one uint8 tensor, skipping (and recording) images that cannot be read."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from simclr.data.images import CorruptImageError
from simclr.data.sources import ImageSource

IN_MEMORY_MAX_SIDE = 64
"""Images up to this side are held decoded in memory (on the training device) by default."""


class Decoded(NamedTuple):
    """A decoded dataset.

    Attributes:
        images: uint8 [N, 3, S, S].
        labels: int64 [N]; -1 for unlabeled.
        paths: identifiers of the N kept images.
        skipped: (path, reason) of every image that could not be decoded.
    """

    images: torch.Tensor
    labels: torch.Tensor
    paths: list[str]
    skipped: list[tuple[str, str]]


def native_side(source: ImageSource) -> int:
    """Longest side of the dataset's first readable image (all of an in-memory array)."""
    if source.array is not None:
        return int(max(source.array.shape[1:3]))
    for i in range(min(len(source), 50)):
        try:
            return max(source.load(i).size)
        except CorruptImageError:
            continue
    return 0


def fit_square(img: Image.Image, size: int) -> np.ndarray:
    """Bicubic resize of the shorter side to ``size`` then centre crop: uint8 [size, size, 3]."""
    w, h = img.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.Resampling.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8)


def _resize_array(array: np.ndarray, size: int) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)
    if x.shape[-1] == size and x.shape[-2] == size:
        return x.contiguous()
    out = []
    for chunk in x.split(4096):
        y = F.interpolate(chunk.float(), size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        out.append(y.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def decode_source(source: ImageSource, size: int, *, progress: bool = True) -> Decoded:
    """Decode every image of ``source`` to ``size x size`` (shorter side, centre crop), skipping corrupt ones."""
    labels = torch.as_tensor(np.asarray(source.labels), dtype=torch.int64)
    if source.array is not None:
        return Decoded(_resize_array(source.array, size), labels, list(source.paths), [])
    images = np.empty((len(source), size, size, 3), dtype=np.uint8)
    keep: list[int] = []
    skipped: list[tuple[str, str]] = []
    bar = tqdm(range(len(source)), desc=f"decoding {source.name}", unit="img", disable=not progress,
               leave=False, mininterval=1.0)
    for i in bar:
        try:
            images[len(keep)] = fit_square(source.load(i, min_side=size), size)
        except CorruptImageError as exc:
            skipped.append((source.paths[i], str(exc)))
            continue
        keep.append(i)
    tensor = torch.from_numpy(images[: len(keep)]).permute(0, 3, 1, 2).contiguous()
    return Decoded(tensor, labels[keep], [source.paths[i] for i in keep], skipped)
