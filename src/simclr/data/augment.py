"""SimCLR view augmentation: the paper's per-image reference pipeline.

Implements the data augmentation of SimCLR (Chen et al., 2020, Appendix A):

1. random resized crop (area 8%-100% of the image, aspect ratio 3/4-4/3, bicubic) resized to
   ``size x size``, followed by a horizontal flip with probability 0.5 (Appendix A, "Random crop
   and resize");
2. colour distortion of strength ``s``: colour jitter with brightness, contrast and saturation
   ``0.8 s`` and hue ``0.2 s``, the four operations in random order, applied with probability 0.8,
   then random grayscale with probability 0.2 (Appendix A, "Color distortion");
3. Gaussian blur with probability 0.5, sigma uniform in [0.1, 2.0] and a kernel of about 10% of
   the image side (Appendix A, "Gaussian blur").

The CIFAR-10 recipe (Appendix B.9) uses ``s = 0.5`` and no blur, see :data:`PRESETS`. Outputs are
float32 tensors in [0, 1] without mean/std normalisation.

The parameter distributions are the paper's; the colour operations are torchvision's by default (as in the
PyTorch ports), which differ from the TensorFlow reference code in their formulas: brightness multiplies (as
the reference code's default, ``simclrv2``; the paper's Appendix A listing adds
``tf.image.random_brightness``'s delta instead); contrast pulls every channel towards the image's mean luma
(TensorFlow: each channel towards its own mean); saturation blends with the grayscale image (TensorFlow:
scales S in HSV and clips it); hue and the grayscale weights agree. ``color_ops="tensorflow"`` uses the
listing's TensorFlow formulas instead (:class:`TensorFlowColor` here,
:func:`~simclr.data.pixel_ops.color_distort_tensorflow` batched). The crop draws its area uniformly with 10
tries and a clamped centre crop as the fallback (TensorFlow's ``sample_distorted_bounding_box``: 100 tries,
the whole image as the fallback); the blur pads by reflection (TensorFlow: zeros).

The batched, device-side version of the same distributions lives in
:mod:`simclr.data.batch_augment`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image
import torch
from torchvision import transforms as T

from simclr.data.augment_spec import PRESETS, AugmentSpec, blur_kernel_size, preset_spec
from simclr.data.batch_augment import sample_color
from simclr.data.pixel_ops import color_distort_tensorflow

__all__ = [
    "PRESETS",
    "AugmentSpec",
    "TwoViews",
    "blur_kernel_size",
    "eval_transform",
    "fit_square",
    "preset_spec",
    "resize_side",
    "view_transform",
]

ImageTransform = Callable[[PIL.Image.Image], torch.Tensor]


def view_transform(spec: AugmentSpec) -> ImageTransform:
    """The paper's augmentation of one PIL image into one view (Appendix A).

    Crop, flip, colour jitter and grayscale run on the PIL image (PIL bicubic resampling, which
    antialiases when downscaling); the blur runs on the float tensor. All randomness comes from
    torch's global generator, so ``torch.manual_seed`` makes the views reproducible.

    Args:
        spec: Augmentation parameters; validated here.

    Returns:
        A callable mapping an RGB PIL image to a float32 tensor ``[3, S, S]`` in [0, 1].
    """
    spec.validate()
    crop = T.RandomResizedCrop(spec.size, scale=spec.crop_scale, ratio=spec.crop_ratio,
                               interpolation=T.InterpolationMode.BICUBIC)
    transform: ImageTransform = T.Compose([crop, after_crop_transform(spec)])
    return transform


def after_crop_transform(spec: AugmentSpec) -> ImageTransform:
    """What :func:`view_transform` does after its random resized crop: flip, colour distortion, grayscale, to
    a tensor, blur (validates ``spec``)."""
    spec.validate()
    b, c, s, h = spec.jitter_strengths
    steps: list[Any] = [
        T.RandomHorizontalFlip(p=spec.flip_p),
        T.RandomApply([T.ColorJitter(brightness=b, contrast=c, saturation=s, hue=h)], p=spec.color_p),
        T.RandomGrayscale(p=spec.gray_p),
        T.ToTensor(),
    ] if spec.color_ops == "torchvision" else [
        T.RandomHorizontalFlip(p=spec.flip_p), T.ToTensor(), TensorFlowColor(spec)]
    if spec.blur_p > 0:
        kernel = blur_kernel_size(spec.size, spec.blur_kernel_frac)
        blur = T.GaussianBlur(kernel, sigma=spec.blur_sigma)
        steps.append(T.RandomApply([blur], p=spec.blur_p))
    transform: ImageTransform = T.Compose(steps)
    return transform


class TensorFlowColor:
    """The colour distortion and grayscale of one float image ``[3, H, W]`` with TensorFlow's ops
    (``color_ops: tensorflow``), its parameters drawn from torch's global generator as the batched path draws
    them (:func:`~simclr.data.batch_augment.sample_color`)."""

    def __init__(self, spec: AugmentSpec) -> None:
        self.spec = spec

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return color_distort_tensorflow(x.unsqueeze(0), sample_color(self.spec, 1, None, x.device))[0]


def resize_side(size: int, crop: float = 1.0) -> int:
    """The shorter side images are resized to before a centre crop of ``size`` keeping ``crop`` of it."""
    return size if crop >= 1.0 else round(size / crop)


def fit_square(img: PIL.Image.Image, size: int, crop: float = 1.0) -> np.ndarray:
    """Bicubic resize of the shorter side to ``size / crop`` (:func:`resize_side`; the longer side in
    proportion, rounded) then centre crop to ``size``: uint8 ``[size, size, 3]``. The one geometry of every
    evaluation image, whether decoded into memory or read from its file batch by batch."""
    w, h = img.size
    side = resize_side(size, crop)
    if (w, h) != (size, size) or side != size:
        scale = side / min(w, h)
        nw, nh = max(side, round(w * scale)), max(side, round(h * scale))
        img = img.resize((nw, nh), PIL.Image.Resampling.BICUBIC)
        left, top = round((nw - size) / 2), round((nh - size) / 2)  # as torchvision's CenterCrop places it
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8)


class _FitSquare:
    """:func:`fit_square` to a float tensor ``[3, S, S]`` in [0, 1], as a picklable transform (for DataLoader
    workers)."""

    def __init__(self, size: int, crop: float) -> None:
        self.size, self.crop = size, crop

    def __call__(self, img: PIL.Image.Image) -> torch.Tensor:
        pixels = torch.from_numpy(np.array(fit_square(img, self.size, self.crop)))  # a writable copy
        return pixels.permute(2, 0, 1).contiguous().float().div_(255.0)


def eval_transform(size: int, crop: float = 1.0) -> ImageTransform:
    """Deterministic evaluation transform: bicubic resize of the shorter side to ``S / crop``, centre crop
    ``S`` (:func:`fit_square`: the same pixels as the in-memory decode).

    Args:
        size: Output side ``S``.
        crop: The part of the shorter side kept (1.0: all of it; 0.875: resize 256, crop 224).

    Returns:
        A callable mapping an RGB PIL image to a float32 tensor ``[3, S, S]`` in [0, 1].
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return _FitSquare(size, crop)


class TwoViews:
    """Apply a random transform twice to get the positive pair ``(x_i, x_j)`` of SimCLR (Sec. 2.1).

    Args:
        transform: The per-image view transform, typically :func:`view_transform`.
    """

    def __init__(self, transform: ImageTransform) -> None:
        self.transform = transform

    def __call__(self, img: PIL.Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent draws of the transform on ``img``; each ``[3, S, S]``."""
        return self.transform(img), self.transform(img)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.transform!r})"
