"""Optimisation: LARS, weight-decay parameter groups and the learning-rate schedule (Section 2.2)."""

from simclr.optim.lars import LARS
from simclr.optim.param_groups import split_decay_groups
from simclr.optim.schedule import LRSchedule, scale_lr, set_lr, warmup_cosine, warmup_steps_for

__all__ = ["LARS", "LRSchedule", "scale_lr", "set_lr", "split_decay_groups", "warmup_cosine",
           "warmup_steps_for"]
