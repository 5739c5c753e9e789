"""Run logging: one JSON object per line in metrics.jsonl, the same scalars as TensorBoard events (when
tensorboard, the 'tensorboard' extra, is installed; without it a run notes once that it writes metrics.jsonl
only).

Every line of a run's metrics.jsonl is one logged step and holds at least :data:`ROW_KEYS`; the diagnostics
(``alignment``, ``uniformity``, ``effective_rank_h``) and the kNN monitor's ``knn_top1``/``knn_top5`` join the
line of the step they were measured at (TensorBoard keeps them apart, under ``diag/`` and ``knn/``).
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from simclr.errors import is_number
from simclr.files import atomic_write_text, json_text

ROW_KEYS = ("epoch", "step", "loss", "lr", "views_per_s")
"""What every line of a run's metrics.jsonl holds (besides ``contrastive_acc`` and ``time_s``, and the
diagnostics and kNN values at the steps they were measured)."""
TRAIN_VALUES = ("loss", "contrastive_acc", "lr", "views_per_s")
"""The training values of a row: what a row of evaluations at a step without new training repeats."""
WITHOUT_TENSORBOARD = ("simclr: note: tensorboard is not installed, so the run writes metrics.jsonl only "
                       "(pip install 'simclr-kit[tensorboard]' for TensorBoard events)")
_noted: list[bool] = []  # whether this process has printed WITHOUT_TENSORBOARD


def _summary_writer(log_dir: Path, purge_step: int | None = None) -> Any:
    """TensorBoard's SummaryWriter for ``log_dir`` (events from ``purge_step`` on dropped), or None (noted on
    stderr once a process) without tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's module imports tensorboard
        if not _noted:
            _noted.append(True)
            print(WITHOUT_TENSORBOARD, file=sys.stderr)
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


class MetricsLog:
    """Append-only metrics.jsonl plus TensorBoard scalars (``tensorboard --logdir RUN_DIR``; none without
    tensorboard installed). ``resumed_at``: the step of the checkpoint a resumed run starts from; the events a
    run killed after it wrote for later steps are purged, as :func:`drop_rows_after` drops their rows."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, resumed_at: int | None = None) -> None:
        self.path = run_dir / "metrics.jsonl"
        self._fh = open(self.path, "a", buffering=1)  # noqa: SIM115 (closed by close())
        self._tb: Any = None
        if tensorboard:
            self._tb = _summary_writer(run_dir / "tensorboard",
                                       None if resumed_at is None else resumed_at + 1)

    def write(self, record: dict[str, Any], tag: str | None = "train",
              extra: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Write one line: ``record`` and the values of every ``extra`` group (e.g. ``{"knn": {...}}``).

        Numeric fields also go to TensorBoard at ``record['step']``: the record's under ``tag/<name>`` (none
        when ``tag`` is None: a record that repeats values already sent), each group's under
        ``<group>/<name>``.
        """
        groups = dict(extra or {})
        line = dict(record)
        for values in groups.values():
            line.update(values)
        self._fh.write(json_text(line) + "\n")
        if self._tb is None:
            return
        step = int(record.get("step", 0))
        if tag is not None:
            groups = {tag: record, **groups}
        for group, values in groups.items():
            for key, value in values.items():
                if key not in ("step", "epoch") and is_number(value):
                    self._tb.add_scalar(f"{group}/{key}", value, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


_CUT = object()
"""The value of a line a killed process cut short (not JSON)."""


def _parsed_lines(path: Path) -> list[tuple[str, Any]]:
    """Each line of a metrics.jsonl file as written (newline kept) with its JSON value, or :data:`_CUT`."""
    lines = []
    for line in path.read_text().splitlines(keepends=True):
        try:
            lines.append((line, json.loads(line)))
        except json.JSONDecodeError:
            lines.append((line, _CUT))
    return lines


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file (a line cut short by a killed process is left out)."""
    return [value for _, value in _parsed_lines(path) if value is not _CUT]


def drop_rows_after(path: Path, step: int) -> int:
    """Remove from ``metrics.jsonl`` the rows logged after ``step`` (by a run killed after its last
    checkpoint, whose resumed run logs those steps again); returns how many. The file is rewritten
    atomically."""
    if not path.is_file():
        return 0
    lines = _parsed_lines(path)
    keep = [line for line, value in lines if _step_of(value) <= step]
    if len(keep) < len(lines):
        atomic_write_text(path, "".join(keep))
    return len(lines) - len(keep)


def _step_of(row: Any) -> float:
    """A metrics row's step (rows without one count as step 0: kept; a line a kill cut short as infinity:
    dropped)."""
    if row is _CUT:
        return float("inf")
    step = row.get("step") if isinstance(row, dict) else None
    return step if isinstance(step, (int, float)) else 0


def last_logged(path: Path, step: int) -> dict[str, float]:
    """The :data:`TRAIN_VALUES` of the last record of metrics.jsonl ``path`` at or before ``step`` (empty when
    it has none or cannot be read)."""
    try:
        records = read_metrics(path)
    except (OSError, ValueError):  # missing, unreadable, not text
        return {}
    rows = [r for r in records
            if all(k in r for k in TRAIN_VALUES) and is_number(r.get("step")) and r["step"] <= step]
    return {k: float(v) if is_number(v := rows[-1][k]) else math.nan for k in TRAIN_VALUES} if rows else {}


class TrainClock:
    """Seconds a run has spent training: setup and steps, not the kNN monitor's or diagnostics' evaluations.

    A resumed run continues from the seconds saved in its checkpoint and adds its own (its setup included),
    so ``time_s`` in metrics.jsonl is the training time an uninterrupted run would have needed, plus the
    restarts' setup.
    """

    def __init__(self, start: float, before: float = 0.0) -> None:
        self._start = start
        self._before = before
        self._paused = 0.0

    def seconds(self) -> float:
        return self._before + time.perf_counter() - self._start - self._paused

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time inside the block does not count."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._paused += time.perf_counter() - t0


def knn_curve(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The kNN monitor's records (those with ``knn_top1``) in step order, one per step (the last written wins:
    a run killed after logging and resumed from an earlier checkpoint logs the same steps again)."""
    by_step = {int(r["step"]): r for r in records if r.get("knn_top1") is not None}
    return [by_step[s] for s in sorted(by_step)]


def time_to(records: list[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """The first kNN record reaching ``target`` top-1 (a fraction), or None."""
    for rec in knn_curve(records):
        if rec["knn_top1"] >= target:
            return rec
    return None
