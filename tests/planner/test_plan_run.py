"""``simclr pretrain`` without a recipe plans one from timed trial steps, says it, saves it in the run's
config (so --resume and a rerun with that config reproduce it), keeps the settings given, and fits the budget;
the paper's settings stay one flag away."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from simclr.cli import main
from simclr.config import Config
from simclr.config_io import config_to_dict, load_config
from simclr.planner import trials
from simclr.planner.choose import DataProfile, DeviceProfile, Shape
from simclr.planner.trials import choose_precision, measure, time_step


def _steps(run: Path) -> list[int]:
    return [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(x)]


def test_a_bare_run_plans_says_and_saves_its_recipe(mini_archive: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(mini_archive), "--out", str(run), "--time-budget", "0.4",
                 "--device", "cpu", "--set", "train.precision=fp32"]) == 0
    err = capsys.readouterr().err
    block = err[err.index("plan (--recipe auto):"):]
    assert "500 images of 32 px" in block and "  why        measured" in block
    assert "yours      train.precision=fp32" in block
    network = re.search(r"network    resnet18(?: x([\d.]+))?, (\d+)-px views of 32-px images, batch 256",
                        block)
    assert network, block
    width, view = float(network.group(1) or 1.0), int(network.group(2))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["model"]["width"], saved["data"]["view_size"] or 32, saved["optim"]["base_lr"],
            saved["loss"]["temperature"]) == (width, view, 3.0, 0.1)  # the plan printed is the one saved
    assert 0 < saved["train"]["time_budget"] < 0.4  # the trial steps came out of the budget
    assert saved["train"]["precision"] == "fp32"  # a setting given is kept
    # the saved config reproduces the plan: a rerun with it trains the same first steps
    again = tmp_path / "again"
    assert main(["pretrain", "--data", str(mini_archive), "--out", str(again), "--config",
                 str(run / "config.yaml"), "--set", "train.time_budget=0", "--epochs", "0.2", "--quiet"]) == 0
    assert load_config(again / "config.yaml").model == load_config(run / "config.yaml").model


def test_the_plan_keeps_a_given_network_and_the_paper_is_one_flag_away(mini_archive: Path, tmp_path: Path,
                                                                       capsys) -> None:
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(mini_archive), "--out", str(run), "--arch", "resnet34",
                 "--set", "model.width=0.125", "--epochs", "0.1", "--device", "cpu"]) == 0
    saved = load_config(run / "config.yaml")
    assert (saved.model.arch, saved.model.width, saved.train.epochs) == ("resnet34", 0.125, 0.1)
    assert "yours      model.arch=resnet34, model.width=0.125, train.epochs=0.1" in capsys.readouterr().err
    paper = tmp_path / "paper"
    assert main(["pretrain", "--data", str(mini_archive), "--out", str(paper), "--recipe", "paper",
                 "--set", "model.width=0.125", "--batch-size", "25", "--epochs", "0.1",
                 "--device", "cpu"]) == 0
    assert "plan (" not in capsys.readouterr().err
    defaults = config_to_dict(Config())
    got = config_to_dict(load_config(paper / "config.yaml"))
    assert got["optim"] == defaults["optim"] and got["loss"] == defaults["loss"]  # the paper's, as they are
    assert got["model"]["arch"] == "resnet50" and got["augment"] == defaults["augment"]
    assert main(["pretrain", "--data", str(mini_archive), "--out", str(tmp_path / "x"), "--recipe", "auto",
                 "--config", str(paper / "config.yaml")]) == 2
    assert "--recipe auto and --config both name the recipe" in capsys.readouterr().err


def test_trials_measure_cheapest_first_and_stop_when_epochs_run_out() -> None:
    cpu = DeviceProfile("cpu", "test", 2, False, 16 * 2**30)
    data = DataProfile(500, 16)
    shapes = [Shape(0, "resnet18", 0.125, 16, 8, 64), Shape(1, "resnet18", 0.25, 16, 16, 64),
              Shape(2, "resnet18", 1.0, 16, 16, 64)]
    base = load_config(None, ["train.precision=fp32"])
    lines: list[str] = []
    costs = measure(base, shapes, data, cpu, torch.device("cpu"), budget_s=0.5, allowance_s=30,
                    tell=lines.append)
    assert list(costs) == [shapes[0]]  # half a second lets no shape see enough images: the cheapest only
    assert costs[shapes[0]].step_s > 0 and lines and "s a step" in lines[0]
    costs = measure(base, shapes[:2], data, cpu, torch.device("cpu"), budget_s=None, allowance_s=30)
    assert list(costs) == shapes[:2] and costs[shapes[0]].step_s < costs[shapes[1]].step_s * 1.5


def test_a_trial_step_is_timed_once_steady() -> None:
    config = load_config(None, ["train.precision=fp32", "model.arch=resnet18", "model.width=0.125",
                                "data.image_size=16", "train.batch_size=16"])
    seconds = time_step(config, torch.device("cpu"), pairs=8)
    assert 0 < seconds < 5


@pytest.mark.parametrize("budget", ["0.4"])
def test_the_progress_bar_never_promises_more_than_the_budget(mini_archive: Path, tmp_path: Path, capsys,
                                                              budget: str) -> None:
    """The bar's total is the plan's from the first step: no ETA beyond the budget is ever printed."""
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(mini_archive), "--out", str(run), "--time-budget", budget,
                 "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    etas = [part.split("<")[1].split(",")[0] for part in err.split("pretrain:")[1:] if "<" in part]
    assert etas and all(_seconds(eta) <= float(budget) * 60 for eta in etas if eta != "?"), etas
    assert _steps(run)


def _seconds(text: str) -> float:
    parts = [float(p) for p in text.split(":")]
    return sum(p * 60**i for i, p in enumerate(reversed(parts)))


def test_a_planned_run_resumes_exactly(mini_archive: Path, tmp_path: Path) -> None:
    from simclr.api import planned_config
    from simclr.training.loop import pretrain

    config = planned_config(mini_archive, settings={"train.device": "cpu", "train.precision": "fp32",
                                                    "train.epochs": 3, "model.width": 0.25}, progress=False)
    assert config.model.width == 0.25 and config.optim.base_lr == 3.0  # the CPU plan, its width pinned
    pretrain(config, tmp_path / "whole", progress=False)
    assert pretrain(config, tmp_path / "parts", progress=False, stop_after_steps=1).step == 1
    pretrain(config, tmp_path / "parts", progress=False, resume=True)
    whole = {r: json.loads(x)["loss"] for r, x in zip(_steps(tmp_path / "whole"),
             [x for x in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines() if "loss" in x])}
    parts = {r: json.loads(x)["loss"] for r, x in zip(_steps(tmp_path / "parts"),
             [x for x in (tmp_path / "parts" / "metrics.jsonl").read_text().splitlines() if "loss" in x])}
    assert sorted(whole) == sorted(parts) and whole == pytest.approx(parts, rel=1e-6, abs=1e-6)


def test_the_precision_is_the_faster_in_trial_steps_where_the_cpu_has_bf16_units(monkeypatch) -> None:
    data, shape = DataProfile(500, 16), Shape(0, "resnet18", 0.125, 16, 8, 256)
    base, cpu = load_config(None, []), torch.device("cpu")
    timed: list[str] = []

    def fake(config: Config, device, pairs: int, limit_s: float = 30.0) -> float:
        timed.append(config.train.precision)
        assert pairs == 64  # the CPU trial's pairs, scaled to the batch
        return {"fp32": 0.2, "bf16": 0.1}[config.train.precision] * pairs / 256

    monkeypatch.setattr(trials, "time_step", fake)
    bf16_cpu = DeviceProfile("cpu", "test", 2, True, 16 * 2**30)
    name, why = choose_precision(base, shape, data, bf16_cpu, cpu, 5.0)
    assert (name, timed) == ("bf16", ["fp32", "bf16"]) and "0.1 s a step against fp32's 0.2 s" in why
    monkeypatch.setattr(trials, "time_step", lambda c, d, p, limit_s=30.0: {"fp32": 0.05, "bf16": 0.5}[
        c.train.precision])
    assert choose_precision(base, shape, data, bf16_cpu, cpu, 5.0)[0] == "fp32"  # measured, not assumed
    timed.clear()
    monkeypatch.setattr(trials, "time_step", fake)
    avx2 = DeviceProfile("cpu", "test", 2, False, 16 * 2**30)
    assert choose_precision(base, shape, data, avx2, cpu, 5.0)[0] == "fp32" and not timed  # no bf16 units
    assert choose_precision(base, shape, data, bf16_cpu, cpu, 5.0, {"train.precision": "bf16"}) \
        == ("bf16", "bf16 (given)") and not timed


def test_plan_only_saves_the_plan_and_trains_nothing(mini_archive: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(mini_archive), "--out", str(run), "--time-budget", "0.5",
                 "--device", "cpu", "--plan-only"]) == 0
    out, err = capsys.readouterr()
    assert "plan (--recipe auto)" in err and f"--config {run / 'config.yaml'} --out {run}" in out
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]  # no checkpoint, no metrics
    saved = load_config(str(run / "config.yaml"), [])
    # auto where the measured precision is what auto picks here (the config then suits other machines too)
    assert saved.model.width == 0.25 and saved.train.precision in ("auto", "fp32") \
        and saved.data.in_memory == "true" and 0 < saved.train.time_budget < 0.5
    assert main(["pretrain", "--data", str(mini_archive), "--out", str(run), "--config", "x.yaml",
                 "--plan-only"]) == 2
    assert "--plan-only plans a recipe" in capsys.readouterr().err


def test_a_saved_plan_trains_without_data_and_resumes_from_any_directory(mini_archive: Path, tmp_path: Path,
                                                                        capsys, monkeypatch) -> None:
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(mini_archive.parent)
    assert main(["pretrain", "--data", mini_archive.name, "--out", str(run), "--time-budget", "0.3",
                 "--device", "cpu", "--plan-only", "--quiet"]) == 0
    assert "plan (" not in capsys.readouterr().err  # --quiet drops the plan block
    plan = run / "config.yaml"
    assert load_config(str(plan), []).data.spec == str(mini_archive)  # absolute: usable from anywhere
    monkeypatch.chdir(elsewhere)
    assert main(["pretrain", "--out", str(run), "--resume"]) == 2
    assert f"is a saved plan: train it with simclr pretrain --config {plan} --out {run}" \
        in capsys.readouterr().err
    assert main(["pretrain", "--config", str(plan), "--out", str(run), "--epochs", "0.1", "--quiet"]) == 0
    assert "is replaced" not in capsys.readouterr().err  # the saved plan is the one trained
    assert main(["pretrain", "--out", str(run), "--resume", "--data", "ignored", "--quiet"]) == 0
    assert "--data, --config, --recipe, --set and other options are ignored" in capsys.readouterr().err
    assert main(["pretrain", "--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "x")]) == 2
    again = tmp_path / "again"
    assert main(["pretrain", "--data", str(mini_archive), "--out", str(again), "--plan-only", "--quiet",
                 "--time-budget", "0.3", "--device", "cpu"]) == 0
    assert main(["pretrain", "--data", str(mini_archive), "--out", str(again), "--recipe", "paper", "--set",
                 "model.width=0.125", "--batch-size", "25", "--epochs", "0.1", "--device", "cpu",
                 "--quiet"]) == 0
    assert f"the config.yaml {again} held before (a saved plan?) was replaced" in capsys.readouterr().err


def test_a_restarted_torchrun_worker_resumes_the_saved_plan_instead_of_planning(monkeypatch, tmp_path: Path,
                                                                                 mini_archive: Path) -> None:
    from simclr import api
    from simclr.errors import InputError

    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"saved by the worker that died")
    started: list[Path] = []
    monkeypatch.setattr(api, "planned_on_rank0", lambda *a: pytest.fail("planned again"))
    monkeypatch.setattr(api, "_run_pretrain", lambda config, out, resume, progress: started.append(out))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")
    api.pretrain(str(mini_archive), run, progress=False)
    assert started == [run]  # the training loop resumes from last.pt (tests/training/test_torchrun.py)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")  # a first attempt: the folder is another run's
    with pytest.raises(InputError, match="already holds a run"):
        api.pretrain(str(mini_archive), run, progress=False)


def test_data_is_saved_as_an_absolute_path_and_a_dataset_name_as_given(tmp_path: Path, monkeypatch) -> None:
    from simclr.config_io import data_spec

    (tmp_path / "photos").mkdir()
    (tmp_path / "cifar10").mkdir()  # runs kept in a folder named after the dataset
    monkeypatch.chdir(tmp_path)
    assert data_spec("photos") == str(tmp_path / "photos")
    assert data_spec("cifar10") == "cifar10" and data_spec("digits") == "digits"  # read by name
    assert data_spec("no-such-folder") == "no-such-folder"  # a missing path says so later, as given
    assert data_spec("https://example.com/x.tar.gz") == "https://example.com/x.tar.gz"
