"""Labelled images for the evaluation protocols that train: in memory or streamed, as float batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from simclr.data.augment_spec import AugmentSpec
from simclr.data.batch_augment import BatchAugment
from simclr.data.pixel_ops import resized_crop
from simclr.data.streamed import StreamedImages

Images = Tensor | StreamedImages
"""Labelled images: uint8 ``[N, 3, S, S]`` in memory, or :class:`StreamedImages` decoded batch by batch."""


def to_float(images: Tensor) -> Tensor:
    """uint8 images as float in [0, 1]; float images as float."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def describe_shape(images: Images) -> tuple[int, ...] | str:
    return tuple(images.shape) if isinstance(images, Tensor) else f"{len(images)} streamed images"


def image_batches(images: Images, batch_size: int,
                  device: torch.device | str) -> Iterator[tuple[Tensor, Tensor]]:
    """Float batches on ``device`` of every (readable) image in order, as they are (streamed: centre crops),
    with their rows."""
    if isinstance(images, StreamedImages):
        for x, rows in images.all(batch_size):
            yield x.to(device, non_blocking=True), rows
        return
    for rows in torch.arange(len(images)).split(batch_size):
        yield to_float(images[rows.to(images.device)].to(device)), rows


class TrainBatches:
    """One epoch's training batches, ``(rows [B], float images [B, 3, S, S])`` on the device, for ``order``
    (rows per batch), randomly cropped (area in ``crop_scale``) and flipped unless ``crop_scale`` is None:
    indexed and cropped on the device from images in memory (one crop generator for the whole training,
    seeded by ``seed``), or decoded and cropped per image by the workers of :class:`StreamedImages`."""

    def __init__(self, images: Images, device: torch.device, crop_scale: tuple[float, float] | None,
                 seed: int) -> None:
        self.images, self.device, self.crop_scale, self.seed = images, device, crop_scale, seed
        self.side = images.shape[-1] if isinstance(images, Tensor) else images.size
        self.augment = (BatchAugment(AugmentSpec(size=self.side, crop_scale=crop_scale, flip_p=0.5,
                                                 color_p=0.0, gray_p=0.0, blur_p=0.0))
                        if crop_scale is not None else None)
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __call__(self, order: Sequence[Tensor], epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        if isinstance(self.images, StreamedImages):
            batches = self.images.batches(order, crop_scale=self.crop_scale, seed=self.seed, epoch=epoch)
            for x, rows in batches:
                yield rows.to(self.device), x.to(self.device, non_blocking=True)
            return
        for idx in order:
            idx = idx.to(self.device)
            batch = self.images[idx]
            x = to_float(batch)
            if self.augment is not None:
                x = resized_crop(x, self.augment.sample(batch, self.generator).crop, self.side)
            yield idx, x
