"""SimCLR augmentation of a whole uint8 batch at once, on the batch's device (Appendix A).

Same distributions as :func:`simclr.data.augment.view_transform` (Chen et al., 2020, Appendix A),
vectorised with an independent draw per image:

* crop + flip: boxes drawn like ``RandomResizedCrop.get_params`` (10 candidates per image, the
  first that fits, else the centred fallback), resized bicubically by per-image separable matrices
  ``Ry @ x @ Rx^T`` (flip = mirrored ``Rx``): equal to ``TF.resized_crop(..., antialias=False)``;
* colour jitter with probability ``color_p`` (brightness, contrast, saturation, hue in a per-image
  order, torchvision's float formulas, clamped after each op), then grayscale with ``gray_p``;
* Gaussian blur with probability ``blur_p``: per-image sigma, reflect padding, as a banded matrix.

All randomness comes from the ``torch.Generator`` passed in, and per-image choices are blends
(``torch.where``/``torch.lerp``), never data-dependent indexing: no host-device sync on CUDA.
Differences from the PIL pipeline: no antialiasing when a crop is shrunk (PIL's bicubic does
antialias), and with TF32 matmuls enabled on GPU the crop and blur are accurate to about 1e-3.
"""

from __future__ import annotations

import math
from typing import NamedTuple, TypeAlias

import torch
from torch import Tensor

from simclr.data.augment_spec import AugmentSpec, blur_kernel_size
from simclr.data.pixel_ops import (
    ColorParams,
    CropParams,
    color_distort,
    color_distort_tensorflow,
    gaussian_blur,
    resized_crop,
    select,
)

__all__ = [
    "BatchAugment",
    "BatchParams",
    "BlurParams",
    "apply_params",
    "sample_params",
]

_CANDIDATES = 10  # crop attempts per image, as torchvision's RandomResizedCrop
_Gen: TypeAlias = "torch.Generator | None"


class BlurParams(NamedTuple):
    """Per-image Gaussian blur: ``apply`` bool ``[B]``, ``sigma`` float ``[B]`` in pixels."""

    apply: Tensor
    sigma: Tensor


class BatchParams(NamedTuple):
    """All random parameters of one augmented view of a batch."""

    crop: CropParams
    color: ColorParams
    blur: BlurParams


def _uniform(lo: float, hi: float, shape: tuple[int, ...], gen: _Gen, device: torch.device) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=gen, device=device)


def _fallback_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """The centred fallback of torchvision: the whole image with its aspect clamped to ``ratio``."""
    if width / height < ratio[0]:
        return round(width / ratio[0]), width
    if width / height > ratio[1]:
        return height, round(height * ratio[1])
    return height, width


def _sample_crop(
    spec: AugmentSpec, batch: int, height: int, width: int, gen: _Gen, dev: torch.device
) -> CropParams:
    """Boxes as ``RandomResizedCrop.get_params``: area uniform, aspect log-uniform, first fit of 10."""
    shape = (batch, _CANDIDATES)
    area = height * width * _uniform(spec.crop_scale[0], spec.crop_scale[1], shape, gen, dev)
    log_ratio = (math.log(spec.crop_ratio[0]), math.log(spec.crop_ratio[1]))
    ratio = torch.exp(_uniform(*log_ratio, shape, gen, dev))
    w = torch.round(torch.sqrt(area * ratio)).long()
    h = torch.round(torch.sqrt(area / ratio)).long()
    valid = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = valid.int().argmax(dim=1, keepdim=True)  # index of the first valid candidate
    found = valid.any(dim=1)
    fallback_h, fallback_w = _fallback_box(height, width, spec.crop_ratio)
    h = torch.where(found, h.gather(1, first).squeeze(1), fallback_h)
    w = torch.where(found, w.gather(1, first).squeeze(1), fallback_w)
    u = torch.rand((batch, 2), generator=gen, device=dev)
    top = torch.minimum((u[:, 0] * (height - h + 1)).long(), height - h)
    left = torch.minimum((u[:, 1] * (width - w + 1)).long(), width - w)
    top = torch.where(found, top, (height - h) // 2)
    left = torch.where(found, left, (width - w) // 2)
    return CropParams(top, left, h, w, torch.rand(batch, generator=gen, device=dev) < spec.flip_p)


def sample_params(
    spec: AugmentSpec, batch: int, height: int, width: int, generator: _Gen, device: torch.device | str
) -> BatchParams:
    """Draw every random parameter of one view for ``batch`` images of size ``height x width``.

    Args:
        spec: Augmentation parameters (Appendix A defaults).
        batch: Number of images ``B``.
        height: Input height ``H``.
        width: Input width ``W``.
        generator: Source of randomness, on ``device`` (``None``: torch's default generator).
        device: Device of the returned tensors.

    Returns:
        A :class:`BatchParams` whose tensors all have leading dimension ``B``.
    """
    dev = torch.device(device)
    crop = _sample_crop(spec, batch, height, width, generator, dev)
    color = sample_color(spec, batch, generator, dev)
    blur = BlurParams(
        apply=torch.rand(batch, generator=generator, device=dev) < spec.blur_p,
        sigma=_uniform(spec.blur_sigma[0], spec.blur_sigma[1], (batch,), generator, dev),
    )
    return BatchParams(crop, color, blur)


def sample_color(spec: AugmentSpec, batch: int, generator: torch.Generator | None,
                 device: torch.device | str) -> ColorParams:
    """Per-image colour distortion parameters: applied with ``color_p``, brightness a factor in ``[max(0, 1 -
    b), 1 + b]`` (``color_ops: torchvision``) or a delta in ``[-b, b]`` (``tensorflow``), contrast and
    saturation factors, a hue shift, a random op order, grayscale with ``gray_p``."""
    dev = torch.device(device)
    b, c, s, h = spec.jitter_strengths
    return ColorParams(
        apply=torch.rand(batch, generator=generator, device=dev) < spec.color_p,
        brightness=_uniform(max(0.0, 1 - b), 1 + b, (batch,), generator, dev)
        if spec.color_ops == "torchvision" else _uniform(-b, b, (batch,), generator, dev),
        contrast=_uniform(max(0.0, 1 - c), 1 + c, (batch,), generator, dev),
        saturation=_uniform(max(0.0, 1 - s), 1 + s, (batch,), generator, dev),
        hue=_uniform(-h, h, (batch,), generator, dev),
        order=torch.rand((batch, 4), generator=generator, device=dev).argsort(dim=1),
        gray=torch.rand(batch, generator=generator, device=dev) < spec.gray_p,
    )


def apply_params(images_uint8: Tensor, params: BatchParams, spec: AugmentSpec) -> Tensor:
    """Augment a batch with given parameters: crop + flip, colour distortion, blur (Appendix A).

    Args:
        images_uint8: ``[B, 3, H, W]`` uint8 (or float in [0, 1]) on any device.
        params: Parameters from :func:`sample_params` for this batch, on the same device.
        spec: Augmentation parameters (output size; the blur stage runs only if ``blur_p > 0``).

    Returns:
        Float ``[B, 3, S, S]`` in [0, 1] (float32 for uint8 input, else the input dtype).
    """
    if images_uint8.ndim != 4 or images_uint8.shape[1] != 3:
        raise ValueError(f"expected images of shape [B, 3, H, W], got {tuple(images_uint8.shape)}")
    if images_uint8.dtype == torch.uint8:
        x = images_uint8.float().div_(255.0)
    elif images_uint8.is_floating_point():
        x = images_uint8
    else:
        raise ValueError(f"expected uint8 or floating images, got {images_uint8.dtype}")
    distort = color_distort if spec.color_ops == "torchvision" else color_distort_tensorflow
    x = distort(resized_crop(x, params.crop, spec.size), params.color)
    if spec.blur_p > 0:
        kernel_size = blur_kernel_size(spec.size, spec.blur_kernel_frac)
        x = select(params.blur.apply, gaussian_blur(x, params.blur.sigma, kernel_size), x)
    return x


class BatchAugment:
    """Callable SimCLR augmentation of a uint8 batch; each call draws a fresh, independent view.

    Example:
        >>> aug = BatchAugment(AugmentSpec(size=32, color_strength=0.5, blur_p=0.0))
        >>> gen = torch.Generator().manual_seed(0)
        >>> x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
        >>> x_i, x_j = aug(x, gen), aug(x, gen)  # the two views of each image (Sec. 2.1)

    Args:
        spec: Augmentation parameters; validated here.
        compile: run the (deterministic) application of the parameters through ``torch.compile``, which fuses
            its few dozen element-wise kernels into a handful; worth it on a GPU, where launching kernels one
            by one is what bounds small-image augmentation. Parameter sampling stays eager.
    """

    def __init__(self, spec: AugmentSpec, *, compile: bool = False) -> None:
        spec.validate()
        self.spec = spec
        self._apply = torch.compile(apply_params, dynamic=False) if compile else apply_params

    def sample(self, images: Tensor, generator: _Gen = None) -> BatchParams:
        """Draw parameters for ``images`` ``[B, 3, H, W]`` on its device."""
        n, _, height, width = images.shape
        return sample_params(self.spec, n, height, width, generator, images.device)

    def __call__(self, images: Tensor, generator: _Gen = None) -> Tensor:
        """Augment ``images`` ``[B, 3, H, W]`` (uint8) into float ``[B, 3, S, S]`` in [0, 1]."""
        return self._apply(images, self.sample(images, generator), self.spec)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"
