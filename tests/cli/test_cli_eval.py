"""The eval command's protocols and their flags on the CIFAR-10 subset: the numbers simclr.evaluate gives,
the defaults, the solvers and the refusals."""

import json
from pathlib import Path

import numpy as np
import pytest

from simclr.cli import main


@pytest.mark.parametrize("protocol", ["knn", "linear"])
def test_eval_json(env: dict, protocol: str, capsys) -> None:
    capsys.readouterr()
    assert main(["eval", protocol, "--checkpoint", str(env["run"]), "--data", env["archive"], "--json",
                 "--quiet", "--cache-dir", env["cache"]]) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0.0 <= out["top1"] <= out["top5"] <= 1.0 and 0.0 <= out["mean_class_top1"] <= 1.0
    assert out["top1"] > 0.12  # 10 classes: above chance even after two epochs on 500 images
    assert out["train_images"] == 500 and out["test_images"] == 200 and out["streamed"] is False


def test_simclr_evaluate_gives_the_commands_numbers(env: dict, capsys) -> None:
    import simclr
    from simclr.errors import InputError

    capsys.readouterr()
    assert main(["eval", "knn", "--checkpoint", str(env["run"]), "--data", env["archive"], "--json",
                 "--quiet", "--cache-dir", env["cache"], "--k", "20"]) == 0
    cli = json.loads(capsys.readouterr().out)
    api = simclr.evaluate(env["run"], env["archive"], "knn", k=20, cache_dir=env["cache"], progress=False)
    assert api == cli
    with pytest.raises(InputError, match="knn takes no option 'solver'"):
        simclr.evaluate(env["run"], env["archive"], "knn", solver="sgd")
    with pytest.raises(InputError, match="unknown protocol 'knnn'"):
        simclr.evaluate(env["run"], env["archive"], "knnn")
    with pytest.raises(InputError, match="transforms: choose from"):
        simclr.evaluate(env["run"], env["archive"], "probe", transforms="rotation,warp")
    with pytest.raises(InputError, match="label_fraction must be in"):
        simclr.evaluate(env["run"], env["archive"], "finetune", label_fraction=1.5)
    for bad in (-1, 2.5, True):
        with pytest.raises(InputError, match="steps must be a whole number >= 0"):
            simclr.evaluate(env["run"], env["archive"], "transfer", steps=bad)
    with pytest.raises(InputError, match="learning rates must be > 0"):
        simclr.evaluate(env["run"], env["archive"], "transfer", finetune_grid="0/0")
    with pytest.raises(InputError, match="holdout must be a fraction"):
        simclr.evaluate(env["run"], env["archive"], "knn", holdout=-0.1)
    for bad, why in (({"k": 2.5}, "k must be a whole number > 0, got 2.5"),
                     ({"k": "five"}, "k must be a whole"),
                     ({"batch_size": "x"}, "batch_size must be a whole number"),
                     ({"device": "tpu"}, "device must be auto, cpu, cuda or cuda:N, got 'tpu'")):
        with pytest.raises(InputError, match=why):
            simclr.evaluate(env["run"], env["archive"], "knn", **bad)
    for args, why in (((None, env["archive"]), "checkpoint must be a path, got None"),
                      ((env["run"], None), "data is required"),
                      ((env["run"], 5), "data must be a dataset name")):
        with pytest.raises(InputError, match=why):
            simclr.evaluate(*args, "knn")
    with pytest.raises(InputError, match="path must be a path, got None"):
        simclr.load_index(None)
    for workers in (-1, 100_000, 1.5):
        with pytest.raises(InputError, match="workers must be a whole number from 0 to 128"):
            simclr.evaluate(env["run"], env["archive"], "knn", workers=workers)
    with pytest.raises(InputError, match="in_memory must be auto, true or false"):
        simclr.evaluate(env["run"], env["archive"], "knn", in_memory="maybe")
    # features read from the files batch by batch: the same pixels
    streamed = simclr.evaluate(env["run"], env["archive"], "knn", k=20, cache_dir=env["cache"],
                               progress=False, in_memory=False)
    assert streamed.pop("streamed") is True and api.pop("streamed") is False and streamed == api


def test_simclr_eval_passes_its_flags_to_simclr_evaluate(env: dict, capsys) -> None:
    """The command calls simclr.evaluate with the protocol's options from its flags: the same result."""
    import simclr
    from simclr.files import json_text

    capsys.readouterr()
    assert main(["eval", "linear", "--checkpoint", str(env["run"]), "--data", env["archive"], "--json",
                 "--quiet", "--cache-dir", env["cache"], "--solver", "sgd", "--epochs", "2", "--batch-size",
                 "64"]) == 0
    cli = json.loads(capsys.readouterr().out)
    api = simclr.evaluate(env["run"], env["archive"], "linear", solver="sgd", epochs=2, batch_size=64,
                          cache_dir=env["cache"], progress=False)
    assert json.loads(json_text(api)) == cli and (cli["solver"], cli["epochs"]) == ("sgd", 2)


def test_eval_flags_default_to_simclr_evaluate_defaults() -> None:
    """Each schema's defaults are its generated flags' defaults, and the flags left alone give the schema's
    options."""
    import dataclasses

    from simclr.cli import build_parser
    from simclr.cli.parser import protocol_options
    from simclr.evaluation.options import PROTOCOLS

    negated = {"linear": "no_linear", "baseline": "no_baseline"}
    for protocol, schema in PROTOCOLS.items():
        args = build_parser().parse_args(["eval", protocol, "--checkpoint", "c", "--data", "d"])
        for option in dataclasses.fields(schema):
            name, default = option.name, option.default
            flag = getattr(args, negated.get(name, name))
            value = not flag if name in negated else flag
            if name == "transforms":
                value = tuple(value.split(","))
            assert value == default, (protocol, name)
        assert schema(**protocol_options(args)) == schema(), protocol


def test_every_eval_flag_reaches_its_protocol() -> None:
    import dataclasses

    from simclr.cli import build_parser
    from simclr.evaluation.options import PROTOCOLS

    def choices(parser, dest: str) -> dict:
        return next(a for a in parser._actions if a.dest == dest).choices

    reading = {"help", "checkpoint", "data", "image_size", "holdout", "eval_crop", "in_memory", "data_root",
               "cache_dir", "device", "batch_size", "workers", "quiet", "json"}
    negated = {"no_linear": "linear", "no_baseline": "baseline"}
    protocols = choices(choices(build_parser(), "command")["eval"], "protocol")
    assert list(protocols) == list(PROTOCOLS)
    for name, parser in protocols.items():
        flags = {negated.get(a.dest, a.dest) for a in parser._actions} - reading
        options = {f.name for f in dataclasses.fields(PROTOCOLS[name])}
        assert flags == options, name  # no flag accepted and ignored, no option without a flag


def test_finetune_epochs_default_to_the_papers(monkeypatch) -> None:
    import simclr
    from simclr.evaluation import runners
    from simclr.evaluation.options import finetune_epochs

    assert [finetune_epochs(f) for f in (0.005, 0.01, 0.0101, 0.1, 1.0)] == [60, 60, 30, 30, 30]
    seen = []
    monkeypatch.setattr(runners, "finetune_eval", lambda ckpt, setup, fraction, spec, **kw: seen.append(spec))
    for fraction, epochs in ((0.01, None), (0.1, None), (0.01, 7)):
        simclr.evaluate("run", "data", "finetune", label_fraction=fraction, epochs=epochs)
    assert [s.epochs for s in seen] == [60, 30, 7]
    # the learning rate: the paper's 0.05 x BatchSize / 256 (Appendix B.5), unless given
    simclr.evaluate("run", "data", "finetune", batch_size=1024)
    simclr.evaluate("run", "data", "finetune", lr=0.3)
    assert [s.lr for s in seen] == [0.05] * 3 + [0.2, 0.3]


def test_eval_linear_sgd_solver(env: dict, capsys) -> None:
    capsys.readouterr()
    assert main(["eval", "linear", "--checkpoint", str(env["run"]), "--data", env["archive"], "--json",
                 "--quiet", "--cache-dir", env["cache"], "--solver", "sgd", "--epochs", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["solver"] == "sgd" and 0.0 <= out["top1"] <= out["top5"] <= 1.0


def test_eval_linear_augmented_solver(env: dict, capsys, monkeypatch) -> None:
    from simclr.evaluation import protocols

    specs = []
    real = protocols.finetune
    monkeypatch.setattr(protocols, "finetune", lambda *a, **k: specs.append(a[5]) or real(*a, **k))
    capsys.readouterr()
    assert main(["eval", "linear", "--checkpoint", str(env["run"]), "--data", env["archive"], "--json",
                 "--quiet", "--cache-dir", env["cache"], "--solver", "augmented", "--epochs", "3",
                 "--batch-size", "128"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["solver"], out["epochs"], out["lr"]) == ("augmented", 3, 0.05)  # 0.1 x 128 / 256
    assert ((out["train_images"], out["test_images"]) == (500, 200)
            and 0.0 <= out["top1"] <= out["top5"] <= 1.0)
    assert len(specs) == 1 and specs[0].frozen and specs[0].augment and specs[0].weight_decay == 0.0
    # the encoder is checked unchanged afterwards (protocols.check_frozen raises otherwise)


def test_eval_linear_weight_decay_grid(env: dict, capsys) -> None:
    from simclr.evaluation.linear import PAPER_WEIGHT_DECAYS

    base = ["eval", "linear", "--checkpoint", str(env["run"]), "--data", env["archive"], "--json", "--quiet",
            "--cache-dir", env["cache"]]
    capsys.readouterr()
    assert main([*base, "--weight-decays", "paper"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["weight_decays_tried"] == 45 and out["weight_decay"] in PAPER_WEIGHT_DECAYS
    assert main([*base, "--weight-decays", "0.5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["weight_decays_tried"], out["weight_decay"]) == (1, 0.5)
    assert main([*base, "--weight-decays", "lots"]) == 2
    err = capsys.readouterr().err.strip()
    assert "weight decays: 'default', 'paper' or comma-separated numbers" in err and "\n" not in err
    assert main([*base, "--weight-decays", "paper", "--solver", "sgd"]) == 2  # a grid the solver would ignore
    assert "weight_decays is the lbfgs solver's grid; the sgd solver uses none" in capsys.readouterr().err
    assert main([*base, "--epochs", "2"]) == 2  # epochs the lbfgs fit would ignore
    assert "epochs is for the sgd and augmented solvers" in capsys.readouterr().err
    assert main([*base, "--epochs", "2", "--solver", "sgd"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 2


def test_eval_crop_flag(env: dict, tmp_path: Path, capsys) -> None:
    args = ["embed", "--checkpoint", str(env["run"]), "--data", env["archive"], "--split", "test", "--quiet",
            "--cache-dir", env["cache"]]
    assert main([*args, "--out", str(tmp_path / "whole.npz")]) == 0
    assert main([*args, "--out", str(tmp_path / "centre.npz"), "--eval-crop", "0.75"]) == 0
    with np.load(tmp_path / "whole.npz") as whole, np.load(tmp_path / "centre.npz") as centre:
        assert whole["features"].shape == centre["features"].shape
        assert not np.allclose(whole["features"], centre["features"])  # the central 24 of 32, resized to 32
    capsys.readouterr()
    assert main(["eval", "knn", "--checkpoint", str(env["run"]), "--data", env["archive"], "--quiet",
                 "--eval-crop", "0"]) == 2
    assert "eval_crop must be in (0, 1]" in capsys.readouterr().err


def test_eval_probe_rows(env: dict, capsys) -> None:
    capsys.readouterr()
    assert main(["eval", "probe", "--checkpoint", str(env["run"]), "--data", env["archive"], "--json",
                 "--quiet", "--cache-dir", env["cache"], "--epochs", "2", "--transforms",
                 "rotation,color_vs_gray"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["transform"] for r in rows] == ["rotation", "color_vs_gray"]
    assert all(0.0 <= r["h_top1"] <= 1.0 and 0.0 <= r["z_top1"] <= 1.0 for r in rows)
    assert main(["eval", "probe", "--checkpoint", str(env["run"]), "--data", env["archive"], "--quiet",
                 "--transforms", "warp"]) == 2


def test_eval_compare_table(env: dict, capsys) -> None:
    capsys.readouterr()
    assert main(["eval", "compare", "--checkpoint", str(env["run"] / "last.pt"), "--data", env["archive"],
                 "--json", "--quiet", "--cache-dir", env["cache"]]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["features"] for r in rows] == ["raw pixels", "random-init encoder", "learned h"]
    assert rows[0]["dim"] == 3 * 32 * 32 and rows[2]["dim"] == 64
