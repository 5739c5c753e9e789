"""``simclr ablate``: cells are real pretraining runs, resumable, reported with the paper's numbers."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from simclr.ablation.runner import AblateOptions, StudyResult, cell_config, load_rows
from simclr.ablation.studies import STUDIES
from simclr.cli import main
from simclr.training.loop import pretrain

SMALL = ["--set", "data.view_size=16", "--set", "train.batch_size=128", "--epochs", "1", "--quiet"]


def ablate(archive: Path, out: Path, study: str, *extra: str) -> int:
    return main(["ablate", study, "--data", str(archive), "--out", str(out), *SMALL, *extra])


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_every_cell_is_a_valid_config_that_sets_its_parameters(name: str, mini_archive: Path,
                                                               tmp_path: Path) -> None:
    study = STUDIES[name]
    options = AblateOptions(str(mini_archive), tmp_path, epochs=2)
    configs = [cell_config(study, c, options) for c in study.cells]
    assert len({c.key for c in study.cells}) == len(study.cells)
    for cell, config in zip(study.cells, configs):
        assert config.model.arch == "resnet18" and config.model.width == 0.25  # the scaled-down base
        for section, values in cell.overrides.items():
            for key, value in values.items():
                got = getattr(getattr(config, section), key)
                if isinstance(value, dict):  # model.head
                    assert all(getattr(got, k) == v for k, v in value.items())
                else:
                    assert got == (tuple(value) if isinstance(value, list) else value)
        assert config.train.epochs == 2 * cell.budget_scale


def test_study_shapes_match_the_paper() -> None:
    pairs = STUDIES["augment-pairs"]
    assert len(pairs.cells) == 49 and pairs.cell("crop+color").paper == 56.3 \
        and pairs.cell("color+crop").paper == 55.8
    assert pairs.cell("crop").overrides == {"augment": {"ops": ["crop"]}} \
        and pairs.base["augment"]["asymmetric"]
    assert max(c.paper for c in pairs.cells if c.params["first"] != c.params["second"]) == 56.3
    assert [c.paper for c in STUDIES["temperature"].cells] == [59.7, 64.4, 60.7, 58.0, 57.2, 57.0]
    assert STUDIES["loss"].cell("nt_xent").paper == 63.9
    assert STUDIES["head"].eval_z and {c.params["head"] for c in STUDIES["head"].cells} == {"none", "linear",
                                                                                            "nonlinear"}


def test_cells_run_report_and_are_not_recomputed(mini_archive: Path, tmp_path: Path, capsys) -> None:
    out, docs = tmp_path / "study", tmp_path / "docs"
    assert ablate(mini_archive, out, "loss", "--cells", "nt_xent,margin_triplet", "--report-dir", str(docs),
                  "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["cell"] for r in report["rows"]] == ["margin_triplet", "nt_xent"]  # the study's order
    assert report["missing"] == ["nt_logistic", "nt_logistic-sh", "margin_triplet-sh"]
    assert report["checks"][0]["agrees"] is None  # never a verdict on missing cells
    assert report["checks"][0]["verdict"] == "pending"
    row = report["rows"][1]
    assert row["paper_top1"] == 63.9 and 0 <= row["linear_top1"] <= 100 and 0 <= row["knn_top1"] <= 100
    assert row["steps"] == 3 and row["eval_images"] == "500/200" and row["train_loss"] > 0
    lines = (out / "results.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("cell,loss,semi_hard,paper_top1,linear_top1")
    md = (docs / "loss.md").read_text()
    assert "| nt_xent | nt_xent | no | 63.9 |" in md and "pending" in md and "![loss](loss.png)" in md
    assert (docs / "loss.png").read_bytes()[:4] == b"\x89PNG"
    metrics = (out / "cells" / "nt_xent" / "metrics.jsonl").read_text()
    result = (out / "cells" / "nt_xent" / "result.json").read_text()

    assert ablate(mini_archive, out, "loss", "--cells", "nt_xent") == 0  # finished: nothing retrained
    assert (out / "cells" / "nt_xent" / "metrics.jsonl").read_text() == metrics
    assert (out / "cells" / "nt_xent" / "result.json").read_text() == result
    assert "2/5 cells done" in capsys.readouterr().out
    floor = json.loads((out / "baseline.json").read_text())  # the untrained encoder, evaluated the same way
    assert 0 <= floor["linear_top1"] <= 100 and f"linear top-1 {floor['linear_top1']:.2f}%" in \
        (docs / "loss.md").read_text()


def test_an_interrupted_cell_continues_from_its_checkpoint(mini_archive: Path, tmp_path: Path,
                                                           capsys) -> None:
    study, out = STUDIES["temperature"], tmp_path / "study"
    options = AblateOptions(str(mini_archive), out, overrides=("data.view_size=16", "train.batch_size=128",
                                                           "train.log_every=1"), epochs=1,
                            cells=("l2-t0.5",), progress=False)
    cell = study.cell("l2-t0.5")
    pretrain(cell_config(study, cell, options), out / "cells" / cell.key, progress=False, stop_after_steps=2)
    assert ablate(mini_archive, out, "temperature", "--cells", "l2-t0.5", "--json") == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert row["steps"] == 3  # 2 before the interruption, 1 after: the schedule was not restarted
    steps = [json.loads(x)["step"]
             for x in (out / "cells" / cell.key / "metrics.jsonl").read_text().splitlines()
             if "contrastive_acc" in x]
    assert steps == [1, 2, 3]  # one run continued, not restarted from step 1


def test_bad_input_is_one_line_and_exit_2(mini_archive: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "study"
    assert ablate(mini_archive, out, "loss", "--cells", "nope") == 2
    assert "not a cell of loss" in capsys.readouterr().err
    assert ablate(mini_archive, out, "loss", "--set", "loss.bogus=1") == 2
    assert "unknown config key loss.bogus" in capsys.readouterr().err
    assert main(["ablate", "loss", "--data", str(mini_archive), "--out", str(out), "--minutes", "-1"]) == 2
    capsys.readouterr()
    assert ablate(mini_archive, out, "loss", "--cells", "nt_xent") == 0
    before = (out / "study.json").read_text()
    assert ablate(mini_archive, out, "loss", "--cells", "nt_xent", "--set", "optim.base_lr=0.1") == 2
    err = capsys.readouterr().err.strip()
    assert "other settings (optim.base_lr " in err and "-> 0.1)" in err and len(err.splitlines()) == 1
    assert (out / "study.json").read_text() == before  # nothing already written is lost
    # a study pinned by an older version, before a key existed: that key at its default is the same setting
    older = json.loads(before)
    del older["base"]["data"]["eval_crop"]
    (out / "study.json").write_text(json.dumps(older))
    assert ablate(mini_archive, out, "loss", "--cells", "nt_xent") == 0
    # ... but a key whose default changed what runs (LEGACY) was at its old value: the new head would not mix
    # in
    del older["base"]["model"]["head"]["out_bn"], older["base"]["loss"]["scale"]
    (out / "study.json").write_text(json.dumps(older))
    assert ablate(mini_archive, out, "loss", "--cells", "nt_xent") == 2
    err = capsys.readouterr().err
    assert "model.head.out_bn False -> True" in err and "loss.scale 1.0 -> " in err
    older["base"]["model"]["head"]["out_bn"] = json.loads(before)["base"]["model"]["head"]["out_bn"]
    older["base"]["loss"]["scale"] = json.loads(before)["base"]["loss"]["scale"]
    older["base"]["data"]["view_size"] = 0 if json.loads(before)["base"]["data"]["view_size"] else 16
    (out / "study.json").write_text(json.dumps(older))
    assert ablate(mini_archive, out, "loss", "--cells", "nt_xent") == 2  # a key it had, changed: refused
    (out / "study.json").write_text("[1, 2]")
    assert ablate(mini_archive, out, "loss", "--cells", "nt_xent") == 2
    assert "is not a study file" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train: {}\n")
    assert ablate(mini_archive, run, "loss", "--cells", "nt_xent") == 2
    assert "a pretraining run's folder" in capsys.readouterr().err and not (run / "study.json").exists()
    images = tmp_path / "images"
    with tarfile.open(mini_archive) as tar:
        tar.extractall(images, filter="data")
    assert ablate(images, images / "study", "loss", "--cells", "nt_xent") == 2  # inside its dataset
    assert "lies in the dataset" in capsys.readouterr().err and not (images / "study").exists()


def test_a_dataset_at_its_own_side_is_evaluated_at_that_side(tmp_path: Path, capsys) -> None:
    """digits: image_size 0 (the images' own 8 px) and no --eval-size: evaluated at 8 px, not at 0."""
    out = tmp_path / "study"
    assert main(["ablate", "temperature", "--data", "digits", "--out", str(out), "--cells", "l2-t0.5",
                 "--epochs", "0.05", "--set", "train.batch_size=32", "--device", "cpu", "--quiet"]) == 0
    assert json.loads((out / "cells" / "l2-t0.5" / "result.json").read_text())["knn_top1"] > 0


def test_unlabeled_data_fails_before_training_and_a_corrupt_result_is_redone(mini_archive: Path,
                                                                             tmp_path: Path, capsys) -> None:
    from PIL import Image

    unlabeled = tmp_path / "unlabeled"
    for split in ("train", "test"):
        (unlabeled / split).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (32, 32), (60 * i, 0, 0)).save(unlabeled / split / f"{i}.png")
    assert ablate(unlabeled, tmp_path / "u", "loss", "--cells", "nt_xent") == 2
    assert "evaluation needs labels" in capsys.readouterr().err
    assert not (tmp_path / "u" / "cells").exists()

    out = tmp_path / "study"
    assert ablate(mini_archive, out, "loss", "--cells", "nt_xent") == 0
    result = out / "cells" / "nt_xent" / "result.json"
    result.write_text("{truncated")
    assert ablate(mini_archive, out, "loss", "--cells", "nt_xent", "--json") == 0
    capsys.readouterr()
    assert json.loads(result.read_text())["cell"] == "nt_xent"


def _rows(study: str, metric: dict[str, float], **extra: dict[str, float]) -> StudyResult:
    s = STUDIES[study]
    rows = [{"cell": c.key, **c.params, "paper_top1": c.paper, "linear_top1": metric[c.key],
             **{k: v[c.key] for k, v in extra.items()}} for c in s.cells if c.key in metric]
    return StudyResult(s, rows)


def test_checks_follow_the_rows() -> None:
    pairs = STUDIES["augment-pairs"]
    paper = {c.key: c.paper for c in pairs.cells}
    assert [c.agrees for c in _rows("augment-pairs", paper).checks] == [True, True, True]
    reversed_ranks = {k: 100.0 - v for k, v in paper.items()}
    assert _rows("augment-pairs", reversed_ranks).checks[2][:3] == (
        "the 49 cells rank as in the paper (rank correlation with the paper's top-1 > 0)", False,
        "Spearman -1.00 over 49 cells")
    swapped = {**paper, "crop+sobel": 60.0}
    check = _rows("augment-pairs", swapped).checks[0]
    assert check.agrees is False and "crop+sobel (60.0%)" in check.detail
    assert _rows("augment-pairs", {"crop": 1.0}).checks[0].verdict == "pending"
    # one run per cell: a caveat; two: none; no cell a point above the random-init floor: no verdict at all
    assert all("one run per cell" in c.caveat for c in _rows("augment-pairs", paper).checks)
    two = [{**r, "runs": 2} for r in _rows("augment-pairs", paper).rows]
    assert [c.caveat for c in StudyResult(pairs, two).checks] == ["", "", ""]
    best = max(paper.values())
    at_floor = StudyResult(pairs, two, baseline={"linear_top1": best - 0.5, "knn_top1": 10.0}).checks
    assert [c.verdict for c in at_floor] == ["inconclusive"] * 3 \
        and "random-init encoder" in at_floor[0].caveat
    above = StudyResult(pairs, two, baseline={"linear_top1": best - 1.5, "knn_top1": 10.0}).checks
    assert [c.verdict for c in above] == ["reproduced"] * 3

    heads = {"none": 30.0, "linear-32": 35.0, "linear-128": 36.0, "linear-512": 34.0, "nonlinear-32": 40.0,
             "nonlinear-128": 41.0, "nonlinear-512": 39.0}
    z = {k: v - 5 for k, v in heads.items()}
    assert [c.agrees for c in _rows("head", heads, linear_top1_z=z).checks] == [True, True]
    assert [c.agrees for c in _rows("head", {**heads, "none": 45.0},
                                    linear_top1_z={**z, "nonlinear-32": 50.0}).checks] == [False, False]

    temps = {"l2-t0.05": 30.0, "l2-t0.1": 40.0, "l2-t0.5": 35.0, "l2-t1": 33.0, "no-l2-t10": 20.0,
             "no-l2-t100": 21.0}
    acc = {"l2-t0.05": 90.0, "l2-t0.1": 80.0, "l2-t0.5": 60.0, "l2-t1": 50.0, "no-l2-t10": 95.0,
           "no-l2-t100": 96.0}
    assert [c.agrees for c in _rows("temperature", temps, contrastive_acc=acc).checks] == [True, True, True]
    acc_up = {**acc, "l2-t1": 99.0, "l2-t0.5": 98.0}
    assert [c.agrees for c in _rows("temperature", {**temps, "l2-t0.5": 45.0},
                                    contrastive_acc=acc_up).checks] == [False, True, False]

    batch = {f"b{b}-x{m}": (b.bit_length() * (5 if m == 1 else 1) + 40 * m)
             for m in (1, 4) for b in (64, 128, 256, 512, 1024)}
    assert [c.agrees for c in _rows("batch-size", batch).checks] == [True, True]


def test_spearman_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    from simclr.ablation.checks import spearman

    x, y = [1.0, 2.0, 2.0, 4.0, 5.0], [3.0, 1.0, 4.0, 1.0, 5.0]
    assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic)
    assert spearman([1.0, 2.0], [3.0, 3.0]) != spearman([1.0, 2.0], [3.0, 3.0])  # nan for a constant side


def test_pairs_heatmap_is_drawn_from_partial_rows(tmp_path: Path) -> None:
    from simclr.ablation.report import write_report

    result = _rows("augment-pairs", {"crop+color": 50.0, "color": 10.0})
    md, png = write_report(result, tmp_path, "context line")
    assert png.read_bytes()[:4] == b"\x89PNG"
    text = md.read_text()
    assert "context line" in text and "| crop+color | crop | color | 56.3 | 50 |" in text \
        and "47 cell(s) not run yet" in text


def test_load_rows_keeps_the_study_order(tmp_path: Path) -> None:
    study = STUDIES["color-strength"]
    for key in ("s1+blur", "s0.25"):
        (tmp_path / "cells" / key).mkdir(parents=True)
        (tmp_path / "cells" / key / "result.json").write_text(json.dumps({"cell": key, "linear_top1": 1.0}))
    assert [r["cell"] for r in load_rows(study, tmp_path)] == ["s0.25", "s1+blur"]
    batch = STUDIES["batch-size"]  # the cell's own parameters win over a same-named field of its result
    (tmp_path / "cells" / "b64-x1").mkdir()
    (tmp_path / "cells" / "b64-x1" / "result.json").write_text(
        json.dumps({"cell": "b64-x1", "budget": "0.5 epochs", "linear_top1": 1.0}))
    assert load_rows(batch, tmp_path)[0]["budget"] == "x1"


def test_epoch_budgets_keep_the_warmup_share(mini_archive: Path, tmp_path: Path) -> None:
    study = STUDIES["batch-size"]
    options = AblateOptions(str(mini_archive), tmp_path,
                            overrides=("optim.warmup_epochs=2", "train.epochs=20"), epochs=0.5)
    short, long = (cell_config(study, study.cell(k), options) for k in ("b256-x1", "b256-x4"))
    assert (short.train.epochs, short.optim.warmup_epochs) == (0.5, pytest.approx(0.05))
    assert (long.train.epochs, long.optim.warmup_epochs) == (2.0, pytest.approx(0.2))
    timed = cell_config(study, study.cell("b256-x4"), AblateOptions(str(mini_archive), tmp_path, minutes=1.5))
    # BASE's schedule shape, fitted to 6 min
    assert timed.train.time_budget == 6.0 and timed.train.epochs == 10


def test_seeds_repeat_a_cell_and_report_mean_and_std(mini_archive: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "study"
    assert ablate(mini_archive, out, "loss", "--cells", "nt_xent") == 0
    first = (out / "cells" / "nt_xent" / "result.json").read_text()
    capsys.readouterr()
    # adds one run
    assert ablate(mini_archive, out, "loss", "--cells", "nt_xent", "--seeds", "2", "--json") == 0
    row = json.loads(capsys.readouterr().out)["rows"][0]
    assert (out / "cells" / "nt_xent" / "result.json").read_text() == first  # the finished run was kept
    runs = [json.loads((out / "cells" / d / "result.json").read_text()) for d in ("nt_xent", "nt_xent@seed1")]
    assert [r["seed"] for r in runs] == [0, 1]
    assert (out / "cells" / "nt_xent@seed1" / "config.yaml").read_text().count("seed: 1") == 1
    values = [r["linear_top1"] for r in runs]
    assert row["runs"] == 2 and row["linear_top1"] == pytest.approx(sum(values) / 2, abs=0.01)
    assert row["linear_top1_std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5, abs=0.01)
    assert "± (std)" in (out / "loss.md").read_text()
