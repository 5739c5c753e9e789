"""The parameters of SimCLR's augmentation (Appendix A) and their named presets.

:class:`AugmentSpec` is what the per-image pipeline (:mod:`simclr.data.augment`) and the batched one
(:mod:`simclr.data.batch_augment`) both draw from; it holds no transform of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

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
        color_ops: ``"torchvision"`` (torchvision's ``ColorJitter`` formulas: brightness multiplies, contrast
            and saturation blend with the grayscale image) or ``"tensorflow"`` (the paper's Appendix A listing
            with TensorFlow's ops: brightness adds a delta in [-0.8 s, 0.8 s], contrast pulls each channel
            towards its own mean, saturation scales S in HSV; clipped after each op, as the reference code).
        gray_p: Probability of converting to grayscale.
        blur_p: Probability of applying the Gaussian blur (0 disables it).
        blur_sigma: Range of the blur standard deviation in pixels (sampled uniformly).
        blur_kernel_frac: Blur kernel side as a fraction of ``size`` (see :func:`blur_kernel_size`).
        ops: the augmentation ablation (Section 3, Figure 5): when non-empty, these operations (from
            :data:`ABLATION_OPS`, applied in order, each every time) replace the standard pipeline above;
            ``simclr.data.ablation_ops`` implements them. In-memory (device) data only.
        asymmetric: with ``ops``, transform one branch only and leave the other as the (resized) image, as in
            the paper's study of transformation pairs.
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
