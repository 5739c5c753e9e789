"""simclr from Python: pretrain, then use the trained encoder (images in, h or z out) and search a collection.

    import simclr
    run = simclr.pretrain("~/photos", "runs/photos", config="configs/cifar10_cpu.yaml",
                          settings={"train.epochs": 20, "model.arch": "resnet18"})   # as `simclr pretrain`
    enc = simclr.load_encoder(run.run_dir)          # a run folder or a checkpoint file; loads weights only
    h = enc(["cat.jpg", "dog.png"])                  # [2, F] float32: files, PIL images or image tensors
    z = enc(images, z=True)                          # the projection head's output instead
    resnet = enc.torchvision()                       # the same f as a plain torchvision ResNet (fc = Identity)
    index = simclr.embed(run.run_dir, "~/catalogue")  # as `simclr embed`: h of every image, to search
    hits = index.search(["new.jpg"], k=10)[0]        # [Hit(rank, path, label, score), ...] best first

Images are prepared as the evaluation commands prepare them (see :mod:`simclr.encoder`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from simclr.config import MAX_WORKERS
from simclr.config_io import build_config, read_yaml, unflatten
from simclr.encoder import Encoder, ImageLike, Images, check_sizes, load_encoder  # noqa: F401 - served as simclr.Encoder, ...
from simclr.errors import InputError, is_number, is_whole
from simclr.evaluation.finetune import FinetuneSpec
from simclr.evaluation.linear import weight_decay_grid
from simclr.evaluation.probe import TRANSFORMS, ProbeSpec
from simclr.evaluation.protocols import augmented_linear_eval, finetune_eval, probe_eval
from simclr.evaluation.run import EvalSetup, compare
from simclr.evaluation.run import evaluate as frozen_eval
from simclr.evaluation.selection import parse_grids
from simclr.evaluation.transfer import transfer_eval
from simclr.files import check_output
from simclr.importer import import_weights  # noqa: F401 - served as simclr.import_weights
from simclr.retrieval.embed import embed_split
from simclr.retrieval.embeddings import load_embeddings
from simclr.retrieval.index import Index
from simclr.retrieval.index import load_index as _load_index
from simclr.runtime.checkpoint import resolve_checkpoint
from simclr.training.loop import PretrainResult
from simclr.training.loop import pretrain as _run_pretrain


def embed(checkpoint: str | Path, data: str | Path, *, split: str = "all", z: bool = False, out: str | Path | None = None,
          image_size: int = 0, device: str = "auto", batch_size: int = 256, workers: int = 2,
          progress: bool = True, holdout: float | None = None, eval_crop: float | None = None,
          update: bool = False) -> Index:
    """``simclr embed`` from Python: h (and z with ``z=True``) of every readable image of ``data`` (a folder,
    archive or dataset name; ``split`` train, test or all) with the network of ``checkpoint``, as an
    :class:`~simclr.retrieval.index.Index` to ``search``; also written to ``out`` when given. With ``update``
    (``simclr embed --update``) an existing ``out`` is brought up to date: its rows of images unchanged since are
    kept, only new and changed images are embedded, and those no longer there are dropped.
    Unreadable images are skipped and listed in ``Index.skipped``. ``holdout``: the fraction of a folder without
    ``train/`` and ``test/`` that is its test split (default: the run's ``data.holdout``); ``eval_crop``: the part of
    the shorter side the centre crop keeps (default: the run's ``data.eval_crop``)."""
    for name, flag in (("z", z), ("update", update)):
        if not isinstance(flag, bool):
            raise InputError(f"{name} must be True or False, got {flag!r}")
    if update and out is None:
        raise InputError("update=True needs out=: the embeddings file to bring up to date")
    setup = eval_setup(data, image_size, device, batch_size, workers, progress, holdout=holdout, eval_crop=eval_crop)
    previous = None
    if out is not None:
        check_output(out, "out", (resolve_checkpoint(checkpoint),))  # before the work, not after
        previous = load_embeddings(out) if update and Path(out).exists() else None
    done = embed_split(checkpoint, setup, split, z, previous)
    index = Index(done.embeddings, done.skipped)
    if out is not None:
        index.save(out)
    return index


EVAL_OPTIONS: dict[str, dict[str, Any]] = {
    "knn": {"k": 200, "temperature": 0.1},
    "linear": {"solver": "lbfgs", "epochs": None, "weight_decays": "default"},
    "compare": {"k": 200, "temperature": 0.1, "linear": True},
    "finetune": {"label_fraction": 0.1, "epochs": None, "lr": None, "seed": 0, "subset_file": None, "baseline": True},
    "transfer": {"label_fraction": 1.0, "epochs": 30, "steps": 0, "lr": 0.1, "seed": 0, "weight_decays": "default",
                 "finetune_grid": "none", "subset_file": None},
    "probe": {"epochs": 20, "transforms": TRANSFORMS},
}
"""Each protocol's options and their defaults (those of ``simclr eval PROTOCOL``). Fine-tuning's ``epochs=None``
is the paper's (Appendix B.5): 60 for 1% of the labels or fewer, else 30. ``weight_decays`` is the L-BFGS linear
fit's grid: ``"default"`` (1e-6, 1e-4, 1e-2), ``"paper"`` (45 values from 1e-6 to 1e5, the paper's for transfer),
or numbers (a comma-separated string or a sequence). Transfer's ``steps`` (> 0) replaces ``epochs`` (the paper: 20,000
at batch 256; training from scratch runs twice as long), and ``finetune_grid`` searches the learning rate and weight
decay of both: ``"none"`` (``lr``, no weight decay), ``"paper"`` (its Appendix B.8 grids) or ``"LRS/WDS"``
(e.g. ``"0.01,0.1/0,1e-5"``)."""


def finetune_epochs(label_fraction: float) -> int:
    """The paper's fine-tuning length: 60 epochs for 1% of the labels (or fewer), 30 for more."""
    return 60 if label_fraction <= 0.01 else 30


LINEAR_EPOCHS = 90
"""Epochs of the sgd and augmented linear solvers unless given (the paper's for ImageNet, Appendix B.6)."""


def finetune_lr(batch_size: int) -> float:
    """Semi-supervised fine-tuning's learning rate, the paper's 0.05 x BatchSize / 256 (Appendix B.5)."""
    return 0.05 * batch_size / 256


def _options(protocol: str, given: dict[str, Any]) -> dict[str, Any]:
    if protocol not in EVAL_OPTIONS:
        raise InputError(f"unknown protocol {protocol!r}: choose from {', '.join(EVAL_OPTIONS)}")
    defaults = EVAL_OPTIONS[protocol]
    unknown = sorted(given.keys() - defaults.keys())
    if unknown:
        raise InputError(f"{protocol} takes no option {unknown[0]!r} (it takes {', '.join(defaults)})")
    opts = {**defaults, **given}
    for name in ("k", "epochs", "lr", "temperature"):
        value, whole = opts.get(name), name in ("k", "epochs")
        if value is None:
            continue
        if not (is_whole(value) if whole else is_number(value)) or not value > 0:
            raise InputError(f"{name} must be {'a whole number' if whole else 'a number'} > 0, got {value!r}")
    if "steps" in opts and (not is_whole(opts["steps"]) or opts["steps"] < 0):
        raise InputError(f"steps must be a whole number >= 0, got {opts['steps']!r}")
    for name, parse in (("finetune_grid", parse_grids), ("weight_decays", weight_decay_grid)):
        if name == "finetune_grid" and name in opts and not isinstance(opts[name], (str, type(None))):
            raise InputError(f"finetune_grid must be none, paper or 'LRS/WDS' (a string), got {opts[name]!r}")
        if name in opts:
            try:
                opts[name] = parse(opts[name])
            except ValueError as exc:
                raise InputError(str(exc)) from None
    if opts.get("subset_file") is not None:
        _path_like(opts["subset_file"], "subset_file")
    fraction = opts.get("label_fraction", 1.0)
    if not is_number(fraction) or not 0 < fraction <= 1:
        raise InputError(f"label_fraction must be in (0, 1], got {fraction!r}")
    seed = opts.get("seed", 0)
    if not is_whole(seed) or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}")
    for name in ("baseline", "linear"):
        if not isinstance(opts.get(name, True), bool):
            raise InputError(f"{name} must be True or False, got {opts[name]!r}")
    if opts.get("solver", "lbfgs") not in ("lbfgs", "sgd", "augmented"):
        raise InputError(f"solver must be lbfgs, sgd or augmented, got {opts['solver']!r}")
    if given.get("weight_decays", "default") != "default" and opts.get("solver", "lbfgs") != "lbfgs":
        raise InputError(f"weight_decays is the lbfgs solver's grid; the {opts['solver']} solver uses none")
    if protocol == "linear":
        if opts["solver"] == "lbfgs" and opts["epochs"] is not None:
            raise InputError("epochs is for the sgd and augmented solvers; lbfgs fits to convergence")
        opts["epochs"] = opts["epochs"] or LINEAR_EPOCHS
    if "transforms" in opts:
        names = opts["transforms"]
        if not isinstance(names, (str, list, tuple)):
            raise InputError(f"transforms: a comma-separated string or a list of names, got {names!r}")
        opts["transforms"] = tuple(t for t in names.split(",") if t) if isinstance(names, str) else tuple(names)
        if not opts["transforms"] or not set(opts["transforms"]) <= set(TRANSFORMS):
            raise InputError(f"transforms: choose from {', '.join(TRANSFORMS)}, got {names!r}")
    return opts


def evaluate(checkpoint: str | Path, data: str | Path, protocol: str = "knn", *, image_size: int = 0,
             device: str = "auto", batch_size: int = 256, workers: int = 2, progress: bool = True,
             data_root: str = "", cache_dir: str = "", holdout: float | None = None, eval_crop: float | None = None,
             in_memory: str | bool | None = None, **options: Any) -> dict[str, Any]:
    """``simclr eval PROTOCOL`` from Python: the same numbers as its ``--json`` output.

    ``protocol`` and its ``options`` (defaults in :data:`EVAL_OPTIONS`): ``knn`` (k, temperature) and ``linear``
    (solver ``lbfgs`` or ``sgd`` on cached h, or ``augmented``: the reference code's protocol on cropped and
    flipped images; epochs, weight_decays) on frozen h; ``compare`` (raw pixels, random init and learned h:
    ``{"rows": [...]}``); ``finetune`` (label_fraction, epochs, lr, seed, subset_file, baseline);
    ``transfer`` (to the labelled dataset ``data``; those of finetune but baseline, and steps, weight_decays,
    finetune_grid); ``probe`` (epochs,
    transforms: the paper's Table 3, ``{"rows": [...]}``). Accuracies are fractions. Bad options raise
    ``simclr.errors.InputError``. ``in_memory`` (``"auto"``, ``"true"``/True, ``"false"``/False; None: the run's
    ``data.in_memory``) says whether the splits are decoded into memory or read from their files batch by batch.
    """
    setup = eval_setup(data, image_size, device, batch_size, workers, progress, data_root, cache_dir, holdout,
                       eval_crop, in_memory)
    _path_like(checkpoint, "checkpoint")
    if not data:
        raise InputError("data is required: a dataset name, image folder or archive")
    return evaluate_setup(checkpoint, setup, protocol, **options)


def _path_like(value: Any, name: str) -> None:
    """InputError unless ``value`` is a non-empty path (a string or ``os.PathLike``)."""
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)) or not str(value):
        raise InputError(f"{name} must be a path, got {value!r}")


def evaluate_setup(checkpoint: str | Path, setup: EvalSetup, protocol: str, **options: Any) -> dict[str, Any]:
    """:func:`evaluate` with the data and device already checked into an ``EvalSetup`` (as ``simclr eval``
    builds it from its flags)."""
    opts = _options(protocol, options)
    if protocol == "linear" and opts["solver"] == "augmented":
        return augmented_linear_eval(checkpoint, setup, opts["epochs"])
    if protocol in ("knn", "linear"):
        return frozen_eval(checkpoint, setup, protocol, **opts)
    if protocol == "compare":
        return {"rows": compare(checkpoint, setup, opts["k"], opts["temperature"], linear=opts["linear"])}
    if protocol == "probe":
        return probe_eval(checkpoint, setup, ProbeSpec(epochs=opts["epochs"]), opts["transforms"])
    epochs = opts["epochs"] or finetune_epochs(opts["label_fraction"])
    lr = opts["lr"] or finetune_lr(setup.batch_size)
    spec = FinetuneSpec(epochs=epochs, steps=opts.get("steps", 0), lr=lr, seed=opts["seed"], batch_size=setup.batch_size)
    subset = Path(opts["subset_file"]) if opts["subset_file"] else None
    if protocol == "transfer":
        return transfer_eval(checkpoint, setup, spec, fraction=opts["label_fraction"], subset_file=subset,
                             weight_decays=opts["weight_decays"], grids=opts["finetune_grid"])
    return finetune_eval(checkpoint, setup, opts["label_fraction"], spec, subset_file=subset,
                         baseline=opts["baseline"])


def eval_setup(data: str | Path, image_size: int, device: str, batch_size: int, workers: int, progress: bool,
               data_root: str = "", cache_dir: str = "", holdout: float | None = None,
               eval_crop: float | None = None, in_memory: str | bool | None = None) -> EvalSetup:
    """Where evaluation data comes from and where it runs, checked."""
    if data and not isinstance(data, (str, os.PathLike)):
        raise InputError(f"data must be a dataset name or path, got {data!r}")
    if not is_whole(workers) or not 0 <= workers <= MAX_WORKERS:
        raise InputError(f"workers must be a whole number from 0 to {MAX_WORKERS}, got {workers!r}")
    if isinstance(in_memory, bool):
        in_memory = str(in_memory).lower()
    if in_memory is not None and in_memory not in ("auto", "true", "false"):
        raise InputError(f"in_memory must be auto, true or false, got {in_memory!r}")
    if not is_whole(batch_size) or batch_size < 1:
        raise InputError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    check_sizes(image_size, eval_crop)
    if holdout is not None and (not is_number(holdout) or not 0 <= holdout < 1):
        raise InputError(f"holdout must be a fraction in [0, 1), got {holdout!r}")
    return EvalSetup(os.path.expanduser(str(data)) if data else "", data_root, cache_dir, device, batch_size,
                     workers, progress, image_size, holdout, eval_crop, in_memory)


def load_index(path: str | Path) -> Index:
    """An embeddings file written by ``simclr embed`` (or ``Index.save``), ready to ``search``."""
    _path_like(path, "path")
    return _load_index(path)


def pretrain(data: str | Path | None, out: str | Path, *, config: str | Path | None = None,
             settings: dict[str, Any] | None = None, resume: bool = False,
             progress: bool = True) -> PretrainResult:
    """``simclr pretrain`` from Python: the paper's defaults < the YAML ``config`` < ``settings`` (keys as in
    ``--set``, e.g. ``{"train.epochs": 10}``, or nested dicts). ``resume=True`` continues the run in ``out``
    with its saved config (``data`` may be None). Returns the run's folder, steps, epochs and last loss.

    Unknown keys or bad values raise ``simclr.errors.InputError``; Ctrl-C saves ``last.pt`` and re-raises.
    """
    if settings is not None and not isinstance(settings, dict):
        raise InputError(f"settings must be a dict of config keys to values, got {type(settings).__name__}")
    if config is not None:
        _path_like(config, "config")
    layers = [read_yaml(config)] if config else []
    for key in settings or {}:
        if not isinstance(key, str):
            raise InputError(f"settings keys are config keys such as 'train.epochs', got {key!r}")
    layers += [unflatten(key, value) for key, value in (settings or {}).items()]  # in order, later wins
    if data is not None:
        layers.append({"data": {"spec": os.path.expanduser(str(data))}})
    return _run_pretrain(build_config(*layers), Path(out), resume=resume, progress=progress)
