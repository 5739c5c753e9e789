"""Assembling a pretraining run: from its config (and the checkpoint it resumes) to the parts the loop drives.

The order is part of the contract: the seed is set before anything draws from the global generator, so every
rank (and a rerun) starts from the same weights; the run folder is written only once the input has passed
every check (data, memory, ``model.init``, checkpoint).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from simclr.build import (
    build_loss,
    build_model,
    build_optimizer,
    build_schedule,
    build_views,
    open_train_data,
)
from simclr.config import Config
from simclr.config_io import save_config
from simclr.data.views import LoaderViews, MemoryViews
from simclr.errors import InputError, one_line
from simclr.files import FolderLock, remove_temporaries
from simclr.models.global_bn import convert_global_bn, other_batch_norms
from simclr.models.simclr import SimCLRNet
from simclr.optim import LRSchedule
from simclr.runtime import distributed as dist
from simclr.runtime.checkpoint import LAST, load_weights
from simclr.runtime.device import Precision, pick_precision
from simclr.runtime.memory import available, check_step_fits, step_memory
from simclr.runtime.metrics import MetricsLog, TrainClock, drop_rows_after, last_logged
from simclr.runtime.resume import Progress, restore_run
from simclr.training.budget import StepBudget
from simclr.training.diagnostics import save_view_grid
from simclr.training.monitor import KnnMonitor
from simclr.training.step import ContrastiveStep, StepOptions, pick_compile

PROBE_VIEWS = 256
"""Images of the fixed batch (two views each) on which alignment, uniformity and effective rank are
measured."""
GRID_PAIRS = 16
"""Pairs of views shown in views.png: all that a run without diagnostics draws of the probe."""


def note(msg: str) -> None:
    """One line for the user on stderr."""
    print(msg, file=sys.stderr, flush=True)


def write_skipped(run_dir: Path, skipped: dict[str, str]) -> None:
    """skipped.txt: one ``path<TAB>reason`` line per unreadable image."""
    lines = [f"{path}\t{reason}" for path, reason in sorted(skipped.items())]
    (run_dir / "skipped.txt").write_text("".join(line + "\n" for line in lines))


@dataclass(frozen=True)
class Parts:
    """A run's parts, assembled once; the loop's state (:class:`~simclr.training.state.RunState`) drives them.

    Attributes:
        config: the run's config, its ``auto`` values resolved (as saved in config.yaml).
        run_dir: the run folder.
        ctx: this process's place under torchrun (rank, world size; one process without it).
        device: the training device.
        precision: the autocast dtype and loss scaling.
        net: f and g, not wrapped (what checkpoints hold and the monitors evaluate).
        optimizer: the optimiser of ``net``.
        scaler: the gradient scaler (enabled for fp16 only).
        views: this process's stream of view pairs.
        step: the training step (on the DDP wrapper of ``net`` under torchrun).
        log: metrics.jsonl and TensorBoard (rank 0 only).
        monitor: the kNN monitor (rank 0, ``train.knn_every`` > 0).
        probe: the fixed views the diagnostics measure (rank 0, diagnostics on).
    """

    config: Config
    run_dir: Path
    ctx: dist.DistContext
    device: torch.device
    precision: Precision
    net: SimCLRNet
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    views: MemoryViews | LoaderViews
    step: ContrastiveStep
    log: MetricsLog | None
    monitor: KnnMonitor | None
    probe: tuple[torch.Tensor, torch.Tensor] | None


@dataclass(frozen=True)
class Start:
    """Where a run starts: its schedule, the time budget that refits it, its progress and training clock."""

    schedule: LRSchedule
    budget: StepBudget | None
    progress: Progress
    clock: TrainClock
    resumed: bool


def assemble(config: Config, run_dir: Path, ctx: dist.DistContext, device: torch.device, *, t_start: float,
             state: dict[str, Any] | None = None, init: dict[str, torch.Tensor] | None = None,
             progress: bool = True, lock: FolderLock | None = None) -> tuple[Parts, Start]:
    """The parts of a run and where it starts: a new run (from ``model.init``'s weights ``init`` if given), or
    the one whose checkpoint ``state`` is resumed. ``t_start``: when ``pretrain`` was called (the clock and
    the time budget count from it). ``lock``: the run folder's, acquired (by rank 0) before anything is
    written there; the caller releases it."""
    precision = pick_precision(config.train.precision, device)
    torch.manual_seed(config.train.seed)  # the same initial weights on every rank
    with dist.main_first(ctx):  # rank 0 extracts archives and fills the decode cache; the others reuse them
        data = open_train_data(config, progress=progress)
    config, tr = data.config, data.config.train
    compile_mode = "off" if ctx.enabled else pick_compile(tr.compile, device)
    views = build_views(data, device, rank=ctx.rank, world_size=ctx.world_size, compile=compile_mode != "off")
    skipped = dict(data.decoded.skipped) if data.decoded is not None else {}
    _check_memory(config, views, precision, ctx, device)
    net = build_model(config)
    if init is not None:  # model.init: its weights, not a random start (its model settings were adopted)
        load_weights(net, init, f"model.init {config.model.init}")
    if ctx.is_main:  # the run folder is written only once the input has passed every check
        _open_run_folder(config, run_dir, skipped, lock)
    if ctx.enabled and tr.sync_bn:
        _global_bn(net, ctx)
    net = net.to(device)
    if tr.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config, net)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.scaled)
    schedule, done = build_schedule(config, views.steps_per_epoch), Progress(skipped=skipped)
    if state is not None:
        schedule, done = _resume(state, run_dir, net, optimizer, scaler, views, ctx, device, skipped)
    elif ctx.is_main:
        _note_long_warmup(config, schedule)
    budget = StepBudget(tr.time_budget * 60.0, t_start, schedule, config.optim.warmup_epochs / tr.epochs) \
        if tr.time_budget > 0 and state is None else None
    start = Start(budget.provisional(schedule) if budget is not None else schedule, budget, done,
                  TrainClock(t_start, done.time_s), state is not None)
    model = dist.data_parallel(net, device)
    log = MetricsLog(run_dir, resumed_at=done.step if state is not None else None) if ctx.is_main else None
    monitor = KnnMonitor(config, device, precision) if tr.knn_every > 0 and ctx.is_main else None
    options = StepOptions(tr.channels_last, compile_mode, tr.gather_negatives, ctx.rank, tr.grad_cache_chunk,
                          config.loss.scale)
    step = ContrastiveStep(model, optimizer, scaler, precision, device, build_loss(config), options)
    model.train()
    probe = _probe(config, views, run_dir, new=state is None) if ctx.is_main else None
    return Parts(config, run_dir, ctx, device, precision, net, optimizer, scaler, views, step, log, monitor,
                 probe), start


def _open_run_folder(config: Config, run_dir: Path, skipped: dict[str, str], lock: FolderLock | None) -> None:
    """Create the run folder, hold its lock (a second run on it is refused, naming this one's PID), remove the
    temporary files a killed writer left, and write the config and the skipped files."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if lock is not None:
        lock.acquire()
        if lock.unsupported:
            note(f"note: {run_dir}'s filesystem has no file locks: a second run on it would not be refused")
        gone = remove_temporaries(run_dir)
        if gone:
            note(f"removed {len(gone)} temporary file(s) a stopped run left in {run_dir} "
                 f"({', '.join(gone[:3])})")
    save_config(config, run_dir / "config.yaml")
    write_skipped(run_dir, skipped)


def _global_bn(net: SimCLRNet, ctx: dist.DistContext) -> None:
    """Batch norms over every process's batch (Section 2.2), in place; a note names those left per device."""
    convert_global_bn(net)  # in place (only a batch norm itself is replaced by a new layer)
    left = other_batch_norms(net)
    if left and ctx.is_main:
        note(f"note: global batch norm leaves {len(left)} batch-norm layers of unknown kinds per device "
             f"({', '.join(left[:3])}{' ...' if len(left) > 3 else ''})")


def _check_memory(config: Config, views: MemoryViews | LoaderViews, precision: Precision,
                  ctx: dist.DistContext, device: torch.device) -> None:
    """InputError before anything is written when a training step cannot fit in the device's memory."""
    tr = config.train
    side = config.data.view_size or config.data.image_size
    ahead = 2 * views.workers if isinstance(views, LoaderViews) and device.type == "cpu" else 0  # prefetched
    try:
        with torch.device("meta"):  # shapes only: no weights allocated
            net = build_model(config)
    except (NotImplementedError, RuntimeError, TypeError, ValueError) as exc:  # a network built with tensors
        if ctx.is_main:
            note(f"note: the memory pre-check steps aside for {config.model.arch}: it cannot be built on "
                 f"PyTorch's meta device ({one_line(exc)[:100]})")
        return
    try:
        memory = step_memory(lambda: net, side, precision.dtype is not None)
    except NotImplementedError as exc:  # a layer that cannot run on meta tensors
        if ctx.is_main:
            note(f"note: the memory pre-check steps aside for {config.model.arch} ({one_line(exc)[:120]})")
        return
    except (RuntimeError, ValueError, AssertionError) as exc:  # shapes: views too small for the network
        raise InputError(f"{config.model.arch} cannot take {side}x{side} views: {one_line(exc)[:160]} "
                         "(set data.view_size, or model.cifar_stem: true for small images)") from None
    check_step_fits(memory, available(device), views=2 * tr.batch_size // ctx.world_size,
                    chunk=tr.grad_cache_chunk, side=side, arch=config.model.arch, batch=tr.batch_size,
                    device=str(device), batches_held=1 + ahead)


def _resume(state: dict[str, Any], run_dir: Path, net: SimCLRNet, optimizer: torch.optim.Optimizer,
            scaler: torch.amp.GradScaler, views: MemoryViews | LoaderViews, ctx: dist.DistContext,
            device: torch.device, skipped: dict[str, str]) -> tuple[LRSchedule, Progress]:
    """The schedule and progress of the checkpoint being resumed, its state loaded into the parts."""
    schedule, done = restore_run(state, run_dir / LAST, net=net, optimizer=optimizer, scaler=scaler,
                                 views=views, device=device, rank=ctx.rank, world_size=ctx.world_size)
    done.skipped = {**skipped, **done.skipped}
    if ctx.is_main:  # the rows a run killed after this checkpoint logged: the resumed run logs them again
        drop_rows_after(run_dir / "metrics.jsonl", done.step)
    if not done.last_row and ctx.is_main:  # a checkpoint from before it was saved: from the run's log
        done.last_row = last_logged(run_dir / "metrics.jsonl", done.step)
    if ctx.is_main:
        note(f"{run_dir} is already finished ({done.step}/{schedule.total_steps} steps): nothing to do"
             if done.step >= schedule.total_steps else
             f"resuming {run_dir} at epoch {done.epoch + 1}, step {done.step}/{schedule.total_steps}")
    return schedule, done


def _note_long_warmup(config: Config, schedule: LRSchedule) -> None:
    """A note when the warm-up takes half the run or more (without a time budget, which refits it)."""
    tr = config.train
    if tr.time_budget > 0 or 2 * schedule.warmup_steps < schedule.total_steps:
        return
    whole = schedule.warmup_steps >= schedule.total_steps
    share, decays = ("all", "never") if whole else ("half or more", "hardly")
    note(f"note: the warm-up ({config.optim.warmup_epochs:g} epochs) takes {share} of the run "
         f"({tr.epochs:g} epochs), so the learning rate {decays} decays; the paper warms up for 10 of 100 or "
         "more epochs (set optim.warmup_epochs)")


def _probe(config: Config, views: MemoryViews | LoaderViews, run_dir: Path,
           new: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The fixed batch of views the diagnostics measure (the same batch in a resumed run); a new run draws
    views.png from it, also without diagnostics."""
    if not (config.train.diagnostics_every or new):
        return None
    probe = views.probe(PROBE_VIEWS if config.train.diagnostics_every else GRID_PAIRS)
    if new:
        save_view_grid(probe[0], probe[1], run_dir / "views.png", max_images=GRID_PAIRS)
    return probe
