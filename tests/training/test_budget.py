"""--time-budget's step budget: the schedule fitted to the wall clock, on slow machines too."""

import itertools

import pytest

from simclr.optim import LRSchedule
from simclr.training import budget as budget_module
from simclr.training.budget import FIRST_ESTIMATE, SETTLE_STEPS, StepBudget


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(monkeypatch: pytest.MonkeyPatch, seconds_per_step: float, budget_s: float, *, setup_s: float = 0.0,
         first_step_s: float | None = None) -> tuple[list[float], int]:
    """Steps of a fixed duration (the first one ``first_step_s``, as when kernels are built) under a budget
    whose clock started ``setup_s`` before the data and model were ready (warm-up: a tenth of the run): the
    learning rates used and the step at which the first fit came."""
    clock = Clock()
    monkeypatch.setattr(budget_module.time, "perf_counter", clock)
    schedule = LRSchedule(10_000, 1_000, 1.0)  # the configured epochs: far more than fits
    clock.now = setup_s
    budget = StepBudget(budget_s, 0.0, schedule, 0.1)
    schedule = budget.provisional(schedule)
    lrs, first_fit, step = [], None, 0
    while step < schedule.total_steps:
        lrs.append(schedule(step))
        step += 1
        clock.now += first_step_s if step == 1 and first_step_s is not None else seconds_per_step
        before = schedule.total_steps
        schedule = budget.update(step, schedule)
        if first_fit is None and schedule.total_steps != before:
            first_fit = step
    assert clock.now <= budget_s + seconds_per_step  # ends on time
    assert first_fit is not None
    return lrs, first_fit


def test_a_fast_machine_fits_after_the_first_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    lrs, first_fit = _run(monkeypatch, 0.01, 12.0)
    assert first_fit == SETTLE_STEPS + FIRST_ESTIMATE and len(lrs) > 1000
    top = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(1.0) and 0.08 < top / len(lrs) < 0.12  # the warm-up keeps its tenth
    assert all(a <= b for a, b in itertools.pairwise(lrs[: top + 1]))  # rises, then only falls, to near zero
    assert all(b <= a for a, b in itertools.pairwise(lrs[top:])) and lrs[-1] < 0.01


def test_a_slow_machine_fits_early_and_still_decays(monkeypatch: pytest.MonkeyPatch) -> None:
    """One second a step under a 12-second budget: waiting for 15 timed steps would spend the whole budget in
    the warm-up; the first fit comes after a tenth of the budget instead, the rate still reaches its peak (its
    fitted warm-up was over by then: on up at once) and the cosine runs to its end."""
    for seconds_per_step in (1.0, 0.3):
        lrs, first_fit = _run(monkeypatch, seconds_per_step, 12.0)
        assert first_fit < SETTLE_STEPS + FIRST_ESTIMATE and len(lrs) >= 0.8 * 12 / seconds_per_step
        top = lrs.index(max(lrs))
        assert max(lrs) == pytest.approx(1.0) and top < len(lrs) - 3 and lrs[-1] < 0.2
        assert all(a <= b for a, b in itertools.pairwise(lrs[: top + 1]))
        assert all(b <= a for a, b in itertools.pairwise(lrs[top:]))


def test_steps_too_slow_to_measure_are_fitted_once_two_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """22 s a step under a 60-second budget (the paper's ResNet-50 on a laptop): the settling steps alone
    would overrun it, so the first two steps' time sets the total; the run ends on time (before, a third step
    ran past the budget)."""
    lrs, first_fit = _run(monkeypatch, 22.0, 60.0)
    assert first_fit == 2 and len(lrs) == 2  # 44 s: a third step would end at 66 s
    lrs, first_fit = _run(monkeypatch, 0.5, 60.0)  # measurable: the settling steps come first, as before
    assert first_fit > SETTLE_STEPS


@pytest.mark.parametrize("setup_s,first_step_s", [(30.0, None), (0.0, 40.0), (30.0, 40.0)])
def test_slow_setup_or_a_slow_first_step_is_not_the_speed(monkeypatch: pytest.MonkeyPatch, setup_s: float,
                                                          first_step_s: float | None) -> None:
    """Decoding the data before the first step, or a first step that builds kernels (CUDA graphs), take a
    large share of a short budget; the steps after them are fast, and the run fills what is left."""
    lrs, first_fit = _run(monkeypatch, 0.1, 120.0, setup_s=setup_s, first_step_s=first_step_s)
    left = 120.0 - setup_s - (first_step_s or 0.1)
    assert first_fit > SETTLE_STEPS and len(lrs) > 0.8 * left / 0.1
