"""PASCAL VOC2007 by name: multi-label codes from the devkit's class files, its errors, and the commands on
it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr.config_io import build_config
from simclr.data.named_sets import paper_metric
from simclr.data.sources import load_source
from simclr.errors import InputError

from .test_named_sets import VOC_IMAGES, _build


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
