"""data.eval_crop: evaluation's centre crop keeping a part of the shorter side (resize 256, crop 224 for
0.875)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simclr.config_io import build_config
from simclr.data.augment import eval_transform, resize_side
from simclr.data.cache import content_key
from simclr.data.decode import decode_source, fit_square
from simclr.data.image_source import ImageSource
from simclr.errors import InputError


def _photo(side: tuple[int, int] = (256, 256)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (side[1], side[0], 3), dtype=np.uint8))


def test_resize_256_crop_224() -> None:
    assert resize_side(224, 0.875) == 256 and resize_side(224) == 224 and resize_side(32, 1.0) == 32
    image = _photo()
    centre = np.asarray(image)[16:240, 16:240]  # a 256 image needs no resize: the central 224
    assert np.array_equal(fit_square(image, 224, 0.875), centre)
    via_transform = (eval_transform(224, 0.875)(image) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(via_transform, centre)  # the file path and the decode path prepare the same pixels
    assert fit_square(image, 224).shape == (224, 224, 3) \
        and not np.array_equal(fit_square(image, 224), centre)


def test_in_memory_arrays_and_files_crop_alike(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    array = rng.integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    source = ImageSource("a", ("a/0", "a/1", "a/2"), np.zeros(3, dtype=np.int64), ("x",), array)
    half = decode_source(source, 20, progress=False, crop=0.5)  # the central 20 x 20, no resize
    assert torch.equal(half.images, torch.from_numpy(array[:, 10:30, 10:30]).permute(0, 3, 1, 2))
    for i in range(3):
        Image.fromarray(array[i]).save(tmp_path / f"{i}.png")
    files = ImageSource("f", ("0.png", "1.png", "2.png"), np.zeros(3, dtype=np.int64), ("x",), root=tmp_path)
    assert torch.equal(decode_source(files, 20, progress=False, crop=0.5).images, half.images)
    assert content_key(files, 20, 0.5) != content_key(files, 20) == content_key(files, 20, 1.0)


def test_eval_crop_is_checked() -> None:
    assert build_config({}).data.eval_crop == 1.0
    assert build_config({"data": {"eval_crop": 0.875}}).data.eval_crop == 0.875
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(InputError, match="data.eval_crop must be in"):
            build_config({"data": {"eval_crop": bad}})
