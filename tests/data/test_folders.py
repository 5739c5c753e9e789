"""Tests for simclr.data.sources on folders of images: flat and class folders, the holdout, input errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from simclr.data.sources import load_source
from simclr.errors import InputError

from .test_sources import _make_labeled, _write_png

# --------------------------------------------------------------------------- folders, holdout


def test_flat_folder_is_unlabeled_and_filters_files(tmp_path: Path) -> None:
    _write_png(tmp_path / "b.png")
    _write_png(tmp_path / "A.PNG")
    (tmp_path / "notes.txt").write_text("not an image")
    _write_png(tmp_path / ".hidden.png")
    _write_png(tmp_path / ".cache" / "c.png")
    src = load_source(str(tmp_path), "all", cache_dir=tmp_path)
    assert src.paths == ("A.PNG", "b.png") and src.classes == ()
    assert src.labels.tolist() == [-1, -1] and src.name == str(tmp_path)


def test_class_folders_recursive_and_consistent_across_splits(tmp_path: Path) -> None:
    _write_png(tmp_path / "train" / "b" / "deep" / "1.png")
    _write_png(tmp_path / "train" / "a" / "0.png")
    _write_png(tmp_path / "test" / "c" / "0.png")  # a class seen only in test keeps a stable index
    train = load_source(str(tmp_path), "train", cache_dir=tmp_path)
    test = load_source(str(tmp_path), "test", cache_dir=tmp_path)
    assert train.classes == test.classes == ("a", "b", "c")
    assert train.paths == ("train/a/0.png", "train/b/deep/1.png") and test.labels.tolist() == [2]


def test_images_beside_class_folders_are_left_out_with_a_note(tmp_path: Path, capsys) -> None:
    _write_png(tmp_path / "shop" / "loose1.png")
    _write_png(tmp_path / "shop" / "loose2.png")
    _write_png(tmp_path / "shop" / "thumbs" / "t.png")
    src = load_source(str(tmp_path / "shop"), "all", cache_dir=tmp_path)
    assert src.paths == ("thumbs/t.png",) and src.classes == ("thumbs",)
    err = capsys.readouterr().err
    assert f"note: 2 image(s) directly in {tmp_path / 'shop'}, beside its subfolders, are left out" in err
    assert "each one is a class (thumbs)" in err
    _write_png(tmp_path / "split" / "train" / "a" / "0.png")
    _write_png(tmp_path / "split" / "train" / "stray.png")
    _write_png(tmp_path / "split" / "test" / "a" / "0.png")
    assert load_source(str(tmp_path / "split"), "test", cache_dir=tmp_path).paths == ("test/a/0.png",)
    assert capsys.readouterr().err == ""  # test/ has nothing beside its classes
    assert load_source(str(tmp_path / "split"), "train", cache_dir=tmp_path).paths == ("train/a/0.png",)
    assert f"note: 1 image(s) directly in {tmp_path / 'split' / 'train'}," in capsys.readouterr().err
    _write_png(tmp_path / "split" / "beside.png")  # beside the split folders
    load_source(str(tmp_path / "split"), "test", cache_dir=tmp_path)
    assert "1 image(s) directly in " + str(tmp_path / "split") + ", beside its train/ and test/ folders, " \
        "are left out" in capsys.readouterr().err
    _write_png(tmp_path / "flat" / "a.png")  # a flat folder that gains test/: that is now the whole dataset
    _write_png(tmp_path / "flat" / "test" / "b.png")
    assert load_source(str(tmp_path / "flat"), "all", cache_dir=tmp_path).paths == ("test/b.png",)
    assert "beside its test/ folder (read as the whole dataset), are left out" in capsys.readouterr().err


def test_a_folder_that_cannot_be_listed_is_an_error_not_a_missing_class(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_labeled(tmp_path, {"a": 2, "b": 2})
    real = os.scandir

    def scandir(path):  # what chmod 000 does to a user other than root
        if Path(path).name == "b":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(InputError, match=r"cannot read folder .*/b: Permission denied"):
        load_source(str(tmp_path), "all", cache_dir=tmp_path)
    monkeypatch.setattr(os, "scandir", real)
    assert load_source(str(tmp_path), "all", cache_dir=tmp_path).classes == ("a", "b")


def test_imagenet_layout_val_is_the_test_split(tmp_path: Path) -> None:
    _write_png(tmp_path / "train" / "n01" / "0.png")
    _write_png(tmp_path / "train" / "n02" / "0.png")
    _write_png(tmp_path / "val" / "n02" / "1.png")
    test = load_source(str(tmp_path), "test", cache_dir=tmp_path)
    assert test.paths == ("val/n02/1.png",) and test.labels.tolist() == [1]
    assert test.load(0).size == (4, 4)
    assert len(load_source(str(tmp_path), "all", cache_dir=tmp_path)) == 3


def test_holdout_is_disjoint_stratified_and_seeded(tmp_path: Path) -> None:
    _make_labeled(tmp_path, {"a": 10, "b": 10, "c": 5})
    kw = {"cache_dir": tmp_path, "holdout": 0.2}
    train = load_source(str(tmp_path), "train", seed=1, **kw)
    test = load_source(str(tmp_path), "test", seed=1, **kw)
    everything = load_source(str(tmp_path), "all", seed=1, **kw)
    assert len(test) == 5 and len(train) == 20 and len(everything) == 25
    assert set(train.paths).isdisjoint(test.paths)
    assert set(train.paths) | set(test.paths) == set(everything.paths)
    assert np.bincount(test.labels).tolist() == [2, 2, 1]
    assert load_source(str(tmp_path), "test", seed=1, **kw).paths == test.paths
    assert any(load_source(str(tmp_path), "test", seed=s, **kw).paths != test.paths for s in range(2, 6))
    assert len(load_source(str(tmp_path), "train", cache_dir=tmp_path)) == 25  # no holdout: everything


def test_holdout_of_unlabeled_folder(tmp_path: Path) -> None:
    for i in range(10):
        _write_png(tmp_path / f"{i}.png")
    test = load_source(str(tmp_path), "test", cache_dir=tmp_path, holdout=np.float32(0.3), seed=0)
    assert len(test) == 3 and test.labels.tolist() == [-1] * 3


# --------------------------------------------------------------------------- errors


def test_input_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no such dataset: .*missing.*expected cifar10, cifar100, digits"):
        load_source(str(tmp_path / "missing"), cache_dir=tmp_path)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(InputError, match="no images found in"):
        load_source(str(tmp_path / "empty"), cache_dir=tmp_path)
    _write_png(tmp_path / "imgs" / "0.png")
    with pytest.raises(InputError, match="unknown split 'val'"):
        load_source(str(tmp_path / "imgs"), "val", cache_dir=tmp_path)
    for bad in (1.0, -0.1, float("nan"), "0.1"):
        with pytest.raises(InputError, match="holdout must be a fraction"):
            load_source(str(tmp_path / "imgs"), holdout=bad, cache_dir=tmp_path)
    with pytest.raises(InputError, match=r"no test/ subfolder.*data\.holdout"):
        load_source(str(tmp_path / "imgs"), "test", cache_dir=tmp_path)
    with pytest.raises(InputError, match="leaves an empty split"):
        load_source(str(tmp_path / "imgs"), "test", holdout=0.3, cache_dir=tmp_path)
    (tmp_path / "data.npz").write_bytes(b"x")
    with pytest.raises(InputError, match="not a supported dataset"):
        load_source(str(tmp_path / "data.npz"), cache_dir=tmp_path)


def test_the_native_side_is_the_median_of_images_spread_over_the_folder(tmp_path: Path) -> None:
    from PIL import Image

    from simclr.data.decode import native_side

    many, few = tmp_path / "many", tmp_path / "few"
    many.mkdir()
    few.mkdir()
    for i in range(30):  # the first image is an odd one out; most are 48 px; one is corrupt
        size = (200, 120) if i == 0 else (48, 40) if i % 3 else (96, 96)
        Image.new("RGB", size, (i, i, i)).save(many / f"{i:02d}.png")
    (many / "15.png").write_bytes(b"not a png")
    assert native_side(load_source(str(many), "all", cache_dir=tmp_path)) == 48  # not the first image's 200
    for i, side in enumerate((10, 10, 64, 64, 64)):  # fewer than 16: every image is read
        Image.new("RGB", (side, side)).save(few / f"{i}.png")
    assert native_side(load_source(str(few), "all", cache_dir=tmp_path)) == 64  # not the first two's 10
    for p in many.glob("*.png"):
        p.write_bytes(b"broken")
    assert native_side(load_source(str(many), "all", cache_dir=tmp_path)) == 0
