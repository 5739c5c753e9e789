"""Tests for the batched SimCLR augmentation (Appendix A) in ``simclr.data.batch_augment``.

Distributions are compared with torchvision's per-image samplers (every op with fixed parameters is compared
with ``torchvision.transforms.functional`` in test_batch_augment_fidelity.py).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
from torchvision.transforms import RandomResizedCrop

from simclr.data.augment_spec import PRESETS, AugmentSpec
from simclr.data.batch_augment import BatchAugment, BatchParams, apply_params, sample_params
from simclr.data.pixel_ops import CropParams
from simclr.data.views import MemoryViews

CIFAR = AugmentSpec(**PRESETS["cifar10"])


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _params(spec: AugmentSpec, batch: int, height: int, width: int, seed: int = 0) -> BatchParams:
    return sample_params(spec, batch, height, width, _gen(seed), "cpu")


def _images(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth-ish random uint8 images ``[B, 3, H, W]`` plus a few pure/gray pixels for hue edge cases."""
    g = _gen(seed)
    low = torch.rand(batch, 3, max(height // 4, 2), max(width // 4, 2), generator=g)
    x = torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)
    x = (0.7 * x + 0.3 * torch.rand(batch, 3, height, width, generator=g)).mul(255).round().to(torch.uint8)
    x[:, :, 0, :3] = torch.tensor([[0, 255, 128], [0, 255, 128], [0, 255, 128]], dtype=torch.uint8)
    x[:, :, 1, :3] = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=torch.uint8)
    return x


def _ks_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest gap between the empirical CDFs of two 1-D samples (Kolmogorov-Smirnov statistic)."""
    grid = torch.cat([a, b]).unique()
    cdf_a = torch.searchsorted(a.sort().values, grid, right=True) / a.numel()
    cdf_b = torch.searchsorted(b.sort().values, grid, right=True) / b.numel()
    return float((cdf_a - cdf_b).abs().max())


def _torchvision_boxes(n: int, height: int, width: int, spec: AugmentSpec) -> torch.Tensor:
    torch.manual_seed(0)
    img = torch.empty(1, height, width)
    scale, ratio = list(spec.crop_scale), list(spec.crop_ratio)
    boxes = [RandomResizedCrop.get_params(img, scale, ratio) for _ in range(n)]
    return torch.tensor(boxes, dtype=torch.float64)  # [n, 4]: top, left, h, w


# --------------------------------------------------------------------------- output contract


@pytest.mark.parametrize(
    ("height", "size", "blur"), [(32, 24, False), (8, 32, True), (32, 32, True), (40, 32, False)]
)
def test_output_shape_dtype_range(height: int, size: int, blur: bool) -> None:
    spec = dataclasses.replace(CIFAR, size=size, blur_p=0.5 if blur else 0.0)
    images = _images(16, height, height + 4)
    out = BatchAugment(spec)(images, _gen(0))
    assert out.shape == (16, 3, size, size) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_same_seed_same_batch_different_seed_and_views_differ() -> None:
    aug = BatchAugment(AugmentSpec(size=32))
    images = _images(32, 32, 32)
    first = aug(images, _gen(7))
    assert torch.equal(first, aug(images, _gen(7)))
    assert not torch.equal(first, aug(images, _gen(8)))
    gen = _gen(7)
    view_1, view_2 = aug(images, gen), aug(images, gen)
    assert torch.equal(view_1, first)
    per_image_diff = (view_1 - view_2).flatten(1).abs().amax(dim=1)
    assert bool((per_image_diff > 0.01).all())  # every image gets two different views


def test_float_input_gives_same_result_as_uint8() -> None:
    images = _images(8, 32, 32)
    params = _params(AugmentSpec(size=32), 8, 32, 32)
    from_uint8 = apply_params(images, params, AugmentSpec(size=32))
    from_float = apply_params(images.double() / 255, params, AugmentSpec(size=32))
    assert from_float.dtype == torch.float64
    torch.testing.assert_close(from_float.float(), from_uint8, atol=1e-5, rtol=0)


def test_rejects_bad_input() -> None:
    aug = BatchAugment(CIFAR)
    with pytest.raises(ValueError, match="shape"):
        aug(torch.zeros(2, 1, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        aug(torch.zeros(2, 3, 32, 32, dtype=torch.int32))
    with pytest.raises(ValueError, match="blur_p"):
        BatchAugment(dataclasses.replace(CIFAR, blur_p=2.0))


def test_identity_spec_returns_the_input() -> None:
    spec = AugmentSpec(size=32, crop_scale=(1, 1), crop_ratio=(1, 1), flip_p=0, color_p=0, gray_p=0, blur_p=0)
    images = _images(4, 32, 32)
    torch.testing.assert_close(BatchAugment(spec)(images, _gen(0)), images / 255, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- distributions


def test_crop_area_and_aspect_match_torchvision() -> None:
    n, height, width = 20_000, 48, 64
    spec = AugmentSpec()
    ours = _params(spec, n, height, width).crop
    ref = _torchvision_boxes(n, height, width, spec)
    area = (ours.height * ours.width).double() / (height * width)
    ref_area = ref[:, 2] * ref[:, 3] / (height * width)
    assert abs(float(area.mean() - ref_area.mean())) < 0.01
    assert _ks_gap(area, ref_area) < 0.03
    log_aspect = (ours.width.double() / ours.height).log()
    assert _ks_gap(log_aspect, (ref[:, 3] / ref[:, 2]).log()) < 0.03
    assert bool(((ours.top >= 0) & (ours.top + ours.height <= height)).all())
    assert bool(((ours.left >= 0) & (ours.left + ours.width <= width)).all())
    # Box positions are uniform over the free range, like torchvision's randint.
    slack = (ours.left.double() + 0.5) / (width - ours.width + 1)
    ref_slack = (ref[:, 1] + 0.5) / (width - ref[:, 3] + 1)
    assert _ks_gap(slack, ref_slack) < 0.03


def test_crop_ranges_and_log_uniform_aspect() -> None:
    n, height, width = 20_000, 480, 640  # large, so integer rounding is negligible
    crop = _params(AugmentSpec(), n, height, width, seed=1).crop
    area = (crop.height * crop.width).double() / (height * width)
    aspect = crop.width.double() / crop.height
    assert 0.08 * 0.99 <= float(area.min()) < 0.085 and 0.98 < float(area.max()) <= 1.0
    assert 0.75 * 0.99 <= float(aspect.min()) < 0.76 and 1.32 < float(aspect.max()) <= 4 / 3 * 1.01
    # Crops of less than half the image always fit, so their log-aspect is exactly log-uniform.
    small = aspect[area < 0.5].log()
    hist = torch.histc(small, bins=8, min=math.log(3 / 4), max=math.log(4 / 3))
    expected = small.numel() / 8
    assert bool(((hist - expected).abs() < 5 * math.sqrt(expected)).all())


@pytest.mark.parametrize(("height", "width"), [(8, 64), (64, 8), (32, 32)])
def test_crop_fallback_matches_torchvision(height: int, width: int) -> None:
    # Full-area candidates never fit unless the image aspect is in range: always the fallback box.
    spec = dataclasses.replace(AugmentSpec(), crop_scale=(1.0, 1.0))
    crop = _params(spec, 64, height, width).crop
    expected = _torchvision_boxes(1, height, width, spec)[0].long()
    for got, want in zip((crop.top, crop.left, crop.height, crop.width), expected, strict=True):
        assert bool((got == want).all())


@pytest.mark.parametrize(
    "spec",
    [AugmentSpec(), AugmentSpec(flip_p=0.3, color_p=0.6, gray_p=0.1, blur_p=0.7), dataclasses.replace(CIFAR)],
)
def test_flag_frequencies(spec: AugmentSpec) -> None:
    n = 20_000
    params = _params(spec, n, 32, 32, seed=3)
    flags = {
        "flip_p": params.crop.flip,
        "color_p": params.color.apply,
        "gray_p": params.color.gray,
        "blur_p": params.blur.apply,
    }
    for name, flag in flags.items():
        p = getattr(spec, name)
        sigma = math.sqrt(p * (1 - p) / n)
        assert abs(float(flag.double().mean()) - p) <= max(3 * sigma, 1e-12), name


@pytest.mark.parametrize("strength", [0.5, 1.0, 1.5])
def test_jitter_factor_ranges(strength: float) -> None:
    spec = AugmentSpec(color_strength=strength)
    color = _params(spec, 20_000, 32, 32).color
    lo, hi = max(0.0, 1 - 0.8 * strength), 1 + 0.8 * strength
    for factor in (color.brightness, color.contrast, color.saturation):
        assert lo <= float(factor.min()) < lo + 0.01 and hi - 0.01 < float(factor.max()) <= hi
        assert abs(float(factor.mean()) - (lo + hi) / 2) < 0.02
    h = 0.2 * strength
    assert -h <= float(color.hue.min()) < -h + 0.01 and h - 0.01 < float(color.hue.max()) <= h
    sigmas = _params(spec, 20_000, 32, 32).blur.sigma
    assert 0.1 <= float(sigmas.min()) < 0.11 and 1.99 < float(sigmas.max()) <= 2.0


def test_orders_are_uniform_permutations() -> None:
    n = 24_000
    order = _params(AugmentSpec(), n, 32, 32).color.order
    assert bool((order.sort(dim=1).values == torch.arange(4)).all())
    counts = {perm: 0 for perm in itertools.permutations(range(4))}
    for row in order.tolist():
        counts[tuple(row)] += 1
    expected = n / 24
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert min(counts.values()) > 0 and chi2 < 60  # 23 dof: P(chi2 > 60) < 1e-4


# --------------------------------------------------------------------------- devices, compilation, views


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.filterwarnings("ignore:Synchronization debug mode is a prototype")
def test_cuda_matches_cpu_and_never_syncs(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = AugmentSpec(size=32)
    images = _images(64, 32, 32)
    params = _params(spec, 64, 32, 32)
    cuda_params = BatchParams(*(type(p)(*(t.cuda() for t in p)) for p in params))
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    expected = apply_params(images, params, spec)
    gen = torch.Generator(device="cuda").manual_seed(0)
    images_cuda = images.cuda()
    aug = BatchAugment(spec)
    aug(images_cuda, gen)  # warm-up (lazy CUDA init may sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = apply_params(images_cuda, cuda_params, spec)
        view = aug(images_cuda, gen)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert view.device.type == "cuda" and view.shape == (64, 3, 32, 32)
    torch.testing.assert_close(out.cpu(), expected, atol=1e-4, rtol=0)
    assert torch.equal(aug(images_cuda, _cuda_gen(3)), aug(images_cuda, _cuda_gen(3)))


def _cuda_gen(seed: int) -> torch.Generator:
    return torch.Generator(device="cuda").manual_seed(seed)


def test_crop_params_are_pixel_boxes() -> None:
    crop = _params(CIFAR, 8, 32, 32).crop
    assert isinstance(crop, CropParams)
    assert all(t.dtype == torch.int64 and t.shape == (8,) for t in crop[:4])
    assert crop.flip.dtype == torch.bool


def test_compiled_augmentation_matches_eager() -> None:
    spec = dataclasses.replace(AugmentSpec(size=16), blur_p=0.5)
    images = _images(8, 20, 20)
    eager = BatchAugment(spec)(images, _gen(5))
    compiled = BatchAugment(spec, compile=True)(images, _gen(5))
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=0)


def test_memory_views_two_distinct_views_per_image_and_reproducible() -> None:
    images = _images(40, 16, 16)
    spec = AugmentSpec(size=16)
    first = [torch.cat(pair) for pair in MemoryViews(images, spec, 8, seed=3).batches()]
    again = [torch.cat(pair) for pair in MemoryViews(images, spec, 8, seed=3).batches()]
    assert len(first) == 5 and all(torch.equal(a, b) for a, b in zip(first, again))
    v1, v2 = next(MemoryViews(images, spec, 8, seed=3).batches())
    assert v1.shape == v2.shape == (8, 3, 16, 16)
    assert bool(((v1 - v2).flatten(1).abs().amax(dim=1) > 0.01).all())
