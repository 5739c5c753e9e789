"""Labelled subsets: class-balanced draws, their files, and lists of image names."""

import json
import math

import numpy as np
import pytest

from simclr.errors import InputError
from simclr.evaluation.subsets import label_subset, load_subset, save_subset, subset_from_names


def _labels() -> np.ndarray:
    labels = np.repeat([0, 1, 2], [10, 20, 35])
    return np.concatenate([labels, [-1, -1]])[np.random.default_rng(0).permutation(67)]


def test_label_subset_is_class_balanced() -> None:
    labels = _labels()
    idx = label_subset(labels, 0.1, seed=0)
    assert np.all(np.diff(idx) > 0)
    assert [int((labels[idx] == c).sum()) for c in range(3)] == [1, 2, 4]  # 1.0, 2.0, 3.5 rounded up
    assert (labels[idx] >= 0).all()
    assert [int((labels[label_subset(labels, 0.01, 0)] == c).sum()) for c in range(3)] == [1, 1, 1]


def test_label_subset_is_seeded() -> None:
    labels = _labels()
    np.testing.assert_array_equal(label_subset(labels, 0.3, 7), label_subset(labels, 0.3, 7))
    assert not np.array_equal(label_subset(labels, 0.3, 7), label_subset(labels, 0.3, 8))


def test_label_subset_full_fraction_and_errors() -> None:
    labels = np.repeat([0, 1, 2], 5)
    np.testing.assert_array_equal(label_subset(labels, 1.0, 0), np.arange(15))
    for bad in (0.0, -0.5, 1.5, math.nan):
        with pytest.raises(ValueError, match="fraction"):
            label_subset(labels, bad, 0)


def test_subset_file_round_trip(tmp_path) -> None:
    path = tmp_path / "subset.json"
    idx = label_subset(_labels(), 0.2, 1)
    save_subset(path, idx, fraction=0.2, seed=1, dataset="toy", num_images=67)
    doc = json.loads(path.read_text())
    assert doc["format"] == "simclr-subset-v1" and doc["dataset"] == "toy" and doc["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["subset.json"]  # no temporary left behind
    loaded = load_subset(path, 67)
    assert loaded.dtype == np.int64
    np.testing.assert_array_equal(loaded, idx)


@pytest.mark.parametrize("case", ["corrupt", "missing", "format", "num_images", "range", "type"])
def test_load_subset_errors(tmp_path, case: str) -> None:
    path = tmp_path / "subset.json"
    save_subset(path, [0, 5, 9], fraction=0.5, seed=0, dataset="toy", num_images=10)
    doc = json.loads(path.read_text())
    num_images = 10
    if case == "corrupt":
        path.write_bytes(b"{\"format\": \"simclr-sub\xff")
    elif case == "missing":
        path = tmp_path / "nope.json"
    elif case == "format":
        path.write_text(json.dumps({**doc, "format": "other"}))
    elif case == "num_images":
        num_images = 11
    elif case == "range":
        path.write_text(json.dumps({**doc, "indices": [0, 10]}))
    else:
        path.write_text(json.dumps({**doc, "indices": [0, "1"]}))
    with pytest.raises(InputError) as info:
        load_subset(path, num_images)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


PATHS = ["train/n01/n01_1.JPEG", "train/n01/n01_2.JPEG", "train/n02/n02_1.JPEG", "train/a/0001.jpg",
         "train/b/0001.jpg"]


def test_subset_from_names_matches_file_names_or_path_tails() -> None:
    lines = ["# the paper's format: one file name per line", "n02_1.JPEG", "", "n01_1.JPEG", "n01_1.JPEG",
             "a/0001.jpg", "train/b/0001.jpg  "]
    np.testing.assert_array_equal(subset_from_names(lines, PATHS), [0, 2, 3, 4])
    assert subset_from_names(["n01_2.JPEG"], PATHS).dtype == np.int64


@pytest.mark.parametrize(("lines", "message"), [
    (["0001.jpg"], "fits more than one image"),
    (["n01_1.JPEG", "n09_9.JPEG", "x/n01_2.JPEG"], "2 of 3 named images are not in the train split"),
    (["# nothing", " "], "names no images"),
])
def test_subset_from_names_errors(lines: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        subset_from_names(lines, PATHS)


def test_load_subset_reads_a_list_of_names(tmp_path) -> None:
    path = tmp_path / "1percent.txt"
    path.write_text("n01_2.JPEG\nn02_1.JPEG\n")
    np.testing.assert_array_equal(load_subset(path, 5, PATHS), [1, 2])
    with pytest.raises(InputError, match="not a simclr subset file"):
        load_subset(path, 5)  # without the split's paths, names cannot be matched
