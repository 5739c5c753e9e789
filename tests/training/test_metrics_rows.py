"""The metrics contract: every line of metrics.jsonl is a step's row with epoch, step, loss, lr and
views_per_s; the diagnostics and the kNN monitor's accuracy join the row of the step they were measured at,
also across an interruption and a resume."""

from pathlib import Path

import pytest

from simclr.config_io import build_config
from simclr.runtime.metrics import ROW_KEYS, knn_curve, read_metrics
from simclr.training.loop import pretrain
from simclr.training.monitor import KnnMonitor

from .test_pretrain import TINY as PRETRAIN_TINY

TINY = {**PRETRAIN_TINY, "train": {**PRETRAIN_TINY["train"], "epochs": 2, "log_every": 5, "knn_every": 1,
                                    "diagnostics_every": 1}}
PER_EPOCH = 1437 // 64  # 22 steps
DIAGNOSTICS = ("alignment", "uniformity", "effective_rank_h")
TRAIN_VALUES = ("loss", "contrastive_acc", "lr", "views_per_s")
STEPS = [5, 10, 15, 20, 22, 25, 30, 35, 40, 44]
"""Rows every 5 steps, and at the end of each epoch (where the diagnostics and kNN accuracy join them)."""


@pytest.fixture
def quick_knn(monkeypatch) -> list[int]:
    """A kNN monitor that returns at once (what is tested is where its values go); returns its calls."""
    calls: list[int] = []

    def knn(self, net):
        calls.append(1)
        return {"knn_top1": 0.5 + len(calls) / 100, "knn_top5": 0.9}

    monkeypatch.setattr(KnnMonitor, "__call__", knn)
    return calls


def _rows(run: Path) -> list[dict]:
    """The run's metrics rows, each checked to hold the five keys with numbers."""
    rows = read_metrics(run / "metrics.jsonl")
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == len(lines) and rows
    for row in rows:
        assert set(ROW_KEYS) <= set(row), row
        assert all(isinstance(row[k], (int, float)) for k in ROW_KEYS), row
    return rows


def test_every_row_has_the_training_keys_and_evaluations_join_their_step(tmp_path: Path, quick_knn) -> None:
    pretrain(build_config(TINY), tmp_path, progress=False)
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == STEPS  # one row per step: nothing on lines of its own
    evaluated = [r for r in rows if "knn_top1" in r]
    assert [(r["epoch"], r["step"]) for r in evaluated] == [(1, PER_EPOCH), (2, 2 * PER_EPOCH)]
    assert [r["knn_top1"] for r in evaluated] == [0.51, 0.52]
    assert [r["step"] for r in rows if all(k in r for k in DIAGNOSTICS)] == [PER_EPOCH, 2 * PER_EPOCH]
    assert all(("alignment" in r) == ("knn_top1" in r) for r in rows)
    assert [r["epoch"] for r in rows] == [1] * 5 + [2] * 5
    assert [(r["step"], r["knn_top1"]) for r in knn_curve(rows)] == [(22, 0.51), (44, 0.52)]


def test_an_interrupted_and_resumed_run_keeps_the_contract(tmp_path: Path, knn_cut_once) -> None:
    """Ctrl-C during the first kNN evaluation: the epoch's row is written without it (with its diagnostics);
    the resumed run evaluates first, in a row at the same step repeating the training values."""
    with pytest.raises(KeyboardInterrupt):
        pretrain(build_config(TINY), tmp_path, progress=False)
    first = _rows(tmp_path)
    assert [r["step"] for r in first] == STEPS[:5]
    assert "alignment" in first[-1] and "knn_top1" not in first[-1]
    pretrain(build_config(TINY), tmp_path, resume=True, progress=False)
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == STEPS[:5] + STEPS[4:]
    again = rows[5]
    assert again["knn_top1"] == 0.5 and again["epoch"] == 1
    assert {k: again[k] for k in TRAIN_VALUES} == {k: first[-1][k] for k in TRAIN_VALUES}
    assert [(r["step"], r["knn_top1"]) for r in knn_curve(rows)] == [(22, 0.5), (44, 0.5)]


def test_a_run_stopped_mid_window_and_resumed_keeps_the_contract(tmp_path: Path, quick_knn) -> None:
    pretrain(build_config(TINY), tmp_path, progress=False, stop_after_steps=13)
    assert [r["step"] for r in _rows(tmp_path)] == [5, 10]  # (stopping is not a log point)
    pretrain(build_config(TINY), tmp_path, resume=True, progress=False)
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == STEPS
    assert [r["step"] for r in rows if "knn_top1" in r and "alignment" in r] == [PER_EPOCH, 2 * PER_EPOCH]
