"""Learning-rate scaling and the warm-up + cosine schedule at their key steps (SimCLR Section 2.2, B.1)."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

from simclr.optim import LRSchedule, scale_lr, set_lr, warmup_cosine, warmup_steps_for

TOTAL, WARMUP, PEAK, FINAL = 100, 10, 2.0, 0.2


def lr_at(step: int) -> float:
    return warmup_cosine(step, TOTAL, WARMUP, PEAK, FINAL)


def test_first_step_is_not_wasted() -> None:
    assert lr_at(0) == pytest.approx(PEAK / WARMUP)  # (step + 1) / warmup convention


def test_mid_warmup() -> None:
    assert lr_at(WARMUP // 2 - 1) == pytest.approx(PEAK / 2)


def test_end_of_warmup_is_peak() -> None:
    assert lr_at(WARMUP - 1) == pytest.approx(PEAK)
    assert lr_at(WARMUP) == pytest.approx(PEAK)


def test_cosine_midpoint() -> None:
    assert lr_at((WARMUP + TOTAL) // 2) == pytest.approx((PEAK + FINAL) / 2)


def test_end_and_beyond() -> None:
    assert FINAL < lr_at(TOTAL - 1) < FINAL + 1e-3
    assert lr_at(TOTAL) == pytest.approx(FINAL)
    assert lr_at(TOTAL + 1) == FINAL
    assert lr_at(10 * TOTAL) == FINAL


def test_monotone_phases() -> None:
    values = [lr_at(s) for s in range(TOTAL + 5)]
    assert all(a < b for a, b in itertools.pairwise(values[:WARMUP]))
    assert all(a >= b for a, b in zip(values[WARMUP:], values[WARMUP + 1:]))


def test_default_final_is_zero_and_no_warmup() -> None:
    assert warmup_cosine(0, 10, 0, 1.0) == pytest.approx(1.0)
    assert warmup_cosine(5, 10, 0, 1.0) == pytest.approx(0.5)
    assert warmup_cosine(10, 10, 0, 1.0) == 0.0


def test_warmup_covering_the_whole_schedule() -> None:
    assert warmup_cosine(4, 5, 5, 1.0) == pytest.approx(1.0)
    assert warmup_cosine(5, 5, 5, 1.0) == 0.0


@pytest.mark.parametrize(
    ("step", "total", "warmup"), [(-1, 10, 2), (0, 0, 0), (0, 10, 11), (0, 10, -1)]
)
def test_schedule_errors(step: int, total: int, warmup: int) -> None:
    with pytest.raises(ValueError):
        warmup_cosine(step, total, warmup, 1.0)


def test_scale_lr_paper_values() -> None:
    assert scale_lr(0.3, 4096, "linear") == pytest.approx(4.8)
    assert scale_lr(0.075, 4096, "sqrt") == pytest.approx(4.8)
    assert scale_lr(0.3, 256, "linear") == pytest.approx(0.3)
    assert scale_lr(0.075, 256, "sqrt") == pytest.approx(1.2)


@pytest.mark.parametrize(("batch", "rule"), [(256, "cosine"), (256, "Linear"), (0, "linear"), (-4, "sqrt")])
def test_scale_lr_errors(batch: int, rule: str) -> None:
    with pytest.raises(ValueError):
        scale_lr(0.3, batch, rule)


def test_warmup_steps_for() -> None:
    assert warmup_steps_for(10, 390) == 3900
    assert warmup_steps_for(0, 390) == 0
    assert warmup_steps_for(0.5, 101) == 50
    assert warmup_steps_for(2.4, 10) == 24
    with pytest.raises(ValueError):
        warmup_steps_for(-1, 10)
    with pytest.raises(ValueError):
        warmup_steps_for(1, 0)


def test_lr_schedule_wrapper() -> None:
    schedule = LRSchedule(total_steps=TOTAL, warmup_steps=WARMUP, peak_lr=PEAK, final_lr=FINAL)
    assert [schedule(s) for s in range(0, TOTAL + 3, 7)] == [lr_at(s) for s in range(0, TOTAL + 3, 7)]
    assert LRSchedule(10, 2, 1.0).final_lr == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.peak_lr = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        LRSchedule(total_steps=10, warmup_steps=20, peak_lr=1.0)


def test_set_lr_sets_every_group() -> None:
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    set_lr(opt, 0.03)
    assert [g["lr"] for g in opt.param_groups] == [0.03, 0.03]


def test_refit_keeps_the_learning_rate_continuous_in_the_decay() -> None:
    old = LRSchedule(100, 10, 1.0)
    at = 40
    longer, shorter = old.refit(200, 20, at), old.refit(60, 6, at)
    for new in (longer, shorter):
        assert new(at) == pytest.approx(old(at))  # no jump where the fit changes
        lrs = [new(s) for s in range(at, new.total_steps + 1)]
        # falls to the end, only falls
        assert all(b <= a for a, b in itertools.pairwise(lrs)) and lrs[-1] == 0.0
    assert longer(120) == pytest.approx(old(at) * 0.5 * (1 + math.cos(math.pi * 80 / 160)))
    assert old.refit(100, 10, at) is old
    warm = old.refit(200, 20, 5)  # during the warm-up: on from where it is to the peak, then the new schedule
    assert warm(5) == pytest.approx(old(5)) and warm(19) == pytest.approx(1.0)
    ramp = [warm(s) for s in range(5, 20)]
    assert all(a < b for a, b in itertools.pairwise(ramp))
    assert [warm(s) for s in range(19, 201)] == [LRSchedule(200, 20, 1.0)(s) for s in range(19, 201)]
    late = old.refit(300, 80, at)  # a longer warm-up asked for after the warm-up ended: the run stays past it
    assert late(at) == pytest.approx(old(at)) and all(b <= a for a, b in itertools.pairwise(
        [late(s) for s in range(at, 301)]))
    # during the warm-up, a new warm-up already over: the peak next, then the decay
    short = old.refit(30, 3, 5)
    assert short(5) == pytest.approx(1.0) and max(short(s) for s in range(31)) == pytest.approx(1.0)
    assert all(b <= a for a, b in itertools.pairwise([short(s) for s in range(5, 31)]))
    assert old.refit(200, 20, 0) == LRSchedule(200, 20, 1.0)
    assert LRSchedule(**dataclasses.asdict(longer)) == longer  # as a checkpoint stores and restores it
    # before the refit fields
    stored = {"total_steps": 10, "warmup_steps": 1, "peak_lr": 1.0, "final_lr": 0.0}
    assert LRSchedule(**stored)(5) == warmup_cosine(5, 10, 1, 1.0)
