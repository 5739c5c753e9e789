"""The pretraining loop: the run folder and its metrics, the time budget, the kNN monitor, skipped images,
ablations (resume and checkpoints: test_resume.py)."""

import itertools
import math
import shutil
import statistics
import tarfile
import time
from pathlib import Path

import pytest
import torch

from simclr.build import peak_lr
from simclr.config_io import build_config
from simclr.errors import InputError
from simclr.runtime.checkpoint import load_checkpoint
from simclr.runtime.metrics import read_metrics
from simclr.training.loop import pretrain

TINY = {
    "data": {"spec": "digits", "image_size": 16},
    "model": {"arch": "resnet18", "width": 0.125, "head": {"out_dim": 16}},
    "augment": {"preset": "cifar10", "crop_scale": [0.3, 1.0]},
    "loss": {"temperature": 0.5},
    "optim": {"base_lr": 8.0, "warmup_epochs": 1},
    "train": {"epochs": 3, "batch_size": 64, "log_every": 1, "device": "cpu", "precision": "fp32"},
}


def _config(**sections):
    return build_config(TINY, sections)


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r}


def test_run_folder_contents_and_metrics(full_run: Path) -> None:
    for name in ("config.yaml", "metrics.jsonl", "last.pt", "skipped.txt", "tensorboard"):
        assert (full_run / name).exists(), name
    records = [r for r in read_metrics(full_run / "metrics.jsonl") if "loss" in r]
    assert {"epoch", "step", "loss", "lr", "views_per_s", "contrastive_acc"} <= set(records[0])
    # learning: the loss goes down and contrastive accuracy goes up over three epochs
    def mean(key: str, part: list) -> float:
        return sum(r[key] for r in part) / len(part)

    first, last = records[:10], records[-10:]
    assert mean("loss", last) < mean("loss", first) - 0.3
    assert mean("contrastive_acc", last) > mean("contrastive_acc", first)
    state = load_checkpoint(full_run)
    assert {"model", "optimizer", "scaler", "schedule", "views", "rng", "epoch", "step",
            "config"} <= set(state)
    assert state["config"]["model"]["cifar_stem"] is True  # resolved, not "auto"


def test_refuses_to_overwrite_a_run(full_run: Path) -> None:
    before = (full_run / "last.pt").read_bytes()
    with pytest.raises(InputError, match="already holds a run"):
        pretrain(_config(), full_run, progress=False)
    assert (full_run / "last.pt").read_bytes() == before


def test_an_out_folder_inside_the_dataset_is_refused(photos: Path, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(InputError, match=r"--out .*run lies in the dataset .*: its views.png would be read"):
        pretrain(_config(data={"spec": str(photos)}), photos / "run", progress=False)
    assert not (photos / "run").exists()
    monkeypatch.chdir(tmp_path)  # a folder named like a named dataset is not the dataset
    (tmp_path / "digits").mkdir()
    assert pretrain(_config(), Path("digits/run"), progress=False, stop_after_steps=1).step == 1


def test_a_warm_up_as_long_as_the_run_is_noted(tmp_path: Path, capsys) -> None:
    pretrain(_config(optim={"warmup_epochs": 10}, train={"epochs": 0.1}), tmp_path / "short", progress=False)
    err = capsys.readouterr().err
    assert ("note: the warm-up (10 epochs) takes all of the run (0.1 epochs), so the learning rate never "
            "decays") in err
    pretrain(_config(train={"epochs": 0.1}, optim={"warmup_epochs": 0.01}), tmp_path / "fine", progress=False)
    assert "warm-up" not in capsys.readouterr().err


def test_time_budget(tmp_path: Path) -> None:
    budget_s = 12.0
    t0 = time.perf_counter()
    config = _config(train={"epochs": 1000, "time_budget": budget_s / 60})
    result = pretrain(config, tmp_path, progress=False)
    elapsed = time.perf_counter() - t0
    assert elapsed < budget_s + 4.0
    assert result.step == result.total_steps > 5  # (a loaded machine runs fewer steps in the same 12 s)
    records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "loss" in r]
    assert records[-1]["step"] == result.total_steps
    lrs = [r["lr"] for r in records]
    assert max(lrs) == pytest.approx(peak_lr(config))  # the peak reached, however slow the machine
    # up to the peak, then down: no rise after a fall (the first fit of the schedule comes during the warm-up)
    top = lrs.index(max(lrs))
    assert all(a <= b for a, b in itertools.pairwise(lrs[:top + 1]))
    assert all(b <= a for a, b in itertools.pairwise(lrs[top:])) and lrs[-1] < max(lrs)
    if len(lrs) - top > 20:  # the cosine ran to its end: a decay of more than a few steps ends near zero
        # (on a machine this loaded that 8 steps fit: tests/training/test_budget.py)
        assert lrs[-1] < 0.05 * max(lrs)
    assert elapsed > 0.6 * budget_s  # and the budget was used, not wasted


@pytest.mark.parametrize("in_memory", ["true", "false"])
def test_corrupt_images_are_skipped_and_recorded(mini_archive: Path, tmp_path: Path, in_memory: str) -> None:
    data = tmp_path / "data"
    with tarfile.open(mini_archive) as tar:
        tar.extractall(data, filter="data")
    (data / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    good = next((data / "train" / "dog").iterdir())
    (data / "train" / "dog" / "truncated.jpg").write_bytes(good.read_bytes()[:40])
    config = _config(data={"spec": str(data), "image_size": 32, "in_memory": in_memory, "workers": 0},
                     train={"epochs": 1, "batch_size": 100})
    result = pretrain(config, tmp_path / "run", progress=False)
    assert result.step == 5 and result.skipped == 2
    lines = (tmp_path / "run" / "skipped.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in lines) == ["train/cat/broken.jpg",
                                                             "train/dog/truncated.jpg"]
    shutil.rmtree(data)


def test_knn_monitor_logs_accuracy(tmp_path: Path) -> None:
    pretrain(_config(train={"epochs": 2, "knn_every": 1, "knn_k": 20}), tmp_path, progress=False)
    knn = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "knn_top1" in r]
    assert [r["epoch"] for r in knn] == [1, 2]
    assert all(0.1 < r["knn_top1"] <= 1.0 for r in knn)  # 10 digit classes: above chance from epoch 1


def test_time_s_leaves_out_the_monitor(tmp_path: Path, monkeypatch) -> None:
    from simclr.training.monitor import KnnMonitor

    def slow(self, net):
        time.sleep(2.0)
        return {"knn_top1": 0.5, "knn_top5": 0.9}

    monkeypatch.setattr(KnnMonitor, "__call__", slow)
    t0 = time.perf_counter()
    pretrain(_config(train={"epochs": 2, "knn_every": 1}), tmp_path, progress=False)
    wall = time.perf_counter() - t0
    records = read_metrics(tmp_path / "metrics.jsonl")
    train = [r for r in records if "loss" in r]
    knn = [r for r in records if "knn_top1" in r]
    assert len(knn) == 2
    assert knn[0]["time_s"] <= min(r["time_s"] for r in train if r["epoch"] == 2)  # stamped before it ran
    assert train[-1]["time_s"] < wall - 2 * 2.0  # the two 2-second evaluations are not training time
    assert load_checkpoint(tmp_path)["time_s"] < wall - 2 * 2.0
    # log_every 1: every window is one step of 128 views; the one after the first evaluation is not 2 s longer
    seconds = [2 * 64 / r["views_per_s"] for r in train]
    after = min(i for i, r in enumerate(train) if r["epoch"] == 2)
    assert seconds[after] < statistics.median(seconds[:after] + seconds[after + 1:]) + 1.5


def test_knn_monitor_is_off_for_unlabeled_data(tmp_path: Path, capsys) -> None:
    from PIL import Image

    from simclr.runtime.device import pick_precision
    from simclr.training.monitor import KnnMonitor

    for part in ("train", "test"):
        (tmp_path / part).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / part / "a.png")
    config = _config(data={"spec": str(tmp_path), "image_size": 8})
    monitor = KnnMonitor(config, torch.device("cpu"), pick_precision("fp32", torch.device("cpu")))
    assert monitor.data is None and monitor(None) is None
    assert "kNN monitor off: evaluation needs labels" in capsys.readouterr().err


def test_gradient_caching_run_trains(tmp_path: Path) -> None:
    result = pretrain(_config(train={"epochs": 1, "grad_cache_chunk": 32}), tmp_path, progress=False,
                      stop_after_steps=4)
    losses = _losses(tmp_path)
    assert result.step == 4 and all(math.isfinite(v) for v in losses.values())
    assert load_checkpoint(tmp_path)["config"]["train"]["grad_cache_chunk"] == 32


def test_diagnostics_and_view_grid(full_run: Path) -> None:
    from PIL import Image

    diag = [r for r in read_metrics(full_run / "metrics.jsonl") if "effective_rank_h" in r]
    assert [r["epoch"] for r in diag] == [1, 2, 3]
    for r in diag:
        assert 0.0 <= r["alignment"] <= 4.0 and r["uniformity"] <= 0.0
        assert 1.0 <= r["effective_rank_h"] <= 64  # h of the x0.125 ResNet-18 has 64 dims
    with Image.open(full_run / "views.png") as grid:
        assert grid.mode == "RGB" and grid.width > grid.height  # 16 pairs side by side, two rows


@pytest.mark.parametrize(("loss", "augment"), [
    ({"name": "nt_logistic", "semi_hard": True}, {"ops": ["crop", "color"], "asymmetric": True}),
    ({"name": "margin_triplet", "margin": 0.5}, {"ops": ["rotate", "sobel", "noise", "cutout", "blur"]}),
    ({"name": "nt_xent"}, {"color_ops": "tensorflow"}),
])
def test_ablation_losses_and_augmentations_train(tmp_path: Path, loss: dict, augment: dict) -> None:
    config = build_config(TINY, {"loss": loss, "augment": augment, "train": {"epochs": 1}})
    result = pretrain(config, tmp_path, progress=False, stop_after_steps=3)
    assert result.step == 3 and all(math.isfinite(v) for v in _losses(tmp_path).values())
    saved = load_checkpoint(tmp_path)["config"]
    assert saved["loss"]["name"] == loss["name"] and list(saved["augment"]["ops"]) == augment.get("ops", [])
    assert saved["augment"]["color_ops"] == augment.get("color_ops", "torchvision")


def test_unknown_ablation_op_and_loss_are_config_errors() -> None:
    with pytest.raises(InputError, match="unknown operation"):
        _config(augment={"ops": ["crop", "warp"]})
    with pytest.raises(InputError, match="loss.name"):
        _config(loss={"name": "infonce"})
    with pytest.raises(InputError, match="semi_hard"):
        _config(loss={"semi_hard": True})


@pytest.mark.parametrize(("epochs", "steps"), [(0.25, 6), (1.5, 33)])  # 22 steps per epoch, rounded
def test_fractional_epochs(tmp_path: Path, epochs: float, steps: int) -> None:
    result = pretrain(_config(train={"epochs": epochs, "diagnostics_every": 0}), tmp_path, progress=False)
    assert (result.step, result.total_steps) == (steps, steps)
    assert result.epoch == int(epochs)  # a partial last epoch is not counted as done
    assert result.passes == pytest.approx(steps / 22)  # but the passes over the data are
