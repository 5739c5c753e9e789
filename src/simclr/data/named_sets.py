"""CIFAR-10/100 and the paper's other transfer datasets (its Table 8) that torchvision reads, by name, as
:class:`ImageSource` splits.

``simclr ... --data NAME`` with NAME one of :data:`NAMED_SETS`: the dataset is looked for in torchvision's
layout under ``data_root`` (e.g. ``<data_root>/food-101/``) and downloaded there when missing (online;
Stanford Cars can no longer be downloaded and must be put there by hand). Splits follow the paper's Appendix
B.8:

* ``train`` is the dataset's training split joined with its validation split where it has one (the paper picks
  hyperparameters on validation, then trains on both): Flowers train + val, DTD train + val (partition 1),
  Pets and Aircraft trainval;
* Caltech-101 has no split: a seeded draw of 30 images per class trains, the rest test (as the paper);
* SUN397 as torchvision reads it has no split files: its first official partition
  (``Partitions/Training_01.txt`` and ``Testing_01.txt`` from the dataset's site, 50 + 50 per class, as the
  paper) when those files are in its folder, else a seeded draw of 50 training and 50 test images per class.

``voc2007`` is PASCAL VOC2007 classification (trainval / test), the paper's multi-label transfer dataset:
every image has a code per class (:data:`PRESENT`, :data:`ABSENT`, or :data:`DIFFICULT` where the class
appears only as objects marked difficult), read from the devkit's ``ImageSets/Main/<class>_<split>.txt``
files; its metric is the 11-point mAP (:mod:`simclr.evaluation.multilabel`).

The paper reports mean per-class accuracy for Aircraft, Pets, Caltech-101 and Flowers, 11-point mAP for
VOC2007 and top-1 for the others (:attr:`NamedSet.metric`). ``stl10-unlabeled`` is STL-10 for pretraining: its
train split adds the 100,000 unlabeled images (label -1) to the 5,000 labelled ones (the kNN monitor of such a
run evaluates on ``stl10``). Images stay files (``root`` = ``data_root``), so large photos are decoded at a
reduced scale like any folder; STL-10 is held in memory as an array. The paper's Birdsnap (not in torchvision,
its images only as a list of web addresses) is not included: give a folder of it with class subfolders."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simclr.data.image_source import ImageSource
from simclr.errors import InputError, one_line


@dataclass(frozen=True)
class NamedSet:
    """One torchvision dataset: how to open it and which of its splits make ours.

    Attributes:
        title: The dataset's name in messages.
        cls: torchvision.datasets class name.
        folder: What it unpacks to under ``data_root`` (for the message when it is missing).
        train, test: torchvision ``split`` values joined into our train / test split; empty for datasets
            without splits (then ``per_class`` draws them).
        split_arg: The constructor argument that takes them (CIFAR's: ``train``, True or False).
        val: The dataset's own validation split, part of our train split (``load_source(NAME, "val")``): the
            paper picks transfer hyper-parameters on it where a dataset has one (Aircraft, VOC2007, DTD,
            Flowers).
        per_class: (train, test) images drawn per class for datasets without splits; test 0 = the rest.
        partitions: (train, test) files under the dataset's folder that list its official split, used instead
            of the draw when present (SUN397's ``Partitions/Training_01.txt``, from the dataset's site).
        metric: ``"top1"``, ``"mean_class_top1"`` or ``"map11"`` (multi-label): what the paper reports for it.
        kwargs: Other constructor arguments.
        labelled: For a pretraining set holding unlabeled images, the labelled named set that the kNN monitor
            evaluates on during pretraining.
        remedy: What else to do when it is missing, added to the message.
    """

    title: str
    cls: str
    folder: str
    train: tuple[Any, ...] = ()
    test: tuple[Any, ...] = ()
    split_arg: str = "split"
    val: tuple[Any, ...] = ()
    per_class: tuple[int, int] = (0, 0)
    partitions: tuple[str, str] = ("", "")
    metric: str = "top1"
    kwargs: dict[str, Any] = field(default_factory=dict)
    # for a pretraining set with unlabeled images: the named set to monitor kNN accuracy on
    labelled: str = ""
    remedy: str = ""


_OR_A_FOLDER = ", or pass an image folder or .tar/.tar.gz/.zip archive of it"

NAMED_SETS: dict[str, NamedSet] = {
    "cifar10": NamedSet("CIFAR-10", "CIFAR10", "cifar-10-batches-py", (True,), (False,), split_arg="train",
                        remedy=_OR_A_FOLDER),
    "cifar100": NamedSet("CIFAR-100", "CIFAR100", "cifar-100-python", (True,), (False,), split_arg="train",
                         remedy=_OR_A_FOLDER),
    "food101": NamedSet("Food-101", "Food101", "food-101", ("train",), ("test",)),
    "sun397": NamedSet("SUN397", "SUN397", "SUN397", per_class=(50, 50),
                       partitions=("Partitions/Training_01.txt", "Partitions/Testing_01.txt")),
    "cars": NamedSet("Stanford Cars", "StanfordCars", "stanford_cars", ("train",), ("test",)),
    "aircraft": NamedSet("FGVC Aircraft", "FGVCAircraft", "fgvc-aircraft-2013b", ("trainval",), ("test",),
                         val=("val",), metric="mean_class_top1", kwargs={"annotation_level": "variant"}),
    "dtd": NamedSet("DTD", "DTD", "dtd", ("train", "val"), ("test",), val=("val",), kwargs={"partition": 1}),
    "pets": NamedSet("Oxford-IIIT Pets", "OxfordIIITPet", "oxford-iiit-pet", ("trainval",), ("test",),
                     metric="mean_class_top1"),
    "caltech101": NamedSet("Caltech-101", "Caltech101", "caltech101", per_class=(30, 0),
                           metric="mean_class_top1"),
    "flowers102": NamedSet("Oxford Flowers-102", "Flowers102", "flowers-102", ("train", "val"), ("test",),
                           val=("val",), metric="mean_class_top1"),
    "voc2007": NamedSet("PASCAL VOC2007", "VOCDetection", "VOCdevkit/VOC2007", ("trainval",), ("test",),
                        split_arg="image_set", val=("val",), metric="map11", kwargs={"year": "2007"}),
    "stl10": NamedSet("STL-10", "STL10", "stl10_binary", ("train",), ("test",)),
    "stl10-unlabeled": NamedSet("STL-10", "STL10", "stl10_binary", ("train+unlabeled",), ("test",),
                                labelled="stl10"),
}
"""``--data`` name -> how to read it."""

ABSENT, PRESENT, DIFFICULT = 0, 1, 2
"""A multi-label dataset's codes, per image and class: the class is absent, present, or present only as
objects marked difficult (left out of training and scoring, as VOC's evaluation does)."""

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")


@dataclass(frozen=True)
class Part:
    """One torchvision split: image files (or an in-memory array), labels and class names."""

    files: list[Path]
    labels: list[Any]  # int per image, or a row of codes per image (multi-label)
    classes: tuple[str, ...]
    array: np.ndarray | None = None  # uint8 [N, H, W, 3] for in-memory datasets (STL-10)


def read_by_name(spec: str) -> bool:
    """Whether ``spec`` names a dataset (a named set, or the bundled ``digits``) rather than a path: read by
    name even where a folder of that name exists."""
    return spec in NAMED_SETS or spec == "digits"


def has_validation(spec: str) -> bool:
    """Whether dataset ``spec`` is a named set with a validation split of its own
    (``load_source(spec, "val")``)."""
    named = NAMED_SETS.get(spec)
    return bool(named and named.val)


def paper_metric(spec: str) -> str:
    """The accuracy the paper reports for dataset ``spec``: ``"mean_class_top1"`` or ``"top1"``."""
    named = NAMED_SETS.get(spec)
    return named.metric if named else "top1"


def labelled_spec(spec: str) -> str:
    """The dataset that evaluates a run pretrained on ``spec``: its labelled twin (``stl10`` for
    ``stl10-unlabeled``), else ``spec`` itself."""
    named = NAMED_SETS.get(spec)
    return named.labelled if named and named.labelled else spec


def load_named(name: str, split: str, data_root: Path, seed: int = 0) -> ImageSource:
    """The ``split`` (train, test, all, or val: the dataset's own validation split, a part of train) of the
    named dataset as an :class:`~simclr.data.sources.ImageSource`.

    Raises:
        InputError: The dataset is neither under ``data_root`` nor downloadable, or too small for its split,
            or has no validation split of its own.
    """

    named = NAMED_SETS[name]
    if split == "val" and not named.val:
        raise InputError(f"{named.title} has no validation split of its own")
    parts: list[Part] = []
    ids: list[str] = []  # in-memory images: "<name>/<train or test>/<index>", as CIFAR's
    # a dataset without splits: drawn per class
    whole = None if named.train else _part(named, data_root, None)
    for ours in ("train", "test") if split == "all" else (split,):
        if whole is None:
            mine = [_part(named, data_root, s)
                    for s in {"train": named.train, "val": named.val}.get(ours, named.test)]
        else:
            mine = [_listed(whole, named, data_root, ours) or _draw(whole, named, ours, seed)]
        parts.extend(mine)
        ids.extend(f"{name}/{ours}/{i}" for i in range(sum(len(part.labels) for part in mine)))
    classes = parts[0].classes
    for other in parts[1:]:
        if other.classes != classes:
            raise InputError(f"the splits of {named.title} in {data_root} name different classes")
    labels = np.asarray([y for part in parts for y in part.labels], dtype=np.int64)
    if len(labels) == 0:
        raise InputError(f"no images in {named.title} ({split}) in {data_root / named.folder}")
    if parts[0].array is not None:
        arrays = [part.array for part in parts if part.array is not None]
        return ImageSource(name, tuple(ids), labels, classes, np.concatenate(arrays))
    paths = tuple(Path(os.path.relpath(f, data_root)).as_posix() for part in parts for f in part.files)
    return ImageSource(name, paths, labels, classes, root=data_root)


def _part(named: NamedSet, data_root: Path, split: Any) -> Part:
    dataset = _open(named, data_root, split)
    read = _READERS.get(named.cls, _files_and_labels)
    return read(dataset)


def _open(named: NamedSet, data_root: Path, split: Any) -> Any:
    return open_torchvision(named.cls, data_root, named.title,
                            f"put it in {data_root / named.folder} as torchvision lays it out "
                            "(or point --data-root / SIMCLR_DATA at its parent), "
                            f"or run once online to download it{named.remedy}",
                            folder=named.folder, **named.kwargs,
                            **({named.split_arg: split} if split is not None else {}))


def open_torchvision(cls_name: str, data_root: Path, title: str, remedy: str, folder: str = "",
                     **kwargs: Any) -> Any:
    """The torchvision dataset ``cls_name`` from ``data_root``, else downloaded there (its messages go to
    stderr). When neither works, the dataset's ``folder`` under ``data_root`` is removed again if the attempt
    created it empty (torchvision makes some before it looks).

    Raises:
        InputError: Neither present nor downloadable; one line naming the failure, then ``remedy``.
    """
    import torchvision.datasets  # imported here: torchvision is slow to import

    cls = getattr(torchvision.datasets, cls_name)
    data_root.mkdir(parents=True, exist_ok=True)
    made = [] if not folder else [p for p in _ancestors(data_root, folder) if not p.exists()]
    try:
        return cls(root=str(data_root), download=False, **kwargs)
    except (RuntimeError, OSError):  # missing, or part of it missing (e.g. VOC2007's test half)
        pass
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return cls(root=str(data_root), download=True, **kwargs)
    except Exception as exc:  # offline, HTTP, checksum, or no download offered: the same remedy
        for path in made:  # deepest first; only folders left empty
            with contextlib.suppress(OSError):
                path.rmdir()
        raise InputError(f"{title} not found in {data_root} and the download failed "
                         f"({type(exc).__name__}: {one_line(exc)}): {remedy}") from exc


def _ancestors(data_root: Path, folder: str) -> list[Path]:
    """``data_root/folder`` and its parents below ``data_root``, deepest first."""
    parts = Path(folder).parts
    return [data_root.joinpath(*parts[:n]) for n in range(len(parts), 0, -1)]


def _files_and_labels(dataset: Any) -> Part:
    """Datasets that list their files in ``_image_files`` (or ``_images``) and labels in ``_labels``."""
    files = getattr(dataset, "_image_files", None) or getattr(dataset, "_images", None)
    labels = getattr(dataset, "_labels", None)
    if files is None or labels is None:
        raise InputError(f"this torchvision's {type(dataset).__name__} does not list its image files; "
                         "use an image folder instead")
    order = sorted(range(len(files)), key=lambda i: str(files[i]))  # SUN397 lists them in walk order
    classes = getattr(dataset, "classes", None) or [str(c) for c in range(max(labels, default=-1) + 1)]
    return Part([Path(files[i]) for i in order], [int(labels[i]) for i in order], tuple(classes))


def _cars(dataset: Any) -> Part:
    files, labels = zip(*dataset._samples, strict=True) if dataset._samples else ((), ())
    return Part([Path(f) for f in files], [int(y) for y in labels], tuple(dataset.classes))


def _caltech(dataset: Any) -> Part:
    root = Path(dataset.root) / "101_ObjectCategories"
    files = [root / dataset.categories[y] / f"image_{i:04d}.jpg"
             for i, y in zip(dataset.index, dataset.y, strict=True)]
    return Part(files, [int(y) for y in dataset.y], tuple(dataset.categories))


def _cifar(dataset: Any) -> Part:
    """CIFAR-10/100: the ``.data`` array (uint8 NHWC) kept in memory, with ``targets`` (CIFAR-100's fine
    labels)."""
    return Part([], [int(y) for y in dataset.targets], tuple(dataset.classes),
                np.ascontiguousarray(dataset.data, dtype=np.uint8))


def _stl10(dataset: Any) -> Part:
    array = np.ascontiguousarray(np.asarray(dataset.data, dtype=np.uint8).transpose(0, 2, 3, 1))
    classes = getattr(dataset, "classes", None) or [str(c) for c in range(10)]  # class_names.txt is optional
    return Part([], [int(y) for y in dataset.labels], tuple(classes), array)


def _voc(dataset: Any) -> Part:
    """VOC2007 classification: the split's images, and each class's code from the devkit's class files."""
    root = Path(dataset.root) / "VOCdevkit" / f"VOC{dataset.year}"
    files = [Path(f) for f in dataset.images]
    row = {f.stem: i for i, f in enumerate(files)}
    codes = np.full((len(files), len(VOC_CLASSES)), ABSENT, dtype=np.int64)
    meaning = {"1": PRESENT, "0": DIFFICULT, "-1": ABSENT}
    for c, name in enumerate(VOC_CLASSES):
        path = root / "ImageSets" / "Main" / f"{name}_{dataset.image_set}.txt"
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise InputError(f"PASCAL VOC2007 in {root} is incomplete: {one_line(exc)}") from None
        for line in lines:
            fields = line.split()
            if len(fields) == 2 and fields[0] in row and fields[1] in meaning:
                codes[row[fields[0]], c] = meaning[fields[1]]
    return Part(files, codes.tolist(), VOC_CLASSES)


_READERS: dict[str, Callable[[Any], Part]] = {"StanfordCars": _cars, "Caltech101": _caltech, "STL10": _stl10,
                                              "VOCDetection": _voc, "CIFAR10": _cifar, "CIFAR100": _cifar}


def _listed(whole: Part, named: NamedSet, data_root: Path, split: str) -> Part | None:
    """The official ``split`` of a dataset without splits in torchvision, from its partition file (one path
    per line, relative to the dataset's folder, e.g. ``/a/abbey/sun_aaalbzqrimafwbiv.jpg``), or None without
    one."""
    name = named.partitions[0 if split == "train" else 1]
    path = data_root / named.folder / name
    if not name or not path.is_file():
        return None
    folder = data_root / named.folder
    try:
        wanted = {line.strip().lstrip("/") for line in path.read_text().splitlines() if line.strip()}
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {one_line(exc)}") from None
    keep = [i for i, f in enumerate(whole.files) if Path(f).relative_to(folder).as_posix() in wanted]
    if len(keep) != len(wanted):
        raise InputError(f"{path} names {len(wanted)} images, {len(wanted) - len(keep)} of them "
                         f"not in {folder}")
    return Part([whole.files[i] for i in keep], [whole.labels[i] for i in keep], whole.classes)


def _draw(whole: Part, named: NamedSet, split: str, seed: int) -> Part:
    """A seeded per-class split of a dataset without one: ``per_class`` = (train, test) images per class."""
    n_train, n_test = named.per_class
    labels = np.asarray(whole.labels)
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for c in range(len(whole.classes)):
        members = rng.permutation(np.flatnonzero(labels == c))
        if len(members) < n_train + max(n_test, 1):
            raise InputError(f"{named.title} class {whole.classes[c]!r} has {len(members)} images, fewer "
                             f"than the {n_train} train + {n_test or 'at least 1'} test the split draws")
        stop = n_train + n_test if n_test else None
        chosen = members[:n_train] if split == "train" else members[n_train:stop]
        keep.extend(chosen.tolist())
    keep.sort()
    return Part([whole.files[i] for i in keep], [whole.labels[i] for i in keep], whole.classes)
