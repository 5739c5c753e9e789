"""Hyper-parameter selection for transfer by fine-tuning (Chen et al. 2020, Appendix B.8, after Kornblith et
al. 2019): a grid of learning rates and weight decays, each cell trained on most of the train split and scored
on a held-out part of it with the dataset's metric; the best cell is then trained again on the whole split.

The paper's grids: fine-tuning from the pretrained weights, 7 log-spaced learning rates from 1e-4 to 0.1 and 7
log-spaced weight decays from 1e-6 to 1e-3 plus none; training from random initialisation, 7 learning rates
from 1e-3 to 1.0 and 8 weight decays from 1e-5 to 10^-1.5. "We divide these values of weight decay by the
learning rate": SGD's ``weight_decay`` is ``value / lr``, so each step shrinks the weights by ``value`` (times
the cosine schedule's fraction of the peak rate)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from simclr.evaluation.finetune import FinetuneSpec
from simclr.evaluation.grids import grid_values

__all__ = ["PAPER_FINETUNE_GRID", "PAPER_SCRATCH_GRID", "Grid", "holdout_split", "parse_grids", "select"]


def _logspace(low: float, high: float, num: int) -> tuple[float, ...]:
    return tuple(float(v) for v in np.logspace(low, high, num))


@dataclass(frozen=True)
class Grid:
    """Learning rates and weight decays to try, every pair.

    Attributes:
        lrs: Peak learning rates.
        weight_decays: Decays in the paper's sense (per step at the peak rate); a cell trains with SGD's
            ``weight_decay = value / lr``.
    """

    lrs: tuple[float, ...]
    weight_decays: tuple[float, ...]

    def cells(self) -> list[tuple[float, float]]:
        """Every ``(lr, weight_decay)``, learning rate major, each axis ascending."""
        return [(lr, wd) for lr in self.lrs for wd in self.weight_decays]

    def spec(self, base: FinetuneSpec, lr: float, weight_decay: float) -> FinetuneSpec:
        """``base`` with this cell's learning rate and SGD weight decay (``weight_decay / lr``)."""
        return dataclasses.replace(base, lr=lr, weight_decay=weight_decay / lr)


PAPER_FINETUNE_GRID = Grid(_logspace(-4, -1, 7), (0.0, *_logspace(-6, -3, 7)))
PAPER_SCRATCH_GRID = Grid(_logspace(-3, 0, 7), _logspace(-5, -1.5, 8))


def parse_grids(spec: str | None) -> tuple[Grid, Grid] | None:
    """The grids for fine-tuning and for training from scratch: ``"none"`` (or None/empty: no search, the
    given learning rate), ``"paper"`` (:data:`PAPER_FINETUNE_GRID`, :data:`PAPER_SCRATCH_GRID`), or
    ``"LRS/WDS"``, comma-separated learning rates and weight decays used for both (e.g.
    ``"0.01,0.1/0,1e-5"``).

    Raises:
        ValueError: (one line) anything else, a learning rate <= 0 or a weight decay < 0.
    """
    values = grid_values(spec)
    if values is None:
        return None
    if isinstance(values, str):  # "paper"
        return PAPER_FINETUNE_GRID, PAPER_SCRATCH_GRID
    grid = Grid(*values)
    return grid, grid


def holdout_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split image indices into a training part and a held-out validation part, class by class: each class
    gives ``round(fraction x its count)`` images to validation, and keeps at least one for training.
    Multi-label codes ``[N, C]`` are split as one group.

    Returns:
        ``(fit, val)``: sorted int64 index arrays.

    Raises:
        ValueError: (one line) when no image can be held out (every class has a single image).
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = np.zeros(len(labels), np.int64)
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        take = min(len(members) - 1, round(fraction * len(members)))
        if take > 0:
            val.append(rng.choice(members, size=take, replace=False))
    held = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    if len(held) == 0:
        raise ValueError(f"too few labelled images ({len(labels)}) to hold out a validation part for the "
                         "hyper-parameter search")
    return np.setdiff1d(np.arange(len(labels)), held).astype(np.int64), held.astype(np.int64)


def select(
    grid: Grid, base: FinetuneSpec, score: Callable[[FinetuneSpec], float],
    on_cell: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[FinetuneSpec, list[dict[str, Any]]]:
    """Score every cell of ``grid`` and return the best cell's spec (the first of equal scores, in
    :meth:`Grid.cells` order; NaN scores never win) and one row per cell.

    Args:
        grid: The cells.
        base: What the cells share (epochs or steps, batch size, seed, device, ...).
        score: Trains with a cell's spec on the fitting part and returns its validation score (higher is
            better).
        on_cell: Called with each row as it is scored (e.g. to show progress).

    Returns:
        ``(spec, rows)``; each row is ``{"lr", "weight_decay", "val"}`` with ``weight_decay`` in the paper's
        sense.
    """
    rows: list[dict[str, Any]] = []
    best: tuple[float, FinetuneSpec] | None = None
    for lr, wd in grid.cells():
        spec = grid.spec(base, lr, wd)
        value = float(score(spec))
        rows.append({"lr": lr, "weight_decay": wd, "val": value})
        if on_cell is not None:
            on_cell(rows[-1])
        if not math.isnan(value) and (best is None or value > best[0]):
            best = (value, spec)
    if best is None:  # every cell diverged: the first one, as with no search
        best = (float("nan"), grid.spec(base, *grid.cells()[0]))
    return best[1], rows
