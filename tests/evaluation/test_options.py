"""The evaluation protocols' schemas: checked and frozen when made, the defaults of their generated flags,
one-line errors, importable without torch; the evaluation setup's data settings over a checkpoint's."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from simclr.errors import InputError
from simclr.evaluation.options import (
    CHECKS,
    PROTOCOLS,
    TRANSFORMS,
    FinetuneOptions,
    KnnOptions,
    LinearOptions,
    ProbeOptions,
    TransferOptions,
    protocol_options,
)


def test_the_schemas_import_without_torch() -> None:
    code = ("import json, sys; import simclr.evaluation.options, simclr.cli; simclr.cli.build_parser(); "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy'))))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert json.loads(out) == []


def test_every_protocol_has_its_runner_and_every_option_its_check() -> None:
    from simclr.evaluation.runners import RUNNERS

    assert set(RUNNERS) == set(PROTOCOLS.values())
    for name, schema in PROTOCOLS.items():
        assert schema.name == name and schema.describe()
        assert {f.name for f in dataclasses.fields(schema)} <= set(CHECKS), name


def test_defaults_are_checked_frozen_and_given_back_as_checked() -> None:
    for schema in PROTOCOLS.values():
        options = schema()
        assert options == protocol_options(schema.name, {})
        with pytest.raises(dataclasses.FrozenInstanceError):
            options.seed = 1  # type: ignore[attr-defined]
    assert KnnOptions().describe() == "weighted kNN on frozen h (k=200, T=0.1, cosine)"
    assert ProbeOptions(transforms="noise,rotation").transforms == ("noise", "rotation")
    assert ProbeOptions().transforms == TRANSFORMS
    assert LinearOptions(weight_decays=[0.1, 0]).weight_decays == (0.1, 0)  # as given, frozen
    assert LinearOptions(solver="sgd").solver_epochs == 90
    assert LinearOptions(solver="sgd", epochs=3).solver_epochs == 3
    assert (FinetuneOptions(label_fraction=0.01).train_epochs(), FinetuneOptions().peak_lr(512)) == (60, 0.1)
    assert TransferOptions(epochs=None, lr=None).train_epochs() == 30  # None: the paper's semi-supervised
    assert hash(FinetuneOptions()) == hash(FinetuneOptions())


@pytest.mark.parametrize(("protocol", "given", "message"), [
    ("knnn", {}, "unknown protocol 'knnn': choose from knn, linear, compare, finetune, transfer, probe"),
    ("knn", {"solver": "sgd"}, "knn takes no option 'solver' (it takes k, temperature)"),
    ("knn", {"k": 0}, "k must be a whole number > 0, got 0"),
    ("knn", {"k": None}, "k must be a whole number > 0, got None"),
    ("compare", {"temperature": "hot"}, "temperature must be a number > 0, got 'hot'"),
    ("compare", {"linear": 1}, "linear must be True or False, got 1"),
    ("linear", {"solver": "adam"}, "solver must be lbfgs, sgd or augmented, got 'adam'"),
    ("linear", {"epochs": 5}, "epochs is for the sgd and augmented solvers; lbfgs fits to convergence"),
    ("linear", {"solver": "sgd", "weight_decays": "paper"}, "weight_decays is the lbfgs solver's grid"),
    ("linear", {"weight_decays": "lots"}, "weight decays: 'default', 'paper' or comma-separated numbers"),
    ("finetune", {"label_fraction": 0}, "label_fraction must be in (0, 1], got 0"),
    ("finetune", {"seed": -1}, "seed must be a whole number >= 0, got -1"),
    ("finetune", {"subset_file": ""}, "subset_file must be a path, got ''"),
    ("finetune", {"baseline": "no"}, "baseline must be True or False, got 'no'"),
    ("transfer", {"steps": 1.5}, "steps must be a whole number >= 0, got 1.5"),
    ("transfer", {"finetune_grid": 3}, "finetune_grid must be none, paper or 'LRS/WDS' (a string), got 3"),
    ("transfer", {"finetune_grid": "0.1"}, "fine-tuning grid: none, paper or LRS/WDS"),
    ("probe", {"transforms": "rotation,warp"}, "transforms: choose from rotation, color_vs_gray, noise"),
    ("probe", {"transforms": 3}, "transforms: a comma-separated string or a list of names, got 3"),
])
def test_bad_options_are_one_line_input_errors(protocol: str, given: dict, message: str) -> None:
    with pytest.raises(InputError) as refused:
        protocol_options(protocol, given)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_the_first_bad_option_in_the_checks_order_is_reported() -> None:
    with pytest.raises(InputError, match="epochs must be"):  # epochs is checked before label_fraction
        protocol_options("finetune", {"label_fraction": 2, "epochs": 0})


def test_the_commands_help_gives_the_schemas_defaults(capsys) -> None:
    from simclr.cli import main

    with pytest.raises(SystemExit):
        main(["eval", "knn", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "neighbours that vote (default 200)" in text and "/ temperature) (default 0.1)" in text
    with pytest.raises(SystemExit):
        main(["eval", "linear", "--help"])
    assert "(default 90; lbfgs fits to convergence)" in " ".join(capsys.readouterr().out.split())


def test_a_bad_flag_is_one_line_and_exit_code_2(capsys) -> None:
    from simclr.cli import main

    for argv, message in ((["eval", "knn", "--k", "0"], "k must be a whole number > 0, got 0"),
                          (["eval", "probe", "--transforms", "warp"], "transforms: choose from"),
                          (["eval", "linear", "--epochs", "3"], "epochs is for the sgd and augmented")):
        assert main([*argv, "--checkpoint", "nowhere", "--data", "nothing"]) == 2  # before any reading
        err = capsys.readouterr().err
        assert err.startswith(f"simclr: error: {message}") and err.count("\n") == 1, err


def test_an_eval_setup_gives_only_its_settings_over_the_checkpoints() -> None:
    from simclr.config import DataConfig
    from simclr.evaluation.setup import EvalSetup, eval_setup

    run = DataConfig(spec="train-set", root="/data", image_size=32, holdout=0.2, eval_crop=0.875, workers=8)
    setup = eval_setup("~/photos", 0, "cpu", 64, 0, False, holdout=0.1, in_memory=True)
    merged = setup.data_config(run)
    assert merged.spec.endswith("photos") and not merged.spec.startswith("~")
    assert (merged.root, merged.image_size, merged.eval_crop) == ("/data", 32, 0.875)  # the checkpoint's
    assert (merged.holdout, merged.in_memory, merged.workers) == (0.1, "true", 8)  # workers: the run's
    assert (setup.data.workers, setup.batch_size) == (0, 64)  # this evaluation's
    assert (setup.chosen("eval_crop"), setup.chosen("holdout")) == (None, 0.1)
    moved = setup.with_data(image_size=48, holdout=None)
    assert moved.data_config(run).image_size == 48 and moved.data_config(run).holdout == 0.2
    assert moved.data.workers == 0 and moved.data_config(run).in_memory == "true"
    assert EvalSetup.of("x").data_config(run) == dataclasses.replace(run, spec="x")
