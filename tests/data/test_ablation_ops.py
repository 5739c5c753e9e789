"""Tests for the augmentation-ablation operators (Sec. 3, Figs. 4-5) in ``simclr.data.ablation_ops``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from simclr.data.ablation_ops import (
    OPS,
    AblationAugment,
    apply_ops,
    cutout,
    gaussian_noise,
    random_color,
    rotate,
    sobel,
)
from simclr.data.augment_spec import AugmentSpec

SIZE = 32
SPEC = AugmentSpec(size=SIZE, color_strength=0.5)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(batch: int = 6, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """Smooth random uint8 images ``[B, 3, size, size]`` (so crops and blurs visibly change them)."""
    low = torch.rand(batch, 3, 8, 8, generator=_gen(seed))
    x = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return x.mul(255).round().to(torch.uint8)


def _float(batch: int = 6, seed: int = 0) -> torch.Tensor:
    return _images(batch, seed=seed).float() / 255


@pytest.mark.parametrize("op", OPS)
def test_every_op_keeps_shape_dtype_range(op: str) -> None:
    x = _float()
    for dtype in (torch.float32, torch.float64):
        out = apply_ops(x.to(dtype), (op,), SPEC, _gen())
        assert out.shape == x.shape and out.dtype == dtype
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert not torch.equal(out, x.to(dtype)), op


def test_rotate_forced_k_equals_rot90() -> None:
    x = torch.rand(5, 3, 8, 8, generator=_gen())
    for k in range(4):
        out = rotate(x, k=torch.full((5,), k, dtype=torch.long))
        assert torch.equal(out, torch.rot90(x, k, dims=(-2, -1)))
    ks = torch.tensor([0, 1, 2, 3, 1])
    out = rotate(x, k=ks)
    for i, k in enumerate(ks.tolist()):
        assert torch.equal(out[i], torch.rot90(x[i], k, dims=(-2, -1)))


def test_rotate_random_is_a_quarter_turn_per_image() -> None:
    x = torch.rand(32, 3, 8, 8, generator=_gen())
    out = rotate(x, _gen(1))
    seen = set()
    for i in range(32):
        match = [k for k in range(4) if torch.equal(out[i], torch.rot90(x[i], k, dims=(-2, -1)))]
        assert len(match) == 1
        seen.add(match[0])
    assert seen == {0, 1, 2, 3}


def test_sobel_constant_image_is_zero() -> None:
    x = torch.full((2, 3, 16, 16), 0.7)
    out = sobel(x)
    assert out.shape == x.shape and torch.equal(out, torch.zeros_like(x))


def test_sobel_vertical_edge_is_nonzero_only_near_edge() -> None:
    x = torch.zeros(2, 3, 16, 16)
    x[0, :, :, 8:] = 1.0  # edge between columns 7 and 8
    x[1, :, :, 3:] = 0.5  # edge between columns 2 and 3, lower contrast
    out = sobel(x)
    for i, edge in enumerate((8, 3)):
        cols = out[i].abs().amax(dim=(0, 1)).nonzero().flatten().tolist()
        assert cols == [edge - 1, edge]
        assert torch.allclose(out[i, :, :, edge - 1 : edge + 1], torch.ones(3, 16, 2))  # normalised
        assert torch.equal(out[i, 0], out[i, 1]) and torch.equal(out[i, 0], out[i, 2])


def test_cutout_zeroes_one_square_with_area_in_range() -> None:
    n, lo, hi = 64, 0.1, 0.5
    out = cutout(torch.ones(n, 3, SIZE, SIZE), _gen(), (lo, hi))
    corners = set()
    for i in range(n):
        zero = out[i, 0] == 0
        assert torch.equal(zero, (out[i] == 0).all(dim=0))  # same mask on every channel
        rows, cols = zero.any(dim=1).nonzero().flatten(), zero.any(dim=0).nonzero().flatten()
        side = len(rows)
        assert len(cols) == side and zero.sum() == side * side  # a filled square
        assert rows[-1] - rows[0] + 1 == side and cols[-1] - cols[0] + 1 == side
        assert round(lo * SIZE) <= side <= round(hi * SIZE)
        assert (lo * SIZE - 0.5) ** 2 / SIZE**2 <= zero.float().mean() <= (hi * SIZE + 0.5) ** 2 / SIZE**2
        corners.add((int(rows[0]), int(cols[0])))
    assert len(corners) > n // 2  # positions differ across images


def test_noise_reproducible_and_independent_per_image() -> None:
    x = torch.full((4, 3, 16, 16), 0.5)
    a, b = gaussian_noise(x, _gen(3)), gaussian_noise(x, _gen(3))
    assert torch.equal(a, b)
    assert not torch.equal(a, gaussian_noise(x, _gen(4)))
    for i in range(1, 4):
        assert not torch.equal(a[0], a[i])
    stds = (a - x).std(dim=(1, 2, 3))
    assert stds.min() > 0.05 and stds.max() < 0.5 and stds.max() - stds.min() > 1e-3


def test_composition_follows_the_given_order() -> None:
    x = _float()
    sobel_first = apply_ops(x, ("sobel", "color"), SPEC, _gen(5))
    color_first = apply_ops(x, ("color", "sobel"), SPEC, _gen(5))
    assert not torch.allclose(sobel_first, color_first)
    assert torch.equal(sobel_first, random_color(sobel(x), _gen(5), SPEC))
    assert torch.equal(color_first, sobel(random_color(x, _gen(5), SPEC)))
    g = _gen(6)
    manual = rotate(cutout(x, g), g)
    assert torch.equal(apply_ops(x, ("cutout", "rotate"), SPEC, _gen(6)), manual)


def test_asymmetric_view2_is_the_input() -> None:
    x = _images()
    view1, view2 = AblationAugment(("crop", "color"), SPEC)(x, _gen())
    assert torch.equal(view2, x.float() / 255)
    assert view1.shape == view2.shape and not torch.allclose(view1, view2)


def test_asymmetric_view2_is_the_resized_input() -> None:
    x = _images(size=48)
    view1, view2 = AblationAugment(("noise",), SPEC)(x, _gen())
    assert view1.shape == view2.shape == (6, 3, SIZE, SIZE)
    expected = F.interpolate(x.float() / 255, size=(SIZE, SIZE), mode="bilinear", antialias=True)
    assert torch.allclose(view2, expected.clamp(0, 1))
    assert not torch.allclose(view1, view2)


def test_symmetric_views_differ_from_each_other_and_the_input() -> None:
    x = _images()
    view1, view2 = AblationAugment(("crop", "blur"), SPEC, asymmetric=False)(x, _gen())
    base = x.float() / 255
    assert not torch.allclose(view1, view2)
    assert not torch.allclose(view1, base) and not torch.allclose(view2, base)


def test_same_seed_same_views() -> None:
    x = _images()
    aug = AblationAugment(OPS, SPEC, asymmetric=False)
    first, second = aug(x, _gen(7)), aug(x, _gen(7))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    other = aug(x, _gen(8))
    assert not torch.equal(first[0], other[0])


def test_unknown_op_raises() -> None:
    with pytest.raises(ValueError, match="valid ops.*cutout"):
        AblationAugment(("crop", "solarize"), SPEC)
    with pytest.raises(ValueError, match="solarize"):
        apply_ops(_float(), ("solarize",), SPEC, _gen())


@pytest.mark.parametrize("asymmetric", [True, False])
def test_empty_ops_is_identity(asymmetric: bool) -> None:
    x = _images()
    view1, view2 = AblationAugment((), SPEC, asymmetric=asymmetric)(x, _gen())
    assert torch.equal(view1, x.float() / 255) and torch.equal(view2, x.float() / 255)
    assert view1.data_ptr() != view2.data_ptr()
