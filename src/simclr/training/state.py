"""A pretraining run in progress: counters, schedule, metrics window and skipped images, over the run's parts.

:class:`RunState`'s methods are the steps of the loop in :mod:`simclr.training.loop`. Under torchrun every
rank runs them in lockstep: the collectives (the window's mean, the gathered view states and skipped images,
the broadcast budget refits and checkpoint decisions) come at the same steps on every rank, and only rank 0
evaluates, logs and writes.

Metrics: one row per logged step. The row of an epoch's last step is held until the epoch's diagnostics and
kNN accuracy join it (a window still open at the epoch's end is closed there when they are due); an evaluation
at a step whose row is already written (a resumed run finishing the kNN evaluation an interruption cut short)
repeats that row's training values.
"""

from __future__ import annotations

import math
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from simclr.data.views import LoaderViews
from simclr.errors import InputError
from simclr.interrupts import deferred
from simclr.optim import set_lr
from simclr.runtime import distributed as dist
from simclr.runtime.checkpoint import LAST, non_finite, rng_state, save_checkpoint
from simclr.runtime.resume import Progress, run_checkpoint
from simclr.training.diagnostics import collapse_warning, measure
from simclr.training.setup import Parts, Start, note, write_skipped


class Window:
    """The steps since the last metrics row: their summed loss and accuracy on the device (no host sync until
    the row), how many, and the training time the window started at."""

    def __init__(self, device: torch.device, t: float) -> None:
        self.loss = torch.zeros((), device=device)
        self.acc = torch.zeros((), device=device)
        self.n, self.t = 0, t

    def add(self, loss: torch.Tensor, acc: torch.Tensor) -> None:
        self.loss += loss
        self.acc += acc
        self.n += 1

    def means(self) -> tuple[float, float]:
        """Mean loss and accuracy over the window's steps and all ranks (waits for the device)."""
        means = dist.all_mean(torch.stack([self.loss, self.acc])) / self.n
        return float(means[0]), float(means[1])

    def reset(self, t: float) -> None:
        self.loss.zero_()
        self.acc.zero_()
        self.n, self.t = 0, t


@dataclass
class Row:
    """One metrics line being put together: a step's ``record`` (epoch, step, training values, time) and the
    groups of values joining it (``diag``, ``knn``). ``fresh``: its training values are new (a repeated record
    is not sent to TensorBoard again)."""

    record: dict[str, Any]
    fresh: bool = True
    extra: dict[str, dict[str, float]] = field(default_factory=dict)


class BudgetBar(tqdm):
    """A progress bar that never promises more than the time budget leaves: until the budget's fit settles
    the total (a slow first step would otherwise predict hours), the total shown is at most the steps that
    fit in the time left at the speed so far, so the time-left estimate is at most the time left."""

    def __init__(self, *args: Any, deadline: float | None = None, **kwargs: Any) -> None:
        self.deadline = deadline  # time.perf_counter() at which the budget ends; None without one
        super().__init__(*args, **kwargs)

    @property
    def format_dict(self) -> MutableMapping[str, Any]:
        shown = super().format_dict
        total, n, elapsed = shown.get("total"), shown.get("n", 0), shown.get("elapsed", 0.0)
        rate = shown.get("rate") or ((n - shown.get("initial", 0)) / elapsed if elapsed else None)
        if self.deadline is not None and rate and total:
            left = max(self.deadline - time.perf_counter(), 0.0)
            shown["total"] = max(n, min(total, n + int(left * rate)))
        return shown


class Diverged(InputError):
    """The loss became NaN or infinite: the run stops without saving (its last checkpoint is its last good
    state)."""


class RunState:
    """The moving parts of a run; its methods are the loop's steps (see the module's docstring).

    Args:
        parts: the run's assembled parts.
        start: where it starts (schedule, budget, progress, clock).
        progress: show a progress bar.
        stop_after_steps: stop (with a checkpoint) once this many steps are done in total.
    """

    def __init__(self, parts: Parts, start: Start, *, progress: bool = True,
                 stop_after_steps: int | None = None) -> None:
        self.parts, self.tr = parts, parts.config.train
        done = start.progress
        self.step, self.epoch, self.pos = done.step, done.epoch, done.position
        self.skipped, self.knn_pending = dict(done.skipped), done.knn_pending
        self.last_row = dict(done.last_row)
        self.schedule = self.proposed = start.schedule  # torchrun: rank 0's budget proposes, all adopt it
        self.budget, self.clock, self.stop_after = start.budget, start.clock, stop_after_steps
        self.stop = False
        self.done_before = start.resumed and self.finished  # a finished run resumed: nothing runs
        self.last_loss = math.nan
        self.lr, self.n = 0.0, self.tr.batch_size // parts.ctx.world_size  # of the latest step, this process
        self.row: Row | None = None  # the row of this step, held until the epoch's evaluations join it
        deadline = None if start.budget is None else start.budget.t_start + start.budget.seconds
        self.bar = BudgetBar(total=self.schedule.total_steps, initial=self.step, desc="pretrain", unit="step",
                             disable=not progress, dynamic_ncols=True, deadline=deadline)
        self.window = Window(parts.device, self.clock.seconds())  # a kNN evaluation inside does not count
        self.saved_at = time.perf_counter()

    @property
    def finished(self) -> bool:
        """The schedule's steps are all done."""
        return self.step >= self.schedule.total_steps

    def train_step(self, v1: torch.Tensor, v2: torch.Tensor) -> None:
        """One optimiser step on a batch of view pairs; then its row, budget refit and stop when due."""
        self.n, self.lr = v1.shape[0], self.schedule(self.step)
        set_lr(self.parts.optimizer, self.lr)
        with deferred():  # a stop request waits until the update, the counters and the log window agree
            loss, accuracy = self.parts.step(v1, v2)
            self.step += 1
            self.pos += 1
            self.window.add(loss, accuracy)
        if self.step % self.tr.log_every == 0 or self.step == self.schedule.total_steps:
            self._close_window()
        self.bar.update(1)
        if self.budget is not None:
            self._follow_budget()
        self.stop = self.finished or (self.stop_after is not None and self.step >= self.stop_after)

    def end_epoch(self) -> None:
        """After an epoch's last step: skipped images, the epoch's row with the diagnostics and kNN accuracy
        when due, and the checkpoints due."""
        self.check_finite()  # before anything measures or saves the network
        diagnose, knn = self._evaluations_due(self.epoch + 1)
        if (diagnose or knn) and self.window.n:
            self._close_window()  # on every rank: its mean is a collective
        self.epoch += 1
        self.pos = 0
        if isinstance(self.parts.views, LoaderViews):
            for part in dist.gather_objects(self.parts.views.skipped):
                self.skipped.update(part)
            if self.parts.ctx.is_main:
                write_skipped(self.parts.run_dir, self.skipped)
        if diagnose:
            self._diagnose()
        if knn:
            self.evaluate_knn()
        self._write_row()
        self._save_due()

    def evaluate_knn(self) -> None:
        """The kNN monitor's accuracy (rank 0), joined to this step's row; ``knn_pending`` while it runs, so
        that an interruption leaves the evaluation to the resumed run."""
        self.knn_pending = True
        monitor = self.parts.monitor
        if monitor is not None:
            at = self.clock.seconds()
            with self.clock.paused():
                acc = monitor(self.parts.net)
                self.parts.net.train()
            if acc is not None:
                self._join("knn", {**acc, "time_s": at})
                note(f"epoch {self.epoch}: kNN top-1 {acc['knn_top1']:.4f}")
        self.knn_pending = False
        self._write_row()

    def checkpoint(self, name: str = LAST, gather: bool = True) -> None:
        """Save the run to ``run_dir/name`` (rank 0) with every rank's data order and random state
        (``gather``: from the peers; an interrupted run, whose peers may be gone, saves its own only)."""
        p = self.parts
        bad = torch.tensor([float(bool(non_finite(p.net.state_dict())))], device=p.device)  # and BN stats
        if gather:  # every rank decides alike (batch-norm statistics differ between ranks without sync_bn)
            bad = dist.all_mean(bad)
        if float(bad[0]) > 0:  # not saved: the last checkpoint stays the last good one
            raise self._diverged(math.nan)
        mine = {"views": p.views.state_dict(), "rng": rng_state(p.device)}
        ranks = dist.gather_objects(mine) if gather else [mine]
        if p.ctx.is_main:
            done = Progress(self.step, self.epoch, self.pos, self.clock.seconds(), dict(self.skipped),
                            self.knn_pending, dict(self.last_row))
            save_checkpoint(run_checkpoint(p.config, p.net, p.optimizer, p.scaler, self.schedule, ranks,
                                           p.ctx.world_size, done), p.run_dir / name)

    def save_interrupted(self) -> None:
        """On Ctrl-C or SIGTERM: the row of the steps since the last one, last.pt, the files closed. Peers may
        be gone: no collectives (so under torchrun the open window is not logged)."""
        if self.window.n and not self.parts.ctx.enabled:
            self._close_window()
        self._write_row()
        try:
            self.checkpoint(gather=False)
        except Diverged:
            self.abandon()
            raise
        self.bar.close()
        if self.parts.log is not None:
            self.parts.log.close()

    def close(self) -> None:
        """At the end: last.pt when the run stopped mid-epoch, skipped.txt, the files closed."""
        p = self.parts
        if self.pos != 0:
            self.checkpoint()
        self.bar.close()
        if p.log is None:
            return
        p.log.close()
        if isinstance(p.views, LoaderViews):
            self.skipped.update(p.views.skipped)
        write_skipped(p.run_dir, self.skipped)
        if self.skipped and not self.done_before:
            note(f"skipped {len(self.skipped)} unreadable image(s); see {p.run_dir / 'skipped.txt'}")

    def _diverged(self, loss: float) -> Diverged:
        """The one line that stops a run whose loss is ``loss`` (not finite)."""
        last = self.parts.run_dir / LAST
        kept = f"{last} (its last good state) is kept" if last.is_file() else "nothing was saved"
        first = self.step - self.window.n + 1
        return Diverged(f"training diverged: the loss is {loss} by step {self.step} (steps {first}-"
                        f"{self.step}, learning rate {self.lr:.4g}); {kept}. Start a new run with a lower "
                        f"rate (now optim.base_lr={self.parts.config.optim.base_lr:g}) or a longer "
                        "optim.warmup_epochs, from it with --init if you like (--resume keeps the settings)")

    def check_finite(self) -> None:
        """Raise :class:`Diverged` when a step since the last row had a non-finite loss (every rank agrees:
        the check is a collective)."""
        if self.window.n:
            loss = float(dist.all_mean(self.window.loss.detach().clone().reshape(1))[0])
            if not math.isfinite(loss):
                raise self._diverged(loss)

    def abandon(self) -> None:
        """After divergence: the progress bar and the log closed, nothing saved."""
        self.bar.close()
        if self.parts.log is not None:
            self.parts.log.close()

    def _close_window(self) -> None:
        """The row of the steps since the last one; written at once, or held when this step ends an epoch."""
        loss, acc = self.window.means()  # waits for the device: the window's time includes its work
        if not math.isfinite(loss):
            raise self._diverged(loss)
        now = self.clock.seconds()
        views_per_s = 2 * self.n * self.parts.ctx.world_size * self.window.n / max(now - self.window.t, 1e-9)
        self.last_loss = loss
        self.last_row = {"loss": loss, "contrastive_acc": acc, "lr": self.lr, "views_per_s": views_per_s}
        self.row = Row({"epoch": self.epoch + 1, "step": self.step, **self.last_row, "time_s": now})
        self.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.2f}", lr=f"{self.lr:.3g}",
                             views_s=f"{views_per_s:.0f}", refresh=False)
        self.window.reset(self.clock.seconds())
        if self.pos < self.parts.views.steps_per_epoch:
            self._write_row()

    def _join(self, group: str, values: dict[str, float]) -> None:
        """Add ``values`` to this step's row; without one, a row repeating the last row's training values."""
        if self.row is None:
            record = {"epoch": self.epoch, "step": self.step, **self.last_row, "time_s": self.clock.seconds()}
            self.row = Row(record, fresh=False)
        self.row.extra[group] = values

    def _write_row(self) -> None:
        if self.row is not None and self.parts.log is not None:
            self.parts.log.write(self.row.record, "train" if self.row.fresh else None, self.row.extra)
        self.row = None

    def _evaluations_due(self, epoch: int) -> tuple[bool, bool]:
        """Whether the diagnostics and the kNN monitor run after ``epoch`` (the same on every rank)."""
        every = (self.tr.diagnostics_every, self.tr.knn_every)
        due = [n > 0 and (epoch % n == 0 or self.finished) for n in every]
        return due[0], due[1]

    def _diagnose(self) -> None:
        """Alignment, uniformity and effective rank on the probe views (rank 0), joined to this step's row; a
        warning when h collapses."""
        p = self.parts
        if p.probe is None or p.log is None:
            return
        with self.clock.paused():
            values, dim = measure(p.net, p.probe, p.precision, p.device, self.tr.channels_last)
        self._join("diag", values)
        warning = collapse_warning(values["effective_rank_h"], dim, samples=2 * len(p.probe[0]))
        if warning:
            note(f"epoch {self.epoch}: {warning}")

    def _follow_budget(self) -> None:
        """Refit the schedule to the time budget; under torchrun rank 0's fit, adopted at log points."""
        assert self.budget is not None
        ctx = self.parts.ctx
        if not ctx.enabled:
            self.schedule = self.budget.update(self.step, self.schedule)
        else:
            if ctx.is_main:
                self.proposed = self.budget.update(self.step, self.proposed)
            if self.step % self.tr.log_every == 0:  # adopt rank 0's fit on every rank at the same step
                fit = [self.proposed.total_steps, self.proposed.warmup_steps]
                total_steps, warm = dist.broadcast_ints(fit, self.parts.device)
                self.schedule = self.schedule.refit(total_steps, warm, self.step)  # the same on every rank
        self.bar.total = self.schedule.total_steps

    def _save_due(self) -> None:
        """last.pt when stopping, finished, or ``save_minutes`` after the last (rank 0's clock decides for
        all); ``epoch_NNNN.pt`` every ``checkpoint_every`` epochs."""
        due = self.stop or self.finished or time.perf_counter() - self.saved_at >= self.tr.save_minutes * 60
        if dist.broadcast_ints([int(due)], self.parts.device)[0]:
            self.checkpoint()
            self.saved_at = time.perf_counter()
        if self.tr.checkpoint_every and self.epoch % self.tr.checkpoint_every == 0:
            self.checkpoint(f"epoch_{self.epoch:04d}.pt")
