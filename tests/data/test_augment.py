"""Tests for the per-image SimCLR augmentation (Appendix A) in ``simclr.data.augment``."""

from __future__ import annotations

import dataclasses

import numpy as np
import PIL.Image
import pytest
import torch
import torchvision.transforms.functional as TF

from simclr.data.augment import TwoViews, eval_transform, view_transform
from simclr.data.augment_spec import PRESETS, AugmentSpec, blur_kernel_size, preset_spec


def _image(height: int = 40, width: int = 48, seed: int = 0) -> PIL.Image.Image:
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB")


def test_defaults_are_the_paper_values() -> None:
    spec = AugmentSpec()
    assert spec.size == 224
    assert spec.crop_scale == (0.08, 1.0)
    assert spec.crop_ratio == pytest.approx((3 / 4, 4 / 3))
    assert (spec.flip_p, spec.color_strength, spec.color_p, spec.gray_p) == (0.5, 1.0, 0.8, 0.2)
    assert (spec.blur_p, spec.blur_sigma, spec.blur_kernel_frac) == (0.5, (0.1, 2.0), 0.1)
    assert spec.jitter_strengths == pytest.approx((0.8, 0.8, 0.8, 0.2))
    spec.validate()


def test_presets() -> None:
    assert AugmentSpec(**PRESETS["imagenet"]) == AugmentSpec()
    cifar = AugmentSpec(**PRESETS["cifar10"])
    assert (cifar.size, cifar.color_strength, cifar.blur_p) == (32, 0.5, 0.0)
    assert cifar.jitter_strengths == pytest.approx((0.4, 0.4, 0.4, 0.1))
    assert preset_spec("cifar10", size=24) == dataclasses.replace(cifar, size=24)
    with pytest.raises(TypeError):
        PRESETS["cifar10"]["blur_p"] = 0.5  # type: ignore[index]
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        preset_spec("mnist")
    with pytest.raises(ValueError, match="gray_p"):
        preset_spec("cifar10", gray_p=1.5)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", 7),
        ("size", 32.0),
        ("flip_p", -0.1),
        ("color_p", 1.5),
        ("gray_p", 2.0),
        ("blur_p", -1.0),
        ("crop_scale", (0.0, 1.0)),
        ("crop_scale", (0.5, 0.4)),
        ("crop_scale", (0.1, 1.1)),
        ("crop_ratio", (0.0, 1.0)),
        ("crop_ratio", (2.0, 1.0)),
        ("color_strength", -0.5),
        ("color_strength", 3.0),
        ("blur_sigma", (0.0, 1.0)),
        ("blur_sigma", (2.0, 1.0)),
        ("blur_kernel_frac", 0.0),
        ("blur_kernel_frac", 1.5),
    ],
)
def test_validate_rejects_out_of_range(field: str, value: object) -> None:
    spec = dataclasses.replace(AugmentSpec(), **{field: value})
    with pytest.raises(ValueError, match=field):
        spec.validate()
    with pytest.raises(ValueError, match=field):
        view_transform(spec)


@pytest.mark.parametrize(("size", "expected"), [(224, 23), (32, 3), (96, 9), (8, 3), (64, 7), (100, 11)])
def test_blur_kernel_size_matches_reference(size: int, expected: int) -> None:
    # tf2/data_util.py: kernel = size // 10, radius = kernel // 2, kernel = 2 * radius + 1.
    assert blur_kernel_size(size, 0.1) == expected


def test_blur_kernel_size_is_odd_and_about_ten_percent() -> None:
    for size in range(8, 400):
        k = blur_kernel_size(size, 0.1)
        assert k % 2 == 1 and k >= 3
        assert abs(k - 0.1 * size) <= 1.5 or size < 30


@pytest.mark.parametrize("spec", [AugmentSpec(**PRESETS["cifar10"]), AugmentSpec(size=48)])
def test_view_transform_output(spec: AugmentSpec) -> None:
    torch.manual_seed(0)
    transform = view_transform(spec)
    for seed in range(8):
        view = transform(_image(seed=seed))
        assert view.shape == (3, spec.size, spec.size)
        assert view.dtype == torch.float32
        assert 0.0 <= float(view.min()) and float(view.max()) <= 1.0


def test_view_transform_steps_compose_in_order() -> None:
    image = _image(32, 32)
    original = TF.to_tensor(image)
    fixed = AugmentSpec(size=32, crop_scale=(1, 1), crop_ratio=(1, 1), flip_p=0.0, color_p=0.0, gray_p=0.0)
    identity = view_transform(dataclasses.replace(fixed, blur_p=0.0))
    assert torch.equal(identity(image), original)
    flip = view_transform(dataclasses.replace(fixed, flip_p=1.0, blur_p=0.0))
    assert torch.equal(flip(image), original.flip(-1))
    gray = view_transform(dataclasses.replace(fixed, gray_p=1.0, blur_p=0.0))(image)
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    blurred = view_transform(dataclasses.replace(fixed, blur_p=1.0))(image)
    assert 0 < float((blurred - original).abs().mean()) and float(blurred.std()) < float(original.std())


def test_eval_transform_is_deterministic_centre_crop() -> None:
    image = _image(40, 64)
    transform = eval_transform(32)
    out = transform(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert torch.equal(out, transform(image))
    same_size = eval_transform(40)(image)  # no resize: a plain 40x40 centre crop
    assert torch.equal(same_size, TF.to_tensor(image)[:, :, 12:52])
    with pytest.raises(ValueError):
        eval_transform(0)


def test_two_views_differ_and_seed_reproduces_them() -> None:
    pair = TwoViews(view_transform(AugmentSpec(**PRESETS["cifar10"])))
    image = _image(32, 32)
    torch.manual_seed(123)
    first, second = pair(image)
    assert first.shape == second.shape == (3, 32, 32)
    assert not torch.equal(first, second)
    torch.manual_seed(123)
    again = pair(image)
    assert torch.equal(first, again[0]) and torch.equal(second, again[1])
    torch.manual_seed(124)
    assert not torch.equal(first, pair(image)[0])
