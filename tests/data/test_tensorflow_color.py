"""augment.color_ops: tensorflow, the paper's Appendix A colour distortion with TensorFlow's operations,
against an independent per-pixel NumPy/colorsys version of TensorFlow's formulas (random_brightness adds a
delta, adjust_contrast pulls each channel towards its own mean, adjust_saturation scales S in HSV and clips
it, adjust_hue rotates H; the reference code clips to [0, 1] after each op)."""

from __future__ import annotations

import colorsys
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from simclr.config_io import build_config
from simclr.data.augment import view_transform
from simclr.data.augment_spec import PRESETS, AugmentSpec
from simclr.data.batch_augment import sample_color
from simclr.data.pixel_ops import ColorParams, color_distort_tensorflow

SPEC = dataclasses.replace(AugmentSpec(**PRESETS["cifar10"]), color_ops="tensorflow")


def _reference(image: np.ndarray, op: int, value: float) -> np.ndarray:
    """TensorFlow's op ``op`` (0 brightness delta, 1 contrast, 2 saturation, 3 hue) on ``[3, H, W]``, then
    clip."""
    if op == 0:
        out = image + value
    elif op == 1:
        mean = image.mean(axis=(1, 2), keepdims=True)
        out = (image - mean) * value + mean
    else:
        out = np.empty_like(image)
        for i in range(image.shape[1]):
            for j in range(image.shape[2]):
                h, s, v = colorsys.rgb_to_hsv(*image[:, i, j])
                if op == 2:
                    s = min(max(s * value, 0.0), 1.0)
                else:
                    h = (h + value) % 1.0
                out[:, i, j] = colorsys.hsv_to_rgb(h, s, v)
    return np.clip(out, 0.0, 1.0)


def _params(ops: list[list[int]], values: list[list[float]]) -> ColorParams:
    """Params applying each image's ops in the given order, with the given values (identity for the
    others)."""
    n = len(ops)
    brightness, contrast, saturation, hue = (torch.zeros(n), torch.ones(n), torch.ones(n), torch.zeros(n))
    for i, (order, vals) in enumerate(zip(ops, values)):
        for op, v in zip(order, vals):
            (brightness, contrast, saturation, hue)[op][i] = v
    order = torch.tensor([o + [k for k in range(4) if k not in o] for o in ops])
    return ColorParams(torch.ones(n, dtype=torch.bool), brightness, contrast, saturation, hue, order,
                       torch.zeros(n, dtype=torch.bool))


@pytest.mark.parametrize("op,value", [(0, 0.35), (0, -0.6), (1, 0.3), (1, 1.7), (2, 0.2), (2, 1.8), (3, 0.15),
                                      (3, -0.4)])
def test_each_op_matches_tensorflows_formula(op: int, value: float) -> None:
    x = torch.rand(3, 3, 5, 6, generator=torch.Generator().manual_seed(op))
    got = color_distort_tensorflow(x.clone(), _params([[op]] * 3, [[value]] * 3))
    for i in range(3):
        np.testing.assert_allclose(got[i].numpy(), _reference(x[i].double().numpy(), op, value), atol=2e-6)


def test_a_random_order_of_all_four_matches_the_ops_chained_with_clipping() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, 4, 4, generator=g)
    orders = [torch.randperm(4, generator=g).tolist() for _ in range(4)]
    values = [[{0: 0.3, 1: 1.5, 2: 0.4, 3: 0.2}[op] * (1 if i % 2 else -1 if op in (0, 3) else 1)
               for op in order]
              for i, order in enumerate(orders)]
    got = color_distort_tensorflow(x.clone(), _params(orders, values))
    for i in range(4):
        want = x[i].double().numpy()
        for op, v in zip(orders[i], values[i]):
            want = _reference(want, op, v)
        np.testing.assert_allclose(got[i].numpy(), want, atol=1e-5)


def test_brightness_is_a_delta_drawn_in_plus_minus_0_8_s() -> None:
    color = sample_color(SPEC, 20_000, torch.Generator().manual_seed(0), "cpu")
    b = 0.8 * SPEC.color_strength
    assert -b <= float(color.brightness.min()) < -0.95 * b and 0.95 * b < float(color.brightness.max()) <= b
    assert abs(float(color.brightness.mean())) < 0.01
    torchvision = sample_color(dataclasses.replace(SPEC, color_ops="torchvision"), 20_000,
                               torch.Generator().manual_seed(0), "cpu")
    assert float(torchvision.brightness.min()) >= 1 - b  # a factor, as before
    torch.testing.assert_close(torchvision.contrast, color.contrast)  # the same draws otherwise


def test_the_per_image_path_and_the_config() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    transform = view_transform(SPEC)
    torch.manual_seed(5)
    a, b = transform(image), transform(image)
    assert a.shape == (3, 32, 32) and 0 <= float(a.min()) and float(a.max()) <= 1 and not torch.equal(a, b)
    torch.manual_seed(5)
    assert torch.equal(transform(image), a)  # seeded
    assert build_config({"augment": {"color_ops": "tensorflow"}}).augment.color_ops == "tensorflow"
    with pytest.raises(ValueError, match="color_ops must be one of torchvision, tensorflow"):
        dataclasses.replace(SPEC, color_ops="pil").validate()
