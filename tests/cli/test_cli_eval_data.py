"""The eval command on its data: splits streamed from their files, label subsets, class folders without
splits or with unreadable or unmatched classes, and strict JSON."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from simclr.cli import main


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
    """train/ and test/ of three classes of 16x16 PNGs (noisy red, green or blue dominant), and one corrupt
    train file."""
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
    """--in-memory false: transfer's networks train on (and are scored on) images read from their files batch
    by batch, its linear evaluation sees the same pixels as in memory; the probes give the very rows of
    memory."""
    from simclr.data.streamed import StreamedImages
    from simclr.evaluation import transfer

    given: list = []
    real = transfer.finetune
    monkeypatch.setattr(transfer, "finetune", lambda *a, **k: given.append(a[3]) or real(*a, **k))
    data = _colour_splits(tmp_path / "colours")
    base = ["--checkpoint", str(env["run"]), "--data", str(data), "--json", "--quiet", "--cache-dir",
            env["cache"], "--batch-size", "8"]
    out = {}
    for mode in ("true", "false"):
        capsys.readouterr()
        assert main(["eval", "transfer", *base, "--in-memory", mode, "--steps", "2",
                     "--finetune-grid", "0.1/0,1e-3"]) == 0
        out[mode] = json.loads(capsys.readouterr().out)
    memory, streamed = out["true"], out["false"]
    assert streamed["streamed"] and not memory["streamed"]
    for key in ("train_images", "labelled_images", "test_images", "skipped", "validation_images",
                "linear_top1", "linear_top5", "linear_mean_class_top1", "linear_weight_decay"):
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
    # of the images that could be read
    assert runs[1]["label_fraction"] == round(runs[1]["labelled_images"] / 36, 6)
    (data / "train" / "blue" / "00.png").write_bytes(b"not an image either")  # the first batch loses an image
    rows = {}
    for mode, batch in (("true", "8"), ("false", "8"), ("false", "5")):
        capsys.readouterr()
        assert main(["eval", "probe", *base[:-1], batch, "--in-memory", mode, "--epochs", "2",
                     "--transforms", "rotation,noise"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert ((out["train_images"], out["test_images"], out["skipped"], out["streamed"])
                == (35, 18, 2, mode == "false"))
        rows[mode, batch] = out["rows"]
    assert [r["transform"] for r in rows["true", "8"]] == ["rotation", "noise"]
    assert rows["false", "8"] == rows["true", "8"] == rows["false", "5"]  # each image drawn by its own seed


def test_a_class_whose_training_images_are_all_unreadable_is_noted(env: dict, tmp_path: Path, capsys) -> None:
    data = _colour_splits(tmp_path / "colours")
    for image in (data / "train" / "red").iterdir():
        image.write_bytes(b"not an image")
    capsys.readouterr()
    assert main(["eval", "compare", "--checkpoint", str(env["run"]), "--data", str(data), "--quiet",
                 "--no-linear", "--k", "5"]) == 0
    err = capsys.readouterr().err
    assert err.count("note: 6 test images of 1 class(es) whose every training image is unreadable (red) "
                     "count as errors") == 1  # once for the three encoders compared


def _strict(text: str) -> Any:
    """JSON as strict readers (JSON.parse, jq) take it: NaN and Infinity are refused."""
    def refuse(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_output_is_standard_json_without_nan(env: dict, tmp_path: Path, capsys) -> None:
    data = _colour_splits(tmp_path / "colours")
    capsys.readouterr()
    assert main(["eval", "compare", "--checkpoint", str(env["run"]), "--data", str(data), "--quiet",
                 "--no-linear", "--k", "5", "--json"]) == 0
    rows = _strict(capsys.readouterr().out)["rows"]
    assert rows and all(r["linear_top1"] is None and 0 <= r["knn_top1"] <= 1 for r in rows)


def test_eval_finetune_saves_and_reuses_the_subset(env: dict, tmp_path: Path, capsys) -> None:
    subset = tmp_path / "subset.json"
    args = ["eval", "finetune", "--checkpoint", str(env["run"]), "--data", env["archive"], "--json",
            "--quiet", "--cache-dir", env["cache"], "--label-fraction", "0.1", "--epochs", "2",
            "--batch-size", "25", "--subset-file", str(subset)]
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
    assert (third["top1"] == first["top1"] and third["labelled_images"] == 50
            and third["label_fraction"] == 0.1)
    names.write_text("airplane/9999.jpg\n")
    assert main(named) == 2
    assert "not in the train split" in capsys.readouterr().err
    assert main([a for a in args[:-2] if a != "--json"] + ["--label-fraction", "0.001", "--no-baseline"]) == 0
    text = capsys.readouterr().out  # one image of each class is more than 0.1%: the text says so
    assert text.startswith("finetune (10 labelled images, 2% of the train split; 0.1% asked, at least one "
                           "per class")
    subset.write_text("{broken")
    assert main(args) == 2
    assert "subset" in capsys.readouterr().err.lower()


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
    # two colours, two classes
    assert (out["train_images"], out["test_images"]) == (16, 4) and out["top1"] == 1.0
    assert main([*args, "--holdout", "1.5"]) == 2
    assert "holdout must be a fraction in [0, 1)" in capsys.readouterr().err


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
    assert "note: 3 test images of 1 class(es) with no training image (c) count as errors" \
        in capsys.readouterr().err
