"""Each protocol's checked options (:mod:`simclr.evaluation.options`) to the function that runs it: what
``simclr.evaluate`` and ``simclr eval`` call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from simclr.evaluation.compare import compare
from simclr.evaluation.finetune import FinetuneSpec
from simclr.evaluation.frozen import frozen_eval
from simclr.evaluation.linear import weight_decay_grid
from simclr.evaluation.options import (
    CompareOptions,
    FinetuneOptions,
    KnnOptions,
    LinearOptions,
    ProbeOptions,
    ProtocolOptions,
    TransferOptions,
)
from simclr.evaluation.probe import ProbeSpec
from simclr.evaluation.protocols import augmented_linear_eval, finetune_eval, probe_eval
from simclr.evaluation.selection import parse_grids
from simclr.evaluation.setup import EvalSetup
from simclr.evaluation.transfer import transfer_eval

Result = dict[str, Any]


def _knn(checkpoint: str | Path, setup: EvalSetup, options: KnnOptions) -> Result:
    return frozen_eval(checkpoint, setup, "knn", k=options.k, temperature=options.temperature)


def _linear(checkpoint: str | Path, setup: EvalSetup, options: LinearOptions) -> Result:
    if options.solver == "augmented":
        return augmented_linear_eval(checkpoint, setup, options.solver_epochs)
    return frozen_eval(checkpoint, setup, "linear", solver=options.solver, epochs=options.solver_epochs,
                       weight_decays=weight_decay_grid(options.weight_decays))


def _compare(checkpoint: str | Path, setup: EvalSetup, options: CompareOptions) -> Result:
    return {"rows": compare(checkpoint, setup, options.k, options.temperature, linear=options.linear)}


def _spec(options: FinetuneOptions | TransferOptions, setup: EvalSetup, steps: int = 0) -> FinetuneSpec:
    return FinetuneSpec(epochs=options.train_epochs(), steps=steps, lr=options.peak_lr(setup.batch_size),
                        seed=options.seed, batch_size=setup.batch_size)


def _subset(options: FinetuneOptions | TransferOptions) -> Path | None:
    return Path(options.subset_file) if options.subset_file else None


def _finetune(checkpoint: str | Path, setup: EvalSetup, options: FinetuneOptions) -> Result:
    return finetune_eval(checkpoint, setup, options.label_fraction, _spec(options, setup),
                         subset_file=_subset(options), baseline=options.baseline)


def _transfer(checkpoint: str | Path, setup: EvalSetup, options: TransferOptions) -> Result:
    return transfer_eval(checkpoint, setup, _spec(options, setup, options.steps),
                         fraction=options.label_fraction, subset_file=_subset(options),
                         weight_decays=weight_decay_grid(options.weight_decays),
                         grids=parse_grids(options.finetune_grid))


def _probe(checkpoint: str | Path, setup: EvalSetup, options: ProbeOptions) -> Result:
    return probe_eval(checkpoint, setup, ProbeSpec(epochs=options.epochs), options.transforms)


RUNNERS: dict[type[ProtocolOptions], Callable[..., Result]] = {
    KnnOptions: _knn, LinearOptions: _linear, CompareOptions: _compare, FinetuneOptions: _finetune,
    TransferOptions: _transfer, ProbeOptions: _probe}
"""The function that runs each protocol, by its options' type."""


def run_protocol(checkpoint: str | Path, setup: EvalSetup, options: ProtocolOptions) -> Result:
    """Evaluate ``checkpoint`` on ``setup``'s data by the protocol of ``options``; returns what ``simclr eval
    PROTOCOL --json`` prints."""
    return RUNNERS[type(options)](checkpoint, setup, options)
