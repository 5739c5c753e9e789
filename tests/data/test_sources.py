"""Tests for simclr.data.sources: the CIFAR-10 subset's archive, zip and tar archives, digits, CIFAR (folders:
test_folders.py; image modes: test_image_modes.py)."""

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
