"""Training views of a file image (two for pretraining, one for fine-tuning) with every crop drawn before the
file is decoded.

The view transform (:func:`simclr.data.augment.view_transform`) starts with a random resized crop. Drawing the
crops first, from the file's full size, tells how much resolution the decoder must deliver: a JPEG is then
decoded at 1/2, 1/4 or 1/8 scale whenever the smaller crop keeps at least twice the view side
(:func:`simclr.data.images.open_rgb`), which for large photos is several times faster. The crops are those of
torchvision's ``RandomResizedCrop`` (its own ``get_params``, same distribution, same random numbers); at full
scale the crop and resize are torchvision's own, at a reduced scale the same box is scaled and resampled by
Pillow with sub-pixel accuracy. Flip, colour distortion, grayscale and blur follow as in the view transform.
"""

from __future__ import annotations

import math

import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision import transforms as T

from simclr.data.augment import after_crop_transform
from simclr.data.augment_spec import AugmentSpec
from simclr.data.image_source import ImageSource

Box = tuple[int, int, int, int]  # top, left, height, width in the full-size image


class CropFirstViews:
    """``views(source, i)`` -> the ``count`` views ``[3, S, S]`` of image ``i`` (see the module docstring)."""

    def __init__(self, spec: AugmentSpec, reduce: bool = True, count: int = 2) -> None:
        self.size = spec.size
        self.scale, self.ratio = list(spec.crop_scale), list(spec.crop_ratio)
        self.rest = after_crop_transform(spec)
        self.reduce = reduce  # False: always decode the whole file (for comparison)
        self.count = count

    def boxes(self, width: int, height: int) -> list[Box]:
        """``count`` crops of a ``width`` x ``height`` image, as torchvision's RandomResizedCrop draws
        them."""
        shape = torch.zeros(()).expand(3, height, width)  # only the size is read; no pixels allocated
        return [tuple(T.RandomResizedCrop.get_params(shape, self.scale, self.ratio))  # type: ignore[misc]
                for _ in range(self.count)]

    def __call__(self, source: ImageSource, i: int) -> tuple[torch.Tensor, ...]:
        drawn: list[tuple[int, int, list[Box]]] = []

        def plan(width: int, height: int) -> int:
            boxes = self.boxes(width, height)
            drawn.append((width, height, boxes))
            smallest = min(min(h, w) for _, _, h, w in boxes)
            return math.ceil(self.size * min(width, height) / smallest) if self.reduce else 0

        img = source.load(i, min_side=plan)
        width, height, boxes = drawn[0]
        return tuple(self.rest(self._crop(img, box, width, height)) for box in boxes)

    def _crop(self, img: Image.Image, box: Box, width: int, height: int) -> Image.Image:
        top, left, h, w = box
        if img.size == (width, height):  # decoded whole: torchvision's own crop and resize
            return TF.resized_crop(img, top, left, h, w, [self.size, self.size], T.InterpolationMode.BICUBIC)
        sx, sy = img.width / width, img.height / height
        region = (left * sx, top * sy, (left + w) * sx, (top + h) * sy)
        return img.resize((self.size, self.size), Image.Resampling.BICUBIC, box=region)
