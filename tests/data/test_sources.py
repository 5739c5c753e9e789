"""Tests for simclr.data.sources and simclr.data.images: dataset specs, splits, archives, image modes."""

from __future__ import annotations

import io
import os
import pickle
import stat
import tarfile
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simclr.data import archives
from simclr.data.image_source import ImageSource
from simclr.data.images import IMAGE_EXTENSIONS, CorruptImageError, is_image_file, open_rgb
from simclr.data.sources import load_source
from simclr.errors import InputError

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _write_png(path: Path, value: int = 128, size: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, value, value)).save(path)


def _make_labeled(root: Path, counts: dict[str, int]) -> Path:
    for name, n in counts.items():
        for i in range(n):
            _write_png(root / name / f"{i:03d}.png", value=i)
    return root


# --------------------------------------------------------------------------- mini CIFAR-10 archive


def test_mini_archive_splits_labels_and_classes(mini_archive: Path, tmp_path: Path) -> None:
    train = load_source(str(mini_archive), "train", cache_dir=tmp_path)
    test = load_source(str(mini_archive), "test", cache_dir=tmp_path)
    both = load_source(str(mini_archive), "all", cache_dir=tmp_path)
    assert (len(train), len(test), len(both)) == (500, 200, 700)
    assert train.classes == test.classes == CIFAR_CLASSES
    assert train.array is None and train.root is not None and train.labels.dtype == np.int64
    for src, part, per_class in ((train, "train", 50), (test, "test", 20)):
        assert np.bincount(src.labels).tolist() == [per_class] * 10
        for path, label in zip(src.paths, src.labels, strict=True):
            top, cls, _ = path.split("/")
            assert top == part and cls == src.classes[label]
    assert set(train.paths).isdisjoint(test.paths)
    assert list(train.paths) == sorted(train.paths)
    img = train.load(0)
    assert img.mode == "RGB" and img.size == (32, 32)
    assert train.read_bytes(0)[:2] == b"\xff\xd8"  # JPEG


def test_archive_extraction_is_cached(
    mini_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_source(str(mini_archive), "test", cache_dir=tmp_path)
    assert first.root is not None
    extracted = [p for p in (tmp_path / "archives").iterdir()]
    assert [p.name for p in extracted] == [first.root.name] and len(first.root.name) == 16
    mtime = first.root.stat().st_mtime_ns

    def fail(*args: object) -> None:
        raise AssertionError("archive extracted again")

    monkeypatch.setattr(archives, "_extract_tar", fail)
    second = load_source(str(mini_archive), "train", cache_dir=tmp_path)
    assert second.root == first.root and first.root.stat().st_mtime_ns == mtime
    assert len(second) == 500


def test_interrupted_extraction_is_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "data.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(_make_labeled(tmp_path / "src", {"a": 2, "b": 2}), arcname=".")
    real_extract = archives._extract_tar

    def interrupted(path: Path, dest: Path, bar) -> None:
        real_extract(path, dest, bar)
        raise KeyboardInterrupt

    monkeypatch.setattr(archives, "_extract_tar", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_source(str(archive), cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache" / "archives").iterdir()) == []  # the partial folder was removed
    monkeypatch.setattr(archives, "_extract_tar", real_extract)
    assert len(load_source(str(archive), cache_dir=tmp_path / "cache")) == 4


# --------------------------------------------------------------------------- zip and tar of small folders


def test_zip_with_wrapper_folder(tmp_path: Path) -> None:
    folder = tmp_path / "mydata"
    _make_labeled(folder / "train", {"cat": 3, "dog": 2})
    _make_labeled(folder / "test", {"cat": 1, "dog": 1})
    archive = tmp_path / "mydata.ZIP"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(tmp_path).as_posix())
        zf.writestr("__MACOSX/mydata/._junk.png", b"junk")
    train = load_source(str(archive), "train", cache_dir=tmp_path / "cache")
    test = load_source(str(archive), "test", cache_dir=tmp_path / "cache")
    assert train.classes == ("cat", "dog") and train.labels.tolist() == [0, 0, 0, 1, 1]
    assert test.paths == ("test/cat/000.png", "test/dog/000.png") and test.labels.tolist() == [0, 1]
    assert train.root is not None and train.root.name == "mydata"
    assert train.load(4).getpixel((0, 0)) == (1, 1, 1)
    old = os.umask(0o022)
    os.umask(old)
    # the extracted folder is readable as the umask allows (not a temporary folder's owner-only permissions)
    assert stat.S_IMODE(train.root.parent.stat().st_mode) == 0o777 & ~old


@pytest.mark.parametrize("suffix,mode", [(".tar", "w"), (".tgz", "w:gz")])
def test_tar_with_dot_prefix_and_symlink_skipped(tmp_path: Path, suffix: str, mode: str) -> None:
    folder = _make_labeled(tmp_path / "src", {"x": 2, "y": 1})
    (folder / "y" / "link.png").symlink_to(folder / "x" / "000.png")
    archive = tmp_path / f"small{suffix}"
    with tarfile.open(archive, mode) as tar:
        tar.add(folder, arcname=".")
    with tarfile.open(archive) as tar:
        assert all(n == "." or n.startswith("./") for n in tar.getnames())
    src = load_source(str(archive), "all", cache_dir=tmp_path / "cache")
    assert src.paths == ("x/000.png", "x/001.png", "y/000.png") and src.labels.tolist() == [0, 0, 1]


def test_unsafe_and_corrupt_archives(tmp_path: Path, mini_archive: Path) -> None:
    for name in ("../evil.png", "/abs/evil.png"):
        archive = tmp_path / "bad.tar"
        with tarfile.open(archive, "w") as tar:
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
        with pytest.raises(InputError, match="unsafe member"):
            load_source(str(archive), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "evil.png").exists()
    garbage_zip = tmp_path / "garbage.zip"
    garbage_zip.write_bytes(os.urandom(256))
    with pytest.raises(InputError, match="cannot extract archive"):
        load_source(str(garbage_zip), cache_dir=tmp_path / "cache")
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(mini_archive.read_bytes()[:50_000])
    with pytest.raises(InputError, match="cannot extract archive"):
        load_source(str(truncated), cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache" / "archives").iterdir()) == []
    (tmp_path / "not_a_dir").write_text("x")
    with pytest.raises(InputError, match="cannot write to cache folder"):
        load_source(str(mini_archive), cache_dir=tmp_path / "not_a_dir")


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


# --------------------------------------------------------------------------- image modes and corruption


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


# --------------------------------------------------------------------------- digits


def test_digits_splits() -> None:
    train, test, both = (load_source("digits", s) for s in ("train", "test", "all"))
    assert (len(train), len(test), len(both)) == (1437, 360, 1797)
    assert both.array is not None and both.array.shape == (1797, 8, 8, 3) and both.array.dtype == np.uint8
    assert both.array.max() == 255 and both.array.min() == 0
    assert np.array_equal(both.array[..., 0], both.array[..., 2])
    assert both.classes == tuple(str(d) for d in range(10)) and set(both.labels.tolist()) == set(range(10))
    assert test.paths[:3] == ("digits/0", "digits/5", "digits/10")
    assert set(train.paths).isdisjoint(test.paths) and set(train.paths) | set(test.paths) == set(both.paths)
    assert np.array_equal(test.array, both.array[::5]) and np.array_equal(test.labels, both.labels[::5])
    assert train.load(0).mode == "RGB" and train.load(0).size == (8, 8)
    assert Image.open(io.BytesIO(train.read_bytes(0))).size == (8, 8)


# --------------------------------------------------------------------------- cifar10


def _write_fake_cifar(root: Path, per_batch: int = 4) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": data, "filenames": []}, f)
        written[name] = data
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CIFAR_CLASSES), "num_cases_per_batch": per_batch}, f)
    return written


def test_cifar10_from_local_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.cifar as tv_cifar

    written = _write_fake_cifar(tmp_path)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)  # skip the md5 check
    monkeypatch.setenv("SIMCLR_DATA", str(tmp_path))
    train = load_source("cifar10", "train")
    test = load_source("cifar10", "test", data_root=tmp_path)
    both = load_source("cifar10", "all", data_root=tmp_path)
    assert (len(train), len(test), len(both)) == (20, 4, 24)
    assert train.classes == CIFAR_CLASSES and train.array is not None and train.array.shape == (20, 32, 32, 3)
    assert test.paths[0] == "cifar10/test/0" and both.paths[20] == "cifar10/test/0"
    expected = written["test_batch"][1].reshape(3, 32, 32).transpose(1, 2, 0)  # CHW rows -> HWC
    assert np.array_equal(np.asarray(test.load(1)), expected)
    assert train.labels.dtype == np.int64 and train.labels.min() >= 0


def test_cifar100_from_local_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.cifar as tv_cifar

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    data = {}
    for name, n in (("train", 30), ("test", 10)):
        data[name] = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:  # CIFAR-100's layout: fine and coarse labels
            pickle.dump({"data": data[name], "fine_labels": [i % 100 for i in range(70, 70 + n)],
                         "coarse_labels": [0] * n, "filenames": []}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class{i:02d}" for i in range(100)], "coarse_label_names": []}, f)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    train = load_source("cifar100", "train", data_root=tmp_path)
    both = load_source("cifar100", "all", data_root=tmp_path)
    assert (len(train), len(both)) == (30, 40) and len(train.classes) == 100 and train.name == "cifar100"
    assert train.labels.tolist()[:3] == [70, 71, 72] and both.paths[30] == "cifar100/test/0"
    expected = data["test"][2].reshape(3, 32, 32).transpose(1, 2, 0)
    assert np.array_equal(np.asarray(both.load(32)), expected)


@pytest.mark.parametrize(("spec", "folder"), [("cifar10", "cifar-10-batches-py"),
                                              ("cifar100", "cifar-100-python")])
def test_cifar_offline_failure(
    spec: str, folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    import torchvision.datasets

    def offline(self: object) -> None:
        print("Downloading https://www.cs.toronto.edu/...")
        raise urllib.error.URLError("network is unreachable")

    cls = getattr(torchvision.datasets, spec.upper())
    monkeypatch.setattr(cls, "download", offline)
    with pytest.raises(InputError) as info:
        load_source(spec, "train", data_root=tmp_path / "data")
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "data") in message
    assert folder in message and "online" in message and "archive" in message
    assert capsys.readouterr().out == ""


def test_image_source_rejects_inconsistent_fields() -> None:
    with pytest.raises(ValueError):
        ImageSource("x", ("a",), np.zeros(2, dtype=np.int64), (), root=Path("."))
