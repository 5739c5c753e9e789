"""Run logging: one JSON object per line in metrics.jsonl, the same scalars as TensorBoard events."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simclr.files import json_text


class MetricsLog:
    """Append-only metrics.jsonl plus TensorBoard scalars (``tensorboard --logdir RUN_DIR``)."""

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        self._fh = open(self.path, "a", buffering=1)  # noqa: SIM115 (closed by close())
        self._tb: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def write(self, record: dict[str, Any], tag: str = "train") -> None:
        """Write one record; numeric fields also go to TensorBoard under ``tag/<name>`` at ``record['step']``."""
        self._fh.write(json_text(record) + "\n")
        if self._tb is not None:
            step = int(record.get("step", 0))
            for key, value in record.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self._tb.add_scalar(f"{tag}/{key}", value, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file (a line cut short by a killed process is left out)."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


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
