"""The batched augmentation's ops with fixed parameters against ``torchvision.transforms.functional`` on the
same float image, op by op and as a whole pipeline."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.functional as TF
from torchvision.transforms import InterpolationMode

from simclr.data.augment_spec import PRESETS, AugmentSpec, blur_kernel_size
from simclr.data.batch_augment import BatchParams, BlurParams, apply_params
from simclr.data.pixel_ops import (
    ColorParams,
    adjust_hue,
    color_distort,
    gaussian_blur,
    resized_crop,
    rgb_to_grayscale,
)

from .test_batch_augment import CIFAR, _images, _params

TF_OPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def _color(batch: int, **fields: torch.Tensor) -> ColorParams:
    base = {
        "apply": torch.ones(batch, dtype=torch.bool),
        "brightness": torch.ones(batch),
        "contrast": torch.ones(batch),
        "saturation": torch.ones(batch),
        "hue": torch.zeros(batch),
        "order": torch.arange(4).repeat(batch, 1),
        "gray": torch.zeros(batch, dtype=torch.bool),
    }
    return ColorParams(**{**base, **fields})


@pytest.mark.parametrize(("index", "name"), [(0, "brightness"), (1, "contrast"), (2, "saturation")])
def test_single_linear_op_matches_torchvision(index: int, name: str) -> None:
    x = _images(12, 24, 20).float() / 255
    factor = torch.linspace(0.0, 2.0, 12)
    out = color_distort(x, _color(12, **{name: factor}))
    for i in range(12):
        ref = TF_OPS[index](x[i], float(factor[i]))
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_hue_matches_torchvision() -> None:
    x = _images(12, 24, 20).float() / 255
    hue = torch.linspace(-0.5, 0.5, 12)
    out = adjust_hue(x, hue)
    for i in range(12):
        torch.testing.assert_close(out[i], TF.adjust_hue(x[i], float(hue[i])), atol=1e-4, rtol=0)


def test_grayscale_and_skipped_jitter() -> None:
    x = _images(6, 16, 16).float() / 255
    off = torch.zeros(6, dtype=torch.bool)
    gray = torch.tensor([True, False] * 3)
    out = color_distort(x, _color(6, apply=off, gray=gray, brightness=torch.full((6,), 1.7)))
    for i in range(6):
        ref = TF.rgb_to_grayscale(x[i], num_output_channels=3) if gray[i] else x[i]
        torch.testing.assert_close(out[i], ref, atol=1e-6, rtol=0)
    assert torch.equal(out[1], x[1])  # untouched images stay bit-identical
    torch.testing.assert_close(rgb_to_grayscale(x)[0], TF.rgb_to_grayscale(x[0]), atol=1e-6, rtol=0)


def test_full_jitter_in_random_order_matches_torchvision() -> None:
    n = 48
    x = _images(n, 16, 16).float() / 255
    color = _params(AugmentSpec(color_p=0.9, gray_p=0.3), n, 16, 16, seed=5).color
    out = color_distort(x, color)
    factors = (color.brightness, color.contrast, color.saturation, color.hue)
    for i in range(n):
        ref = x[i]
        if color.apply[i]:
            for op in color.order[i].tolist():
                ref = TF_OPS[op](ref, float(factors[op][i]))
        if color.gray[i]:
            ref = TF.rgb_to_grayscale(ref, num_output_channels=3)
        torch.testing.assert_close(out[i], ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize(("size", "kernel"), [(32, 3), (24, 5), (24, 23)])
def test_blur_matches_torchvision(size: int, kernel: int) -> None:
    x = _images(8, size, size).float() / 255
    sigma = torch.linspace(0.1, 2.0, 8)
    out = gaussian_blur(x, sigma, kernel)
    for i in range(8):
        ref = TF.gaussian_blur(x[i], [kernel, kernel], [float(sigma[i])] * 2)
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("height", "width", "size"), [(32, 32, 24), (8, 8, 32), (40, 36, 32)])
def test_crop_resize_matches_torchvision(height: int, width: int, size: int) -> None:
    """The whole output (edges included) equals TF.resized_crop(bicubic, antialias=False)."""
    x = _images(32, height, width).float() / 255
    crop = _params(AugmentSpec(size=size), 32, height, width, seed=2).crop
    out = resized_crop(x, crop, size)
    for i in range(32):
        box = [int(v[i]) for v in (crop.top, crop.left, crop.height, crop.width)]
        ref = TF.resized_crop(x[i], *box, [size, size], InterpolationMode.BICUBIC, antialias=False)
        ref = ref.clamp(0, 1)
        ref = TF.hflip(ref) if crop.flip[i] else ref
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_flip_is_an_exact_mirror() -> None:
    x = _images(16, 32, 32).float() / 255
    crop = _params(AugmentSpec(size=24), 16, 32, 32).crop
    plain = resized_crop(x, crop._replace(flip=torch.zeros(16, dtype=torch.bool)), 24)
    flipped = resized_crop(x, crop._replace(flip=torch.ones(16, dtype=torch.bool)), 24)
    assert torch.equal(flipped, plain.flip(-1))


def _assert_matches_per_image_torchvision(images: torch.Tensor, params: BatchParams,
                                          spec: AugmentSpec) -> None:
    """``apply_params`` equals crop, flip, jitter in the drawn order, grayscale and blur, image by image, with
    ``torchvision.transforms.functional`` (to 1e-4)."""
    out = apply_params(images, params, spec)
    crop, color, blur = params
    factors = (color.brightness, color.contrast, color.saturation, color.hue)
    size = spec.size
    kernel = blur_kernel_size(size, spec.blur_kernel_frac)
    for i in range(len(images)):
        box = [int(v[i]) for v in (crop.top, crop.left, crop.height, crop.width)]
        ref = TF.resized_crop(images[i] / 255, *box, [size, size], InterpolationMode.BICUBIC, antialias=False)
        ref = ref.clamp(0, 1)
        ref = TF.hflip(ref) if crop.flip[i] else ref
        if color.apply[i]:
            for op in color.order[i].tolist():
                ref = TF_OPS[op](ref, float(factors[op][i]))
        ref = TF.rgb_to_grayscale(ref, num_output_channels=3) if color.gray[i] else ref
        ref = TF.gaussian_blur(ref, [kernel, kernel], [float(blur.sigma[i])] * 2) if blur.apply[i] else ref
        torch.testing.assert_close(out[i], ref, atol=1e-4, rtol=0)


def test_apply_params_matches_per_image_torchvision_pipeline() -> None:
    n, height = 24, 36
    spec = AugmentSpec(size=32, blur_p=0.5)
    _assert_matches_per_image_torchvision(_images(n, height, height),
                                          _params(spec, n, height, height, seed=9), spec)


def test_blur_skipped_when_spec_has_no_blur() -> None:
    images = _images(4, 32, 32)
    params = _params(AugmentSpec(size=32), 4, 32, 32)
    params = params._replace(blur=BlurParams(torch.ones(4, dtype=torch.bool), torch.full((4,), 2.0)))
    with_blur = apply_params(images, params, AugmentSpec(size=32))
    without = apply_params(images, params, CIFAR)  # blur_p = 0: the blur stage is not run
    assert not torch.allclose(with_blur, without)
    no_blur_params = params._replace(blur=BlurParams(torch.zeros(4, dtype=torch.bool), params.blur.sigma))
    assert torch.equal(without, apply_params(images, no_blur_params, AugmentSpec(size=32)))


def test_real_photos_match_per_image_torchvision_at_224(photos) -> None:
    """ImageNet photos, the paper's ImageNet augmentation (crop to 224, strength-1 jitter, blur with a
    23-pixel kernel on half the views): the batched path equals torchvision's per-image ops, parameters
    fixed."""
    import numpy as np
    from PIL import Image

    images = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB").resize((256, 256))))
                          .permute(2, 0, 1) for p in sorted(photos.glob("*.jpg"))])
    spec = AugmentSpec(**PRESETS["imagenet"])
    assert spec.size == 224 and spec.blur_p == 0.5 and blur_kernel_size(224, spec.blur_kernel_frac) == 23
    params = _params(spec, len(images), 256, 256, seed=4)
    assert params.blur.apply.any() and (~params.blur.apply).any() and params.color.apply.any()
    _assert_matches_per_image_torchvision(images, params, spec)
