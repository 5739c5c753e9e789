"""Turning a dataset SPEC string into an :class:`ImageSource` (image identifiers, labels, class names).

SPEC forms accepted by :func:`load_source`:

* ``cifar10``, ``cifar100``: torchvision's CIFAR-10 / CIFAR-100 (python versions, 100 fine labels) under
  ``data_root``, downloaded if missing (online).
* ``food101``, ``sun397``, ``cars``, ``aircraft``, ``dtd``, ``pets``, ``caltech101``, ``flowers102``,
  ``voc2007`` (multi-label), ``stl10``: the paper's transfer datasets through torchvision under ``data_root``,
  downloaded if missing (online), with the paper's splits (see :mod:`simclr.data.named_sets`).
* ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, offline); test = every 5th image
  (``i % 5 == 0``), train = the rest.
* An image folder. With ``train/`` and ``test/`` (or ``val/``, as in ImageNet) subfolders the split picks one
  (``all`` = both). Inside, class subfolders give labels (sorted names; images beside them are left out, with
  a note on stderr); a flat folder is unlabeled (label -1). Without both subfolders the test split is a
  seeded, class-stratified ``holdout`` fraction and train is the rest. A lone ``train/`` or ``test/``
  subfolder is treated as the whole dataset.
* A ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz`` or ``.zip`` archive of such a folder, extracted
  once (safely and atomically) under ``cache_dir/archives/<key>``; a single wrapping top-level folder is
  descended into.

These names win over folders of the same name: write ``./digits`` for a folder.
Holdout applies only to folders and archives without a test split.
"""

from __future__ import annotations

import numbers
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from simclr.data.archives import extract_archive
from simclr.data.image_source import ImageSource
from simclr.data.images import is_image_file
from simclr.data.named_sets import NAMED_SETS, load_named
from simclr.errors import InputError

SPLITS: tuple[str, ...] = ("train", "test", "all")
ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
_SKIPPED_DIRS = frozenset({"__MACOSX"})
_HOME_CACHE = Path("~/.cache/simclr")


def load_source(
    spec: str | os.PathLike[str],
    split: str = "train",
    *,
    data_root: Path | None = None,
    cache_dir: Path | None = None,
    holdout: float = 0.0,
    seed: int = 0,
) -> ImageSource:
    """Resolve a dataset SPEC (see the module docstring) into the images of one split.

    Args:
        spec: ``"cifar10"``, ``"cifar100"``, ``"digits"``, a name in :data:`NAMED_SETS`, an image folder, or
            an archive of one.
        split: ``"train"``, ``"test"`` or ``"all"``; for a named set with a validation split of its own also
            ``"val"`` (a part of its train split).
        data_root: Where CIFAR-10/100 and the named datasets live; default ``$SIMCLR_DATA`` or
            ``~/.cache/simclr/data``.
        cache_dir: Where archives are extracted; default ``$SIMCLR_CACHE`` or ``~/.cache/simclr``.
        holdout: Fraction in [0, 1) of a folder without ``test/`` that forms its test split.
        seed: Seed of the holdout draw (and of the per-class splits of Caltech-101 and SUN397).

    Returns:
        The split's :class:`ImageSource`.

    Raises:
        InputError: Unknown split, holdout out of range, missing or empty dataset, unreadable archive,
            a named dataset (CIFAR-10/100 included) neither present nor downloadable.
    """
    if split not in SPLITS and not (split == "val" and os.fspath(spec) in NAMED_SETS):
        raise InputError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    if isinstance(holdout, bool) or not isinstance(holdout, numbers.Real) or not 0.0 <= holdout < 1.0:
        raise InputError(f"holdout must be a fraction in [0, 1), got {holdout!r}")
    text = os.fspath(spec)
    if text in NAMED_SETS:
        return load_named(text, split, _setting_path(data_root, "SIMCLR_DATA", _HOME_CACHE / "data"), seed)
    if text == "digits":
        return _load_digits(split)
    path = Path(text).expanduser()
    if path.is_dir():
        return _load_folder(path, text, split, holdout, seed)
    if path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES):
        root = _descend_wrapper(extract_archive(path, cache_root(cache_dir)))
        return _load_folder(root, text, split, holdout, seed)
    expected = ("(expected cifar10, cifar100, digits, a dataset name such as food101 or pets, an image "
                "folder or a .tar/.tar.gz/.zip archive)")
    if path.exists():
        raise InputError(f"not a supported dataset: {text} {expected}")
    raise InputError(f"no such dataset: {text} {expected}")


def _setting_path(value: Path | None, env_var: str, default: Path) -> Path:
    """``value``, else the environment variable ``env_var``, else ``default`` (with ``~`` expanded)."""
    return Path(value or os.environ.get(env_var) or default).expanduser()


def cache_root(cache_dir: Path | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$SIMCLR_CACHE``, else ``~/.cache/simclr``."""
    return _setting_path(cache_dir, "SIMCLR_CACHE", _HOME_CACHE)


def _parts(split: str) -> tuple[str, ...]:
    """The fixed splits that make up ``split``."""
    return ("train", "test") if split == "all" else (split,)


def _load_digits(split: str) -> ImageSource:
    """scikit-learn's 8x8 digits as uint8 RGB; test = every 5th image, train = the rest."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    gray = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    index = np.arange(len(gray))
    is_test = index % 5 == 0
    keep = {"train": ~is_test, "test": is_test, "all": np.ones_like(is_test)}[split]
    rgb = np.repeat(gray[keep][..., None], 3, axis=3)
    paths = tuple(f"digits/{i}" for i in index[keep])
    classes = tuple(str(c) for c in range(10))
    return ImageSource(
        "digits", paths, bunch.target[keep].astype(np.int64), classes, np.ascontiguousarray(rgb)
    )


def _load_folder(root: Path, name: str, split: str, holdout: float, seed: int) -> ImageSource:
    """An image folder (see the module docstring); ``paths`` are relative to ``root``."""
    train_dir, test_dir = root / "train", root / "test"
    if not test_dir.is_dir() and (root / "val").is_dir():
        test_dir = root / "val"  # ImageNet's layout: train/ and val/
    if train_dir.is_dir() and test_dir.is_dir():
        _note_beside_splits(root, name, f"its {train_dir.name}/ and {test_dir.name}/ folders")
        files = {"train": _walk_images(train_dir), "test": _walk_images(test_dir)}
        classes = _class_names(files.values())
        paths: list[str] = []
        labels: list[int] = []
        for part in _parts(split):
            _note_loose(files[part], classes, Path(name) / (test_dir.name if part == "test" else part))
            part_paths, part_labels = _label_files(files[part], classes)
            if not part_paths:
                raise InputError(f"no images found in {Path(name) / part}")
            folder = test_dir.name if part == "test" else part
            paths.extend(f"{folder}/{p}" for p in part_paths)
            labels.extend(part_labels)
        return ImageSource(name, tuple(paths), np.asarray(labels, dtype=np.int64), classes, root=root)
    base = train_dir if train_dir.is_dir() else test_dir if test_dir.is_dir() else root
    prefix = "" if base == root else f"{base.name}/"
    if base != root:
        _note_beside_splits(root, name, f"its {base.name}/ folder (read as the whole dataset)")
    files_here = _walk_images(base)
    classes = _class_names([files_here])
    _note_loose(files_here, classes, Path(name) / prefix)
    rel_paths, label_list = _label_files(files_here, classes)
    if not rel_paths:
        raise InputError(f"no images found in {name}")
    paths_arr = np.asarray([prefix + p for p in rel_paths], dtype=object)
    labels_arr = np.asarray(label_list, dtype=np.int64)
    if split == "test" and holdout == 0:
        raise InputError(
            f"{name} has no test/ subfolder: set a holdout fraction for the test split "
            "(simclr eval and embed: --holdout 0.2; pretrain: --set data.holdout=0.2)"
        )
    if split != "all" and holdout > 0:
        is_test = _holdout_mask(labels_arr, holdout, seed, name)
        keep = is_test if split == "test" else ~is_test
        paths_arr, labels_arr = paths_arr[keep], labels_arr[keep]
    return ImageSource(name, tuple(paths_arr.tolist()), labels_arr, classes, root=root)


def _walk_images(folder: Path) -> list[str]:
    """Sorted POSIX paths, relative to ``folder``, of its image files (recursive; hidden entries skipped). A
    folder that cannot be listed is an InputError (its images, perhaps a whole class, would be missing
    unseen)."""
    found: list[str] = []

    def refuse(exc: OSError) -> None:
        raise InputError(f"cannot read folder {exc.filename}: {exc.strerror or exc}")

    for dirpath, dirnames, filenames in os.walk(folder, onerror=refuse):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIPPED_DIRS)
        rel_dir = Path(dirpath).relative_to(folder)
        found.extend(
            (rel_dir / f).as_posix() for f in filenames if not f.startswith(".") and is_image_file(f)
        )
    return sorted(found)


def _class_names(file_lists: Iterable[list[str]]) -> tuple[str, ...]:
    """Sorted names of the top-level subfolders that hold images in any of ``file_lists``."""
    return tuple(sorted({p.split("/", 1)[0] for files in file_lists for p in files if "/" in p}))


def _note_beside_splits(root: Path, name: str, what: str) -> None:
    """Say on stderr how many images lie directly in ``root`` beside its split folders (left out)."""
    try:
        loose = sum(1 for e in os.scandir(root)
                    if e.is_file() and not e.name.startswith(".") and is_image_file(e.name))
    except OSError:
        return
    if loose:
        print(f"note: {loose} image(s) directly in {name}, beside {what}, are left out", file=sys.stderr)


def _note_loose(files: list[str], classes: tuple[str, ...], folder: Path) -> None:
    """Say on stderr how many images lie directly in ``folder`` beside its class subfolders: they have no
    class, and are left out (a folder of mostly loose images with one subfolder would otherwise shrink
    unseen)."""
    loose = sum(1 for p in files if "/" not in p) if classes else 0
    if loose:
        print(f"note: {loose} image(s) directly in {folder}, beside its subfolders, are left out: "
              f"with subfolders, each one is a class ({some_names(classes)}); "
              "put every image in one to use them all", file=sys.stderr)


def some_names(names: Sequence[str], most: int = 3) -> str:
    """The first ``most`` of ``names``, comma-separated, with ", ..." when there are more."""
    return ", ".join(names[:most]) + (", ..." if len(names) > most else "")


def _label_files(files: list[str], classes: tuple[str, ...]) -> tuple[list[str], list[int]]:
    """Label files by class folder (dropping loose top-level files), or -1 for all when unlabeled."""
    if not classes:
        return list(files), [-1] * len(files)
    index = {c: i for i, c in enumerate(classes)}
    kept = [p for p in files if "/" in p]
    return kept, [index[p.split("/", 1)[0]] for p in kept]


def _holdout_mask(labels: np.ndarray, fraction: float, seed: int, name: str) -> np.ndarray:
    """A seeded boolean test mask of round(fraction * N) images, allotted to classes in proportion.

    Each class gets floor(fraction * count) images, and the remaining ones go to the classes with the
    largest remainders, so small classes still contribute and the total is exact.
    """
    groups = np.unique(labels)
    counts = np.array([np.count_nonzero(labels == g) for g in groups])
    exact = fraction * counts
    take = np.floor(exact).astype(np.int64)
    extra = int(np.floor(fraction * len(labels) + 0.5)) - int(take.sum())
    take[np.argsort(-(exact - take), kind="stable")[:extra]] += 1
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    for group, n in zip(groups, take, strict=True):
        mask[rng.permutation(np.flatnonzero(labels == group))[:n]] = True
    if not mask.any() or mask.all():
        raise InputError(f"holdout {fraction} of the {len(labels)} images in {name} leaves an empty split")
    return mask


def _descend_wrapper(root: Path) -> Path:
    """Step into a lone top-level folder (e.g. ``mydata/``) unless it is a ``train``/``test`` split."""
    while True:
        entries = [e for e in root.iterdir() if not e.name.startswith(".") and e.name not in _SKIPPED_DIRS]
        if len(entries) != 1 or not entries[0].is_dir() or entries[0].name in ("train", "test"):
            return root
        root = entries[0]
