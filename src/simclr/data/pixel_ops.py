"""Pixel operations of the batched SimCLR augmentation, for given per-image parameters (no randomness here).

Each takes a float batch ``[B, C, H, W]`` in [0, 1] and per-image parameters (``[B]`` tensors), and blends
per-image choices with ``torch.where``/``torch.lerp`` instead of indexing, so nothing waits for the device:

* :func:`resized_crop`: crop + resize + flip as separable bicubic matrices ``Ry @ x @ Rx^T``, equal to
  ``TF.resized_crop(..., antialias=False)``;
* :func:`color_distort`: brightness, contrast, saturation and hue in a per-image order (torchvision's float
  formulas, clamped after each op), then grayscale; :func:`color_distort_tensorflow` the same with
  TensorFlow's formulas (``augment.color_ops: tensorflow``);
* :func:`gaussian_blur`: per-image sigma, reflect padding, as a banded matrix.

:mod:`simclr.data.batch_augment` draws the parameters and chains these ops.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "ColorParams",
    "CropParams",
    "adjust_hue",
    "color_distort",
    "color_distort_tensorflow",
    "gaussian_blur",
    "resized_crop",
    "rgb_to_grayscale",
    "select",
]


class CropParams(NamedTuple):
    """Per-image crop box in pixels (all int64 ``[B]``) and horizontal-flip flag (bool ``[B]``)."""

    top: Tensor
    left: Tensor
    height: Tensor
    width: Tensor
    flip: Tensor


class ColorParams(NamedTuple):
    """Per-image colour distortion: flags bool ``[B]``, factors float ``[B]``, ``order`` int64 ``[B, 4]``.

    ``order[i]`` is a permutation of the ops 0 = brightness, 1 = contrast, 2 = saturation, 3 = hue.
    """

    apply: Tensor
    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    hue: Tensor
    order: Tensor
    gray: Tensor


def select(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Per image, ``a`` where ``mask`` (bool ``[B]``) else ``b``: exact, faster than ``where`` on CPU."""
    return torch.lerp(b, a, mask.to(a.dtype).view(-1, *([1] * (a.ndim - 1))))


def _cubic_weights(t: Tensor) -> Tensor:
    """Bicubic (A = -0.75, as PyTorch) weights ``[..., 4]`` of the taps -1, 0, 1, 2 around ``floor``."""
    a, d = -0.75, torch.stack([t + 1, t, 1 - t, 2 - t], dim=-1)  # distances to the 4 taps
    near = ((a + 2) * d - (a + 3)) * d * d + 1  # |d| <= 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a  # 1 < |d| < 2 (both are 0 at |d| = 1)
    return torch.where(d <= 1, near, far)


def _bicubic_matrix(start: Tensor, length: Tensor, in_size: int, out_size: int, dtype: torch.dtype) -> Tensor:
    """Per-image ``[B, out, in]`` matrix resizing ``[start, start + length)`` to ``out_size`` pixels.

    As ``F.interpolate(mode="bicubic", align_corners=False)`` on the cropped box: source position
    ``(o + 0.5) * length / out_size - 0.5``, taps clamped to the box.
    """
    scale = (length.to(dtype) / out_size).view(-1, 1)
    src = (torch.arange(out_size, device=start.device, dtype=dtype) + 0.5) * scale - 0.5
    base = torch.floor(src)
    taps = base.long().unsqueeze(-1) + torch.arange(-1, 3, device=start.device)  # [B, S, 4]
    taps = torch.minimum(taps.clamp(min=0), (length - 1).view(-1, 1, 1)) + start.view(-1, 1, 1)
    matrix = torch.zeros(start.shape[0], out_size, in_size, dtype=dtype, device=start.device)
    return matrix.scatter_add_(2, taps, _cubic_weights(src - base))


def resized_crop(images: Tensor, crop: CropParams, size: int) -> Tensor:
    """Crop each box, resize it to ``size x size`` (bicubic, no antialias) and flip where flagged.

    Args:
        images: Float ``[B, C, H, W]`` in [0, 1].
        crop: Per-image boxes in pixels and flip flags.
        size: Output side ``S``.

    Returns:
        Float ``[B, C, S, S]`` clamped to [0, 1].
    """
    height, width = images.shape[-2:]
    rows = _bicubic_matrix(crop.top, crop.height, height, size, images.dtype)
    cols = _bicubic_matrix(crop.left, crop.width, width, size, images.dtype)
    cols = torch.where(crop.flip.view(-1, 1, 1), cols.flip(1), cols)  # mirrored output columns
    return torch.einsum("bsh,bchw,btw->bcst", rows, images, cols).clamp_(0.0, 1.0)


def rgb_to_grayscale(x: Tensor) -> Tensor:
    """Luma ``[B, 1, H, W]`` of ``[B, 3, H, W]``, torchvision's tensor weights (0.2989, 0.587, 0.114)."""
    r, g, b = x.unbind(dim=1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def adjust_hue(x: Tensor, hue: Tensor, saturation: Tensor | None = None) -> Tensor:
    """Rotate the hue of image ``i`` by ``hue[i]`` turns, as ``TF.adjust_hue`` on float tensors (and, with
    ``saturation``, multiply its HSV saturation by ``saturation[i]``, clipped to [0, 1], as TensorFlow's
    ``adjust_saturation``).

    RGB -> HSV follows torchvision's ``_rgb2hsv``; HSV -> RGB uses the equivalent closed form ``c_n = V - V S
    clamp(min(k, 4 - k), 0, 1)``, ``k = (n + 6 H) mod 6``, n = 5, 3, 1 for R, G, B; a saturation factor ``f``
    makes the chroma ``V S`` into ``min(f V S, V)``.

    Args:
        x: Float ``[B, 3, H, W]`` in [0, 1].
        hue: Float ``[B]`` in [-0.5, 0.5].
        saturation: Float ``[B]`` >= 0, or None (unchanged).

    Returns:
        Float ``[B, 3, H, W]``.
    """
    r, g, b = x.unbind(dim=1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)  # = V * S
    inv = torch.reciprocal(chroma + (chroma == 0).to(x.dtype))  # chroma == 0: any hue will do
    is_r = (maxc == r).to(x.dtype)
    is_g = (maxc == g).to(x.dtype).mul_(1 - is_r)
    is_b = 1 - is_r - is_g
    h6 = (is_r * (g - b)).addcmul_(is_g, b - r).addcmul_(is_b, r - g).mul_(inv)
    h6 = h6.add_(2 * is_g).add_(4 * is_b).add_((6 * hue).to(x.dtype).view(-1, 1, 1))  # 6 H, shifted
    k = h6.unsqueeze(1) + torch.arange(5, 0, -2, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = k.sub_(torch.floor(k / 6).mul_(6))  # k mod 6
    weight = k.sub_(2).abs_().neg_().add_(2).clamp_(0.0, 1.0)  # = clamp(min(k, 4 - k), 0, 1)
    if saturation is not None:
        chroma = torch.minimum(chroma * saturation.to(x.dtype).view(-1, 1, 1), maxc)
    return torch.addcmul(maxc.unsqueeze(1), chroma.unsqueeze(1), weight, value=-1)


def color_distort_tensorflow(x: Tensor, color: ColorParams) -> Tensor:
    """The paper's Appendix A colour distortion with TensorFlow's operations, in each image's own op order
    (where ``apply``), clipped to [0, 1] after each op as the reference code does, then grayscale (where
    ``gray``): brightness adds ``color.brightness`` (a delta, ``tf.image.random_brightness``), contrast pulls
    each channel towards its own mean (``adjust_contrast``), saturation scales S in HSV
    (``adjust_saturation``), hue rotates as :func:`adjust_hue`. Four positions, each computed for every image
    and picked per image.

    Args:
        x: Float ``[B, 3, H, W]`` in [0, 1].
        color: Per-image colour parameters (``brightness`` a delta, the others factors and a hue shift).

    Returns:
        Float ``[B, 3, H, W]`` in [0, 1].
    """
    zero, one = torch.zeros_like(color.brightness), torch.ones_like(color.brightness)
    shape = (-1, 1, 1, 1)
    for pos in range(4):
        op = torch.where(color.apply, color.order[:, pos], torch.full_like(color.order[:, pos], -1))
        factor = torch.where(op == 1, color.contrast, one).view(shape)  # 0: brightness, 1: contrast
        shift = torch.where(op == 0, color.brightness, zero).view(shape)
        mean = x.mean(dim=(2, 3), keepdim=True)
        linear = torch.addcmul(mean * (1 - factor) + shift, factor, x)
        hsv = adjust_hue(x, torch.where(op == 3, color.hue, zero),
                         torch.where(op == 2, color.saturation, one))
        x = select((op == 2) | (op == 3), hsv, linear).clamp_(0.0, 1.0)
    return select(color.gray, rgb_to_grayscale(x).expand_as(x), x)


def _linear_jitter(x: Tensor, op: Tensor, color: ColorParams) -> Tensor:
    """Brightness (op 0), contrast (1) or saturation (2) per image, identity for other ``op`` values.

    All three are torchvision's ``_blend``: ``clamp(a x + b gray(x) + c mean(gray(x)), 0, 1)``.
    """
    one, zero = torch.ones_like(color.brightness), torch.zeros_like(color.brightness)
    con, sat = color.contrast, color.saturation
    a = torch.where(op == 0, color.brightness, torch.where(op == 1, con, torch.where(op == 2, sat, one)))
    b = torch.where(op == 2, 1 - sat, zero).view(-1, 1, 1, 1)
    c = torch.where(op == 1, 1 - con, zero).view(-1, 1, 1, 1)
    gray = rgb_to_grayscale(x)
    offset = torch.addcmul(c * gray.mean(dim=(1, 2, 3), keepdim=True), b, gray)
    return torch.addcmul(offset, a.view(-1, 1, 1, 1), x).clamp_(0.0, 1.0)


def color_distort(x: Tensor, color: ColorParams) -> Tensor:
    """Colour jitter in each image's own op order (where ``apply``), then grayscale (where ``gray``).

    The ops an image has before its hue step run in order positions 0-2, hue runs once for the
    whole batch, then the ops after it run in positions 1-3 (identity elsewhere): every image sees
    exactly ``order[i]`` with one hue evaluation and no data-dependent indexing.

    Args:
        x: Float ``[B, 3, H, W]`` in [0, 1].
        color: Per-image colour parameters.

    Returns:
        Float ``[B, 3, H, W]`` in [0, 1].
    """
    hue_pos = (color.order == 3).int().argmax(dim=1)
    none = torch.full_like(color.order[:, 0], -1)
    for pos in range(3):
        x = _linear_jitter(x, torch.where(color.apply & (pos < hue_pos), color.order[:, pos], none), color)
    x = select(color.apply, adjust_hue(x, color.hue), x)
    for pos in range(1, 4):
        x = _linear_jitter(x, torch.where(color.apply & (pos > hue_pos), color.order[:, pos], none), color)
    return select(color.gray, rgb_to_grayscale(x).expand_as(x), x)


def _gaussian_matrix(sigma: Tensor, kernel_size: int, size: int, dtype: torch.dtype) -> Tensor:
    """Per-image ``[B, size, size]`` matrix of a 1-D Gaussian blur with reflect padding."""
    half = (kernel_size - 1) * 0.5
    t = torch.linspace(-half, half, kernel_size, dtype=dtype, device=sigma.device)
    pdf = torch.exp(-0.5 * (t / sigma.to(dtype).view(-1, 1)).pow(2))
    kernel = pdf / pdf.sum(dim=1, keepdim=True)  # [B, k], as torchvision's _get_gaussian_kernel1d
    pos = torch.arange(size, device=sigma.device).view(-1, 1) + torch.arange(kernel_size, device=sigma.device)
    pos = (pos - kernel_size // 2).abs()
    pos = torch.where(pos > size - 1, 2 * (size - 1) - pos, pos)  # reflect without repeating the edge
    n = sigma.shape[0]
    matrix = torch.zeros(n, size, size, dtype=dtype, device=sigma.device)
    return matrix.scatter_add_(2, pos.expand(n, -1, -1), kernel.unsqueeze(1).expand(-1, size, -1))


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Blur image ``i`` with a ``kernel_size`` Gaussian of std ``sigma[i]``, reflect padding.

    Separable ``TF.gaussian_blur`` as ``G[i] @ x[i, c] @ G[i]^T`` with a banded per-image matrix
    (on CPU faster than a grouped convolution for small images).

    Args:
        x: Float ``[B, C, S, S]`` (square).
        sigma: Float ``[B]``, positive.
        kernel_size: Odd kernel side with ``kernel_size // 2 < S``.

    Returns:
        Float ``[B, C, S, S]`` in [0, 1] for input in [0, 1].
    """
    size = x.shape[-1]
    if x.shape[-2] != size or kernel_size // 2 >= size:
        raise ValueError(f"need square images wider than kernel_size // 2: {tuple(x.shape)}, {kernel_size}")
    matrix = _gaussian_matrix(sigma, kernel_size, size, x.dtype)
    return torch.einsum("bsh,bchw,btw->bcst", matrix, x, matrix).clamp_(0.0, 1.0)
