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
PyTorch ports), which differ from the TensorFlow reference code in their formulas: brightness multiplies (as the
reference code's default, ``simclrv2``; the paper's Appendix A listing adds ``tf.image.random_brightness``'s
delta instead); contrast pulls every channel towards the image's mean luma (TensorFlow: each channel towards its
own mean); saturation blends with the grayscale image (TensorFlow: scales S in HSV and clips it); hue and the
grayscale weights agree. ``color_ops="tensorflow"`` uses the listing's TensorFlow formulas instead
(:class:`TensorFlowColor` here, :func:`~simclr.data.pixel_ops.color_distort_tensorflow` batched). The crop
draws its area uniformly with 10 tries and a clamped centre crop as the fallback (TensorFlow's
``sample_distorted_bounding_box``: 100 tries, the whole image as the fallback); the blur pads by reflection
(TensorFlow: zeros).

The batched, device-side version of the same distributions lives in
:mod:`simclr.data.batch_augment`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import PIL.Image
import torch
from torchvision import transforms as T

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


COLOR_OPS = ("torchvision", "tensorflow")
"""The formulas of the colour distortion (:attr:`AugmentSpec.color_ops`)."""
ABLATION_OPS = ("crop", "cutout", "color", "sobel", "noise", "blur", "rotate")
"""The operations of the paper's augmentation study (Figure 4)."""


@dataclass(frozen=True)
class AugmentSpec:
    """Parameters of the SimCLR augmentation; defaults are the paper's ImageNet values (Appendix A).

    Attributes:
        size: Output side ``S``; views are ``[3, S, S]``.
        crop_scale: Range of the crop area as a fraction of the image area.
        crop_ratio: Range of the crop aspect ratio (width / height), sampled log-uniformly.
        flip_p: Probability of a horizontal flip.
        color_strength: Colour distortion strength ``s``; jitter strengths are ``0.8 s``
            (brightness, contrast, saturation) and ``0.2 s`` (hue).
        color_p: Probability of applying the colour jitter.
        color_ops: ``"torchvision"`` (torchvision's ``ColorJitter`` formulas: brightness multiplies, contrast and
            saturation blend with the grayscale image) or ``"tensorflow"`` (the paper's Appendix A listing with
            TensorFlow's ops: brightness adds a delta in [-0.8 s, 0.8 s], contrast pulls each channel towards its
            own mean, saturation scales S in HSV; clipped after each op, as the reference code).
        gray_p: Probability of converting to grayscale.
        blur_p: Probability of applying the Gaussian blur (0 disables it).
        blur_sigma: Range of the blur standard deviation in pixels (sampled uniformly).
        blur_kernel_frac: Blur kernel side as a fraction of ``size`` (see :func:`blur_kernel_size`).
        ops: the augmentation ablation (Section 3, Figure 5): when non-empty, these operations (from
            :data:`ABLATION_OPS`, applied in order, each every time) replace the standard pipeline above;
            ``simclr.data.ablation_ops`` implements them. In-memory (device) data only.
        asymmetric: with ``ops``, transform one branch only and leave the other as the (resized) image, as in the
            paper's study of transformation pairs.
    """

    size: int = 224
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    color_strength: float = 1.0
    color_p: float = 0.8
    color_ops: str = "torchvision"
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_frac: float = 0.1
    ops: tuple[str, ...] = ()
    asymmetric: bool = False

    def validate(self) -> None:
        """Check every field.

        Raises:
            ValueError: If any value is out of range; the message names the field.
        """
        if not isinstance(self.size, int) or self.size < 8:
            raise ValueError(f"size must be an int >= 8, got {self.size!r}")
        for name in ("flip_p", "color_p", "gray_p", "blur_p"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale!r}")
        lo, hi = self.crop_ratio
        if not 0.0 < lo <= hi:
            raise ValueError(f"crop_ratio must satisfy 0 < lo <= hi, got {self.crop_ratio!r}")
        # Hue strength is 0.2 s and hue factors must stay within [-0.5, 0.5].
        if not 0.0 <= self.color_strength <= 2.5:
            raise ValueError(f"color_strength must be in [0, 2.5], got {self.color_strength!r}")
        if self.color_ops not in COLOR_OPS:
            raise ValueError(f"color_ops must be one of {', '.join(COLOR_OPS)}, got {self.color_ops!r}")
        lo, hi = self.blur_sigma
        if not 0.0 < lo <= hi:
            raise ValueError(f"blur_sigma must satisfy 0 < lo <= hi, got {self.blur_sigma!r}")
        if not 0.0 < self.blur_kernel_frac <= 1.0:
            raise ValueError(f"blur_kernel_frac must be in (0, 1], got {self.blur_kernel_frac!r}")
        unknown = [op for op in self.ops if op not in ABLATION_OPS]
        if unknown:
            raise ValueError(f"ops: unknown operation(s) {', '.join(map(repr, unknown))}; choose from "
                             f"{', '.join(ABLATION_OPS)}")

    @property
    def jitter_strengths(self) -> tuple[float, float, float, float]:
        """``(brightness, contrast, saturation, hue)`` jitter strengths: ``0.8 s`` x3 and ``0.2 s``."""
        s = self.color_strength
        return 0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s


PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        # Appendix A: ImageNet, 224 x 224, s = 1, with blur. Both presets name every value they differ in, so
        # a preset set over another (a later config layer) replaces all of the other's values.
        "imagenet": MappingProxyType({"size": 224, "color_strength": 1.0, "blur_p": 0.5}),
        # Appendix B.9: CIFAR-10, 32 x 32, s = 0.5, no Gaussian blur.
        "cifar10": MappingProxyType({"size": 32, "color_strength": 0.5, "blur_p": 0.0}),
    }
)
"""Read-only named overrides of :class:`AugmentSpec` (``AugmentSpec(**PRESETS[name])``)."""


def preset_spec(name: str, **overrides: Any) -> AugmentSpec:
    """Build a validated :class:`AugmentSpec` from a preset plus field overrides.

    Args:
        name: A key of :data:`PRESETS` (``"imagenet"`` or ``"cifar10"``).
        **overrides: Fields that replace the preset's values.

    Raises:
        ValueError: For an unknown preset name or an invalid resulting spec.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}; choose from {sorted(PRESETS)}")
    spec = AugmentSpec(**{**PRESETS[name], **overrides})
    spec.validate()
    return spec


def blur_kernel_size(size: int, frac: float) -> int:
    """Odd Gaussian-blur kernel side of about ``frac * size`` pixels (at least 3).

    Follows the reference code (``tf2/data_util.py``): ``k = int(size * frac)``, then rounded to the
    odd number ``2 * (k // 2) + 1``; e.g. 224 -> 23 and 32 -> 3 for ``frac = 0.1`` (Appendix A).

    Args:
        size: Image side in pixels.
        frac: Kernel side as a fraction of ``size``.
    """
    radius = max(int(size * frac + 1e-9) // 2, 1)  # epsilon: 0.29 * 100 == 28.999...
    return 2 * radius + 1


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
    """What :func:`view_transform` does after its random resized crop: flip, colour distortion, grayscale, to a
    tensor, blur (validates ``spec``)."""
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
    (``color_ops: tensorflow``), its parameters drawn from torch's global generator as the batched path draws them
    (:func:`~simclr.data.batch_augment.sample_color`)."""

    def __init__(self, spec: AugmentSpec) -> None:
        self.spec = spec

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        from simclr.data.batch_augment import sample_color
        from simclr.data.pixel_ops import color_distort_tensorflow

        return color_distort_tensorflow(x.unsqueeze(0), sample_color(self.spec, 1, None, x.device))[0]


def resize_side(size: int, crop: float = 1.0) -> int:
    """The shorter side images are resized to before a centre crop of ``size`` keeping ``crop`` of it."""
    return size if crop >= 1.0 else round(size / crop)


def fit_square(img: PIL.Image.Image, size: int, crop: float = 1.0) -> np.ndarray:
    """Bicubic resize of the shorter side to ``size / crop`` (:func:`resize_side`; the longer side in proportion,
    rounded) then centre crop to ``size``: uint8 ``[size, size, 3]``. The one geometry of every evaluation image,
    whether decoded into memory or read from its file batch by batch."""
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
    """Deterministic evaluation transform: bicubic resize of the shorter side to ``S / crop``, centre crop ``S``
    (:func:`fit_square`: the same pixels as the in-memory decode).

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
