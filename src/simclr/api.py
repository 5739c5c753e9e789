"""simclr from Python: pretrain, then use the trained encoder (images in, h or z out) and search a collection.

    import simclr
    run = simclr.pretrain("~/photos", "runs/photos", config="configs/cifar10_cpu.yaml",
                          settings={"train.epochs": 20, "model.arch": "resnet18"})   # as `simclr pretrain`
    enc = simclr.load_encoder(run.run_dir)          # a run folder, checkpoint file or exported folder
    h = enc(["cat.jpg", "dog.png"])                  # [2, F] float32: files, PIL images or image tensors
    z = enc(images, z=True)                          # the projection head's output instead
    resnet = enc.torchvision()                       # the same f as a torchvision model (fc = Identity)
    index = simclr.embed(run.run_dir, "~/catalogue")  # as `simclr embed`: h of every image, to search
    hits = index.search(["new.jpg"], k=10)[0]        # [Hit(rank, path, label, score), ...] best first

Images are prepared as the evaluation commands prepare them (see :mod:`simclr.encoder`). Every ``simclr``
command calls the function here that does its job (:mod:`simclr.cli`), so the two give the same results.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from simclr.ablation import STUDIES, AblateOptions, StudyResult, run_study
from simclr.ablation.report import write_csv, write_report
from simclr.config import Config
from simclr.config_io import build_config, data_spec, flatten, load_config, parse_override, unflatten
from simclr.encoder import Encoder, ImageLike, Images, load_encoder  # noqa: F401 - served as simclr.Encoder
from simclr.errors import InputError, is_number, is_whole
from simclr.evaluation.options import protocol_options
from simclr.evaluation.runners import run_protocol
from simclr.evaluation.setup import eval_setup
from simclr.export import export
from simclr.files import check_output
from simclr.importer import import_weights  # noqa: F401 - served as simclr.import_weights
from simclr.planner.choose import warmup_for
from simclr.planner.plan import plan_recipe, render
from simclr.planner.ranks import planned_on_rank0
from simclr.retrieval.catalogue import Catalogue, open_catalogue
from simclr.retrieval.collect import Collected, embed_collection
from simclr.retrieval.collection import is_collection
from simclr.retrieval.collection_write import check_collection_output
from simclr.retrieval.embed import Embedded, embed_split
from simclr.retrieval.embeddings import load_embeddings
from simclr.retrieval.index import CHOOSE_ENCODER, Index
from simclr.retrieval.index import load_index as _load_index
from simclr.runtime.checkpoint import load_checkpoint, resolve_checkpoint, saved_config
from simclr.training.loop import PretrainResult, check_new_run, check_out_of_data, restarted
from simclr.training.loop import pretrain as _run_pretrain


def _path_like(value: Any, name: str) -> None:
    """InputError unless ``value`` is a non-empty path (a string or ``os.PathLike``)."""
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)) or not str(value):
        raise InputError(f"{name} must be a path, got {value!r}")


def pretrain_config(data: str | Path | None = None, *, config: str | Path | Config | None = None,
                    overrides: Sequence[str] = (), settings: dict[str, Any] | None = None) -> Config:
    """The config :func:`pretrain` runs with: the paper's defaults < ``config`` (a YAML file, or a
    :class:`~simclr.config.Config`) < ``overrides`` (``KEY=VALUE`` strings, values read as YAML, as ``--set``)
    < ``settings`` (keys as in ``--set`` to values, or nested dicts) < ``data`` (the dataset: ``data.spec``);
    every key and value checked (InputError)."""
    if settings is not None and not isinstance(settings, dict):
        raise InputError(f"settings must be a dict of config keys to values, got {type(settings).__name__}")
    if isinstance(overrides, str) or not all(isinstance(o, str) for o in overrides):
        raise InputError(f"overrides must be KEY=VALUE strings (as --set), got {overrides!r}")
    if config is not None and not isinstance(config, Config):
        _path_like(config, "config")
    for key in settings or {}:
        if not isinstance(key, str):
            raise InputError(f"settings keys are config keys such as 'train.epochs', got {key!r}")
    extra = [unflatten(key, value) for key, value in (settings or {}).items()]  # in order, later wins
    if data is not None:
        extra.append({"data": {"spec": data_spec(str(data))}})
    return load_config(config, overrides, *extra)


def pretrain(data: str | Path | None, out: str | Path, *, config: str | Path | Config | None = None,
             overrides: Sequence[str] = (), settings: dict[str, Any] | None = None, resume: bool = False,
             progress: bool = True, recipe: str | None = None) -> PretrainResult:
    """``simclr pretrain`` from Python: the paper's defaults < the YAML ``config`` (or a ``Config``) <
    ``overrides`` (``--set``'s ``KEY=VALUE``) < ``settings`` (keys as in ``--set``, e.g. ``{"train.epochs":
    10}``, or nested dicts) < ``data`` (:func:`pretrain_config`). ``resume=True`` continues the run in ``out``
    with its saved config (``data`` may be None). Returns the run's folder, steps, epochs and last loss.

    ``recipe``: ``"auto"`` (the default without ``config``) plans a recipe for the data, the device and the
    time budget from timed trial steps (:mod:`simclr.planner`; the settings given keep their values),
    ``"paper"`` runs the paper's defaults as they are.

    Unknown keys or bad values raise ``simclr.errors.InputError``; Ctrl-C saves ``last.pt`` and re-raises.
    """
    recipe = _recipe(recipe, config, resume)
    run_config = pretrain_config(data, config=config, overrides=overrides, settings=settings)
    if recipe == "auto" and not restarted(Path(out)):  # (a restarted worker resumes the plan it saved)
        check_new_run(Path(out))  # before the trial steps, not after
        check_out_of_data(Path(out), run_config.data.spec)
        base = run_config
        run_config = planned_on_rank0(lambda: planned_config(data, overrides=overrides, settings=settings,
                                                             progress=progress, base=base), base)
    return _run_pretrain(run_config, Path(out), resume=resume, progress=progress)


RECIPES = ("auto", "paper")
_NOT_PINNED = {"data.spec", "data.root", "data.cache_dir", "data.workers", "data.decode_cache",
               "data.holdout", "train.device", "train.seed", "train.time_budget", "train.log_every",
               "train.knn_every", "train.diagnostics_every", "train.checkpoint_every", "train.save_minutes"}
"""Settings that say where and how to run, not what to train: they do not pin the planned shapes."""


def _recipe(recipe: str | None, config: object, resume: bool) -> str:
    """``auto`` (plan one) when neither a recipe nor a config is given, ``paper`` (the defaults), or the
    config's."""
    if recipe is not None and recipe not in RECIPES:
        raise InputError(f"--recipe must be one of {', '.join(RECIPES)}, got {recipe!r}")
    if recipe is not None and config is not None:
        raise InputError(f"--recipe {recipe} and --config both name the recipe: give one of them")
    if resume or config is not None:
        return "config"
    return recipe or "auto"


def planned_config(data: str | Path | None = None, *, overrides: Sequence[str] = (),
                   settings: dict[str, Any] | None = None, progress: bool = True,
                   base: Config | None = None) -> Config:
    """The config ``pretrain`` runs with ``recipe="auto"``: the recipe planned (:mod:`simclr.planner`) for
    ``data``, this device and the time budget, with the settings given (``overrides``, ``settings``, as in
    :func:`pretrain_config`) keeping their values and pinning the shapes tried; the plan is printed on stderr
    with ``progress``. ``base``: the config of the settings given, when already built."""
    config = base or pretrain_config(data, overrides=overrides, settings=settings)
    given: dict[str, Any] = {}
    layers = [parse_override(o) for o in overrides] + [unflatten(k, v) for k, v in (settings or {}).items()]
    for layer in layers:
        given.update(flatten(layer))
    yours = {k: v for k, v in given.items() if k not in _NOT_PINNED}
    pinned = dict(yours)
    if config.model.init:  # the network of --init's checkpoint is the run's: only it is tried
        network = saved_config(load_checkpoint(config.model.init), config.model.init).model
        pinned.update({"model.arch": network.arch, "model.width": network.width})
    tell = (lambda line: print(line, file=sys.stderr)) if progress else (lambda _: None)
    plan, facts = plan_recipe(config, pinned, tell)
    if "train.epochs" in given and "optim.warmup_epochs" not in given:  # the warm-up of the epochs given
        plan.settings["optim.warmup_epochs"] = warmup_for(float(given["train.epochs"]))
    recipe = build_config(*[unflatten(k, v) for k, v in plan.settings.items()])
    planned = pretrain_config(data, config=recipe, overrides=overrides, settings=settings)
    if planned.train.time_budget > 0:  # the trial steps came out of the budget (and a plan may need less)
        left = max(planned.train.time_budget - facts["trial_s"] / 60, planned.train.time_budget / 2)
        minutes = min(left, plan.settings.get("train.time_budget", left))
        planned = dataclasses.replace(planned, train=dataclasses.replace(planned.train,
                                                                          time_budget=round(minutes, 3)))
    if progress:
        print(render(plan, facts, yours), file=sys.stderr)
    elif not plan.fits and "train.epochs" not in given:  # said even with --quiet
        print(f"simclr: note: {plan.reasons[-1]}", file=sys.stderr)
    return planned


def evaluate(checkpoint: str | Path, data: str | Path, protocol: str = "knn", *, image_size: int = 0,
             device: str = "auto", batch_size: int = 256, workers: int = 2, progress: bool = True,
             data_root: str = "", cache_dir: str = "", holdout: float | None = None,
             eval_crop: float | None = None, in_memory: str | bool | None = None,
             **options: Any) -> dict[str, Any]:
    """``simclr eval PROTOCOL`` from Python: the same numbers as its ``--json`` output.

    ``protocol`` and its ``options``, with their defaults, are the schemas of
    :mod:`simclr.evaluation.options`: ``knn`` (k, temperature) and ``linear`` (solver ``lbfgs`` or ``sgd`` on
    cached h, or ``augmented``: the reference code's protocol on cropped and flipped images; epochs,
    weight_decays) on frozen h; ``compare`` (raw pixels, random init and learned h: ``{"rows": [...]}``);
    ``finetune`` (label_fraction, subset_file, epochs, lr, seed, baseline); ``transfer`` (to the labelled
    dataset ``data``; those of finetune but baseline, and steps, weight_decays, finetune_grid); ``probe``
    (epochs, transforms: the paper's Table 3, ``{"rows": [...]}``). Accuracies are fractions. Bad options
    raise ``simclr.errors.InputError``. ``in_memory`` (``"auto"``, ``"true"``/True, ``"false"``/False; None:
    the run's ``data.in_memory``) says whether the splits are decoded into memory or read from their files
    batch by batch. """
    setup = eval_setup(data, image_size, device, batch_size, workers, progress, data_root, cache_dir, holdout,
                       eval_crop, in_memory)
    _path_like(checkpoint, "checkpoint")
    if not data:
        raise InputError("data is required: a dataset name, image folder or archive")
    return run_protocol(checkpoint, setup, protocol_options(protocol, options))


class EmbedResult(Index):
    """:func:`embed`'s collection, an :class:`~simclr.retrieval.index.Index`, with what an update did with the
    earlier file: ``updated`` (there was one), ``reused`` (its rows of images unchanged since), ``dropped``
    (its rows of images gone or changed), or ``fresh``: why none of it could be kept."""

    def __init__(self, done: Embedded, updated: bool) -> None:
        super().__init__(done.embeddings, done.skipped)
        self.updated, self.reused, self.dropped, self.fresh = updated, done.reused, done.dropped, done.fresh

    @property
    def embedded(self) -> int:
        """The images embedded now (new or changed ones, for an update)."""
        return len(self) - self.reused


class EmbedCatalogue(Catalogue):
    """:func:`embed`'s collection folder, a :class:`~simclr.retrieval.catalogue.Catalogue`, with what an
    update did, as :class:`EmbedResult` says."""

    def __init__(self, done: Collected, updated: bool) -> None:
        super().__init__(done.collection.folder)
        self.skipped = list(done.skipped)
        self.updated, self.reused, self.dropped, self.fresh = updated, done.reused, done.dropped, done.fresh

    @property
    def embedded(self) -> int:
        return len(self) - self.reused


def is_npz(path: str | Path) -> bool:
    """Whether ``simclr embed --out`` writes ``path`` as one ``.npz`` file (else as a collection folder)."""
    return Path(path).suffix.lower() == ".npz"


def embed(checkpoint: str | Path, data: str | Path, *, split: str = "all", z: bool = False,
          out: str | Path | None = None, image_size: int = 0, device: str = "auto", batch_size: int = 256,
          workers: int = 2, progress: bool = True, holdout: float | None = None,
          eval_crop: float | None = None, update: bool = False, data_root: str = "", cache_dir: str = "",
          in_memory: str | bool | None = None) -> EmbedResult | EmbedCatalogue:
    """``simclr embed`` from Python: h (and z with ``z=True``) of every readable image of ``data`` (a folder,
    archive or dataset name; ``split`` train, test or all) with the network of ``checkpoint``, as an
    :class:`~simclr.retrieval.index.Index` to ``search``; also written to ``out`` when given: a ``.npz`` file,
    or any other path a collection folder (memory-mapped, for millions of images; ``simclr index build`` and
    ``simclr serve`` take it), returned as a :class:`~simclr.retrieval.catalogue.Catalogue`. With ``update``
    (``simclr embed --update``) an existing ``out`` is brought up to date: its rows of images unchanged since
    are kept, only new and changed images are embedded, and those no longer there are dropped (the result says
    how many: :class:`EmbedResult`); a collection folder is updated in place, nothing unchanged rewritten.
    Unreadable images are skipped and listed in ``Index.skipped``.
    ``holdout``: the fraction of a folder without ``train/`` and ``test/`` that is its test split (default:
    the run's ``data.holdout``); ``eval_crop``: the part of the shorter side the centre crop keeps (default:
    the run's ``data.eval_crop``); ``data_root``, ``cache_dir`` and ``in_memory`` as for :func:`evaluate`."""
    for name, flag in (("z", z), ("update", update)):
        if not isinstance(flag, bool):
            raise InputError(f"{name} must be True or False, got {flag!r}")
    if update and out is None:
        raise InputError("update=True needs out=: the embeddings file to bring up to date")
    setup = eval_setup(data, image_size, device, batch_size, workers, progress, data_root, cache_dir, holdout,
                       eval_crop, in_memory)
    if out is not None and not is_npz(out):
        check_collection_output(out, (resolve_checkpoint(checkpoint),))
        if is_collection(out) and not update:
            raise InputError(f"{out} is a collection already: bring it up to date with --update (update=True "
                             "in Python; images uploaded to it are kept, its index too), or delete it first")
        updated = update and is_collection(out)
        return EmbedCatalogue(embed_collection(checkpoint, setup, split, z, out, update), updated)
    previous = None
    if out is not None:
        check_output(out, "out", (resolve_checkpoint(checkpoint),))  # before the work, not after
        previous = load_embeddings(out) if update and Path(out).exists() else None
    index = EmbedResult(embed_split(checkpoint, setup, split, z, previous), previous is not None)
    if out is not None:
        index.save(out)
    return index


def load_index(path: str | Path, *, choose_checkpoint: str = CHOOSE_ENCODER) -> Index:
    """A collection to ``search``: an embeddings file written by ``simclr embed`` (or ``Index.save``), or a
    collection folder (a :class:`~simclr.retrieval.catalogue.Catalogue`, searched through its index)
    (``choose_checkpoint``: what an error tells the user to do when the index's checkpoint is gone; the
    command says "give --checkpoint")."""
    _path_like(path, "path")
    if Path(path).is_dir():
        return open_catalogue(path, choose_checkpoint=choose_checkpoint)
    return _load_index(path, choose_checkpoint=choose_checkpoint)


def export_weights(checkpoint: str | Path, out: str | Path, *, format: str = "safetensors") -> dict[str, Any]:
    """``simclr export`` from Python: ``checkpoint``'s network written to ``out`` in ``format``:
    ``"safetensors"`` (a folder of model.safetensors, config.json and a README.md model card, which
    :func:`load_encoder` and every command read back), ``"onnx"`` (f, batch norms folded), ``"torchvision"``
    or ``"timm"`` (f's state dict for that library's model) or ``"simclr"`` (a slim checkpoint: config and the
    weights of f and g, no training state); see :mod:`simclr.export`. Returns what was written and how to load
    it (``load``); a format that cannot hold the network raises InputError naming those that can."""
    _path_like(checkpoint, "checkpoint")
    _path_like(out, "out")
    return export(checkpoint, Path(out), format)


class Ablation(NamedTuple):
    """What :func:`ablate` did: the study's finished rows, the paper's findings checked on them and the cells
    still missing (``result``), and the files it wrote: the report (Markdown), its plot (PNG) and the table
    (CSV)."""

    result: StudyResult
    report: Path
    plot: Path
    table: Path


def ablate(study: str, data: str | Path, out: str | Path, *, config: str | Path | None = None,
           overrides: Sequence[str] = (), minutes: float | None = None, epochs: float | None = None,
           cells: str | Sequence[str] = (), seeds: int = 1, eval_size: int = 0, device: str = "auto",
           report_dir: str | Path | None = None, progress: bool = True) -> Ablation:
    """``simclr ablate STUDY`` from Python: pretrain and evaluate every unfinished cell of one of the paper's
    studies (:data:`simclr.ablation.STUDIES`) in the study folder ``out``, then write the report beside the
    paper's numbers (in ``report_dir``, default ``out``; rewritten after every cell). ``overrides``:
    ``--set``'s ``KEY=VALUE`` over the YAML ``config``; each cell pretrains for ``minutes`` (default 2) or
    ``epochs``; ``cells``: the keys to run (a list, or comma-separated; default all); ``seeds`` runs per cell;
    ``eval_size``: the evaluation's image side (0: the view side). A rerun continues the study."""
    if study not in STUDIES:
        raise InputError(f"unknown study {study!r}: choose from {', '.join(STUDIES)}")
    if minutes is not None and epochs is not None:
        raise InputError("give minutes or epochs per cell, not both")
    for name, value in (("minutes", minutes), ("epochs", epochs)):
        if value is not None and (not is_number(value) or not value > 0):
            raise InputError(f"{name} must be a number > 0, got {value!r}")
    if not is_whole(seeds) or seeds < 1:
        raise InputError(f"seeds must be a whole number >= 1, got {seeds!r}")
    if not is_whole(eval_size) or eval_size < 0 or 0 < eval_size < 8:
        raise InputError(f"eval_size must be 0 (the view side) or a whole number >= 8, got {eval_size!r}")
    keys = tuple(c for c in cells.split(",") if c) if isinstance(cells, str) else tuple(cells)
    given = {"minutes": minutes} if minutes is not None else {}
    options = AblateOptions(str(data), Path(out), None if config is None else str(config), tuple(overrides),
                            epochs=epochs or 0, cells=keys, seeds=seeds, eval_size=eval_size, device=device,
                            progress=progress, **given)
    chosen, table = STUDIES[study], options.out / "results.csv"
    budget = f"{options.epochs} epochs" if options.epochs else f"{options.minutes:g} minutes"
    context = (f"Made with `simclr ablate {chosen.name} --data {data}"
               + (f" --config {config}" if config else "")
               + "".join(f" --set {o}" for o in overrides) + f"` ({budget} per cell).")

    def report(result: StudyResult) -> tuple[Path, Path]:
        write_csv(result.rows, table)
        return write_report(result, Path(report_dir) if report_dir else options.out, context)

    result = run_study(chosen, options, on_cell=report)
    return Ablation(result, *report(result), table)
