"""Augmentation operators of SimCLR's augmentation ablation (Chen et al., 2020, Sec. 3, Figs. 4-5).

The paper studies the operators crop (random resized crop + resize, with flip), cutout, colour
distortion (jitter + grayscale), Sobel filtering, Gaussian noise, Gaussian blur and rotation by
{0, 90, 180, 270} degrees, alone and in pairs, in an *asymmetric* setting: the targeted
transformations are applied to one branch only and the other branch is the identity (Sec. 3).

Each operator maps a float batch ``[B, 3, S, S]`` in [0, 1] (square) to the same shape, with
independent per-image draws from the ``torch.Generator`` passed in and no host-device sync (masks
and ``torch.where``, never ``.item()`` or branching on tensor values). Crop, colour and blur reuse
:mod:`simclr.data.batch_augment` with an :class:`AugmentSpec`; as the study applies the operator it
names, they run with probability 1, except grayscale inside colour (``spec.gray_p``) and the flip
inside crop (``spec.flip_p``). The paper gives no parameters for the others; this module's choices:

* cutout: a square of side ``U(0.1, 0.5)`` of the image side at a uniform position, filled with 0;
* Gaussian noise: ``x + sigma * N(0, 1)``, ``sigma ~ U(0.1, 0.5)`` per image, clamped to [0, 1];
* Sobel: gradient magnitude of the grayscale image (replicate padding), divided by its per-image
  maximum, copied to 3 channels;
* rotate: ``k ~ U{0, 1, 2, 3}`` quarter turns per image (``torch.rot90`` over the last two dims).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeAlias

import torch
import torch.nn.functional as F
from torch import Tensor

from simclr.data.augment_spec import ABLATION_OPS, AugmentSpec, blur_kernel_size
from simclr.data.batch_augment import sample_params
from simclr.data.pixel_ops import color_distort, gaussian_blur, resized_crop, rgb_to_grayscale

__all__ = [
    "OPS",
    "AblationAugment",
    "apply_ops",
    "cutout",
    "gaussian_noise",
    "random_blur",
    "random_color",
    "random_crop",
    "rotate",
    "sobel",
]

OPS = ABLATION_OPS
"""Operator names accepted by :func:`apply_ops` and :class:`AblationAugment`."""


_Gen: TypeAlias = "torch.Generator | None"


def _uniform(lo: float, hi: float, x: Tensor, gen: _Gen) -> Tensor:
    """One draw ``U(lo, hi)`` per image of ``x``, float ``[B]`` on its device and of its dtype."""
    return lo + (hi - lo) * torch.rand(x.shape[0], generator=gen, device=x.device, dtype=x.dtype)


def random_crop(x: Tensor, gen: _Gen, spec: AugmentSpec) -> Tensor:
    """Random resized crop (``spec.crop_scale``, ``crop_ratio``) back to ``S x S``, flip with ``flip_p``.

    Bicubic resampling without antialiasing, as :func:`simclr.data.pixel_ops.resized_crop`.

    Args:
        x: Float ``[B, 3, S, S]`` in [0, 1].
        gen: Source of randomness on ``x``'s device.
        spec: Crop parameters (Appendix A).
    """
    n, _, height, width = x.shape
    return resized_crop(x, sample_params(spec, n, height, width, gen, x.device).crop, width)


def random_color(x: Tensor, gen: _Gen, spec: AugmentSpec) -> Tensor:
    """Colour distortion: jitter of strength ``spec.color_strength``, then grayscale with ``gray_p``.

    Args:
        x: Float ``[B, 3, H, W]`` in [0, 1].
        gen: Source of randomness on ``x``'s device.
        spec: Colour parameters (``color_p`` is ignored: the jitter always applies).
    """
    n, _, height, width = x.shape
    color = sample_params(spec, n, height, width, gen, x.device).color
    return color_distort(x, color._replace(apply=torch.ones_like(color.apply)))


def random_blur(x: Tensor, gen: _Gen, spec: AugmentSpec) -> Tensor:
    """Gaussian blur with ``sigma ~ U(spec.blur_sigma)`` and a kernel of ``spec.blur_kernel_frac * S``.

    Args:
        x: Float ``[B, 3, S, S]`` in [0, 1].
        gen: Source of randomness on ``x``'s device.
        spec: Blur parameters (``blur_p`` is ignored).
    """
    sigma = _uniform(*spec.blur_sigma, x, gen)
    return gaussian_blur(x, sigma, blur_kernel_size(x.shape[-1], spec.blur_kernel_frac))


def cutout(x: Tensor, gen: _Gen, size_frac: tuple[float, float] = (0.1, 0.5)) -> Tensor:
    """Zero a random square per image: side ``round(U(size_frac) * S)`` pixels (at least 1), uniform position.

    The square lies inside the image: area fraction about ``U(size_frac)^2`` (0.01 to 0.25 by default).

    Args:
        x: Float ``[B, C, S, S]``.
        gen: Source of randomness on ``x``'s device.
        size_frac: Range of the square's side as a fraction of the image side, in (0, 1].

    Returns:
        Float ``[B, C, S, S]``, ``x`` with the square set to 0.
    """
    n, size = x.shape[0], x.shape[-1]
    u = torch.rand((n, 3), generator=gen, device=x.device)
    frac = size_frac[0] + (size_frac[1] - size_frac[0]) * u[:, 0]
    side = torch.round(frac * size).long().clamp(1, size)
    top = torch.minimum((u[:, 1] * (size - side + 1)).long(), size - side)
    left = torch.minimum((u[:, 2] * (size - side + 1)).long(), size - side)
    pos = torch.arange(size, device=x.device)
    rows = (pos >= top[:, None]) & (pos < (top + side)[:, None])  # [B, S]
    cols = (pos >= left[:, None]) & (pos < (left + side)[:, None])
    keep = ~(rows[:, :, None] & cols[:, None, :])  # [B, S, S]
    return x * keep.unsqueeze(1).to(x.dtype)


def sobel(x: Tensor) -> Tensor:
    """Sobel gradient magnitude of the grayscale image, scaled to [0, 1] per image, on 3 channels.

    Separable 3x3 kernels as shifted differences, replicate padding: flat regions map to exactly 0.

    Args:
        x: Float ``[B, 3, H, W]`` in [0, 1].

    Returns:
        Float ``[B, 3, H, W]`` in [0, 1]; each image's maximum is 1 unless the image is constant.
    """
    p = F.pad(rgb_to_grayscale(x), (1, 1, 1, 1), mode="replicate")
    dx, dy = p[..., 2:] - p[..., :-2], p[..., 2:, :] - p[..., :-2, :]  # exact 0 on flat regions
    gx = dx[..., :-2, :] + 2 * dx[..., 1:-1, :] + dx[..., 2:, :]  # separable 3x3 Sobel kernels
    gy = dy[..., :-2] + 2 * dy[..., 1:-1] + dy[..., 2:]
    mag = torch.sqrt(gx * gx + gy * gy)
    mag = mag / mag.amax(dim=(2, 3), keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return mag.expand(-1, 3, -1, -1).contiguous()


def gaussian_noise(x: Tensor, gen: _Gen, std_range: tuple[float, float] = (0.1, 0.5)) -> Tensor:
    """Add i.i.d. Gaussian noise of per-image std ``sigma ~ U(std_range)``, then clamp to [0, 1].

    Args:
        x: Float ``[B, C, H, W]`` in [0, 1].
        gen: Source of randomness on ``x``'s device.
        std_range: Range of the noise standard deviation (in units of the [0, 1] intensity scale).
    """
    sigma = _uniform(*std_range, x, gen)
    noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return torch.addcmul(x, sigma.view(-1, 1, 1, 1), noise).clamp_(0.0, 1.0)


def rotate(x: Tensor, gen: _Gen = None, k: Tensor | None = None) -> Tensor:
    """Rotate image ``i`` by ``k[i]`` quarter turns (``torch.rot90`` over the last two dims).

    Args:
        x: ``[B, C, S, S]`` (square).
        gen: Source of randomness on ``x``'s device, used when ``k`` is ``None``.
        k: Optional int64 ``[B]`` in {0, 1, 2, 3}; drawn uniformly per image when ``None``.
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotate needs square images, got {tuple(x.shape)}")
    if k is None:
        k = torch.randint(0, 4, (x.shape[0],), generator=gen, device=x.device)
    k = k.view(-1, 1, 1, 1)
    out = x
    for turns in (1, 2, 3):
        out = torch.where(k == turns, torch.rot90(x, turns, dims=(-2, -1)), out)
    return out


def apply_ops(
    x: Tensor,
    ops: Sequence[str],
    spec: AugmentSpec,
    gen: _Gen,
    *,
    cutout_frac: tuple[float, float] = (0.1, 0.5),
    noise_std: tuple[float, float] = (0.1, 0.5),
) -> Tensor:
    """Apply the named operators to ``x`` in the given order, each with fresh per-image draws.

    Args:
        x: Float ``[B, 3, S, S]`` in [0, 1].
        ops: Names from :data:`OPS`, applied left to right (repeats allowed).
        spec: Parameters of crop, colour and blur.
        gen: Source of randomness on ``x``'s device.
        cutout_frac: Side range of :func:`cutout`.
        noise_std: Std range of :func:`gaussian_noise`.

    Returns:
        Float ``[B, 3, S, S]`` in [0, 1]; a copy of ``x`` when ``ops`` is empty.
    """
    table: dict[str, Callable[[Tensor], Tensor]] = {
        "crop": lambda t: random_crop(t, gen, spec),
        "cutout": lambda t: cutout(t, gen, cutout_frac),
        "color": lambda t: random_color(t, gen, spec),
        "sobel": sobel,
        "noise": lambda t: gaussian_noise(t, gen, noise_std),
        "blur": lambda t: random_blur(t, gen, spec),
        "rotate": lambda t: rotate(t, gen),
    }
    out = x.clone()
    for op in ops:
        if op not in table:
            raise ValueError(f"unknown augmentation op {op!r}; valid ops are {OPS}")
        out = table[op](out)
    return out


class AblationAugment:
    """Two views of a batch for the augmentation ablation (Sec. 3): ``ops`` on one or both branches.

    Example:
        >>> aug = AblationAugment(("crop", "color"), AugmentSpec(size=32))
        >>> x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
        >>> view1, view2 = aug(x, torch.Generator().manual_seed(0))  # view2 is x / 255

    Args:
        ops: Operator names from :data:`OPS`, applied in this order; empty = identity.
        spec: Output size and the parameters of crop, colour and blur; validated here.
        asymmetric: If true (the paper's setting), ``view2`` is the untransformed image; else
            both views get ``ops`` with independent draws.
        cutout_frac: Side range of :func:`cutout` as a fraction of the image side.
        noise_std: Std range of :func:`gaussian_noise`.

    Raises:
        ValueError: For an op name outside :data:`OPS` (the message lists the valid ones).
    """

    def __init__(
        self,
        ops: Sequence[str],
        spec: AugmentSpec,
        *,
        asymmetric: bool = True,
        cutout_frac: tuple[float, float] = (0.1, 0.5),
        noise_std: tuple[float, float] = (0.1, 0.5),
    ) -> None:
        unknown = [op for op in ops if op not in OPS]
        if unknown:
            raise ValueError(f"unknown augmentation ops {unknown}; valid ops are {OPS}")
        if not 0.0 < cutout_frac[0] <= cutout_frac[1] <= 1.0:
            raise ValueError(f"cutout_frac must satisfy 0 < lo <= hi <= 1, got {cutout_frac!r}")
        if not 0.0 <= noise_std[0] <= noise_std[1]:
            raise ValueError(f"noise_std must satisfy 0 <= lo <= hi, got {noise_std!r}")
        spec.validate()
        self.ops, self.spec, self.asymmetric = tuple(ops), spec, asymmetric
        self.cutout_frac, self.noise_std = cutout_frac, noise_std

    def prepare(self, images: Tensor) -> Tensor:
        """Float ``[B, 3, S, S]`` in [0, 1]: uint8 / 255, resized (bilinear, antialiased) if not ``S x S``."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images.shape)}")
        x = images.float().div(255.0) if images.dtype == torch.uint8 else images
        if not x.is_floating_point():
            raise ValueError(f"expected uint8 or floating images, got {images.dtype}")
        size = self.spec.size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            x = x.clamp(0.0, 1.0)
        return x

    def __call__(self, images: Tensor, generator: _Gen = None) -> tuple[Tensor, Tensor]:
        """Return ``(view1, view2)``, float ``[B, 3, S, S]`` in [0, 1], from ``images`` ``[B, 3, H, W]``."""
        x = self.prepare(images)
        view1 = self.transform(x, generator)
        return view1, (x.clone() if self.asymmetric else self.transform(x, generator))

    def transform(self, x: Tensor, generator: _Gen = None) -> Tensor:
        """One transformed view of a prepared float batch ``[B, 3, S, S]``: the ops in order."""
        return apply_ops(
            x, self.ops, self.spec, generator, cutout_frac=self.cutout_frac, noise_std=self.noise_std
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ops={self.ops!r}, spec={self.spec!r}, asymmetric={self.asymmetric})"
