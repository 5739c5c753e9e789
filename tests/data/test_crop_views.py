"""Training views with both crops drawn before decoding: torchvision's crops, and a reduced-scale decode of a
large JPEG that leaves the views all but unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision import transforms as T

from simclr.data.augment import after_crop_transform
from simclr.data.augment_spec import AugmentSpec
from simclr.data.crop_views import CropFirstViews
from simclr.data.images import open_rgb
from simclr.data.sources import load_source


@pytest.fixture(scope="module")
def folder(photos: Path, tmp_path_factory) -> Path:
    """A PNG of 160x120 and a real photo enlarged to 2400x1800 (JPEG), as a folder of images."""
    root = tmp_path_factory.mktemp("crops")
    with Image.open(photos / "imagenet_10_541.jpg") as img:
        rgb = img.convert("RGB")
        rgb.resize((2400, 1800), Image.Resampling.BICUBIC).save(root / "big.jpg", quality=92)
        rgb.resize((160, 120), Image.Resampling.BICUBIC).save(root / "small.png")
    return root


def test_crops_are_torchvisions_drawn_first(folder: Path) -> None:
    spec = AugmentSpec(size=32, blur_p=0.5)
    source = load_source(str(folder), "all")
    i = source.paths.index("small.png")
    torch.manual_seed(5)
    v1, v2 = CropFirstViews(spec)(source, i)
    torch.manual_seed(5)  # by hand: two torchvision crops of the full size, then the rest of each view
    img = open_rgb(folder / "small.png")
    boxes = [T.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(2)]
    rest = after_crop_transform(spec)
    expected = [rest(TF.resized_crop(img, *box, [32, 32], T.InterpolationMode.BICUBIC)) for box in boxes]
    torch.testing.assert_close(v1, expected[0])
    torch.testing.assert_close(v2, expected[1])
    assert v1.shape == (3, 32, 32) and not torch.equal(v1, v2)


def test_a_large_jpeg_is_decoded_smaller_with_nearly_the_same_views(folder: Path) -> None:
    spec = AugmentSpec(size=96)
    files = load_source(str(folder), "all")
    i = files.paths.index("big.jpg")
    sizes = []

    class Spy:  # the source, noting the size each image was decoded at
        def load(self, j: int, min_side=0) -> Image.Image:
            img = files.load(j, min_side)
            sizes.append(img.size)
            return img

    source = Spy()
    diffs = []
    for seed in range(12):
        torch.manual_seed(seed)
        fast = CropFirstViews(spec)(source, i)
        torch.manual_seed(seed)
        whole = CropFirstViews(spec, reduce=False)(source, i)  # the same crops and colours, full decode
        diffs += [(a - b).abs() for a, b in zip(fast, whole)]
    reduced = sizes[::2]
    assert all(s in ((2400, 1800), (1200, 900), (600, 450), (300, 225)) for s in reduced)
    assert sum(s != (2400, 1800) for s in reduced) >= 6  # most pairs of crops allow a smaller decode
    assert all(s == (2400, 1800) for s in sizes[1::2])
    d = torch.stack(diffs)
    assert float(d.mean()) < 1 / 255 and float(np.percentile(d.numpy(), 99)) < 6 / 255


def test_in_memory_and_unreadable(folder: Path, tmp_path: Path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(Exception, match="cannot decode"):
        CropFirstViews(AugmentSpec(size=32))(load_source(str(tmp_path), "all"), 0)
    digits = load_source("digits", "test")  # an in-memory source: its array's size plans the crops
    v1, v2 = CropFirstViews(AugmentSpec(size=8))(digits, 0)
    assert v1.shape == v2.shape == (3, 8, 8)
