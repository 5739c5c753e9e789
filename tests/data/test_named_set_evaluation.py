"""Evaluating on the named datasets: the paper's metric for each, eval transfer, their own validation splits,
the kNN monitor of an unlabeled one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr.config_io import build_config
from simclr.data.named_sets import NAMED_SETS, paper_metric
from simclr.data.sources import load_source
from simclr.errors import InputError
from simclr.evaluation.knn import mean_class_accuracy

from .test_named_sets import _build


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
