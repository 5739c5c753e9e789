"""A run's checkpoint beyond its weights: what it saves so that ``--resume`` continues the same run exactly,
and restoring a run's parts from it.

Besides the model, optimiser, gradient scaler and learning-rate schedule, a run's checkpoint holds every
rank's data order and random state (``ranks``; rank 0's also as ``views`` and ``rng``) and the run's
:class:`Progress`.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from simclr.config import Config
from simclr.config_io import config_to_dict
from simclr.errors import InputError, is_number, one_line
from simclr.optim import LRSchedule
from simclr.runtime.checkpoint import load_weights, set_rng_state


class Resumable(Protocol):
    """A stream of view pairs whose position and random state a checkpoint carries."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Progress:
    """How far a run is, as its checkpoint records it.

    Attributes:
        step: optimiser steps done.
        epoch: whole epochs done.
        position: steps done in the epoch under way.
        time_s: training time so far (see :class:`simclr.runtime.metrics.TrainClock`).
        skipped: unreadable images, path -> reason.
        knn_pending: an epoch's kNN evaluation was cut short by an interruption: a resumed run does it first.
        last_row: the training values (loss, lr, views per second ...) of the last metrics row, which a row of
            evaluations at a step without new training repeats.
    """

    step: int = 0
    epoch: int = 0
    position: int = 0
    time_s: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)
    knn_pending: bool = False
    last_row: dict[str, float] = field(default_factory=dict)


def run_checkpoint(config: Config, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler, schedule: LRSchedule, ranks: list[dict[str, Any]],
                   world_size: int, progress: Progress) -> dict[str, Any]:
    """What ``last.pt`` holds: ``ranks`` are the ranks' ``{"views", "rng"}`` states, rank 0's first."""
    return {
        "config": config_to_dict(config), "model": net.state_dict(), "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(), "schedule": dataclasses.asdict(schedule), "views": ranks[0]["views"],
        "rng": ranks[0]["rng"], "ranks": ranks, "world_size": world_size, "step": progress.step,
        "epoch": progress.epoch, "position": progress.position, "skipped": dict(progress.skipped),
        "time_s": progress.time_s, "knn_pending": progress.knn_pending, "last_row": dict(progress.last_row),
    }


def restore_run(state: dict[str, Any], path: Path, *, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                scaler: torch.amp.GradScaler, views: Resumable, device: torch.device, rank: int = 0,
                world_size: int = 1) -> tuple[LRSchedule, Progress]:
    """Load a run's checkpoint ``state`` (read from ``path``) into its parts; returns its schedule and
    progress.

    Raises:
        InputError: weights that do not fit the network, or a checkpoint whose other contents are missing or
            wrong ("--resume: PATH is damaged (...)").
    """
    load_weights(net, state["model"], f"checkpoint {path}")
    try:
        time_s = _non_negative(float(state.get("time_s", 0.0)), "time_s")
        optimizer.load_state_dict(state["optimizer"])
        _check_optimizer_state(optimizer)
        scaler.load_state_dict(state["scaler"])
        schedule = LRSchedule(**state["schedule"])
        mine = _rank_state(state, rank, world_size)
        views.load_state_dict(mine["views"])
        set_rng_state(mine["rng"], device)
        step, epoch, pos = (int(_non_negative(state[k], k)) for k in ("step", "epoch", "position"))
        last_row = {str(k): float(v) for k, v in (state.get("last_row") or {}).items()}
        return schedule, Progress(step, epoch, pos, time_s, dict(state.get("skipped", {})),
                                  bool(state.get("knn_pending")), last_row)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
        what = f"no {exc}" if isinstance(exc, KeyError) else one_line(exc)
        raise InputError(f"--resume: {path} is damaged ({what}): resume from another copy, or start a new "
                         "run") from None


def _rank_state(state: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """This rank's ``{"views", "rng"}``: rank 0's when the checkpoint was written by another number of
    processes (a note says the augmentation streams restart from the seed)."""
    per_rank = state.get("ranks") or [{"views": state["views"], "rng": state["rng"]}]
    if len(per_rank) == world_size:
        return per_rank[rank]  # type: ignore[no-any-return]
    print(f"note: the checkpoint was written by {len(per_rank)} process(es), this run has {world_size}: "
          "augmentation streams restart from the seed", file=sys.stderr, flush=True)
    return per_rank[0]  # type: ignore[no-any-return]


def _non_negative(value: Any, name: str) -> Any:
    """``value`` if it is a finite number >= 0 (a checkpoint's counters and clock), else ValueError."""
    if not is_number(value) or not 0 <= value < float("inf"):
        raise ValueError(f"its {name} is {value!r}")
    return value


def _check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """ValueError if a saved per-parameter buffer (momentum) has another shape than its parameter."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for name, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != p.shape:
                    raise ValueError(f"its optimizer's {name} {tuple(value.shape)} does not fit a parameter "
                                     f"{tuple(p.shape)}")
