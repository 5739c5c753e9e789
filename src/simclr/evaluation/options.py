"""Each evaluation protocol's options: one frozen dataclass per protocol, the keywords of
``simclr.evaluate(..., PROTOCOL, **options)`` and the flags of ``simclr eval PROTOCOL``, each default written
once.

Like the sections of :class:`~simclr.config.Config`, a schema checks its own values: a bad one raises
:class:`~simclr.errors.InputError` naming the option. The ``simclr eval`` flags are generated from the fields:
a field's metadata (:func:`option`) holds its flag's help text and, where argparse needs them, its type and
choices; a bool that defaults to True is the flag ``--no-NAME``. Adding a protocol: its schema here (in
:data:`PROTOCOLS`), its module, its runner in :mod:`simclr.evaluation.runners`.

This module imports only the standard library, :mod:`simclr.errors` and :mod:`simclr.evaluation.grids` (which
imports nothing else), so that ``simclr --help`` never loads torch.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from simclr.errors import InputError, is_number, is_whole
from simclr.evaluation.grids import grid_values, weight_decay_values

LINEAR_EPOCHS = 90
"""Epochs of the sgd and augmented linear solvers unless given (the paper's for ImageNet, Appendix B.6)."""

FEW_LABELS, FEW_LABELS_EPOCHS, MORE_LABELS_EPOCHS = 0.01, 60, 30
"""The paper's fine-tuning length (Appendix B.5): 60 epochs for 1% of the labels or fewer, else 30."""

FINETUNE_LR = 0.05
"""Semi-supervised fine-tuning's learning rate per 256 images of a batch (Appendix B.5)."""

TRANSFORMS = ("rotation", "color_vs_gray", "noise", "sobel")
"""The transformations the probes predict (the paper's Table 3)."""

SOLVERS = ("lbfgs", "sgd", "augmented")
"""The linear evaluation's solvers."""


def finetune_epochs(label_fraction: float) -> int:
    """The paper's fine-tuning length: 60 epochs for 1% of the labels (or fewer), 30 for more."""
    return FEW_LABELS_EPOCHS if label_fraction <= FEW_LABELS else MORE_LABELS_EPOCHS


def finetune_lr(batch_size: int) -> float:
    """Semi-supervised fine-tuning's learning rate, the paper's 0.05 x BatchSize / 256 (Appendix B.5)."""
    return FINETUNE_LR * batch_size / 256

def option(default: Any, help_text: str | None = None, *, flag_type: Callable[[str], Any] | None = None,
           choices: Sequence[str] | None = None, optional: bool = False) -> Any:
    """A protocol option: its default and its flag's help text (``%(default)s`` stands for the default),
    argparse type (default: the default's type) and choices; ``optional``: None is a value too (the paper's
    choice; always where None is the default)."""
    return field(default=default, metadata={"help": help_text, "type": flag_type, "choices": choices,
                                            "optional": optional or default is None})


Check = Callable[[str, Any], Any]
"""A check of one option: its name and value in, the value kept out (InputError if bad)."""


def _above_zero(whole: bool) -> Check:
    def check(name: str, value: Any) -> Any:
        if not (is_whole(value) if whole else is_number(value)) or not value > 0:
            raise InputError(f"{name} must be {'a whole number' if whole else 'a number'} > 0, got {value!r}")
        return value

    return check


def _whole_from_zero(name: str, value: Any) -> Any:
    if not is_whole(value) or value < 0:
        raise InputError(f"{name} must be a whole number >= 0, got {value!r}")
    return value


def _parsed(parse: Callable[[Any], Any]) -> Check:
    def check(name: str, value: Any) -> Any:
        try:
            parse(value)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        return tuple(value) if isinstance(value, list) else value  # as given, a list frozen

    return check


def _grid(name: str, value: Any) -> Any:
    if not isinstance(value, (str, type(None))):
        raise InputError(f"{name} must be none, paper or 'LRS/WDS' (a string), got {value!r}")
    return _parsed(grid_values)(name, value)


def _path(name: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)) or not str(value):
        raise InputError(f"{name} must be a path, got {value!r}")
    return value


def _fraction(name: str, value: Any) -> Any:
    if not is_number(value) or not 0 < value <= 1:
        raise InputError(f"{name} must be in (0, 1], got {value!r}")
    return value


def _flag(name: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return value


def _solver(name: str, value: Any) -> Any:
    if value not in SOLVERS:
        raise InputError(f"{name} must be lbfgs, sgd or augmented, got {value!r}")
    return value


def _transforms(name: str, value: Any) -> Any:
    if not isinstance(value, (str, list, tuple)):
        raise InputError(f"{name}: a comma-separated string or a list of names, got {value!r}")
    names = tuple(t for t in value.split(",") if t) if isinstance(value, str) else tuple(value)
    if not names or not set(names) <= set(TRANSFORMS):
        raise InputError(f"{name}: choose from {', '.join(TRANSFORMS)}, got {value!r}")
    return names


CHECKS: dict[str, Check] = {
    "k": _above_zero(whole=True), "epochs": _above_zero(whole=True), "lr": _above_zero(whole=False),
    "temperature": _above_zero(whole=False), "steps": _whole_from_zero, "finetune_grid": _grid,
    "weight_decays": _parsed(weight_decay_values), "subset_file": _path, "label_fraction": _fraction,
    "seed": _whole_from_zero, "baseline": _flag, "linear": _flag, "solver": _solver,
    "transforms": _transforms,
}
"""The check of each option, whatever its protocol, in the order they run (the first bad value is the one
reported)."""


@dataclass(frozen=True)
class ProtocolOptions:
    """The options of one protocol (a subclass per protocol), checked when made."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # the subcommand's help, formatted with the defaults

    def __post_init__(self) -> None:
        order = list(CHECKS)  # a field without a check is a programming error (ValueError)
        for f in sorted(dataclasses.fields(self), key=lambda f: order.index(f.name)):
            value = getattr(self, f.name)
            if value is not None or not f.metadata["optional"]:
                object.__setattr__(self, f.name, CHECKS[f.name](f.name, value))
        self.check()

    def check(self) -> None:
        """Checks across this protocol's options, after each option's own (none here)."""

    @classmethod
    def describe(cls) -> str:
        """What the protocol does, as ``simclr eval --help`` says it."""
        return cls.summary.format(**{f.name: f.default for f in dataclasses.fields(cls)})


def _k() -> Any:
    return option(200, "neighbours that vote (default %(default)s)")


def _temperature() -> Any:
    return option(0.1, "each vote weighs exp(cosine similarity / temperature) (default %(default)s)")


def _label_fraction(default: float) -> Any:
    return option(default, "fraction of the train labels, class-balanced (paper: 0.01 and 0.1)")


def _subset_file() -> Any:
    return option(None, "the labelled subset: reused if the file exists (saved by an earlier run, or a text "
                  "file naming one train image per line, like the paper's ImageNet 1percent.txt), else the "
                  "drawn subset is saved there", flag_type=Path)


def _weight_decays() -> Any:
    return option("default", "the lbfgs fit's weight-decay grid, picked on a held-out tenth of the train "
                  "split: default (1e-6,1e-4,1e-2), paper (45 log-spaced values from 1e-6 to 1e5, the "
                  "paper's for transfer), or comma-separated values")


@dataclass(frozen=True)
class KnnOptions(ProtocolOptions):
    """``knn``: weighted kNN on frozen h; each of the ``k`` nearest train images (cosine similarity) votes for
    its class with weight exp(similarity / ``temperature``)."""

    name: ClassVar[str] = "knn"
    summary: ClassVar[str] = "weighted kNN on frozen h (k={k}, T={temperature}, cosine)"
    k: int = _k()
    temperature: float = _temperature()


@dataclass(frozen=True)
class LinearOptions(ProtocolOptions):
    """``linear``: a linear classifier on frozen h. ``solver``: ``lbfgs`` or ``sgd`` on cached h, or
    ``augmented`` (the reference code's protocol on cropped and flipped images); ``epochs`` of the last two
    (None: :data:`LINEAR_EPOCHS`); ``weight_decays``: the lbfgs fit's grid (``"default"``, ``"paper"`` or
    numbers)."""

    name: ClassVar[str] = "linear"
    summary: ClassVar[str] = "linear classifier on frozen h"
    solver: str = option("lbfgs", "lbfgs: full-batch fit on cached h, weight decay chosen on held-out data "
                         "(default); sgd: the paper's SGD + Nesterov with cosine decay on cached h; "
                         "augmented: the reference code's protocol, the same SGD on h of randomly cropped "
                         "and flipped images, the encoder run every epoch (for a GPU)", choices=SOLVERS)
    epochs: int | None = option(None, f"epochs of the sgd and augmented solvers (default {LINEAR_EPOCHS}; "
                                "lbfgs fits to convergence)", flag_type=int)
    weight_decays: str | tuple[float, ...] = _weight_decays()

    def check(self) -> None:
        if self.weight_decays != "default" and self.solver != "lbfgs":
            raise InputError(f"weight_decays is the lbfgs solver's grid; the {self.solver} solver uses none")
        if self.solver == "lbfgs" and self.epochs is not None:
            raise InputError("epochs is for the sgd and augmented solvers; lbfgs fits to convergence")

    @property
    def solver_epochs(self) -> int:
        """The epochs of the sgd and augmented solvers."""
        return self.epochs or LINEAR_EPOCHS


@dataclass(frozen=True)
class CompareOptions(ProtocolOptions):
    """``compare``: kNN (``k``, ``temperature``) and, with ``linear``, lbfgs linear evaluation of raw pixels,
    a random-init encoder and the learned h."""

    name: ClassVar[str] = "compare"
    summary: ClassVar[str] = "kNN and linear: raw pixels vs random-init encoder vs learned h"
    linear: bool = option(True, "kNN only (the linear fits take longer)")
    k: int = _k()
    temperature: float = _temperature()


class _Schedule:
    """Fine-tuning's length and learning rate: as given, else the paper's semi-supervised ones (Appendix
    B.5)."""

    epochs: int | None
    lr: float | None
    label_fraction: float

    def train_epochs(self) -> int:
        return self.epochs or finetune_epochs(self.label_fraction)

    def peak_lr(self, batch_size: int) -> float:
        return self.lr or finetune_lr(batch_size)


@dataclass(frozen=True)
class FinetuneOptions(ProtocolOptions, _Schedule):
    """``finetune``: f fine-tuned on a class-balanced ``label_fraction`` of the train labels (or the subset in
    ``subset_file``) for ``epochs`` at peak learning rate ``lr`` (None: the paper's), drawn by ``seed``; with
    ``baseline`` the same network trained from scratch too."""

    name: ClassVar[str] = "finetune"
    summary: ClassVar[str] = "fine-tune f on a class-balanced fraction of the labels (vs from scratch)"
    label_fraction: float = _label_fraction(0.1)
    subset_file: str | os.PathLike[str] | None = _subset_file()  # noqa: RUF009 - a field, not a shared value
    epochs: int | None = option(None, f"default: the paper's, {FEW_LABELS_EPOCHS} at {100 * FEW_LABELS:g}%% "
                                f"of the labels or fewer, else {MORE_LABELS_EPOCHS}", flag_type=int)
    lr: float | None = option(None, f"peak learning rate (default: the paper's {FINETUNE_LR:g} x batch/256, "
                              "Appendix B.5)", flag_type=float)
    seed: int = option(0)
    baseline: bool = option(True, "skip the supervised-from-scratch run")


@dataclass(frozen=True)
class TransferOptions(ProtocolOptions, _Schedule):
    """``transfer``: linear evaluation (``weight_decays``), fine-tuning and training from scratch on another
    labelled dataset; ``steps`` (> 0) replaces ``epochs`` (None: the paper's semi-supervised length), and
    ``finetune_grid`` searches the learning rate and weight decay: ``"none"`` (``lr``), ``"paper"`` or
    ``"LRS/WDS"``."""

    name: ClassVar[str] = "transfer"
    summary: ClassVar[str] = "linear evaluation and fine-tuning on another labelled dataset"
    weight_decays: str | tuple[float, ...] = _weight_decays()
    label_fraction: float = _label_fraction(1.0)
    subset_file: str | os.PathLike[str] | None = _subset_file()  # noqa: RUF009 - a field, not a shared value
    epochs: int | None = option(30, optional=True)
    steps: int = option(0, "fine-tuning updates instead of --epochs (the paper's: 20000 at batch 256); "
                        "training from scratch runs twice as long either way")
    finetune_grid: str | None = option(
        "none", "search fine-tuning's and training from scratch's learning rate and weight decay on held-out "
        "training images (the dataset's own validation split where it has one, else a tenth of each class), "
        "by the dataset's metric, then train again on all of them: none (--lr, no weight decay), paper "
        "(Appendix B.8: 7 x 8 cells each, for a GPU) or LRS/WDS, e.g. 0.01,0.1/0,1e-5")
    lr: float | None = option(0.1, "peak learning rate without --finetune-grid (default %(default)s)",
                              optional=True)
    seed: int = option(0)


@dataclass(frozen=True)
class ProbeOptions(ProtocolOptions):
    """``probe``: MLPs trained for ``epochs`` on frozen h and on z predict which of ``transforms`` (names, or
    one comma-separated string) was applied to the input (the paper's Table 3)."""

    name: ClassVar[str] = "probe"
    summary: ClassVar[str] = "MLPs on frozen h and z predict the transformation of the input (Table 3)"
    epochs: int = option(20, "MLP epochs")
    transforms: tuple[str, ...] = option(
        TRANSFORMS, f"comma-separated transformations to predict, some of: {', '.join(TRANSFORMS)} (default: "
        "all four)")


PROTOCOLS: dict[str, type[ProtocolOptions]] = {
    schema.name: schema
    for schema in (KnnOptions, LinearOptions, CompareOptions, FinetuneOptions, TransferOptions, ProbeOptions)}
"""Each protocol's schema by name, in the order ``simclr eval --help`` lists them."""


def protocol_options(protocol: str, given: Mapping[str, Any]) -> ProtocolOptions:
    """``protocol``'s options: the ``given`` ones (keyword names) over its defaults, checked.

    Raises:
        InputError: an unknown protocol or option, or a bad value.
    """
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}: choose from {', '.join(PROTOCOLS)}")
    schema = PROTOCOLS[protocol]
    names = [f.name for f in dataclasses.fields(schema)]
    unknown = sorted(given.keys() - set(names))
    if unknown:
        raise InputError(f"{protocol} takes no option {unknown[0]!r} (it takes {', '.join(names)})")
    return schema(**given)
