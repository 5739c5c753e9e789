"""Labelled images read from their files a batch at a time, for training on more images than memory holds.

Fine-tuning and the augmented linear protocol hold small datasets decoded in one uint8 tensor on the device
and crop them there. A large split (ImageNet's 10% of labels is 19 GB at 224, its whole train split 190 GB) is
streamed
instead: DataLoader workers decode each batch's files, and a training batch gets, per image, torchvision's
    random resized crop of the *full* file (as the paper's fine-tuning, not of a pre-shrunk square) and a
    horizontal flip, with the crop drawn before decoding so a large JPEG is decoded no larger than the crop
    needs (:class:`~simclr.data.crop_views.CropFirstViews`). Every image's random numbers come from its own
    seed (:func:`~simclr.data.views.image_seed` of the seed, the epoch and the image), whichever worker reads
    it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from simclr.data.augment import eval_transform, resize_side
from simclr.data.augment_spec import AugmentSpec
from simclr.data.crop_views import CropFirstViews
from simclr.data.image_source import ImageSource
from simclr.data.images import CorruptImageError
from simclr.data.views import image_seed
from simclr.interrupts import ignore_stop_signals

Item = tuple[torch.Tensor | None, int, str]


class _Files(Dataset):
    """Image ``i`` of a source as a float ``[3, S, S]`` tensor: a random crop and flip (``crop_scale`` set),
    or the centre crop keeping ``crop`` of the shorter side; None and the reason for an unreadable file."""

    def __init__(self, source: ImageSource, size: int, crop: float, crop_scale: tuple[float, float] | None,
                 seed: int, epoch: int) -> None:
        self.source, self.seed, self.epoch = source, seed, epoch
        self.side = resize_side(size, crop)
        self.centre = eval_transform(size, crop)
        self.views = None if crop_scale is None else CropFirstViews(
            AugmentSpec(size=size, crop_scale=crop_scale, flip_p=0.5, color_p=0.0, gray_p=0.0, blur_p=0.0),
            count=1)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> Item:
        try:
            if self.views is None:
                return self.centre(self.source.load(i, min_side=self.side)), i, ""
            # the image's own stream; the worker's generator is untouched
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(image_seed(self.seed, self.epoch, i))
                return self.views(self.source, i)[0], i, ""
        except CorruptImageError as exc:
            return None, i, str(exc)


def _collate(items: list[Item]) -> tuple[torch.Tensor | None, torch.Tensor, list[tuple[int, str]]]:
    good = [it for it in items if it[0] is not None]
    bad = [(i, why) for x, i, why in items if x is None]
    rows = torch.tensor([i for _, i, _ in good], dtype=torch.int64)
    return (torch.stack([x for x, _, _ in good]) if good else None), rows, bad  # type: ignore[misc]


class StreamedImages:
    """The labelled images of ``source``, decoded batch by batch in ``workers`` processes at side ``size``.

    Args:
        source: The images (e.g. a labelled subset, :meth:`ImageSource.subset`) and their labels.
        size: Side S of the images given out.
        crop: The part of the shorter side the centre crops of :meth:`batches` without ``crop_scale`` keep
            (1.0: all of it; 0.875: resize to 256, crop 224).
        workers: DataLoader worker processes (0: in this process).
        pin_memory: Page-locked batches, for a faster copy to a GPU.

    Attributes:
        labels: int64 ``[N]`` (or multi-label codes ``[N, C]``) of the source.
        skipped: ``{path: reason}`` of the unreadable images met so far; they are left out of their batches.
    """

    def __init__(self, source: ImageSource, size: int, crop: float = 1.0, workers: int = 2,
                 pin_memory: bool = False) -> None:
        self.source, self.size, self.crop, self.workers, self.pin_memory = \
            source, size, crop, workers, pin_memory
        self.labels = torch.as_tensor(np.asarray(source.labels), dtype=torch.int64)
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.source)

    def subset(self, rows: Sequence[int] | torch.Tensor) -> StreamedImages:
        """The images at ``rows`` (in that order) as a stream of their own, read as this one (its unreadable
        images are listed in this one's ``skipped`` too)."""
        rows = torch.as_tensor(rows, dtype=torch.int64)
        part = StreamedImages(self.source.subset(rows.numpy()), self.size, self.crop, self.workers,
                              self.pin_memory)
        part.skipped = self.skipped
        return part

    def batches(self, order: Sequence[torch.Tensor] | Sequence[Sequence[int]], *,
                crop_scale: tuple[float, float] | None = None, seed: int = 0,
                epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Float ``[B, 3, S, S]`` batches in [0, 1] and the rows ``[B]`` (into the source) of their images,
        one per entry of ``order`` (rows of the source), in that order; unreadable images are left out (a
        batch with none left is not given). ``crop_scale``: a random resized crop of that area range of each
        full image and a horizontal flip, drawn from :func:`~simclr.data.views.image_seed` of ``seed``,
        ``epoch`` and the row;
        None: the centre crop."""
        steps = [[int(i) for i in rows] for rows in order]
        dataset = _Files(self.source, self.size, self.crop, crop_scale, seed, epoch)
        loader: Any = DataLoader(dataset, batch_sampler=steps,
                                 num_workers=self.workers if len(steps) > 1 else 0,
                                 collate_fn=_collate, pin_memory=self.pin_memory,
                                 worker_init_fn=ignore_stop_signals)
        for x, rows, bad in loader:
            for i, why in bad:
                self.skipped[self.source.paths[i]] = why
            if x is not None:
                yield x, rows

    def all(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every image once, in order, as centre crops: :meth:`batches` of ``batch_size`` consecutive rows."""
        return self.batches(torch.arange(len(self)).split(batch_size))
