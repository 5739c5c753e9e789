"""A run whose loss becomes NaN stops at once with one line (exit code 2), keeps its last good checkpoint and
never saves the NaN network; evaluating or embedding a checkpoint with non-finite weights is refused."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from simclr.cli import main
from simclr.runtime.checkpoint import load_checkpoint, save_checkpoint
from simclr.runtime.metrics import read_metrics
from simclr.training.loop import pretrain
from simclr.training.state import Diverged
from simclr.training.step import ContrastiveStep

from .test_pretrain import _config

PER_EPOCH = 1437 // 64  # digits' images at batch 64: 22 steps


@pytest.fixture
def nan_after(monkeypatch):
    """Make the network's weights NaN after ``n`` optimiser steps, as an exploding update would."""

    def install(n: int) -> None:
        real = ContrastiveStep.__call__
        calls = {"n": 0}

        def step(self, v1, v2):
            out = real(self, v1, v2)
            calls["n"] += 1
            if calls["n"] == n:
                model = getattr(self.model, "module", self.model)
                with torch.no_grad():
                    next(model.parameters()).fill_(math.nan)
            return out

        monkeypatch.setattr(ContrastiveStep, "__call__", step)

    return install


@pytest.mark.parametrize("log_every", [1, 50])  # caught at the next row, or at the epoch's end at the latest
def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path: Path, nan_after,
                                                                     log_every: int) -> None:
    config = _config(train={"epochs": 3, "log_every": log_every, "save_minutes": 0, "checkpoint_every": 1,
                            "diagnostics_every": 1})
    nan_after(PER_EPOCH + 3)  # in the second epoch
    refusal = (r"training diverged: the loss is nan by step \d+ .*"
               r"last\.pt \(its last good state\) is kept\. Start a new run with a lower rate")
    with pytest.raises(Diverged, match=refusal):
        pretrain(config, tmp_path, progress=False)
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["step"] == PER_EPOCH and all(torch.isfinite(t).all() for t in state["model"].values()
                                              if t.is_floating_point())
    assert not (tmp_path / "epoch_0002.pt").exists() and (tmp_path / "epoch_0001.pt").is_file()
    losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl") if "loss" in r]
    assert all(math.isfinite(v) for v in losses)  # no NaN row logged
    with pytest.raises(Diverged):  # resumed, it diverges the same way: the one line again
        nan_after(4)
        pretrain(config, tmp_path, progress=False, resume=True)


def test_the_command_says_it_in_one_line_with_exit_code_2(tmp_path: Path, nan_after, capsys) -> None:
    nan_after(2)
    code = main(["pretrain", "--data", "digits", "--out", str(tmp_path / "run"), "--recipe", "paper",
                 "--arch", "resnet18",
                 "--set", "model.width=0.125", "--set", "data.image_size=16", "--batch-size", "64",
                 "--epochs", "1", "--set", "train.precision=fp32", "--set", "optim.warmup_epochs=0",
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "training diverged" in err and "Traceback" not in err
    assert "nothing was saved" in err and not (tmp_path / "run" / "last.pt").exists()


def test_non_finite_weights_are_refused_by_eval_and_embed(tmp_path: Path, make_checkpoint, capsys) -> None:
    good = make_checkpoint(tmp_path / "good.pt")
    state = load_checkpoint(good)
    name = next(k for k, t in state["model"].items() if t.is_floating_point())
    state["model"][name] = torch.full_like(state["model"][name], math.inf)
    bad = tmp_path / "bad.pt"
    save_checkpoint(state, bad)
    capsys.readouterr()
    for argv in (["eval", "knn", "--checkpoint", str(bad), "--data", "digits"],
                 ["embed", "--checkpoint", str(bad), "--data", "digits", "--out", str(tmp_path / "e.npz")]):
        assert main([*argv, "--device", "cpu"]) == 2
        err = capsys.readouterr().err
        assert f"holds non-finite weights (NaN or infinity in 1 tensors, e.g. {name})" in err, err
        assert err.count("\n") == 1
    assert not (tmp_path / "e.npz").exists()
