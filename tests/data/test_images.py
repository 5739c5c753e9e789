"""Decoding large JPEGs at a reduced scale (the decoder's DCT scaling) when the pipeline shrinks them
anyway."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simclr.data.augment import eval_transform
from simclr.data.images import open_rgb


@pytest.fixture(scope="module")
def big_jpeg(photos: Path) -> bytes:
    """A real photo enlarged to 2400x1800 and saved as JPEG (a phone-sized picture)."""
    with Image.open(photos / "imagenet_10_541.jpg") as img:
        big = img.convert("RGB").resize((2400, 1800), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.mark.parametrize(("min_side", "size"), [(0, (2400, 1800)), (100, (300, 225)), (224, (600, 450)),
                                                (300, (1200, 900)), (450, (1200, 900)), (500, (2400, 1800))])
def test_a_large_jpeg_is_decoded_at_least_twice_as_large_as_asked(big_jpeg: bytes, min_side: int,
                                                                  size: tuple) -> None:
    img = open_rgb(big_jpeg, min_side=min_side)
    assert img.mode == "RGB" and img.size == size and min(img.size) >= 2 * min_side


def test_other_formats_are_decoded_whole(big_jpeg: bytes) -> None:
    buf = io.BytesIO()
    Image.open(io.BytesIO(big_jpeg)).save(buf, "PNG")
    assert open_rgb(buf.getvalue(), min_side=100).size == (2400, 1800)


def test_the_network_sees_nearly_the_same_input(big_jpeg: bytes) -> None:
    full = eval_transform(224)(open_rgb(big_jpeg))
    reduced = eval_transform(224)(open_rgb(big_jpeg, min_side=224))
    assert full.shape == reduced.shape == (3, 224, 224)
    diff = (full - reduced).abs()
    # JPEG-noise level
    assert 0 < float(diff.mean()) < 1 / 255 and float(np.percentile(diff.numpy(), 99)) < 5 / 255
