"""Pretraining diagnostics: alignment, uniformity, effective rank, collapse warning, the augmented-view
grid."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from simclr.training.diagnostics import (
    alignment,
    collapse_warning,
    diagnostics,
    effective_rank,
    save_view_grid,
    uniformity,
)


def test_alignment_zero_for_identical_views() -> None:
    z = torch.randn(8, 5)
    assert alignment(z, 3 * z).item() == pytest.approx(0.0, abs=1e-6)


def test_alignment_hand_computed_two_pairs() -> None:
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # pair 0 orthogonal (||u - v||^2 = 2), pair 1 identical after norm
    z2 = torch.tensor([[0.0, 1.0], [0.0, 2.0]])
    assert alignment(z1, z2).item() == pytest.approx(1.0, abs=1e-6)
    assert alignment(z1, z2, alpha=1).item() == pytest.approx(math.sqrt(2) / 2, abs=1e-6)


def test_uniformity_matches_numpy_reference() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(20, 6, generator=gen)
    u = z.double().numpy()
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    i, j = np.triu_indices(len(u), k=1)
    sq = ((u[i] - u[j]) ** 2).sum(axis=1)
    for t in (2.0, 0.5):
        expected = np.log(np.mean(np.exp(-t * sq)))
        assert uniformity(z, t=t).item() == pytest.approx(expected, abs=1e-5)


def test_uniformity_lower_for_spread_than_clustered_points() -> None:
    angles = torch.linspace(0, 2 * math.pi, 33)[:-1]
    spread = torch.stack([angles.cos(), angles.sin()], dim=1)
    clustered = torch.stack([(angles * 0.05).cos(), (angles * 0.05).sin()], dim=1)
    assert uniformity(spread).item() < uniformity(clustered).item()


def test_effective_rank_isotropic_gaussian_is_about_dim() -> None:
    d = 16
    h = torch.randn(4000, d, generator=torch.Generator().manual_seed(0))
    assert effective_rank(h).item() == pytest.approx(d, rel=0.15)


def test_effective_rank_rank_one_is_one() -> None:
    gen = torch.Generator().manual_seed(1)
    h = (torch.randn(64, 1, generator=gen) * torch.randn(1, 32, generator=gen)
         + torch.randn(1, 32, generator=gen))
    assert effective_rank(h).item() == pytest.approx(1.0, abs=1e-4)
    assert effective_rank(torch.ones(10, 4)).item() == 1.0  # constant features: no NaN, floor of 1


def test_effective_rank_low_rank_mix_is_in_between() -> None:
    gen = torch.Generator().manual_seed(2)
    h = torch.randn(512, 4, generator=gen) @ torch.randn(4, 64, generator=gen)
    h = h + 0.01 * torch.randn(512, 64, generator=gen)
    rank = effective_rank(h).item()
    assert 1.5 < rank < 8
    assert 1.0 <= effective_rank(torch.randn(3, 50, generator=gen)).item() <= 3.0


def test_collapse_warning_triggers_only_below_threshold() -> None:
    message = collapse_warning(3.0, 512)
    assert message is not None and "512" in message and "\n" not in message
    assert collapse_warning(40.0, 512) is None
    assert collapse_warning(1.0, 8) is None  # floor is max(1, 0.05 * 8) = 1
    assert collapse_warning(9.0, 100, threshold=0.1) is not None
    # a few views cannot have a rank above their number: the floor is a share of what is possible
    assert collapse_warning(24.4, 2048, samples=64) is None  # the rank of a healthy run at batch 32
    message = collapse_warning(2.0, 2048, samples=64)  # 5% of 64 is 3.2
    assert message is not None and "at most 64" in message and "3.20" in message
    # more views than dims: as before
    assert collapse_warning(2.0, 32, samples=64) == collapse_warning(2.0, 32)


def test_diagnostics_keys_and_floats() -> None:
    gen = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(8, 4, generator=gen), torch.randn(8, 4, generator=gen)
    out = diagnostics(torch.randn(16, 12, generator=gen), z1, z2)
    assert set(out) == {"alignment", "uniformity", "effective_rank_h"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    assert out["alignment"] == pytest.approx(alignment(z1, z2).item(), abs=1e-6)


def _quantised(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed)).float() / 255


def test_save_view_grid_layout_and_pixels(tmp_path) -> None:
    b, n, size, scale, gap = 6, 4, 16, 4, 2
    v1, v2 = _quantised((b, 3, size, size), 0), _quantised((b, 3, size, size), 1)
    path = save_view_grid(v1, v2 + 0.5, tmp_path / "sub" / "views.png", max_images=n)  # second row clamps
    tile = size * scale
    with Image.open(path) as img:
        assert img.format == "PNG" and img.mode == "RGB"
        assert img.size == (n * tile + (n + 1) * gap, 2 * tile + 3 * gap)
        pixels = np.asarray(img)
    for row, views, col in ((0, v1, 2), (1, (v2 + 0.5).clamp(0, 1), 3)):
        expected = (views[col] * 255).round().byte().permute(1, 2, 0).numpy()
        expected = expected.repeat(scale, axis=0).repeat(scale, axis=1)
        top, left = gap + row * (tile + gap), gap + col * (tile + gap)
        np.testing.assert_array_equal(pixels[top:top + tile, left:left + tile], expected)
    assert (pixels[:gap] == 255).all() and (pixels[:, :gap] == 255).all()
    assert [p.name for p in path.parent.iterdir()] == ["views.png"]  # no temporary file left behind


def test_save_view_grid_fewer_images_than_max(tmp_path) -> None:
    v = _quantised((3, 3, 32, 32), 2)
    path = save_view_grid(v, v.flip(3), tmp_path / "views.png", max_images=16)
    with Image.open(path) as img:
        assert img.size == (3 * 64 + 4 * 2, 2 * 64 + 3 * 2)  # 32 px upscaled x2 to 64 px tiles
    with pytest.raises(ValueError):
        save_view_grid(v, v[:, :, :16], tmp_path / "bad.png")
