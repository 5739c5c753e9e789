"""Learning-rate scaling and the warm-up + cosine schedule of SimCLR, as pure functions of the step.

SimCLR, Section 2.2 and Appendix B.1: lr = 0.3 x BatchSize/256 (linear scaling) for LARS, or
0.075 x sqrt(BatchSize) (square-root scaling, better for small batches / long training, Appendix B.1),
linear warm-up for the first 10 epochs, then cosine decay without restarts (Loshchilov & Hutter 2016).

Warm-up convention: the reference (``tf2/model.py``, ``WarmUpAndCosineDecay``) uses
``lr = peak * step / warmup_steps``, which gives lr 0 on the very first update, so that step is wasted.
Here warm-up is ``lr = peak * (step + 1) / warmup_steps``: the first update (step 0) uses
``peak / warmup_steps`` and the last warm-up update (step ``warmup_steps - 1``) uses ``peak``. The
cosine phase is the reference's: ``peak`` at ``step == warmup_steps``, falling to ``final_lr`` at
``step == total_steps`` and held there beyond. With steps numbered 0 .. total_steps - 1, the value at
``total_steps`` is the one reached after the last update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch.optim import Optimizer

__all__ = ["LRSchedule", "scale_lr", "set_lr", "warmup_cosine", "warmup_steps_for"]


def scale_lr(base_lr: float, batch_size: int, rule: str) -> float:
    """Scale a base learning rate with the batch size (Section 2.2, Appendix B.1).

    Args:
        base_lr: 0.3 for ``"linear"`` or 0.075 for ``"sqrt"`` in the paper.
        batch_size: Global batch size (over all devices), >= 1.
        rule: ``"linear"`` for ``base_lr * batch_size / 256`` or ``"sqrt"`` for
            ``base_lr * sqrt(batch_size)``.

    Returns:
        The scaled (peak) learning rate.

    Raises:
        ValueError: on an unknown rule or a batch size < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if rule == "linear":
        return base_lr * batch_size / 256
    if rule == "sqrt":
        return base_lr * math.sqrt(batch_size)
    raise ValueError(f"unknown lr scaling rule {rule!r}; expected 'linear' or 'sqrt'")


def _check_schedule(total_steps: int, warmup_steps: int) -> None:
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")


def warmup_cosine(
    step: int,
    total_steps: int,
    warmup_steps: int,
    peak_lr: float,
    final_lr: float = 0.0,
) -> float:
    """Learning rate at ``step``: linear warm-up, then cosine decay (Section 2.2, Appendix B.1).

    Args:
        step: Zero-based index of the update about to be taken, >= 0.
        total_steps: Length of the whole schedule, >= 1.
        warmup_steps: Number of warm-up updates, 0 .. total_steps (10 epochs in the paper).
        peak_lr: Learning rate at the end of warm-up (e.g. from :func:`scale_lr`).
        final_lr: Learning rate at ``total_steps`` and beyond. The paper decays to 0.

    Returns:
        ``peak * (step + 1) / warmup_steps`` for ``step < warmup_steps``; then
        ``final + (peak - final) * (1 + cos(pi * (step - warmup) / (total - warmup))) / 2``;
        ``final_lr`` for ``step >= total_steps``.

    Raises:
        ValueError: on a negative step or inconsistent step counts.
    """
    _check_schedule(total_steps, warmup_steps)
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return final_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return final_lr + (peak_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps_for(epochs: float, steps_per_epoch: int) -> int:
    """Number of warm-up steps for a warm-up of ``epochs`` epochs (10 in the paper, Appendix B.1).

    Args:
        epochs: Warm-up length in epochs, >= 0; fractional values are allowed.
        steps_per_epoch: Optimiser updates per epoch, >= 1.

    Returns:
        ``round(epochs * steps_per_epoch)``.

    Raises:
        ValueError: on a negative epoch count or fewer than one step per epoch.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    return round(epochs * steps_per_epoch)


@dataclass(frozen=True)
class LRSchedule:
    """The warm-up + cosine schedule as a callable ``step -> lr`` (see :func:`warmup_cosine`).

    Attributes:
        total_steps: Length of the schedule, >= 1.
        warmup_steps: Warm-up updates, 0 .. total_steps.
        peak_lr: Learning rate at the end of warm-up.
        final_lr: Learning rate at ``total_steps`` and beyond (0 in the paper). from_step, from_lr: With
            ``from_lr`` set, the schedule is refitted from update ``from_step`` on, starting from ``from_lr``
            there: within the warm-up, a straight line from it to ``peak_lr`` at the warm-up's last update,
            then the cosine as above; after the warm-up, a cosine from it to ``final_lr`` at ``total_steps``.
            A time budget that lengthens or shortens a run midway so keeps its learning rate continuous,
            rising through the warm-up and then only falling. Before ``from_step``: as above.
    """

    total_steps: int
    warmup_steps: int
    peak_lr: float
    final_lr: float = 0.0
    from_step: int = 0
    from_lr: float | None = None

    def __post_init__(self) -> None:
        _check_schedule(self.total_steps, self.warmup_steps)
        if self.from_step < 0:
            raise ValueError(f"from_step must be >= 0, got {self.from_step}")

    def __call__(self, step: int) -> float:
        """Learning rate for the zero-based update ``step``."""
        if self.from_lr is None or step < self.from_step:
            return warmup_cosine(step, self.total_steps, self.warmup_steps, self.peak_lr, self.final_lr)
        if step >= self.total_steps:
            return self.final_lr
        if self.from_step < self.warmup_steps:  # refitted during the warm-up: on to the peak, then as usual
            last = self.warmup_steps - 1
            if step < last:
                return (self.from_lr
                        + (self.peak_lr - self.from_lr) * (step - self.from_step) / (last - self.from_step))
            return warmup_cosine(step, self.total_steps, self.warmup_steps, self.peak_lr, self.final_lr)
        progress = (step - self.from_step) / (self.total_steps - self.from_step)
        return self.final_lr + (self.from_lr - self.final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def refit(self, total_steps: int, warmup_steps: int, step: int) -> LRSchedule:
        """The schedule with a new length and warm-up from update ``step`` on, continuing from the learning
        rate this one gives there (see ``from_step``). A run already past its warm-up stays past it; a run
        still in its warm-up finishes it (reaching the peak at the next update at the latest, if the new
        warm-up would already be over): it never decays from a learning rate it was still raising."""
        if (total_steps, warmup_steps) == (self.total_steps, self.warmup_steps):
            return self
        if step == 0:
            return LRSchedule(total_steps, warmup_steps, self.peak_lr, self.final_lr)
        if step >= self.warmup_steps:
            warmup_steps = min(warmup_steps, step)
        else:
            warmup_steps = max(warmup_steps, min(total_steps, step + 1))
        return LRSchedule(total_steps, warmup_steps, self.peak_lr, self.final_lr, from_step=step,
                          from_lr=self(step))


def set_lr(optimizer: Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group of ``optimizer`` to ``lr``."""
    for group in optimizer.param_groups:
        group["lr"] = lr
