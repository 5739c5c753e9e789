"""Tests for simclr.data.images: every image mode comes back RGB, corrupt images, image file extensions."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simclr.data.images import IMAGE_EXTENSIONS, CorruptImageError, is_image_file, open_rgb
from simclr.data.sources import load_source
from simclr.errors import InputError


def _lattice(mode: str, values: list) -> Image.Image:
    img = Image.new(mode, (len(values), 1))
    img.putdata(values)
    return img


def _palette_with_transparency() -> Image.Image:
    img = _lattice("P", [0, 1])
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img.info["transparency"] = 0
    return img


# (file name, image, save kwargs, expected RGB of each pixel in the first row, tolerance)
MODE_CASES = [
    ("one.png", _lattice("1", [0, 255]), {}, [(0, 0, 0), (255, 255, 255)], 0),
    ("gray.pgm", _lattice("L", [0, 100]), {}, [(0, 0, 0), (100, 100, 100)], 0),
    ("la.png", _lattice("LA", [(0, 0), (50, 255)]), {}, [(255, 255, 255), (50, 50, 50)], 0),
    (
        "rgba.png",
        _lattice("RGBA", [(255, 0, 0, 0), (10, 20, 30, 255), (0, 0, 0, 128)]),
        {},
        [(255, 255, 255), (10, 20, 30), (127, 127, 127)],
        1,
    ),
    ("pal.png", _palette_with_transparency(), {"transparency": 0}, [(255, 255, 255), (0, 0, 255)], 0),
    ("pal.gif", _palette_with_transparency(), {"transparency": 0}, [(255, 255, 255), (0, 0, 255)], 0),
    ("cmyk.jpg", Image.new("CMYK", (8, 8), (0, 255, 255, 0)), {}, [(255, 0, 0)], 8),
    (
        "i16.png",
        _lattice("I;16", [0, 257, 32768, 65535]),
        {},
        [(0, 0, 0), (1, 1, 1), (128, 128, 128), (255, 255, 255)],
        0,
    ),
    ("i16b.tif", _lattice("I;16B", [0, 257, 65535]), {}, [(0, 0, 0), (1, 1, 1), (255, 255, 255)], 0),
    (
        "i32.tiff",
        _lattice("I", [-5, 0, 65535, 70000]),
        {},
        [(0, 0, 0), (0, 0, 0), (255, 255, 255), (255, 255, 255)],
        0,
    ),
    ("unit.tif", _lattice("F", [0.0, 0.5, 1.0]), {}, [(0, 0, 0), (128, 128, 128), (255, 255, 255)], 0),
    ("wide.tif", _lattice("F", [-3.0, 100.4, 300.0]), {}, [(0, 0, 0), (100, 100, 100), (255, 255, 255)], 0),
    ("rgb.webp", Image.new("RGB", (8, 8), (200, 100, 50)), {"lossless": True}, [(200, 100, 50)], 0),
    ("rgb.bmp", Image.new("RGB", (2, 2), (1, 2, 3)), {}, [(1, 2, 3)], 0),
    ("rgb.ppm", Image.new("RGB", (2, 2), (4, 5, 6)), {}, [(4, 5, 6)], 0),
]


@pytest.mark.parametrize("name,img,save_kwargs,expected,tol", MODE_CASES, ids=[c[0] for c in MODE_CASES])
def test_every_mode_comes_back_rgb(
    tmp_path: Path, name: str, img: Image.Image, save_kwargs: dict, expected: list, tol: int
) -> None:
    img.save(tmp_path / name, **save_kwargs)
    with Image.open(tmp_path / name) as raw:
        assert raw.mode == img.mode  # the file really holds that mode
    src = load_source(str(tmp_path), "all", cache_dir=tmp_path)
    assert src.paths == (name,)
    pixels = np.asarray(src.load(0))
    assert pixels.dtype == np.uint8 and pixels.shape == (img.height, img.width, 3)
    row = pixels[0, : len(expected)].astype(int)
    assert np.abs(row - np.asarray(expected)).max() <= tol, row.tolist()
    assert np.array_equal(np.asarray(open_rgb((tmp_path / name).read_bytes())), pixels)


def test_corrupt_images_fail_on_load_not_on_scan(tmp_path: Path) -> None:
    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good, "JPEG")
    (tmp_path / "a_random.jpg").write_bytes(os.urandom(500))
    (tmp_path / "b_truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (tmp_path / "c_good.jpg").write_bytes(good.getvalue())
    src = load_source(str(tmp_path), "all", cache_dir=tmp_path)
    assert len(src) == 3
    for i in (0, 1):
        with pytest.raises(CorruptImageError, match=src.paths[i]):
            src.load(i)
    assert src.load(2).size == (64, 64)
    assert issubclass(CorruptImageError, InputError)
    with pytest.raises(CorruptImageError, match="<bytes>"):
        open_rgb(b"")


def test_image_extensions() -> None:
    assert set(IMAGE_EXTENSIONS) >= {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
    assert is_image_file("X.JPEG") and is_image_file("a/b.PGM") and not is_image_file("a.txt")
