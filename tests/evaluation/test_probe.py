"""Transformation probes on frozen h and z (Table 3): the transforms, the MLP, and the protocol."""

import math

import pytest
import torch
import torch.nn.functional as F

from simclr.errors import InputError
from simclr.evaluation.probe import (
    NUM_CLASSES,
    TRANSFORMS,
    ProbeSpec,
    format_probe,
    probe,
    train_mlp,
    transform_batch,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _images(n: int = 64, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", TRANSFORMS)
def test_transform_shape_range_and_balanced_targets(name: str) -> None:
    images = _images(400)
    out, y = transform_batch(images, name, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == images.dtype
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert y.shape == (400,) and y.dtype == torch.int64
    classes = 4 if name == "rotation" else 2
    counts = torch.bincount(y, minlength=classes)
    assert len(counts) == classes
    p = 1 / classes
    bound = 5 * math.sqrt(400 * p * (1 - p))  # five binomial standard deviations
    assert (counts.float() - 400 * p).abs().max() < bound
    unchanged = (out == images).flatten(1).all(1)
    assert unchanged[y == 0].all()  # target 0 is always the original image
    assert not unchanged[y != 0].any()


def test_rotation_matches_rot90() -> None:
    images = _images(200)
    out, y = transform_batch(images, "rotation", torch.Generator().manual_seed(2))
    for k in range(4):
        torch.testing.assert_close(out[y == k], torch.rot90(images[y == k], k, dims=(2, 3)), rtol=0, atol=0)
    with pytest.raises(ValueError):
        transform_batch(torch.rand(2, 3, 4, 6), "rotation", torch.Generator())


def test_gray_has_equal_channels_with_luma_weights() -> None:
    images = _images(100)
    out, y = transform_batch(images, "color_vs_gray", torch.Generator().manual_seed(3))
    gray = out[y == 1]
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    src = images[y == 1]
    torch.testing.assert_close(gray[:, 0], 0.299 * src[:, 0] + 0.587 * src[:, 1] + 0.114 * src[:, 2])


def test_sobel_constant_is_zero_and_edge_is_normalised() -> None:
    const = torch.full((32, 3, 8, 8), 0.7)
    out, y = transform_batch(const, "sobel", torch.Generator().manual_seed(4))
    assert (y == 1).any() and torch.all(out[y == 1] == 0)
    step = torch.zeros(32, 3, 8, 8)
    step[..., 4:] = 1.0  # a vertical edge between columns 3 and 4
    out, y = transform_batch(step, "sobel", torch.Generator().manual_seed(4))
    edge = out[y == 1]
    assert torch.equal(edge[:, 0], edge[:, 2]) \
        and torch.allclose(edge.amax(dim=(1, 2, 3)), torch.ones(len(edge)))
    assert torch.all(edge[..., :2] == 0) and torch.all(edge[..., 6:] == 0) and torch.all(edge[..., 3:5] > 0)


def test_sobel_matches_conv2d_reference() -> None:
    images = _images(16, 9)
    out, y = transform_batch(images, "sobel", torch.Generator().manual_seed(7))
    gray = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    grad = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), torch.stack([kx, kx.T]).unsqueeze(1))
    mag = grad.pow(2).sum(1, keepdim=True).sqrt()
    ref = (mag / mag.amax(dim=(2, 3), keepdim=True)).expand(-1, 3, -1, -1)
    torch.testing.assert_close(out[y == 1], ref[y == 1], atol=1e-5, rtol=0)


def test_noise_changes_image_and_is_reproducible() -> None:
    images = _images(64)
    out1, y1 = transform_batch(images, "noise", torch.Generator().manual_seed(5))
    out2, y2 = transform_batch(images, "noise", torch.Generator().manual_seed(5))
    assert torch.equal(out1, out2) and torch.equal(y1, y2)
    diff = (out1 - images)[y1 == 1]
    assert diff.abs().mean() > 0.03 and diff.abs().max() <= 0.1 * 8
    out3, _ = transform_batch(images, "noise", torch.Generator().manual_seed(6))
    assert not torch.equal(out1, out3)


@pytest.mark.parametrize("name", TRANSFORMS)
def test_per_image_seeds_give_the_same_draws_in_any_batch(name: str) -> None:
    images, seeds = _images(12), torch.arange(100, 112)
    whole, y = transform_batch(images, name, seeds=seeds)
    parts = [transform_batch(images[i:i + 5], name, seeds=seeds[i:i + 5]) for i in range(0, 12, 5)]
    assert torch.equal(torch.cat([p[0] for p in parts]), whole) \
        and torch.equal(torch.cat([p[1] for p in parts]), y)
    # another order: the same per image
    again, y_again = transform_batch(images.flip(0), name, seeds=seeds.flip(0))
    assert torch.equal(again.flip(0), whole) and torch.equal(y_again.flip(0), y)
    counts = torch.bincount(transform_batch(_images(400), name, seeds=torch.arange(400))[1])
    assert len(counts) == NUM_CLASSES[name] and counts.min() > 400 / NUM_CLASSES[name] / 2  # both (all) drawn
    with pytest.raises(ValueError, match="needs a generator or per-image seeds"):
        transform_batch(images, name)


def test_unknown_transform_is_rejected() -> None:
    with pytest.raises(InputError, match="unknown probe transform"):
        transform_batch(_images(2), "blur", torch.Generator())


def test_train_mlp_learns_separable_problem_deterministically() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(600, 10, generator=gen)
    w = torch.randn(10, generator=gen)
    w = w / w.norm()
    side = torch.where(x @ w > 0, 1.0, -1.0)
    x = (x + 0.5 * side[:, None] * w) * 3 + 5  # a margin of 1 (before scaling) around the hyperplane
    y = (side > 0).long()
    spec = ProbeSpec(hidden=32, epochs=10, lr=3e-3, batch_size=100)
    state = torch.get_rng_state()
    acc = train_mlp(x[:400], y[:400], x[400:], y[400:], 2, spec)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not consumed
    assert acc > 0.95
    assert train_mlp(x[:400], y[:400], x[400:], y[400:], 2, spec) == acc


def _structured_uint8(n: int, seed: int) -> torch.Tensor:
    """8x8 images with a bright 3x3 blob in the top-left quadrant (so rotation moves it) plus noise."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 8, 8, generator=gen) * 0.3
    rows, cols = torch.randint(0, 2, (n,), generator=gen), torch.randint(0, 2, (n,), generator=gen)
    for i in range(n):
        images[i, :, rows[i]:rows[i] + 3, cols[i]:cols[i] + 3] += 0.7
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def _pixels_and_invariant(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """h = the flattened pixels; z = per-image mean and std, invariant to rotation (information lost)."""
    flat = x.flatten(1)
    return flat, torch.stack([flat.mean(1), flat.std(1)], 1)


def test_probe_detects_information_lost_by_z() -> None:
    spec = ProbeSpec(hidden=64, epochs=8, lr=3e-3, batch_size=128)
    rows = probe(_pixels_and_invariant, _structured_uint8(384, 0), _structured_uint8(128, 1),
                 transforms=("rotation", "color_vs_gray"), spec=spec, batch_size=100)
    assert [r["transform"] for r in rows] == ["rotation", "color_vs_gray"]
    rot = rows[0]
    assert rot["classes"] == 4 and 0.25 <= rot["chance"] < 0.45
    assert rot["h_top1"] > 0.9 and rot["z_top1"] < 0.5 and rot["h_top1"] > rot["z_top1"] + 0.3
    assert rows[1]["classes"] == 2 and all(0.0 <= rows[1][k] <= 1.0 for k in ("h_top1", "z_top1", "chance"))
    assert rows == probe(_pixels_and_invariant, _structured_uint8(384, 0), _structured_uint8(128, 1),
                         transforms=("rotation", "color_vs_gray"), spec=spec, batch_size=100)


def test_format_probe_lists_every_transform() -> None:
    rows = [{"transform": t, "classes": 4 if t == "rotation" else 2, "h_top1": 0.9, "z_top1": 0.5,
             "chance": 0.5} for t in TRANSFORMS]
    table = format_probe(rows)
    assert table.splitlines()[0] == "| transform | classes | h | z | chance |"
    assert len(table.splitlines()) == 2 + len(TRANSFORMS)
    for t in TRANSFORMS:
        assert f"| {t} |" in table
    assert "90.0%" in table and "50.0%" in table
