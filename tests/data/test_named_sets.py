"""The paper's transfer datasets by name: torchvision's own readers on miniature copies of each dataset's
layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simclr.config_io import build_config
from simclr.data.named_sets import NAMED_SETS, paper_metric
from simclr.data.sources import load_source
from simclr.errors import InputError
from simclr.evaluation.knn import mean_class_accuracy
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


def test_paper_metric() -> None:
    assert [n for n in sorted(NAMED_SETS) if paper_metric(n) == "mean_class_top1"] == \
        ["aircraft", "caltech101", "flowers102", "pets"]
    assert paper_metric("food101") == "top1" and paper_metric("some/folder") == "top1"


def test_mean_class_accuracy() -> None:
    labels = torch.tensor([0, 0, 0, 0, 1, 2, 2])
    predicted = torch.tensor([0, 0, 0, 1, 1, 0, 2])
    scores = torch.nn.functional.one_hot(predicted, 4).float()
    # class 0: 3/4, class 1: 1/1, class 2: 1/2 (class 3 absent from the labels): mean 0.75; plain top-1 5/7
    assert mean_class_accuracy(scores, labels) == pytest.approx((0.75 + 1.0 + 0.5) / 3)
    assert np.isnan(mean_class_accuracy(scores[:0], labels[:0]))


def test_eval_transfer_reports_the_papers_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                                 make_checkpoint) -> None:
    from simclr.cli import main

    _build("pets", tmp_path / "data", monkeypatch)
    checkpoint = make_checkpoint(tmp_path / "run.pt")
    args = ["eval", "transfer", "--checkpoint", str(checkpoint), "--data", "pets", "--data-root",
            str(tmp_path / "data"), "--quiet", "--epochs", "1"]
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["paper_metric"] == "mean_class_top1" and (out["train_images"], out["test_images"]) == (6, 2)
    for name in ("linear", "finetune", "scratch"):
        # one test image per class: mean per-class top-1 equals top-1 here
        assert out[f"{name}_mean_class_top1"] == pytest.approx(out[f"{name}_top1"])
    assert main(args) == 0
    assert "transfer to pets, mean per-class top-1 (the paper's metric for it): linear" \
        in capsys.readouterr().out
    subset = tmp_path / "pets-subset.json"
    assert main([*args, "--json", "--label-fraction", "0.3", "--subset-file", str(subset)]) == 0
    drawn = json.loads(capsys.readouterr().out)
    # 1 a class
    assert subset.is_file() and drawn["labelled_images"] == 2 and drawn["subset_file"] == str(subset)
    # reused, whatever --label-fraction says
    assert main([*args, "--json", "--subset-file", str(subset)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["labelled_images"] == 2 and again["label_fraction"] == pytest.approx(2 / 6, abs=1e-6)
    assert main([*args, "--finetune-grid", "0.1/0"]) == 2  # two images a class: none can be held out
    assert "too few labelled images (6) to hold out a validation part" in capsys.readouterr().err


def test_knn_monitor_of_an_unlabeled_pretraining_set_uses_its_labelled_twin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from simclr.data.named_sets import labelled_spec
    from simclr.runtime.device import pick_precision
    from simclr.training.monitor import KnnMonitor

    assert labelled_spec("stl10-unlabeled") == "stl10" and labelled_spec("pets") == "pets"
    assert labelled_spec("my/folder") == "my/folder"
    _build("stl10", tmp_path, monkeypatch)
    config = build_config({"data": {"spec": "stl10-unlabeled", "root": str(tmp_path), "image_size": 16}})
    monitor = KnnMonitor(config, torch.device("cpu"), pick_precision("fp32", torch.device("cpu")))
    assert monitor.data is not None and monitor.data.train.name == "stl10" and len(monitor.data.train) == 6
    assert "monitor off" not in capsys.readouterr().err


def test_voc2007_codes_come_from_the_devkits_class_files(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from simclr.data.named_sets import ABSENT, DIFFICULT, PRESENT, VOC_CLASSES

    _build("voc2007", tmp_path, monkeypatch)
    train = load_source("voc2007", "train", data_root=tmp_path)
    assert train.classes == VOC_CLASSES and paper_metric("voc2007") == "map11"
    assert train.paths[1] == "VOCdevkit/VOC2007/JPEGImages/000007.jpg"  # trainval.txt's order
    row = dict(zip(VOC_CLASSES, train.labels[1].tolist(), strict=True))
    assert (row["person"], row["cat"]) == (PRESENT, DIFFICULT)
    assert all(v == ABSENT for k, v in row.items() if k not in ("person", "cat"))
    for i, path in enumerate(train.paths):  # every image's codes as built
        present, difficult = VOC_IMAGES[Path(path).stem][1:]
        assert {VOC_CLASSES[c] for c in np.flatnonzero(train.labels[i] == PRESENT)} == set(present)
        assert {VOC_CLASSES[c] for c in np.flatnonzero(train.labels[i] == DIFFICULT)} == set(difficult)


def test_voc2007_incomplete_or_half_missing_is_one_line(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.voc

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets.voc, "download_and_extract_archive", offline)
    _build("voc2007", tmp_path, monkeypatch)
    main_sets = tmp_path / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    (main_sets / "cow_test.txt").unlink()
    with pytest.raises(InputError, match=r"PASCAL VOC2007 in .* is incomplete: .*cow_test.txt"):
        load_source("voc2007", "test", data_root=tmp_path)
    (main_sets / "test.txt").unlink()  # the test archive not unpacked: torchvision's FileNotFoundError
    with pytest.raises(InputError, match="PASCAL VOC2007 not found in .* network unreachable"):
        load_source("voc2007", "test", data_root=tmp_path)


def test_voc2007_through_the_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys,
                                      make_checkpoint) -> None:
    from simclr.cli import main

    _build("voc2007", tmp_path / "data", monkeypatch)
    checkpoint = make_checkpoint(tmp_path / "run.pt")
    common = ["--checkpoint", str(checkpoint), "--data", "voc2007", "--data-root", str(tmp_path / "data"),
              "--quiet"]
    capsys.readouterr()
    assert main(["eval", "transfer", *common, "--epochs", "2", "--json", "--finetune-grid", "0.05/0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["paper_metric"] == "map11" and (out["train_images"], out["test_images"]) == (10, 4)
    assert all(0.0 < out[f"{name}_map11"] <= 1.0 for name in ("linear", "finetune", "scratch"))
    assert "finetune_top1" not in out and len(out["finetune_grid"]) == 1
    assert (out["validation"], out["validation_images"]) == ("the dataset's validation split", 3)  # val.txt
    assert main(["eval", "transfer", *common, "--epochs", "2", "--json", "--finetune-grid", "0.05/0",
                 "--in-memory", "false"]) == 0
    streamed = json.loads(capsys.readouterr().out)  # the networks read their images from the files
    assert streamed["streamed"] and streamed["linear_map11"] == out["linear_map11"]
    assert all(0.0 < streamed[f"{name}_map11"] <= 1.0 for name in ("finetune", "scratch"))
    assert main(["eval", "linear", *common]) == 0
    assert "linear: 11-point mAP" in capsys.readouterr().out
    assert main(["eval", "linear", *common, "--solver", "augmented", "--epochs", "1", "--json"]) == 0
    augmented = json.loads(capsys.readouterr().out)
    assert augmented["solver"] == "augmented" and 0.0 < augmented["map11"] <= 1.0
    assert main(["eval", "transfer", *common, "--epochs", "1"]) == 0
    assert "transfer to voc2007, 11-point mAP (the paper's metric for it): linear" in capsys.readouterr().out
    for args, message in ((["eval", "knn"],
                           "kNN accuracy needs one label per image, and voc2007 is multi-label"),
                          (["eval", "compare"], "multi-label"),
                          (["eval", "finetune"], "voc2007 is multi-label: semi-supervised fine-tuning"),
                          (["eval", "transfer", "--label-fraction", "0.5"], "transfer uses all its labels"),
                          (["eval", "linear", "--solver", "sgd"], "lbfgs solver only")):
        assert main([*args, *common]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert main(["embed", *common, "--split", "test", "--out", str(tmp_path / "voc.npz")]) == 0
    with np.load(tmp_path / "voc.npz") as f:  # no one class per image: unlabeled for search
        assert f["labels"].tolist() == [-1] * 4 and f["features"].shape[0] == 4


def test_pretraining_on_voc2007_turns_the_knn_monitor_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys) -> None:
    from simclr.runtime.device import pick_precision
    from simclr.training.monitor import KnnMonitor

    _build("voc2007", tmp_path, monkeypatch)
    config = build_config({"data": {"spec": "voc2007", "root": str(tmp_path), "image_size": 16}})
    monitor = KnnMonitor(config, torch.device("cpu"), pick_precision("fp32", torch.device("cpu")))
    assert monitor.data is None
    assert "kNN monitor off: voc2007 is multi-label" in capsys.readouterr().err
    assert len(load_source("voc2007", "all", data_root=tmp_path)) == 14  # its images still pretrain


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


def test_own_validation_splits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from simclr.data.named_sets import has_validation

    assert [n for n in sorted(NAMED_SETS) if has_validation(n)] == ["aircraft", "dtd", "flowers102",
                                                                    "voc2007"]
    for name, expected in (("dtd", 3), ("aircraft", 3), ("voc2007", 3), ("flowers102", 3)):
        _build(name, tmp_path / name, monkeypatch)
        val = load_source(name, "val", data_root=tmp_path / name)
        train = load_source(name, "train", data_root=tmp_path / name)
        assert len(val) == expected and set(val.paths) < set(train.paths)  # a part of our train split
    assert all("_2.jpg" in p for p in load_source("dtd", "val", data_root=tmp_path / "dtd").paths)
    _build("pets", tmp_path / "pets", monkeypatch)
    with pytest.raises(InputError, match="Oxford-IIIT Pets has no validation split of its own"):
        load_source("pets", "val", data_root=tmp_path / "pets")
    with pytest.raises(InputError, match="unknown split 'val'"):
        load_source("digits", "val")


def test_transfer_picks_on_the_datasets_own_validation_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys, make_checkpoint) -> None:
    from simclr.cli import main
    from simclr.evaluation import linear

    _build("dtd", tmp_path / "data", monkeypatch)
    held: list[list[int]] = []
    real = linear.pick_weight_decay
    monkeypatch.setattr(linear, "pick_weight_decay",
                        lambda x, y, wds, seed, fit, score, holdout=None:
                        held.append(sorted(holdout.tolist())) or real(x, y, wds, seed, fit, score, holdout))
    args = ["eval", "transfer", "--checkpoint", str(make_checkpoint(tmp_path / "run.pt")), "--data", "dtd",
            "--data-root", str(tmp_path / "data"), "--quiet", "--epochs", "1", "--json"]
    capsys.readouterr()
    assert main([*args, "--finetune-grid", "0.05/0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["validation"], out["validation_images"]) == ("the dataset's validation split", 3)
    train = load_source("dtd", "train", data_root=tmp_path / "data")
    val = sorted(load_source("dtd", "val", data_root=tmp_path / "data").paths)
    assert [train.paths[i] for i in held[0]] == val
    linear_args = [a for a in args[2:] if a not in ("--epochs", "1")]  # the lbfgs fit takes no epochs
    assert main(["eval", "linear", *linear_args]) == 0  # eval linear: the same split picks the weight decay
    assert json.loads(capsys.readouterr().out)["validation"] == "the dataset's validation split"
    assert [train.paths[i] for i in held[-1]] == val


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
