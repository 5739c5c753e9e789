"""The pretraining loop (Algorithm 1 of the paper), readable top to bottom.

One step: two augmented views of a batch go through f and g in one forward pass, the contrastive loss on z, a
LARS (or SGD/AdamW) step with the warm-up + cosine learning rate of that step. After each epoch: the
diagnostics and the kNN monitor when due (joining the epoch's last metrics row) and a checkpoint that holds
everything needed to continue the same run exactly (``resume=True``). The run's parts are assembled in
:mod:`simclr.training.setup`; what moves while it runs, and each step of the loop, is
:class:`~simclr.training.state.RunState`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simclr.config import Config
from simclr.config_io import config_to_dict, flatten
from simclr.data.named_sets import read_by_name
from simclr.errors import InputError, is_number
from simclr.files import FolderLock
from simclr.runtime import distributed as dist
from simclr.runtime.checkpoint import LAST, load_checkpoint, saved_config
from simclr.runtime.device import pick_device
from simclr.runtime.metrics import read_metrics
from simclr.training.setup import GRID_PAIRS, PROBE_VIEWS, Parts, Start, assemble, note
from simclr.training.state import Diverged, RunState

__all__ = ["GRID_PAIRS", "PROBE_VIEWS", "PretrainResult", "check_out_of_data", "pretrain"]


@dataclass(frozen=True)
class PretrainResult:
    """What a finished (or stopped) run reached: ``epoch`` whole epochs, ``passes`` over the data in all
    (steps over steps per epoch: 0.5 for half an epoch)."""

    run_dir: Path
    step: int
    total_steps: int
    epoch: int
    loss: float
    skipped: int
    passes: float = 0.0


def pretrain(config: Config, run_dir: Path, *, resume: bool = False, progress: bool = True,
             stop_after_steps: int | None = None) -> PretrainResult:
    """Pretrain f and g on ``config.data.spec``, writing everything to ``run_dir``.

    Args:
        config: the run's configuration (ignored when resuming: the saved one is used).
        run_dir: the run folder (config.yaml, metrics.jsonl, tensorboard/, last.pt, skipped.txt).
        resume: continue the run saved in ``run_dir/last.pt``.
        progress: show progress bars.
        stop_after_steps: stop (with a checkpoint) once this many steps are done in total, as an
            interruption would; the schedule is unchanged, so ``resume`` continues the same run.
    """
    t_start = time.perf_counter()
    ctx = dist.DistContext.from_env()
    if not resume and restarted(run_dir):
        resume = True  # torchrun restarted the workers after a failure: continue from the last checkpoint
    lock = FolderLock(run_dir, "simclr pretrain")
    try:
        if ctx.is_main and run_dir.is_dir():  # before its checkpoint is read: another run may be writing it
            lock.acquire()
        result = _locked(config, run_dir, ctx, resume, t_start, lock, progress, stop_after_steps)
    finally:
        lock.release()
    dist.destroy_process_group(wait_for_peers=True)
    return result


def _locked(config: Config, run_dir: Path, ctx: dist.DistContext, resume: bool, t_start: float,
            lock: FolderLock, progress: bool, stop_after_steps: int | None) -> PretrainResult:
    """The run, its folder locked (rank 0: taken here once the folder exists, if not already)."""
    config, state, init = _start(config, run_dir, resume, main=ctx.is_main)
    device = dist.device_for(ctx, pick_device(config.train.device))
    dist.init_process_group(ctx, device, config.train.dist_timeout)
    progress = progress and ctx.is_main  # only rank 0 shows progress bars
    try:
        parts, start = assemble(config, run_dir, ctx, device, t_start=t_start, state=state, init=init,
                                progress=progress, lock=lock)
        return _train(parts, start, progress, stop_after_steps)
    except BaseException:
        dist.destroy_process_group()
        raise


def _train(parts: Parts, start: Start, progress: bool, stop_after_steps: int | None) -> PretrainResult:
    """Steps over the stream of view pairs, epoch after epoch, until the schedule ends or the run stops."""
    run = RunState(parts, start, progress=progress, stop_after_steps=stop_after_steps)
    per_epoch = parts.views.steps_per_epoch
    try:
        if run.knn_pending:
            run.evaluate_knn()  # the evaluation an interruption cut short
        while not run.finished and not run.stop:
            for v1, v2 in parts.views.batches(run.pos):
                run.train_step(v1, v2)
                if run.stop:
                    break
            if run.stop and run.pos < per_epoch:
                break  # mid-epoch: the checkpoint run.close() writes records the position
            run.end_epoch()
        run.check_finite()
        run.close()
    except KeyboardInterrupt:
        run.save_interrupted()  # (a diverged network is not saved: see RunState.checkpoint)
        raise
    except Diverged:
        run.abandon()
        raise
    loss = _logged_loss(parts.run_dir) if run.done_before else run.last_loss
    return PretrainResult(parts.run_dir, run.step, run.schedule.total_steps, run.epoch, loss,
                          len(run.skipped), run.step / per_epoch)


def restarted(run_dir: Path) -> bool:
    """Whether this process is one of the workers torchrun restarted after a failure of a run that saved
    ``run_dir/last.pt``: it continues that run."""
    return dist.DistContext.from_env().enabled and dist.restart_count() > 0 and (run_dir / LAST).is_file()


def check_new_run(run_dir: Path) -> None:
    """InputError unless ``run_dir`` can hold a new run: not a file, no run's last.pt in it."""
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"--out {run_dir} is a file, not a run folder: choose another --out")
    if (run_dir / LAST).exists():
        raise InputError(f"{run_dir} already holds a run (last.pt); pass --resume to continue it or choose "
                         "another --out")


def check_out_of_data(out: Path, spec: str) -> None:
    """InputError if ``out`` lies in the image folder ``spec`` (a named dataset is never read from a folder):
    the run's views.png would become one of its images."""
    data = Path(spec).expanduser()
    if not spec or read_by_name(spec) or not data.is_dir():
        return
    if Path(out).resolve().is_relative_to(data.resolve()):
        raise InputError(f"--out {out} lies in the dataset {spec}: its views.png would be read as one of its "
                         "images; choose an --out outside it")


def _logged_loss(run_dir: Path) -> float:
    """The last loss in the run's metrics.jsonl (nan if it has none or cannot be read)."""
    try:
        losses = [r["loss"] for r in read_metrics(run_dir / "metrics.jsonl") if is_number(r.get("loss"))]
    except (OSError, ValueError):  # missing, unreadable, not text
        return float("nan")
    return float(losses[-1]) if losses else float("nan")


def _start(config: Config, run_dir: Path, resume: bool, *, main: bool = True) -> tuple[
        Config, dict[str, Any] | None, dict[str, Any] | None]:
    """The config to run and, when resuming, the checkpoint to continue, else ``model.init``'s weights."""
    last = run_dir / LAST
    if resume:
        if run_dir.exists() and not run_dir.is_dir():
            raise InputError(f"--out {run_dir} is a file, not a run folder: choose another --out")
        if not last.is_file():
            plan = run_dir / "config.yaml"
            hint = (f" ({plan} is a saved plan: train it with simclr pretrain --config {plan} --out "
                    f"{run_dir})" if plan.is_file() else "")
            raise InputError(f"--resume: no checkpoint {last} to resume from{hint}")
        state = load_checkpoint(last)
        if "optimizer" not in state:
            raise InputError(f"--resume: {last} holds a model exported by simclr export, not a run's "
                             "checkpoint")
        return saved_config(state, last), state, None
    check_new_run(run_dir)
    check_out_of_data(run_dir, config.data.spec)
    if not config.model.init:
        return config, None, None
    init = load_checkpoint(config.model.init)
    return _adopt_model(config, init, tell=main), None, init["model"]


def _adopt_model(config: Config, init: dict[str, Any], *, tell: bool = True) -> Config:
    """``config`` with the model settings of the ``model.init`` checkpoint (a note names those replaced)."""
    theirs = dataclasses.replace(saved_config(init, config.model.init).model, init=config.model.init)
    mine = flatten(config_to_dict(config)["model"])
    saved = flatten(config_to_dict(dataclasses.replace(config, model=theirs))["model"])
    changed = [f"{key} {mine[key]} -> {saved[key]}" for key in saved
               if mine.get(key) != saved[key] and mine.get(key) not in (None, "auto")]
    if changed and tell:
        note(f"note: model settings from {config.model.init}: {', '.join(changed)}")
    return dataclasses.replace(config, model=theirs)
