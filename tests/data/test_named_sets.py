"""The paper's transfer datasets by name: torchvision's own readers on miniature copies of each dataset's
layout (VOC2007: test_voc2007.py; evaluation on them: test_named_set_evaluation.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simclr.config_io import build_config
from simclr.data.named_sets import NAMED_SETS
from simclr.data.sources import load_source
from simclr.errors import InputError
from simclr.evaluation.splits import labelled_split


def _jpeg(path: Path, value: int, size: tuple[int, int] = (12, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value % 256, 40, 200)).save(path, quality=95)


def _food101(root: Path) -> None:
    base = root / "food-101"
    meta = {"train": {"apple_pie": [], "ramen": []}, "test": {"apple_pie": [], "ramen": []}}
    for c, cls in enumerate(("apple_pie", "ramen")):
        for i in range(5):
            split = "test" if i >= 3 else "train"
            meta[split][cls].append(f"{cls}/{i}")
            _jpeg(base / "images" / cls / f"{i}.jpg", 10 * c + i)
    (base / "meta").mkdir(parents=True)
    for split, content in meta.items():
        (base / "meta" / f"{split}.json").write_text(json.dumps(content))


def _dtd(root: Path) -> None:
    data = root / "dtd" / "dtd"
    (data / "labels").mkdir(parents=True)
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for cls in ("banded", "dotted", "zigzagged"):
        for i, split in enumerate(("train", "train", "val", "test")):
            lines[split].append(f"{cls}/{cls}_{i}.jpg")
            _jpeg(data / "images" / cls / f"{cls}_{i}.jpg", i)
    for split, names in lines.items():
        (data / "labels" / f"{split}1.txt").write_text("\n".join(names) + "\n")


def _pets(root: Path) -> None:
    base = root / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True)
    rows: dict[str, list[str]] = {"trainval": [], "test": []}
    for label, breed in enumerate(("Abyssinian", "basset_hound"), start=1):
        for i in range(1, 5):
            rows["test" if i == 4 else "trainval"].append(f"{breed}_{i} {label} 1 1")
            _jpeg(base / "images" / f"{breed}_{i}.jpg", i)
    for split, lines in rows.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")


def _aircraft(root: Path) -> None:
    data = root / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True)
    variants = ["707-320", "A300B4", "Cessna 172"]
    (data / "variants.txt").write_text("\n".join(variants) + "\n")
    rows: dict[str, list[str]] = {"trainval": [], "train": [], "val": [], "test": []}
    for c, variant in enumerate(variants):
        for i in range(3):
            name = f"10{c}{i}"
            for split in ("test",) if i == 2 else ("trainval", ("train", "val")[i]):
                rows[split].append(f"{name} {variant}")
            _jpeg(data / "images" / f"{name}.jpg", i)
    for split, lines in rows.items():
        (data / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")


def _caltech101(root: Path) -> None:
    categories = root / "caltech101" / "101_ObjectCategories"
    for cls, count in (("BACKGROUND_Google", 2), ("accordion", 32), ("airplanes", 35)):
        for i in range(1, count + 1):
            _jpeg(categories / cls / f"image_{i:04d}.jpg", i, (4, 4))


def _sun397(root: Path) -> None:
    data = root / "SUN397"
    data.mkdir(parents=True)
    (data / "ClassName.txt").write_text("/a/abbey\n/b/bedroom\n")
    for c, (letter, cls) in enumerate((("a", "abbey"), ("b", "bedroom"))):
        for i in range(100 + c):
            _jpeg(data / letter / cls / f"sun_{c}{i:03d}.jpg", i, (4, 4))


def _stl10(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    base = root / "stl10_binary"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 4)):
        rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8).tofile(base / f"{split}_X.bin")
        (np.arange(n, dtype=np.uint8) % 10 + 1).tofile(base / f"{split}_y.bin")
    rng.integers(0, 256, (5, 3, 96, 96), dtype=np.uint8).tofile(base / "unlabeled_X.bin")
    (base / "class_names.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    # no MD5 of the real files
    monkeypatch.setattr(torchvision.datasets.STL10, "_check_integrity", lambda self: True)


def _flowers102(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets
    from scipy.io import savemat

    base = root / "flowers-102"
    for i in range(1, 10):
        _jpeg(base / "jpg" / f"image_{i:05d}.jpg", i)
    savemat(base / "imagelabels.mat", {"labels": np.array([[1, 2, 3] * 3])})
    savemat(base / "setid.mat", {"trnid": np.array([[1, 2, 3]]), "valid": np.array([[4, 5, 6]]),
                                 "tstid": np.array([[7, 8, 9]])})
    monkeypatch.setattr(torchvision.datasets.Flowers102, "_check_integrity", lambda self: True)


def _cars(root: Path) -> None:
    from scipy.io import savemat

    base = root / "stanford_cars"
    (base / "devkit").mkdir(parents=True)
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array([["AM General Hummer"], ["Audi TT"]],
                                                                         dtype=object).T})
    for split, annos, folder in (("train", base / "devkit" / "cars_train_annos.mat", "cars_train"),
                                 ("test", base / "cars_test_annos_withlabels.mat", "cars_test")):
        records = np.zeros((1, 4), dtype=[("fname", object), ("class", object)])
        for i in range(4):
            records[0, i] = (f"{split}{i:05d}.jpg", i % 2 + 1)
            _jpeg(base / folder / f"{split}{i:05d}.jpg", i)
        savemat(annos, {"annotations": records})


VOC_IMAGES = {  # image id: (split, the classes present, the classes present only as difficult objects)
    "000005": ("train", ("cat",), ()), "000007": ("train", ("person",), ("cat",)),
    "000009": ("val", ("cat", "person"), ()), "000012": ("train", ("aeroplane",), ()),
    "000016": ("train", ("aeroplane", "person"), ()), "000017": ("val", ("cat",), ("person",)),
    "000019": ("train", ("person",), ()), "000020": ("train", ("aeroplane",), ("cat",)),
    "000021": ("train", ("cat",), ()), "000023": ("val", ("person", "aeroplane"), ()),
    "000001": ("test", ("cat",), ()), "000002": ("test", ("person",), ("aeroplane",)),
    "000003": ("test", ("aeroplane",), ()), "000004": ("test", ("cat", "person"), ()),
}


def _voc2007(root: Path) -> None:
    from simclr.data.named_sets import VOC_CLASSES

    base = root / "VOCdevkit" / "VOC2007"
    (base / "ImageSets" / "Main").mkdir(parents=True)
    colour = {"aeroplane": 0, "cat": 1, "person": 2}
    for split in ("train", "val", "trainval", "test"):
        ids = [i for i, (s, _, _) in VOC_IMAGES.items()
               if s == split or (split == "trainval" and s != "test")]
        (base / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for cls in VOC_CLASSES:
            flags = ["1" if cls in VOC_IMAGES[i][1] else "0" if cls in VOC_IMAGES[i][2] else "-1"
                     for i in ids]
            (base / "ImageSets" / "Main" / f"{cls}_{split}.txt").write_text(
                "".join(f"{i} {f:>2}\n" for i, f in zip(ids, flags, strict=True)))
        for n, i in enumerate(ids if split in ("trainval", "test") else ()):
            pixel = [40, 40, 40]
            for cls in VOC_IMAGES[i][1]:
                pixel[colour[cls]] = 220
            path = base / "JPEGImages" / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (12 + n % 3, 10), tuple(pixel)).save(path, quality=95)


def _cifar(root: Path, monkeypatch: pytest.MonkeyPatch, hundred: bool = False) -> None:
    import pickle

    import torchvision.datasets.cifar as tv_cifar

    rng = np.random.default_rng(0)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    label_key = "fine_labels" if hundred else "labels"
    names = ["train", "test"] if hundred else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), label_key: [1, 2],
                         "filenames": []}, f)
    meta = {"fine_label_names": [f"c{i}" for i in range(100)]} if hundred else \
        {"label_names": [f"c{i}" for i in range(10)]}
    with open(folder / ("meta" if hundred else "batches.meta"), "wb") as f:
        pickle.dump(meta, f)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)  # no MD5 of the real files


def _build(name: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builders = {"food101": _food101, "dtd": _dtd, "pets": _pets, "aircraft": _aircraft,
                "caltech101": _caltech101, "sun397": _sun397, "cars": _cars, "voc2007": _voc2007}
    if name in builders:
        builders[name](root)
    elif name.startswith("cifar"):
        _cifar(root, monkeypatch, hundred=name == "cifar100")
    else:
        {"stl10": _stl10, "stl10-unlabeled": _stl10, "flowers102": _flowers102}[name](root, monkeypatch)


EXPECTED = {  # name: (train images, test images, classes)
    "cifar10": (10, 2, tuple(f"c{i}" for i in range(10))),  # five batches of two
    "cifar100": (2, 2, tuple(f"c{i}" for i in range(100))),
    "food101": (6, 4, ("apple_pie", "ramen")),
    "dtd": (9, 3, ("banded", "dotted", "zigzagged")),  # train + val
    "pets": (6, 2, ("Abyssinian", "Basset Hound")),
    "aircraft": (6, 3, ("707-320", "A300B4", "Cessna 172")),
    # 30 per class; BACKGROUND_Google dropped by torchvision
    "caltech101": (60, 7, ("accordion", "airplanes")),
    "sun397": (100, 100, ("abbey", "bedroom")),  # 50 + 50 per class of 100 / 101
    "cars": (4, 4, ("AM General Hummer", "Audi TT")),
    "stl10": (6, 4, tuple(f"class{i}" for i in range(10))),
    "stl10-unlabeled": (11, 4, tuple(f"class{i}" for i in range(10))),  # 6 labelled + 5 unlabeled
    "flowers102": (6, 3, None),
    "voc2007": (10, 4, None),  # trainval / test; multi-label
}


def test_every_named_set_is_covered() -> None:
    assert set(EXPECTED) == set(NAMED_SETS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_named_set_splits(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _build(name, tmp_path, monkeypatch)
    train = load_source(name, "train", data_root=tmp_path)
    test = load_source(name, "test", data_root=tmp_path)
    both = load_source(name, "all", data_root=tmp_path)
    n_train, n_test, classes = EXPECTED[name]
    assert (len(train), len(test)) == (n_train, n_test)
    assert len(both) == n_train + n_test and both.paths == train.paths + test.paths  # all = train, then test
    if classes is not None:
        assert train.classes == classes
    assert test.classes == train.classes and train.name == name
    labelled = train.labels[:6] if name == "stl10-unlabeled" else train.labels
    if name == "voc2007":  # a code per image and class: absent 0, present 1, difficult 2
        assert labelled.shape == (n_train, 20) and set(labelled.ravel().tolist()) == {0, 1, 2}
    else:
        assert set(labelled.tolist()) <= set(range(len(train.classes))) and (labelled >= 0).all()
    assert not set(train.paths) & set(test.paths)
    image = train.load(0)
    assert image.mode == "RGB" and image.size == {"stl10": (96, 96), "stl10-unlabeled": (96, 96),
                                                  "caltech101": (4, 4), "sun397": (4, 4), "cifar10": (32, 32),
                                                  "cifar100": (32, 32)}.get(name, (12, 10))
    if train.array is None:  # files stay files, relative to the data root
        assert train.root == tmp_path and (tmp_path / train.paths[0]).is_file()


def test_split_contents_follow_the_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _build("dtd", tmp_path, monkeypatch)
    train = load_source("dtd", "train", data_root=tmp_path)
    assert "dtd/dtd/images/banded/banded_2.jpg" in train.paths  # val joins train
    assert all("_3.jpg" not in p for p in train.paths)
    _build("stl10", tmp_path, monkeypatch)
    stl = load_source("stl10", "train", data_root=tmp_path)
    assert stl.labels.tolist() == [0, 1, 2, 3, 4, 5]  # 1-based on disk
    raw = np.fromfile(tmp_path / "stl10_binary" / "train_X.bin", dtype=np.uint8).reshape(6, 3, 96, 96)
    assert stl.array is not None and np.array_equal(stl.array[2], raw[2].transpose(2, 1, 0))  # column-major
    pretraining = load_source("stl10-unlabeled", "train", data_root=tmp_path)
    assert pretraining.labels.tolist() == [0, 1, 2, 3, 4, 5, -1, -1, -1, -1, -1]
    with pytest.raises(InputError, match="evaluation needs labels"):
        labelled_split(build_config({"data": {"spec": "stl10-unlabeled", "root": str(tmp_path)}}), "train")


def test_drawn_splits_are_seeded_per_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _build("caltech101", tmp_path, monkeypatch)
    a = load_source("caltech101", "train", data_root=tmp_path, seed=0)
    b = load_source("caltech101", "train", data_root=tmp_path, seed=0)
    c = load_source("caltech101", "train", data_root=tmp_path, seed=1)
    test = load_source("caltech101", "test", data_root=tmp_path, seed=0)
    assert a.paths == b.paths and a.paths != c.paths
    assert np.bincount(a.labels).tolist() == [30, 30] and np.bincount(test.labels).tolist() == [2, 5]
    assert not set(a.paths) & set(test.paths)


def test_too_small_class_is_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _build("caltech101", tmp_path, monkeypatch)
    for f in sorted((tmp_path / "caltech101" / "101_ObjectCategories" / "accordion").iterdir())[2:]:
        f.unlink()
    with pytest.raises(InputError, match=r"Caltech-101 class 'accordion' has 2 images, "
                                         r"fewer than the 30 train"):
        load_source("caltech101", "train", data_root=tmp_path)


def test_missing_dataset_names_where_to_put_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(self: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets.DTD, "_download", offline)
    with pytest.raises(InputError) as info:
        load_source("dtd", "train", data_root=tmp_path)
    message = str(info.value)
    assert "\n" not in message and "DTD not found in" in message and "network unreachable" in message
    assert str(tmp_path / "dtd") in message
    with pytest.raises(InputError, match="Stanford Cars not found.*cannot be downloaded anymore"):
        load_source("cars", "test", data_root=tmp_path)  # torchvision no longer offers it


def test_a_failed_open_leaves_no_empty_folder_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(self: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets.Caltech101, "download", offline)
    with pytest.raises(InputError, match="Caltech-101 not found"):
        load_source("caltech101", "train", data_root=tmp_path)
    assert list(tmp_path.iterdir()) == []  # torchvision made caltech101/ before looking; it is gone again
    (tmp_path / "caltech101").mkdir()
    (tmp_path / "caltech101" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="Caltech-101 not found"):
        load_source("caltech101", "train", data_root=tmp_path)
    assert (tmp_path / "caltech101" / "notes.txt").read_text() == "mine"  # what was there stays


def test_sun397_uses_its_official_partition_when_present(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _build("sun397", tmp_path, monkeypatch)
    data = tmp_path / "SUN397"
    listed: dict[str, list[str]] = {"Training_01": [], "Testing_01": []}
    for letter, cls in (("a", "abbey"), ("b", "bedroom")):
        names = sorted(f.name for f in (data / letter / cls).iterdir())
        listed["Training_01"] += [f"/{letter}/{cls}/{n}" for n in names[-50:]]  # not what a seeded draw gives
        listed["Testing_01"] += [f"/{letter}/{cls}/{n}" for n in names[:50]]
    (data / "Partitions").mkdir()
    for name, lines in listed.items():
        (data / "Partitions" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    train = load_source("sun397", "train", data_root=tmp_path)
    test = load_source("sun397", "test", data_root=tmp_path)
    assert sorted("/" + p.removeprefix("SUN397/") for p in train.paths) == sorted(listed["Training_01"])
    assert sorted("/" + p.removeprefix("SUN397/") for p in test.paths) == sorted(listed["Testing_01"])
    assert np.bincount(train.labels).tolist() == [50, 50]
    (data / "Partitions" / "Testing_01.txt").write_text("/a/abbey/sun_missing.jpg\n")
    with pytest.raises(InputError, match=r"Testing_01.txt names 1 images, 1 of them not in"):
        load_source("sun397", "test", data_root=tmp_path)
