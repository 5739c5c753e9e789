"""The command-line contract end to end on the CIFAR-10 subset, and bad input: one line, exit code 2."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image

from simclr.cli import main
from simclr.config_io import build_config
from simclr.data.sources import load_source


def test_pretrain_writes_the_run_folder(env: dict) -> None:
    run = env["run"]
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["epochs"] == 2 and saved["train"]["seed"] == 3
    assert saved["data"]["image_size"] == 32 and saved["model"]["cifar_stem"] is True
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in lines if "loss" in r]
    assert [r["step"] for r in train] == list(range(1, 11))  # 500 images / 100 = 5 steps x 2 epochs
    assert all({"epoch", "step", "loss", "lr", "views_per_s"} <= set(r) for r in train)
    assert [r["epoch"] for r in lines if "effective_rank_h" in r] == [1, 2]  # diagnostics every epoch
    assert (run / "last.pt").is_file() and (run / "skipped.txt").read_text() == ""


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
    assert main(["eval", "knn", "--checkpoint", str(env["run"]), "--data", env["archive"], "--json", "--quiet",
                 "--cache-dir", env["cache"], "--k", "20"]) == 0
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
    for bad, why in (({"k": 2.5}, "k must be a whole number > 0, got 2.5"), ({"k": "five"}, "k must be a whole"),
                     ({"batch_size": "x"}, "batch_size must be a whole number"),
                     ({"device": "tpu"}, "device must be auto, cpu, cuda or cuda:N, got 'tpu'")):
        with pytest.raises(InputError, match=why):
            simclr.evaluate(env["run"], env["archive"], "knn", **bad)
    for args, why in (((None, env["archive"]), "checkpoint must be a path, got None"),
                      ((env["run"], None), "data is required"), ((env["run"], 5), "data must be a dataset name")):
        with pytest.raises(InputError, match=why):
            simclr.evaluate(*args, "knn")
    with pytest.raises(InputError, match="path must be a path, got None"):
        simclr.load_index(None)
    for workers in (-1, 100_000, 1.5):
        with pytest.raises(InputError, match="workers must be a whole number from 0 to 128"):
            simclr.evaluate(env["run"], env["archive"], "knn", workers=workers)
    with pytest.raises(InputError, match="in_memory must be auto, true or false"):
        simclr.evaluate(env["run"], env["archive"], "knn", in_memory="maybe")
    streamed = simclr.evaluate(env["run"], env["archive"], "knn", k=20, cache_dir=env["cache"], progress=False,
                               in_memory=False)  # features read from the files batch by batch: the same pixels
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
    assert main(["eval", "linear", "--checkpoint", str(env["run"]), "--data", env["archive"], "--json", "--quiet",
                 "--cache-dir", env["cache"], "--solver", "sgd", "--epochs", "5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["solver"] == "sgd" and 0.0 <= out["top1"] <= out["top5"] <= 1.0


def test_eval_linear_augmented_solver(env: dict, capsys, monkeypatch) -> None:
    from simclr.evaluation import protocols

    specs = []
    real = protocols.finetune
    monkeypatch.setattr(protocols, "finetune", lambda *a, **k: specs.append(a[5]) or real(*a, **k))
    capsys.readouterr()
    assert main(["eval", "linear", "--checkpoint", str(env["run"]), "--data", env["archive"], "--json", "--quiet",
                 "--cache-dir", env["cache"], "--solver", "augmented", "--epochs", "3", "--batch-size", "128"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["solver"], out["epochs"], out["lr"]) == ("augmented", 3, 0.05)  # 0.1 x 128 / 256
    assert (out["train_images"], out["test_images"]) == (500, 200) and 0.0 <= out["top1"] <= out["top5"] <= 1.0
    assert len(specs) == 1 and specs[0].frozen and specs[0].augment and specs[0].weight_decay == 0.0
    # the encoder is checked unchanged afterwards (protocols.check_frozen raises otherwise)


def test_eval_streams_large_splits_from_their_files(env: dict, capsys, monkeypatch) -> None:
    """--in-memory false: fine-tuning and the augmented linear solver read the splits batch by batch (what an
    ImageNet-sized split needs) and give the same counts as in memory."""
    from simclr.data.streamed import StreamedImages
    from simclr.evaluation import protocols

    given = []
    real = protocols.finetune
    monkeypatch.setattr(protocols, "finetune", lambda *a, **k: given.append(a[3]) or real(*a, **k))
    base = ["--checkpoint", str(env["run"]), "--data", env["archive"], "--json", "--quiet", "--cache-dir",
            env["cache"], "--batch-size", "64", "--in-memory", "false"]
    capsys.readouterr()
    assert main(["eval", "linear", *base, "--solver", "augmented", "--epochs", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["streamed"] and (out["train_images"], out["test_images"], out["skipped"]) == (500, 200, 0)
    assert 0.0 <= out["top1"] <= out["top5"] <= 1.0
    assert main(["eval", "finetune", *base, "--label-fraction", "0.2", "--epochs", "1", "--no-baseline"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["streamed"] and (out["labelled_images"], out["test_images"]) == (100, 200)
    assert len(given) == 2 and all(isinstance(x, StreamedImages) for x in given)
    assert len(given[1]) == 100 and sorted(given[1].labels.bincount().tolist()) == [10] * 10  # class-balanced
    with pytest.raises(SystemExit) as refused:  # argparse's one-line refusal
        main(["eval", "finetune", *base[:-1], "maybe"])
    assert refused.value.code == 2


def _colour_splits(root: Path) -> Path:
    """train/ and test/ of three classes of 16x16 PNGs (noisy red, green or blue dominant), and one corrupt train
    file."""
    gen = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 6)):
        for c, name in enumerate(("blue", "green", "red")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(count):
                x = gen.random((16, 16, 3)) * 0.5
                x[..., 2 - c] += 0.5
                Image.fromarray((x * 255).round().astype(np.uint8)).save(folder / f"{k:02d}.png")
    (root / "train" / "red" / "broken.jpg").write_bytes(b"not an image")
    return root


def test_transfer_and_probe_stream_their_splits(env: dict, tmp_path: Path, capsys, monkeypatch) -> None:
    """--in-memory false: transfer's networks train on (and are scored on) images read from their files batch by
    batch, its linear evaluation sees the same pixels as in memory; the probes give the very rows of memory."""
    from simclr.data.streamed import StreamedImages
    from simclr.evaluation import transfer

    given: list = []
    real = transfer.finetune
    monkeypatch.setattr(transfer, "finetune", lambda *a, **k: given.append(a[3]) or real(*a, **k))
    data = _colour_splits(tmp_path / "colours")
    base = ["--checkpoint", str(env["run"]), "--data", str(data), "--json", "--quiet", "--cache-dir", env["cache"],
            "--batch-size", "8"]
    out = {}
    for mode in ("true", "false"):
        capsys.readouterr()
        assert main(["eval", "transfer", *base, "--in-memory", mode, "--steps", "2",
                     "--finetune-grid", "0.1/0,1e-3"]) == 0
        out[mode] = json.loads(capsys.readouterr().out)
    memory, streamed = out["true"], out["false"]
    assert streamed["streamed"] and not memory["streamed"]
    for key in ("train_images", "labelled_images", "test_images", "skipped", "validation_images", "linear_top1",
                "linear_top5", "linear_mean_class_top1", "linear_weight_decay"):
        assert streamed[key] == memory[key], key
    assert (streamed["train_images"], streamed["test_images"], streamed["skipped"]) == (36, 18, 1)
    assert streamed["labelled_images"] == 36  # the corrupt file is left out of the labelled images
    held = streamed["validation_images"]
    assert [isinstance(x, StreamedImages) for x in given] == [False] * 6 + [True] * 6
    assert [len(x) for x in given[6:]] == [36 - held] * 2 + [36] + [36 - held] * 2 + [36]  # grid, then all
    assert all(0.0 <= streamed[f"{n}_top1"] <= 1.0 for n in ("finetune", "scratch"))
    subset, runs = tmp_path / "subset.json", []
    for _ in range(2):  # drawn and saved, then read again
        assert main(["eval", "transfer", *base, "--steps", "1", "--label-fraction", "0.5", "--subset-file",
                     str(subset)]) == 0
        runs.append(json.loads(capsys.readouterr().out))
    assert runs[0]["label_fraction"] == 0.5 and runs[1]["labelled_images"] == runs[0]["labelled_images"]
    assert runs[1]["label_fraction"] == round(runs[1]["labelled_images"] / 36, 6)  # of the images that could be read
    (data / "train" / "blue" / "00.png").write_bytes(b"not an image either")  # the first batch loses an image
    rows = {}
    for mode, batch in (("true", "8"), ("false", "8"), ("false", "5")):
        capsys.readouterr()
        assert main(["eval", "probe", *base[:-1], batch, "--in-memory", mode, "--epochs", "2",
                     "--transforms", "rotation,noise"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert (out["train_images"], out["test_images"], out["skipped"], out["streamed"]) == (35, 18, 2, mode == "false")
        rows[mode, batch] = out["rows"]
    assert [r["transform"] for r in rows["true", "8"]] == ["rotation", "noise"]
    assert rows["false", "8"] == rows["true", "8"] == rows["false", "5"]  # each image drawn by its own seed


def test_a_class_whose_training_images_are_all_unreadable_is_noted(env: dict, tmp_path: Path, capsys) -> None:
    data = _colour_splits(tmp_path / "colours")
    for image in (data / "train" / "red").iterdir():
        image.write_bytes(b"not an image")
    capsys.readouterr()
    assert main(["eval", "compare", "--checkpoint", str(env["run"]), "--data", str(data), "--quiet", "--no-linear",
                 "--k", "5"]) == 0
    err = capsys.readouterr().err
    assert err.count("note: 6 test images of 1 class(es) whose every training image is unreadable (red) count as "
                     "errors") == 1  # once for the three encoders compared


def _strict(text: str) -> Any:
    """JSON as strict readers (JSON.parse, jq) take it: NaN and Infinity are refused."""
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_output_is_standard_json_without_nan(env: dict, tmp_path: Path, capsys) -> None:
    data = _colour_splits(tmp_path / "colours")
    capsys.readouterr()
    assert main(["eval", "compare", "--checkpoint", str(env["run"]), "--data", str(data), "--quiet", "--no-linear",
                 "--k", "5", "--json"]) == 0
    rows = _strict(capsys.readouterr().out)["rows"]
    assert rows and all(r["linear_top1"] is None and 0 <= r["knn_top1"] <= 1 for r in rows)


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


def test_eval_finetune_saves_and_reuses_the_subset(env: dict, tmp_path: Path, capsys) -> None:
    subset = tmp_path / "subset.json"
    args = ["eval", "finetune", "--checkpoint", str(env["run"]), "--data", env["archive"], "--json", "--quiet",
            "--cache-dir", env["cache"], "--label-fraction", "0.1", "--epochs", "2", "--batch-size", "25",
            "--subset-file", str(subset)]
    capsys.readouterr()
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["labelled_images"] == 50 and subset.is_file()  # 10% of 50 per class x 10 classes
    assert first["labelled_share"] == 0.1
    assert first["epochs"] == 2
    assert 0.0 <= first["top1"] <= first["top5"] <= 1.0 and 0.0 <= first["baseline_top1"] <= 1.0
    saved = json.loads(subset.read_text())
    assert saved["fraction"] == 0.1 and len(saved["indices"]) == 50
    assert main(args + ["--no-baseline"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["top1"] == first["top1"] and "baseline_top1" not in second  # same subset, same seed
    # the same images named one per line (the paper's 1percent.txt format; here class/file, as names repeat)
    from simclr.data.sources import load_source

    paths = load_source(env["archive"], "train").paths
    names = tmp_path / "names.txt"
    names.write_text("".join("/".join(paths[i].split("/")[-2:]) + "\n" for i in saved["indices"]))
    named = [*args[:-1], str(names), "--no-baseline", "--label-fraction", "0.5"]
    assert main(named) == 0
    third = json.loads(capsys.readouterr().out)
    assert third["top1"] == first["top1"] and third["labelled_images"] == 50 and third["label_fraction"] == 0.1
    names.write_text("airplane/9999.jpg\n")
    assert main(named) == 2
    assert "not in the train split" in capsys.readouterr().err
    assert main([a for a in args[:-2] if a != "--json"] + ["--label-fraction", "0.001", "--no-baseline"]) == 0
    text = capsys.readouterr().out  # one image of each class is more than 0.1%: the text says so
    assert text.startswith("finetune (10 labelled images, 2% of the train split; 0.1% asked, at least one per class")
    subset.write_text("{broken")
    assert main(args) == 2
    assert "subset" in capsys.readouterr().err.lower()


def test_eval_probe_rows(env: dict, capsys) -> None:
    capsys.readouterr()
    assert main(["eval", "probe", "--checkpoint", str(env["run"]), "--data", env["archive"], "--json", "--quiet",
                 "--cache-dir", env["cache"], "--epochs", "2", "--transforms", "rotation,color_vs_gray"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["transform"] for r in rows] == ["rotation", "color_vs_gray"]
    assert all(0.0 <= r["h_top1"] <= 1.0 and 0.0 <= r["z_top1"] <= 1.0 for r in rows)
    assert main(["eval", "probe", "--checkpoint", str(env["run"]), "--data", env["archive"], "--quiet",
                 "--transforms", "warp"]) == 2


def test_eval_transfer(env: dict, capsys, monkeypatch) -> None:
    from simclr import build

    decoded: list[int] = []
    real = build.decode_cached
    monkeypatch.setattr(build, "decode_cached", lambda source, *a, **k: decoded.append(len(source))
                        or real(source, *a, **k))
    from simclr.evaluation import frozen

    fitted: list[tuple[int, int]] = []
    real_linear = frozen.linear_eval
    monkeypatch.setattr(frozen, "linear_eval", lambda x, y, *a, **k: fitted.append((len(x),
                                                                                    int(y.bincount().min())))
                        or real_linear(x, y, *a, **k))
    capsys.readouterr()
    assert main(["eval", "transfer", "--checkpoint", str(env["run"]), "--data", "digits", "--json", "--quiet",
                 "--cache-dir", env["cache"], "--epochs", "1", "--label-fraction", "0.2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["data"] == "digits" and out["test_images"] == 360 and out["train_images"] == 1437
    # the linear classifier learns from the fine-tuned networks' labelled fifth, class-balanced
    assert fitted[0][0] == out["labelled_images"] and 0.19 < out["labelled_images"] / 1437 < 0.22
    assert fitted[0][1] >= 25  # every class ~a fifth of its ~145 train images
    assert out["validation"] == "a tenth of each class" and 0.09 < out["validation_images"] / fitted[0][0] < 0.12
    assert all(0.0 <= out[k] <= 1.0 for k in ("linear_top1", "finetune_top1", "scratch_top1"))
    assert sorted(decoded) == [360, 1437]  # each split decoded once for linear evaluation and fine-tuning


def test_fine_tuning_trains_on_the_whole_side_and_transfer_linear_sees_it(env: dict, tmp_path: Path, capsys,
                                                                          monkeypatch) -> None:
    """With a centre crop for evaluation (data.eval_crop 0.5 in the checkpoint), fine-tuning's random crops draw
    from the whole shorter side and its test images are the centre crops; transfer's linear evaluation sees the whole
    side, as the paper's Appendix B.8, unless --eval-crop says otherwise."""
    import torch

    from simclr import build
    from simclr.evaluation import protocols, transfer

    state = torch.load(env["run"] / "last.pt", weights_only=True)
    state["config"]["data"]["eval_crop"] = 0.5
    ckpt = tmp_path / "centre.pt"
    torch.save(state, ckpt)
    decoded: list[tuple[int, float]] = []
    real = build.decode_cached
    monkeypatch.setattr(build, "decode_cached", lambda source, *a, **k: decoded.append((len(source), k["crop"]))
                        or real(source, *a, **k))
    trained: list[torch.Tensor] = []
    tested: list[torch.Tensor] = []
    for module in (protocols, transfer):
        real_finetune, real_score = module.finetune, module.evaluate_classifier
        monkeypatch.setattr(module, "finetune", lambda encoder, dim, c, x, y, spec, f=real_finetune, **k:
                            trained.append(x) or f(encoder, dim, c, x, y, spec, **k))
        monkeypatch.setattr(module, "evaluate_classifier", lambda model, x, *a, f=real_score, **k: tested.append(x)
                            or f(model, x, *a, **k))
    base = ["--checkpoint", str(ckpt), "--data", "digits", "--json", "--quiet", "--cache-dir", env["cache"]]
    assert main(["eval", "finetune", *base, "--epochs", "1", "--label-fraction", "0.1", "--no-baseline"]) == 0
    labelled = json.loads(capsys.readouterr().out)["labelled_images"]
    assert 130 < labelled < 160  # a tenth of 1,437, class by class
    assert sorted(decoded) == [(labelled, 1.0), (360, 0.5)]  # only the labelled train images are decoded
    whole = build.decode(build_config({"data": {"spec": "digits", "image_size": 32}}), load_source("digits", "train"),
                         32).images
    centre = build.decode(build_config({"data": {"spec": "digits", "image_size": 32}}), load_source("digits", "test"),
                          32, crop=0.5).images
    assert any(torch.equal(trained[0][0], whole[i]) for i in range(len(whole)))  # a whole-side training image
    assert torch.equal(tested[0], centre)  # scored on the centre crops
    decoded.clear()
    trained.clear()
    tested.clear()
    assert main(["eval", "transfer", *base, "--steps", "1", "--label-fraction", "0.2"]) == 0
    assert sorted(decoded) == [(360, 0.5), (360, 1.0), (1437, 1.0)]  # the test split whole for the linear fit too
    assert len(trained) == len(tested) == 2  # fine-tuned and from scratch: both trained on whole sides ...
    assert all(any(torch.equal(x[0], whole[i]) for i in range(len(whole))) for x in trained)
    assert all(torch.equal(x, centre) for x in tested)  # ... and scored on the centre crops
    decoded.clear()
    assert main(["eval", "transfer", *base, "--steps", "1", "--label-fraction", "0.2", "--eval-crop", "0.5"]) == 0
    assert sorted(decoded) == [(360, 0.5), (1437, 0.5), (1437, 1.0)]  # the linear fit as asked
    capsys.readouterr()


def test_eval_transfer_searches_a_grid_and_trains_scratch_longer(env: dict, capsys, monkeypatch) -> None:
    from simclr.evaluation import transfer

    runs: list[tuple] = []
    real = transfer.finetune
    monkeypatch.setattr(transfer, "finetune", lambda encoder, dim, c, x, y, spec, **k: runs.append(
        (len(x), spec.epochs, spec.lr, spec.weight_decay, spec.bn_momentum)) or real(encoder, dim, c, x, y, spec, **k))
    capsys.readouterr()
    assert main(["eval", "transfer", "--checkpoint", str(env["run"]), "--data", "digits", "--json", "--quiet",
                 "--cache-dir", env["cache"], "--epochs", "1", "--label-fraction", "0.2",
                 "--finetune-grid", "0.02,0.2/0,1e-3"]) == 0
    out = json.loads(capsys.readouterr().out)
    labelled, held = runs[-1][0], out["validation_images"]
    assert 0 < held < labelled and [r[0] for r in runs] == [labelled - held] * 4 + [labelled] + \
        [labelled - held] * 4 + [labelled]  # four cells on the rest, then the chosen one on all, twice
    assert [r[1] for r in runs] == [1] * 5 + [2] * 5  # from scratch: twice the epochs
    for name in ("finetune", "scratch"):
        rows = out[f"{name}_grid"]
        assert [(r["lr"], r["weight_decay"]) for r in rows] == [(0.02, 0.0), (0.02, 1e-3), (0.2, 0.0), (0.2, 1e-3)]
        best = max(rows, key=lambda r: r["val"])  # max returns the first of equals, as the search
        assert (out[f"{name}_lr"], out[f"{name}_weight_decay"]) == pytest.approx((best["lr"], best["weight_decay"]))
    assert runs[1][3] == pytest.approx(1e-3 / 0.02)  # the paper's weight decay divided by the learning rate
    assert all(r[4] == pytest.approx(0.1) for r in runs)  # a few steps per epoch: the 0.9 floor, TensorFlow's sense
    assert main(["eval", "transfer", "--checkpoint", str(env["run"]), "--data", "digits", "--quiet",
                 "--cache-dir", env["cache"], "--epochs", "1", "--label-fraction", "0.05",
                 "--finetune-grid", "0.1/0"]) == 0
    assert "; picked on held-out images: fine-tuning lr 0.1 weight decay 0, from scratch lr 0.1 weight decay 0" \
        in capsys.readouterr().out
    assert main(["eval", "transfer", "--checkpoint", str(env["run"]), "--data", "digits", "--quiet",
                 "--finetune-grid", "0.1"]) == 2
    assert "fine-tuning grid: none, paper or LRS/WDS" in capsys.readouterr().err


def test_eval_compare_table(env: dict, capsys) -> None:
    capsys.readouterr()
    assert main(["eval", "compare", "--checkpoint", str(env["run"] / "last.pt"), "--data", env["archive"],
                 "--json", "--quiet", "--cache-dir", env["cache"]]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["features"] for r in rows] == ["raw pixels", "random-init encoder", "learned h"]
    assert rows[0]["dim"] == 3 * 32 * 32 and rows[2]["dim"] == 64


def test_embed_npz(env: dict, tmp_path: Path) -> None:
    out = tmp_path / "emb" / "test.npz"
    assert main(["embed", "--checkpoint", str(env["run"]), "--data", env["archive"], "--split", "test",
                 "--out", str(out), "--z", "--quiet", "--cache-dir", env["cache"]]) == 0
    with np.load(out) as f:
        assert f["features"].shape == (200, 64) and f["features"].dtype == np.float32
        assert f["z"].shape == (200, 32)
        assert f["labels"].shape == (200,) and set(f["labels"]) == set(range(10))
        assert f["paths"][0].startswith("test/")
        meta = json.loads(str(f["meta"]))
    assert meta["checkpoint"] == str((env["run"] / "last.pt").resolve()) and meta["split"] == "test"
    assert meta["image_size"] == 32 and meta["data"] == str(Path(env["archive"]).resolve()) and meta["z"]


def test_embed_unlabeled_folder_gives_minus_one(env: dict, tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (i * 40, 10, 10)).save(folder / f"{i}.png")
    out = tmp_path / "flat.npz"
    assert main(["embed", "--checkpoint", str(env["run"]), "--data", str(folder), "--out", str(out),
                 "--quiet"]) == 0
    with np.load(out) as f:
        assert list(f["labels"]) == [-1, -1, -1] and len(f["paths"]) == 3


def test_eval_of_a_class_folder_without_splits_takes_a_holdout(env: dict, tmp_path: Path, capsys) -> None:
    from PIL import Image

    folder = tmp_path / "classes"
    for c in range(2):
        for i in range(10):
            (folder / f"class{c}").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (32, 32), (200 * c, 10 + i, 10)).save(folder / f"class{c}" / f"{i}.png")
    args = ["eval", "knn", "--checkpoint", str(env["run"]), "--data", str(folder), "--quiet", "--json"]
    capsys.readouterr()
    assert main(args) == 2  # the run's data.holdout is 0: there is no test split
    assert "no test/ subfolder" in capsys.readouterr().err
    assert main([*args, "--holdout", "0.2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["train_images"], out["test_images"]) == (16, 4) and out["top1"] == 1.0  # two colours, two classes
    assert main([*args, "--holdout", "1.5"]) == 2
    assert "holdout must be a fraction in [0, 1)" in capsys.readouterr().err


def test_resume_continues_the_run(env: dict, tmp_path: Path, capsys) -> None:
    run = env["run"]
    before = (run / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert main(["pretrain", "--out", str(run), "--resume", "--quiet"]) == 0  # --data: the saved config's
    assert (run / "metrics.jsonl").read_text() == before  # already complete: nothing added
    captured = capsys.readouterr()
    assert captured.out.startswith("done: ") and "nan" not in captured.out and ", last loss " in captured.out
    assert "is already finished (10/10 steps): nothing to do" in captured.err
    assert main(["pretrain", "--data", env["archive"], "--out", str(run), "--resume", "--epochs", "5",
                 "--quiet"]) == 0
    assert "saved config" in capsys.readouterr().err


def _bad(args: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("simclr: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_bad_inputs_one_line_exit_2(env: dict, tmp_path: Path, capsys, make_checkpoint) -> None:
    run, data = str(env["run"]), env["archive"]
    out = str(tmp_path / "r")
    assert "no such dataset" in _bad(["pretrain", "--data", str(tmp_path / "nope"), "--out", out], capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images" in _bad(["pretrain", "--data", str(empty), "--out", out], capsys)
    assert "unknown config key" in _bad(["pretrain", "--data", data, "--out", out, "--set", "optim.lrr=1"],
                                        capsys)
    assert "expected a number" in _bad(["pretrain", "--data", data, "--out", out, "--set", "optim.base_lr=x"],
                                       capsys)
    assert "must be > 0" in _bad(["pretrain", "--data", data, "--out", out, "--epochs", "0"], capsys)
    assert "config file not found" in _bad(["pretrain", "--data", data, "--out", out, "--config", "x.yaml"],
                                           capsys)
    assert "is a folder: name a YAML file" in _bad(["pretrain", "--data", data, "--out", out, "--config",
                                                    str(empty)], capsys)
    assert "larger than the dataset" in _bad(["pretrain", "--data", data, "--out", out, "--config",
                                              str(env["cfg"]), "--batch-size", "4096", "--quiet"], capsys)
    assert "already holds a run" in _bad(["pretrain", "--data", data, "--out", run], capsys)
    assert "needs --data" in _bad(["pretrain", "--out", out], capsys)
    assert not Path(out).exists()  # a refused run leaves no folder behind
    assert "is a file, not a run folder" in _bad(["pretrain", "--data", data, "--out", str(env["cfg"])], capsys)
    last = env["run"] / "last.pt"
    before = last.read_bytes()
    for command in (["embed", "--checkpoint", run, "--data", data, "--quiet"],
                    ["export", "--checkpoint", run, "--format", "simclr"],
                    ["import", str(last)]):
        assert "is the file being read" in _bad([*command, "--out", str(last)], capsys)
    other = make_checkpoint(tmp_path / "other.pt")
    assert "is a run's checkpoint" in _bad(["export", "--checkpoint", str(other), "--out", str(last)], capsys)
    assert "is a run's checkpoint" in _bad(["search", "--index", str(tmp_path / "any.npz"), "--query", "q.jpg",
                                            "--out", str(last)], capsys)
    assert last.read_bytes() == before  # the checkpoint survives every attempt
    assert "is a folder" in _bad(["embed", "--checkpoint", run, "--data", data, "--out", str(tmp_path)], capsys)
    assert "checkpoint not found" in _bad(["eval", "knn", "--checkpoint", str(tmp_path / "x.pt"),
                                           "--data", data], capsys)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"junk")
    assert "cannot read checkpoint" in _bad(["eval", "knn", "--checkpoint", str(junk), "--data", data], capsys)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.png").write_bytes((Path(data)).read_bytes()[:0] or b"\x89PNG broken")
    assert "no readable images" in _bad(["embed", "--checkpoint", run, "--data", str(flat), "--out",
                                         str(tmp_path / "e.npz"), "--quiet"], capsys)
    assert not (tmp_path / "e.npz").exists()
    corrupt = tmp_path / "bad.tar.gz"
    corrupt.write_bytes(b"\x1f\x8b not really gzip")
    assert "archive" in _bad(["eval", "knn", "--checkpoint", run, "--data", str(corrupt),
                              "--cache-dir", env["cache"]], capsys)


def test_unlabeled_eval_is_refused(env: dict, tmp_path: Path, capsys) -> None:
    from PIL import Image

    flat = tmp_path / "unl"
    (flat / "train").mkdir(parents=True)
    (flat / "test").mkdir()
    for part in ("train", "test"):
        Image.new("RGB", (32, 32)).save(flat / part / "a.png")
    assert "needs labels" in _bad(["eval", "knn", "--checkpoint", str(env["run"]), "--data", str(flat)], capsys)


def test_console_script_exit_code_and_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "simclr", "pretrain", "--data", str(tmp_path / "missing"),  # noqa: PLW1510
                           "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("loader", ["in memory", "worker processes"])
def test_sigterm_saves_the_run_and_exits_143(env: dict, tmp_path: Path, loader: str) -> None:
    """`kill` (SIGTERM) stops a run the way Ctrl-C does: last.pt saved, one line, exit 128 + 15. With data-loading
    workers the signal goes to the whole process group (as `timeout`, a scheduler or a terminal sends it): the
    workers leave the stop to the main process rather than die and fail it while it saves."""
    import os
    import signal
    import time

    from simclr.runtime.checkpoint import load_checkpoint

    run = tmp_path / "run"
    args = [sys.executable, "-m", "simclr", "pretrain", "--data", env["archive"], "--out", str(run),
            "--config", str(env["cfg"]), "--device", "cpu", "--quiet"]
    steps_per_epoch = 5
    if loader == "worker processes":  # 31 steps an epoch: the workers are alive when the signal comes
        args += ["--set", "data.in_memory=false", "--set", "data.workers=2", "--batch-size", "16"]
        steps_per_epoch = 500 // 16
    job = subprocess.Popen([*args, "--epochs", "500"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        metrics = run / "metrics.jsonl"
        while not (metrics.is_file() and metrics.read_text().count("\n") >= 3) and job.poll() is None:
            assert time.monotonic() < deadline, "no training steps logged in time"
            time.sleep(0.2)
        os.killpg(job.pid, signal.SIGTERM)
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 143, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("simclr: terminated")
    saved = load_checkpoint(run)
    assert saved["step"] >= 3 and saved["position"] == saved["step"] - steps_per_epoch * saved["epoch"]
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r][-1] == saved["step"]  # the last step's loss is logged too


def test_interrupt_messages_name_what_to_do(monkeypatch, capsys, tmp_path: Path) -> None:
    from simclr.cli import commands

    def stop(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "run_eval", stop)
    monkeypatch.setattr(commands, "run_pretrain", stop)
    assert main(["eval", "knn", "--checkpoint", "x", "--data", "y"]) == 130
    assert capsys.readouterr().err.strip() == "simclr: interrupted"
    out = tmp_path / "r"
    assert main(["pretrain", "--data", "y", "--out", str(out)]) == 130
    assert capsys.readouterr().err.strip() == "simclr: interrupted (before training began: nothing saved; run the " \
        "command again)"  # e.g. while the images were being decoded
    out.mkdir()
    (out / "last.pt").write_bytes(b"")
    assert main(["pretrain", "--data", "y", "--out", str(out)]) == 130
    assert f"(continue from last.pt with: simclr pretrain --out {out} --resume)" in capsys.readouterr().err


def test_a_device_out_of_memory_is_one_line_naming_what_to_lower(monkeypatch, capsys) -> None:
    import torch

    from simclr.cli import commands

    def oom(args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
                                     "79.19 GiB of which 1.2 GiB is free. Including non-PyTorch memory, ...")

    def other(args):
        raise RuntimeError("something else")

    monkeypatch.setattr(commands, "run_pretrain", oom)
    monkeypatch.setattr(commands, "run_eval", oom)
    assert main(["pretrain", "--data", "y", "--out", "runs/r"]) == 1
    assert capsys.readouterr().err.strip() == "simclr: error: CUDA out of memory. Tried to allocate 2.00 GiB: lower " \
        "--batch-size, or set train.grad_cache_chunk (gradient caching: the same gradients, a chunk of views in " \
        "memory at a time)"
    assert main(["eval", "knn", "--checkpoint", "x", "--data", "y"]) == 1
    assert capsys.readouterr().err.strip().endswith("2.00 GiB: lower --batch-size")
    monkeypatch.setattr(commands, "run_eval", other)
    with pytest.raises(RuntimeError, match="something else"):  # other errors are not dressed up as this one
        main(["eval", "knn", "--checkpoint", "x", "--data", "y"])


def test_every_eval_flag_reaches_its_protocol() -> None:
    import dataclasses

    from simclr.cli import build_parser
    from simclr.evaluation.options import PROTOCOLS

    def choices(parser, dest: str) -> dict:
        return next(a for a in parser._actions if a.dest == dest).choices

    reading = {"help", "checkpoint", "data", "image_size", "holdout", "eval_crop", "in_memory", "data_root", "cache_dir",
               "device", "batch_size", "workers", "quiet", "json"}
    negated = {"no_linear": "linear", "no_baseline": "baseline"}
    protocols = choices(choices(build_parser(), "command")["eval"], "protocol")
    assert list(protocols) == list(PROTOCOLS)
    for name, parser in protocols.items():
        flags = {negated.get(a.dest, a.dest) for a in parser._actions} - reading
        options = {f.name for f in dataclasses.fields(PROTOCOLS[name])}
        assert flags == options, name  # no flag accepted and ignored, no option without a flag


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


def test_help_does_not_load_torch() -> None:
    """`simclr --help` and every command's --help answer in a moment: parsing arguments never imports torch (the
    names it needs from torch-importing modules are repeated in the CLI and checked here)."""
    from simclr.ablation import STUDIES
    from simclr.cli.parser import STUDY_NAMES
    from simclr.cli.search import DUPLICATES_THRESHOLD, DUPLICATES_Z_THRESHOLD
    from simclr.retrieval.duplicates import DEFAULT_THRESHOLD, DEFAULT_Z_THRESHOLD

    assert STUDY_NAMES == tuple(STUDIES) and DUPLICATES_THRESHOLD == DEFAULT_THRESHOLD
    assert DUPLICATES_Z_THRESHOLD == DEFAULT_Z_THRESHOLD
    code = ("import sys; from simclr.cli import build_parser; build_parser().parse_args(['ablate', 'head', '--data', "
            "'x', '--out', 'y']); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_argument_errors_are_one_line(capsys) -> None:
    for argv in (["pretrainn"], ["eval", "knn", "--checkpoint", "x"], ["eval", "finetune", "--in-memory", "maybe"]):
        with pytest.raises(SystemExit) as refused:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert refused.value.code == 2 and "\n" not in err and "error: " in err and err.endswith("--help)"), err


def test_train_and_test_class_folders_must_meet(env: dict, tmp_path: Path, capsys) -> None:
    from PIL import Image

    for root, layout in (("apart", {"train": "ab", "test": "xy"}), ("partly", {"train": "ab", "test": "ac"})):
        for split, classes in layout.items():
            for c in classes:
                (tmp_path / root / split / c).mkdir(parents=True)
                for i in range(3):
                    Image.new("RGB", (16, 16), (80 * i, 0, 0)).save(tmp_path / root / split / c / f"{i}.png")
    args = ["eval", "knn", "--checkpoint", str(env["run"]), "--quiet", "--k", "3", "--data"]
    capsys.readouterr()
    assert main([*args, str(tmp_path / "apart")]) == 2
    assert "no test class has a training image (test classes x, y)" in capsys.readouterr().err
    assert main([*args, str(tmp_path / "partly")]) == 0
    assert "note: 3 test images of 1 class(es) with no training image (c) count as errors" in capsys.readouterr().err
