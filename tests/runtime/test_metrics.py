"""metrics.jsonl: reading it back (also after a kill), the training clock, the kNN curve and time to a
target."""

import json
import time
from pathlib import Path

import pytest

from simclr.runtime.metrics import MetricsLog, TrainClock, knn_curve, last_logged, read_metrics, time_to


def test_read_metrics_skips_a_line_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n" + '{"step": 2, "lo')
    assert read_metrics(path) == [{"step": 1, "loss": 2.0}]


def test_train_clock_continues_and_pauses() -> None:
    clock = TrainClock(time.perf_counter(), before=100.0)
    assert 100.0 <= clock.seconds() < 100.5
    with clock.paused():
        time.sleep(0.3)
    assert clock.seconds() < 100.25  # the paused 0.3 s do not count
    time.sleep(0.1)
    assert clock.seconds() >= 100.1


RECORDS = [
    {"step": 10, "loss": 5.0, "time_s": 1.0},
    {"step": 10, "knn_top1": 0.40, "time_s": 1.1},
    {"step": 20, "knn_top1": 0.62, "time_s": 2.0},
    {"step": 30, "knn_top1": 0.58, "time_s": 3.0},
    {"step": 20, "knn_top1": 0.61, "time_s": 2.2},  # logged again after a resume from step 10
    {"step": 40, "knn_top1": 0.90, "time_s": 4.0},
]


def test_knn_curve_is_in_step_order_and_the_last_record_of_a_step_wins() -> None:
    assert [(r["step"], r["knn_top1"]) for r in knn_curve(RECORDS)] == [(10, 0.40), (20, 0.61), (30, 0.58),
                                                                        (40, 0.90)]


@pytest.mark.parametrize(("target", "step"), [(0.3, 10), (0.6, 20), (0.9, 40), (0.95, None)])
def test_time_to_is_the_first_record_at_the_target(target: float, step: int | None) -> None:
    rec = time_to(RECORDS, target)
    assert (rec["step"] if rec else None) == step


class _Scalars:
    """Stands in for TensorBoard's writer: records ``(tag, value, step)``."""

    def __init__(self) -> None:
        self.added: list[tuple[str, float, int]] = []

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.added.append((tag, value, step))

    def close(self) -> None:
        pass


def test_a_row_with_evaluations_is_one_line_and_keeps_its_tensorboard_tags(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path, tensorboard=False)
    log._tb = scalars = _Scalars()
    row = {"epoch": 1, "step": 22, "loss": 5.0, "lr": 0.1, "views_per_s": 100.0}
    log.write(row, extra={"diag": {"alignment": 1.5}, "knn": {"knn_top1": 0.4}})
    log.write({**row, "step": 23}, tag=None, extra={"knn": {"knn_top1": 0.5}})  # repeated values: not re-sent
    log.close()
    assert read_metrics(tmp_path / "metrics.jsonl") == [{**row, "alignment": 1.5, "knn_top1": 0.4},
                                                       {**row, "step": 23, "knn_top1": 0.5}]
    assert scalars.added == [("train/loss", 5.0, 22), ("train/lr", 0.1, 22), ("train/views_per_s", 100.0, 22),
                             ("diag/alignment", 1.5, 22), ("knn/knn_top1", 0.4, 22),
                             ("knn/knn_top1", 0.5, 23)]


def test_last_logged_is_the_last_training_row_up_to_a_step(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": float(s), "contrastive_acc": 0.5, "lr": 0.1, "views_per_s": 9.0}
            for s in (5, 10)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 12, "loss": null, "contrast')
    assert last_logged(path, 12) == {"loss": 10.0, "contrastive_acc": 0.5, "lr": 0.1, "views_per_s": 9.0}
    assert last_logged(path, 7)["loss"] == 5.0
    assert last_logged(path, 4) == {} and last_logged(tmp_path / "missing.jsonl", 10) == {}


def test_a_resumed_run_purges_the_tensorboard_events_logged_after_its_checkpoint(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = MetricsLog(tmp_path)
    for step in range(1, 11):  # killed after step 10; its checkpoint was at step 5
        first.write({"epoch": 0, "step": step, "loss": float(step)})
    first.close()
    resumed = MetricsLog(tmp_path, resumed_at=5)
    for step in range(6, 9):
        resumed.write({"epoch": 0, "step": step, "loss": 100.0 + step})
    resumed.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    got = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert got == [(s, float(s)) for s in range(1, 6)] + [(s, 100.0 + s) for s in range(6, 9)]
