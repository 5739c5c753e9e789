"""Run a study: pretrain every cell at the given budget, evaluate it on frozen features, keep what is
finished.

Layout of ``OUT``::

    study.json             the study's name and resolved base settings (a rerun must match them)
    cells/<key>/           one ordinary pretraining run folder per cell (config.yaml, metrics.jsonl, last.pt)
    cells/<key>/result.json   the cell's evaluation, written last: a cell with it is finished and never rerun
    cells/<key>@seed<k>/   further runs of the cell with seeds + k (``seeds`` > 1)
    results.csv            one row per finished cell (the mean over its runs)
    baseline.json          the same evaluation of the random-init encoder (the floor pretraining must beat)

A cell interrupted during pretraining continues from its ``last.pt`` when the study is run again; a cell whose
pretraining finished but whose evaluation did not is only evaluated. Every cell is evaluated the same way: h
(and z for the head study) of the labelled train and test splits at ``eval_size``, then a weighted kNN (k =
200) and a linear classifier (L-BFGS logistic regression, weight decay chosen on held-out train features)."""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from simclr.ablation.checks import Check, check_study
from simclr.ablation.studies import Cell, Study
from simclr.build import build_model
from simclr.config import Config
from simclr.config_io import build_config, config_to_dict, flatten, parse_override, read_yaml
from simclr.errors import InputError, require
from simclr.evaluation.frozen import FeaturePair
from simclr.evaluation.learned import Learned, check_frozen, fingerprint, load_learned
from simclr.evaluation.setup import EvalSetup, eval_config
from simclr.evaluation.splits import EvalData
from simclr.files import atomic_write_text, json_text
from simclr.runtime.checkpoint import LAST, LEGACY
from simclr.runtime.device import pick_device, pick_precision
from simclr.runtime.metrics import read_metrics
from simclr.training.loop import check_out_of_data, pretrain

__all__ = ["BASE", "AblateOptions", "StudyResult", "cell_config", "load_rows", "run_dir", "run_study"]

BASE: dict[str, Any] = {
    "model": {"arch": "resnet18", "width": 0.25},
    "train": {"batch_size": 256, "epochs": 10, "knn_every": 0, "diagnostics_every": 0, "log_every": 10},
    "optim": {"warmup_epochs": 1},
}
"""The scaled-down starting point of every cell (under the user's --config and --set): a quarter-width
ResNet-18, batch 256, warm-up over a tenth of the schedule, no in-run monitors."""


@dataclass(frozen=True)
class AblateOptions:
    """How to run a study.

    Attributes:
        data: the dataset (as ``simclr pretrain --data``); needs labelled train and test splits for
            evaluation.
        out: the study folder.
        config: a YAML config every cell starts from (after :data:`BASE`), or None.
        overrides: ``--set KEY=VALUE`` overrides over it (the study's own keys win over both).
        minutes: pretraining minutes per cell (x the cell's ``budget_scale``); used when ``epochs`` is 0.
        epochs: pretraining epochs per cell instead of minutes (0 = use ``minutes``).
        cells: run only these cell keys (others that finished earlier still appear in the report).
        seeds: runs per cell, with seeds ``train.seed + 0 .. seeds - 1``; the report gives their mean and
            standard deviation. Raising it later adds runs to the finished ones.
        eval_size: image side for the evaluation features (0 = the training view side).
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: progress bars and per-cell lines on stderr.
    """

    data: str
    out: Path
    config: str | None = None
    overrides: tuple[str, ...] = ()
    minutes: float = 2.0
    epochs: float = 0.0
    cells: tuple[str, ...] = ()
    seeds: int = 1
    eval_size: int = 0
    device: str = "auto"
    progress: bool = True


class StudyResult:
    """Finished rows (in the study's order), the paper's findings checked on them, the cells still missing,
    and the same evaluation of a random-init encoder (``baseline``, the floor a pretrained cell must beat), if
    known."""

    def __init__(self, study: Study, rows: list[dict[str, Any]],
                 baseline: dict[str, Any] | None = None) -> None:
        self.study, self.rows, self.baseline = study, rows, baseline
        floor = baseline.get("linear_top1") if baseline else None
        self.checks: list[Check] = check_study(study.name, rows, len(study.cells), floor)
        done = {r["cell"] for r in rows}
        self.missing = [c.key for c in study.cells if c.key not in done]


def _base_layers(options: AblateOptions) -> list[dict[str, Any]]:
    return [BASE] + ([read_yaml(options.config)] if options.config else []) + [parse_override(o)
                                                                               for o in options.overrides]


def _run_layer(options: AblateOptions) -> dict[str, Any]:
    return {"data": {"spec": options.data}, "train": {"device": options.device}}


def cell_config(study: Study, cell: Cell, options: AblateOptions, repeat: int = 0) -> Config:
    """BASE < --config < --set < the study's base < the cell's overrides < data spec, device and budget.

    An epoch budget keeps the base config's warm-up share of the schedule (``optim.warmup_epochs /
    train.epochs``), as a time budget does. ``repeat`` k adds k to the seed."""
    layers = _base_layers(options) + [study.base, cell.overrides, _run_layer(options)]
    base = build_config(*layers)
    train: dict[str, Any] = {"seed": base.train.seed + repeat}
    if not options.epochs:
        return build_config(*layers, {"train": {**train, "time_budget": options.minutes * cell.budget_scale}})
    epochs = options.epochs * cell.budget_scale
    warmup = epochs * base.optim.warmup_epochs / base.train.epochs
    return build_config(*layers, {"train": {**train, "epochs": epochs, "time_budget": 0.0},
                                  "optim": {"warmup_epochs": warmup}})


def run_dir(out: Path, cell: Cell, repeat: int = 0) -> Path:
    """``OUT/cells/<key>`` for the first run of a cell, ``OUT/cells/<key>@seed<k>`` for repeat k."""
    return out / "cells" / (cell.key if repeat == 0 else f"{cell.key}@seed{repeat}")


def _log(options: AblateOptions, text: str) -> None:
    if options.progress:
        print(text, file=sys.stderr, flush=True)


def _settings(study: Study, options: AblateOptions) -> dict[str, Any]:
    """What every cell shares: the study, the data, the budget and the base config (before the cells'
    layers).
    """
    base = build_config(*_base_layers(options), _run_layer(options))
    return {"study": study.name, "data": options.data, "epochs": options.epochs,
            "minutes": 0.0 if options.epochs else options.minutes, "eval_size": options.eval_size,
            "base": config_to_dict(base)}


def _check_folder(study: Study, options: AblateOptions) -> None:
    """``OUT/study.json`` pins the study and settings: a rerun with others would mix incomparable cells."""
    path = options.out / "study.json"
    settings = json.loads(json.dumps(_settings(study, options)))
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(f"{path} is not valid JSON; move it away or choose another --out") from None
        if not isinstance(saved, dict):
            raise InputError(f"{path} is not a study file (a JSON object); "
                             "move it away or choose another --out")
        was, now = flatten(saved), flatten(settings)
        # a key this version added is what the study ran with before the key existed: its LEGACY value where
        # the default changed what runs, else its default
        legacy = {"base." + ".".join(keys): value for keys, value in LEGACY.items()}
        was.update({k: v for k, v in legacy.items() if k not in was and k in now})
        defaults = flatten(json.loads(json.dumps({"base": config_to_dict(build_config())})))
        was.update({k: v for k, v in now.items() if k not in was and v == defaults.get(k)})
        diff = [f"{k.removeprefix('base.')} {was.get(k, '(none)')!r} -> {now.get(k, '(none)')!r}"
                for k in sorted(was.keys() | now.keys()) if was.get(k) != now.get(k)]
        if diff:
            more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
            raise InputError(f"{options.out} holds a {saved.get('study')} study run with other settings "
                             f"({', '.join(diff[:3])}{more}); "
                             "rerun with the same options or choose another --out")
        return
    if (options.out / "config.yaml").is_file() or (options.out / LAST).is_file():
        raise InputError(f"{options.out} is a pretraining run's folder, not a study's: choose another --out")
    options.out.mkdir(parents=True, exist_ok=True)
    _write_json(settings, path)


def _train_stats(run_dir: Path) -> dict[str, Any]:
    records = [r for r in read_metrics(run_dir / "metrics.jsonl") if "contrastive_acc" in r]
    if not records:
        return {}
    last = records[-1]
    return {"contrastive_acc": round(100 * last["contrastive_acc"], 2), "train_loss": round(last["loss"], 4),
            "steps": last["step"], "views_per_s": round(statistics.median(r["views_per_s"] for r in records))}


def _accuracies(learned: Learned, data: EvalData, with_z: bool) -> tuple[dict[str, Any], FeaturePair]:
    """Linear and kNN top-1/top-5 (percent) on frozen h (and z); the encoder is checked to stay untouched."""
    before = fingerprint(learned.model)
    pair = FeaturePair(learned.encoder(with_z=with_z), data)
    check_frozen(learned.model, before)
    seed, out = learned.config.train.seed, {}
    for on in ("h", "z") if with_z else ("h",):
        suffix = "" if on == "h" else "_z"
        lin, knn = pair.linear(seed, on=on), pair.knn(200, 0.1, on=on)
        out.update({f"linear_top1{suffix}": round(100 * lin["top1"], 2), f"linear_top5{suffix}":
                    round(100 * lin["top5"], 2), f"knn_top1{suffix}": round(100 * knn["top1"], 2)})
    return out, pair


def _evaluate(study: Study, cell: Cell, config: Config, run_dir: Path, setup: EvalSetup,
              data: EvalData) -> dict[str, Any]:
    accuracies, pair = _accuracies(load_learned(run_dir / LAST, setup), data, study.eval_z)
    row: dict[str, Any] = {"cell": cell.key, **cell.params, "paper_top1": cell.paper,
                           **{f"paper_{k}": v for k, v in cell.paper_extra.items()}, **accuracies}
    row.update(_train_stats(run_dir))
    train = config.train
    row["train_budget"] = (f"{train.epochs:g} epochs" if not train.time_budget
                           else f"{train.time_budget:g} min")
    row["epochs_done"] = round(row.get("steps", 0) * train.batch_size / len(pair.train.h), 2)
    row["eval_images"] = f"{len(pair.train.h)}/{len(pair.test.h)}"
    return {**row, **cell.params}  # the study's variables win over any same-named measurement


def _baseline(config: Config, setup: EvalSetup, data: EvalData, out: Path) -> dict[str, Any]:
    """The cells' evaluation of the untrained encoder (seeded init), computed once per study folder."""
    path = out / "baseline.json"
    saved = _read_result(path)
    if saved is not None:
        return saved
    torch.manual_seed(config.train.seed)
    device = pick_device(setup.device)
    model = build_model(config).to(device)
    learned = Learned(model, eval_config(config, setup), device,
                      pick_precision(config.train.precision, device))
    row = {"encoder": "random init, no pretraining", **_accuracies(learned, data, False)[0]}
    _write_json(row, path)
    return row


def _write_json(value: dict[str, Any], path: Path) -> None:
    atomic_write_text(path, json_text(value, indent=1))


def _read_result(path: Path) -> dict[str, Any] | None:
    """A finished cell's row, or None (no result yet, or an unreadable one, which the next run redoes)."""
    try:
        row = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return row if isinstance(row, dict) and "linear_top1" in row else None


AVERAGED = ("linear_top1", "linear_top5", "knn_top1", "linear_top1_z", "linear_top5_z", "knn_top1_z",
            "contrastive_acc", "train_loss", "steps", "views_per_s", "epochs_done")
"""Fields averaged over a cell's runs; the others are the same for every run of the cell."""


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    row = dict(runs[0])
    row.pop("seed", None)
    for key in AVERAGED:
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        if len(values) == len(runs):
            row[key] = round(statistics.fmean(values), 2)
            if len(runs) > 1 and key in ("linear_top1", "knn_top1", "linear_top1_z"):
                row[f"{key}_std"] = round(statistics.stdev(values), 2)
    row["runs"] = len(runs)
    return row


def load_rows(study: Study, out: Path) -> list[dict[str, Any]]:
    """One row per cell with at least one finished run (the mean over its runs), in the study's order."""
    rows = []
    for cell in study.cells:
        first = run_dir(out, cell)
        repeats = sorted(first.parent.glob(f"{cell.key}@seed*"), key=lambda p: p.name)
        runs = [_read_result(d / "result.json") for d in [first, *repeats]]
        finished = [r for r in runs if r is not None]
        if finished:
            rows.append({**_aggregate(finished), **cell.params})
    return rows


def run_study(study: Study, options: AblateOptions, on_cell: Any = None) -> StudyResult:
    """Pretrain and evaluate every (selected) unfinished cell of ``study``; returns every finished row.

    ``on_cell(result)`` is called after each cell (e.g. to rewrite the report), with the rows so far.
    Refused at once without matplotlib (the 'plots' extra), which the report's figure needs.
    """
    require(("matplotlib",), "simclr ablate (its report's figure)", "plots")
    unknown = [k for k in options.cells if k not in {c.key for c in study.cells}]
    if unknown:
        raise InputError(f"--cells: {unknown[0]!r} is not a cell of {study.name}; its cells: "
                         f"{', '.join(c.key for c in study.cells)}")
    selected = [c for c in study.cells if not options.cells or c.key in options.cells]
    configs = {(c.key, k): cell_config(study, c, options, k) for c in selected for k in range(options.seeds)}
    first = configs[selected[0].key, 0]  # every config was checked before any run starts
    setup = EvalSetup.of(options.data, device=options.device, batch_size=512, workers=0,
                         progress=options.progress,  # image_size None: the config's, resolved by EvalData
                         image_size=options.eval_size or first.data.view_size or None)
    data = EvalData(eval_config(first, setup), setup)  # unlabeled data fails now, not after a cell; decoded
    check_out_of_data(options.out, first.data.spec)      # once, at the first evaluation, for every cell
    _check_folder(study, options)
    todo = [(c, k) for c in selected for k in range(options.seeds)
            if _read_result(run_dir(options.out, c, k) / "result.json") is None]
    for i, (cell, k) in enumerate(todo, 1):
        folder, config = run_dir(options.out, cell, k), configs[cell.key, k]
        name = f"[{i}/{len(todo)}] {study.name} {folder.name}"
        _log(options, f"{name}: pretraining")
        pretrain(config, folder, resume=(folder / LAST).is_file(), progress=options.progress)
        _log(options, f"{name}: evaluating")
        row = {**_evaluate(study, cell, config, folder, setup, data), "seed": config.train.seed}
        _write_json(row, folder / "result.json")
        paper = f" (paper {cell.paper:g}%)" if cell.paper is not None else ""
        _log(options,
             f"{name}: linear top-1 {row['linear_top1']:.2f}%, kNN top-1 {row['knn_top1']:.2f}%{paper}")
        if on_cell is not None:
            on_cell(StudyResult(study, load_rows(study, options.out)))
    baseline = _baseline(first, setup, data, options.out)
    return StudyResult(study, load_rows(study, options.out), baseline)
