"""``--time-budget``: fit the whole schedule (warm-up and cosine decay) to a wall-clock budget.

The speed is measured over the first steps (:data:`FIRST_ESTIMATE` of them, or fewer when they take more than
:data:`FIRST_ESTIMATE_SHARE` of the budget: a slow machine must not spend its whole budget before the first
fit; steps so slow that even that measurement would come after the budget are fitted from the time of the
first two that agree) and re-measured at a few points (25%, 50%, 75%, 90% and 97% of the way), each time
setting the total number of steps so that the run ends on time; the warm-up keeps its configured share of the
schedule (``warmup_epochs / epochs``). Until the first measurement the learning rate stays in its warm-up
(:meth:`StepBudget.provisional`), so it never decays and then jumps back up when the first fit stretches the
schedule; a re-fit during the decay continues it from where it is (:meth:`~simclr.optim.LRSchedule.refit`), so
the learning rate rises through the warm-up and then only falls."""

from __future__ import annotations

import time

from simclr.optim import LRSchedule

SETTLE_STEPS = 3
"""Steps ignored before timing starts (first-iteration allocations and kernel selection)."""
FIRST_ESTIMATE = 15
"""Timed steps behind the first estimate."""
FIRST_ESTIMATE_SHARE = 0.1
"""Share of the budget after which the first estimate is made from the steps timed so far (at least one)."""
AGREE = 0.25
"""Two steps' times agree when the longer is at most this much longer than the shorter."""
RESERVE = 0.005
"""Share of the budget kept back for the final checkpoint and bookkeeping."""


class StepBudget:
    """Keeps ``schedule.total_steps`` at what fits in ``seconds`` of wall time since ``t_start``."""

    def __init__(self, seconds: float, t_start: float, schedule: LRSchedule, warmup_fraction: float) -> None:
        self.seconds = seconds
        self.t_start = t_start
        self.warmup_fraction = min(max(warmup_fraction, 0.0), 1.0)
        self.peak, self.final = schedule.peak_lr, schedule.final_lr
        self._mark: tuple[int, float] | None = None
        self._last = time.perf_counter()  # when the previous step ended (the data and model are built by now)
        self._took: float | None = None  # how long the previous step took
        self._next = SETTLE_STEPS + FIRST_ESTIMATE
        self._fitted = False
        self._fractions = [0.25, 0.5, 0.75, 0.9, 0.97]

    def provisional(self, schedule: LRSchedule) -> LRSchedule:
        """``schedule`` with its warm-up lasting at least until the first measurement (when there is a
        warm-up): the configured total is only a guess until then."""
        if self.warmup_fraction == 0:
            return schedule
        first_fit = min(schedule.total_steps, SETTLE_STEPS + FIRST_ESTIMATE + 1)
        return LRSchedule(schedule.total_steps, max(schedule.warmup_steps, first_fit), self.peak, self.final)

    def _schedule(self, total: int, step: int, schedule: LRSchedule) -> LRSchedule:
        total = max(total, 1)
        warm = min(total, round(total * self.warmup_fraction))
        # still warming up, its fitted share already over (a short run): on up over what is left
        if schedule.warmup_steps > step >= warm:
            warm = min(total, step + max(1, round(self.warmup_fraction * (total - step))))
        return schedule.refit(total, warm, step)

    def update(self, step: int, schedule: LRSchedule) -> LRSchedule:
        """Call after each step; returns the (possibly re-fitted) schedule."""
        now = time.perf_counter()
        elapsed = now - self.t_start
        if elapsed >= self.seconds:
            return self._schedule(step, step, schedule) if step < schedule.total_steps else schedule
        took, before = now - self._last, self._took
        self._last, self._took = now, took
        if step == SETTLE_STEPS:
            self._mark = (step, now)
        if self._mark is None or step == self._mark[0]:
            # steps so slow that the first measurement would come after the budget: fit from the last two
            # steps' time once they agree (a first step that was slow building kernels is not the speed)
            to_measure = max(SETTLE_STEPS - step, 0) + 1
            agree = before is not None and max(took, before) <= (1 + AGREE) * min(took, before)
            if self._fitted or not agree or elapsed + to_measure * took <= self.seconds * (1.0 - RESERVE):
                return schedule
            return self._fit(step, took, elapsed, schedule)
        early = not self._fitted and now - self._mark[1] >= FIRST_ESTIMATE_SHARE * self.seconds
        if step < self._next and not early:
            return schedule
        return self._fit(step, (now - self._mark[1]) / (step - self._mark[0]), elapsed, schedule)

    def _fit(self, step: int, per_step: float, elapsed: float, schedule: LRSchedule) -> LRSchedule:
        """The schedule whose total fits the budget at ``per_step`` seconds a step from ``step`` on."""
        self._fitted = True
        remaining = self.seconds * (1.0 - RESERVE) - elapsed
        total = step + max(0, int(remaining / per_step))
        while self._fractions and step >= self._fractions[0] * total:
            self._fractions.pop(0)
        self._next = int(self._fractions[0] * total) if self._fractions else 1 << 62
        return self._schedule(total, step, schedule)
