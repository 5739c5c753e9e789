"""The written forms of the grids evaluation searches, read without torch: the options' checks
(:mod:`simclr.evaluation.options`) read them when they are given, :mod:`~simclr.evaluation.linear` and
:mod:`~simclr.evaluation.selection` turn them into the values they search."""

from __future__ import annotations

from collections.abc import Sequence

WEIGHT_DECAY_GRIDS = ("default", "paper")
"""The named weight-decay grids of the L-BFGS linear fit (:mod:`simclr.evaluation.linear`)."""


def weight_decay_values(spec: str | float | Sequence[float]) -> str | tuple[float, ...]:
    """A named grid (``"default"``, ``"paper"``) as its name, or comma-separated values or numbers as a sorted
    tuple of distinct weight decays >= 0.

    Raises:
        ValueError: Anything else, or an empty grid.
    """
    if isinstance(spec, str):
        if spec.strip() in WEIGHT_DECAY_GRIDS:
            return spec.strip()
        try:
            values = [float(v) for v in spec.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"weight decays: 'default', 'paper' or comma-separated numbers, got {spec!r}") \
                from None
    else:
        values = [float(spec)] if isinstance(spec, (int, float)) else [float(v) for v in spec]
    if not values or any(not v >= 0 or v == float("inf") for v in values):
        raise ValueError(f"weight decays must be finite numbers >= 0, got {spec!r}")
    return tuple(sorted(set(values)))


def _numbers(text: str, what: str) -> tuple[float, ...]:
    try:
        values = tuple(sorted({float(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise ValueError(f"grid {what}: comma-separated numbers, got {text!r}") from None
    if not values:
        raise ValueError(f"grid {what}: give at least one value")
    return values


def grid_values(spec: str | None) -> str | tuple[tuple[float, ...], tuple[float, ...]] | None:
    """A fine-tuning grid: None for ``"none"`` (or None, empty), ``"paper"`` as its name, or the learning
    rates and weight decays of ``"LRS/WDS"`` (comma-separated, e.g. ``"0.01,0.1/0,1e-5"``).

    Raises:
        ValueError: (one line) anything else, a learning rate <= 0 or a weight decay < 0.
    """
    text = (spec or "none").strip()
    if text in ("none", "paper"):
        return None if text == "none" else text
    if text.count("/") != 1:
        raise ValueError(f"fine-tuning grid: none, paper or LRS/WDS (e.g. 0.01,0.1/0,1e-5), got {spec!r}")
    lrs_text, wds_text = text.split("/")
    lrs, wds = _numbers(lrs_text, "learning rates"), _numbers(wds_text, "weight decays")
    if not all(0 < v < float("inf") for v in lrs) or not all(0 <= v < float("inf") for v in wds):
        raise ValueError(f"fine-tuning grid: learning rates must be > 0 and weight decays >= 0, got {spec!r}")
    return lrs, wds
