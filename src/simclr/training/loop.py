"""The pretraining loop (Algorithm 1 of the paper), readable top to bottom.

One step: two augmented views of a batch go through f and g in one forward pass, NT-Xent on z, a LARS (or
SGD/AdamW) step with the warm-up + cosine learning rate of that step. Checkpoints hold everything needed to
continue the same run exactly (``resume=True``).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from simclr.build import (
    augment_spec,
    build_loss,
    build_model,
    build_optimizer,
    decode,
    default_workers,
    open_source,
    peak_lr,
    plan_data,
    resolve,
)
from simclr.config import Config
from simclr.config_io import config_to_dict, flatten, save_config
from simclr.data.named_sets import NAMED_SETS
from simclr.data.views import LoaderViews, MemoryViews
from simclr.errors import InputError, is_number, one_line
from simclr.interrupts import deferred
from simclr.models.global_bn import convert_global_bn
from simclr.optim import LRSchedule, set_lr, warmup_steps_for
from simclr.runtime import distributed as dist
from simclr.runtime.checkpoint import (
    LAST,
    load_checkpoint,
    load_weights,
    rng_state,
    save_checkpoint,
    saved_config,
    set_rng_state,
)
from simclr.runtime.device import pick_device, pick_precision
from simclr.runtime.memory import available, check_step_fits, step_memory
from simclr.runtime.metrics import MetricsLog, TrainClock, read_metrics
from simclr.training.budget import StepBudget
from simclr.training.diagnostics import collapse_warning, measure, save_view_grid
from simclr.training.monitor import KnnMonitor
from simclr.training.step import ContrastiveStep, StepOptions, pick_compile


@dataclass(frozen=True)
class PretrainResult:
    """What a finished (or stopped) run reached: ``epoch`` whole epochs, ``passes`` over the data in all (steps
    over steps per epoch: 0.5 for half an epoch)."""

    run_dir: Path
    step: int
    total_steps: int
    epoch: int
    loss: float
    skipped: int
    passes: float = 0.0


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def check_out_of_data(out: Path, spec: str) -> None:
    """InputError if ``out`` lies in the image folder ``spec`` (a named dataset is never read from a folder): the
    run's views.png would become one of its images."""
    data = Path(spec).expanduser()
    if not spec or spec in NAMED_SETS or spec == "digits" or not data.is_dir():
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


def _write_skipped(run_dir: Path, skipped: dict[str, str]) -> None:
    lines = [f"{path}\t{reason}" for path, reason in sorted(skipped.items())]
    (run_dir / "skipped.txt").write_text("".join(line + "\n" for line in lines))


PROBE_VIEWS = 256
"""Images of the fixed batch (two views each) on which alignment, uniformity and effective rank are measured."""
GRID_PAIRS = 16
"""Pairs of views shown in views.png: all that a run without diagnostics draws of the probe."""


def _diagnose(net: torch.nn.Module, probe: tuple[torch.Tensor, torch.Tensor], precision: Any, device: torch.device,
              channels_last: bool, log: MetricsLog, epoch: int, step: int) -> None:
    """Log alignment, uniformity and effective rank on the probe views; warn when h collapses."""
    values, dim = measure(net, probe, precision, device, channels_last)
    log.write({"epoch": epoch, "step": step, **values}, tag="diag")
    warning = collapse_warning(values["effective_rank_h"], dim, samples=2 * len(probe[0]))
    if warning:
        _log(f"epoch {epoch}: {warning}")


def _start(config: Config, run_dir: Path, resume: bool, *, main: bool = True) -> tuple[
        Config, dict[str, Any] | None, dict[str, Any] | None]:
    """The config to run and, when resuming, the checkpoint to continue from, else the ``model.init`` weights."""
    last = run_dir / LAST
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"--out {run_dir} is a file, not a run folder: choose another --out")
    if resume:
        if not last.is_file():
            raise InputError(f"--resume: no checkpoint {last} to resume from")
        state = load_checkpoint(last)
        if "optimizer" not in state:
            raise InputError(f"--resume: {last} holds a model exported by simclr export, not a run's checkpoint")
        return saved_config(state, last), state, None
    if last.exists():
        raise InputError(f"{run_dir} already holds a run (last.pt); pass --resume to continue it or choose "
                         "another --out")
    check_out_of_data(run_dir, config.data.spec)
    if not config.model.init:
        return config, None, None
    init = load_checkpoint(config.model.init)
    return _adopt_model(config, init, note=main), None, init["model"]


def _non_negative(value: Any, name: str) -> Any:
    """``value`` if it is a finite number >= 0 (a checkpoint's counters and clock), else ValueError."""
    if not is_number(value) or not 0 <= value < float("inf"):
        raise ValueError(f"its {name} is {value!r}")
    return value


def _check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """ValueError if a saved per-parameter buffer (momentum) has another shape than its parameter."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            for name, value in optimizer.state.get(p, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != p.shape:
                    raise ValueError(f"its optimizer's {name} {tuple(value.shape)} does not fit a parameter "
                                     f"{tuple(p.shape)}")


def _adopt_model(config: Config, init: dict[str, Any], *, note: bool = True) -> Config:
    """``config`` with the model settings of the ``model.init`` checkpoint (a note names those they replace)."""
    theirs = dataclasses.replace(saved_config(init, config.model.init).model, init=config.model.init)
    mine = flatten(config_to_dict(config)["model"])
    saved = flatten(config_to_dict(dataclasses.replace(config, model=theirs))["model"])
    changed = [f"{key} {mine[key]} -> {saved[key]}" for key in saved
               if mine.get(key) != saved[key] and mine.get(key) not in (None, "auto")]
    if changed and note:
        _log(f"note: model settings from {config.model.init}: {', '.join(changed)}")
    return dataclasses.replace(config, model=theirs)


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
    if ctx.enabled and not resume and dist.restart_count() > 0 and (run_dir / LAST).is_file():
        resume = True  # torchrun restarted the workers after a failure: continue from the last checkpoint
    config, state, init = _start(config, run_dir, resume, main=ctx.is_main)
    device = dist.device_for(ctx, pick_device(config.train.device))
    dist.init_process_group(ctx, device, config.train.dist_timeout)
    try:
        result = _pretrain(config, state, run_dir, ctx, device, t_start, progress, stop_after_steps, init)
    except BaseException:
        dist.destroy_process_group()
        raise
    dist.destroy_process_group(wait_for_peers=True)
    return result


def _pretrain(config: Config, state: dict[str, Any] | None, run_dir: Path, ctx: dist.DistContext,
              device: torch.device, t_start: float, progress: bool, stop_after_steps: int | None,
              init: dict[str, torch.Tensor] | None = None) -> PretrainResult:
    progress = progress and ctx.is_main
    precision = pick_precision(config.train.precision, device)
    torch.manual_seed(config.train.seed)  # the same initial weights on every rank

    with dist.main_first(ctx):  # rank 0 extracts archives and fills the decode cache; the others reuse them
        source = open_source(config, "train")
        config = resolve(config, plan_data(config, source))
        decoded = decode(config, source, config.data.image_size, progress=progress) \
            if config.data.in_memory == "true" else None
    tr = config.train
    compile_mode = "off" if ctx.enabled else pick_compile(tr.compile, device)
    skipped: dict[str, str] = {}
    views: MemoryViews | LoaderViews
    try:
        if decoded is not None:
            skipped.update(decoded.skipped)
            if len(decoded.images) == 0:
                raise InputError(f"no readable images in {source.name}")
            views = MemoryViews(decoded.images.to(device), augment_spec(config), tr.batch_size, tr.seed,
                                compile=compile_mode != "off", rank=ctx.rank, world_size=ctx.world_size)
        else:
            views = LoaderViews(source, augment_spec(config), tr.batch_size, tr.seed, default_workers(config),
                                pin_memory=device.type == "cuda", rank=ctx.rank, world_size=ctx.world_size)
    except ValueError as exc:
        raise InputError(str(exc)) from None

    side = config.data.view_size or config.data.image_size
    ahead = 2 * views.workers if isinstance(views, LoaderViews) and device.type == "cpu" else 0  # prefetched
    check_step_fits(step_memory(lambda: build_model(config), side, precision.dtype is not None),
                    available(device), views=2 * tr.batch_size // ctx.world_size, chunk=tr.grad_cache_chunk,
                    side=side, arch=config.model.arch, batch=tr.batch_size, device=str(device),
                    batches_held=1 + ahead)
    net = build_model(config)
    if init is not None:  # model.init: its weights instead of a random start (its model settings were adopted)
        load_weights(net, init, f"model.init {config.model.init}")
    if ctx.is_main:  # the run folder is written only once the input has passed every check
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / "config.yaml")
        _write_skipped(run_dir, skipped)
    if ctx.enabled and tr.sync_bn:
        convert_global_bn(net)  # in place (only a batch norm itself is replaced by a new layer)
    net = net.to(device)
    if tr.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config, net)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.scaled)
    spe = views.steps_per_epoch
    total = max(1, round(tr.epochs * spe))
    schedule = LRSchedule(total, min(total, warmup_steps_for(config.optim.warmup_epochs, spe)), peak_lr(config),
                          config.optim.final_lr)
    step, epoch, pos = 0, 0, 0
    clock = TrainClock(t_start, 0.0)
    if state is not None:
        load_weights(net, state["model"], f"checkpoint {run_dir / LAST}")
        try:
            clock = TrainClock(t_start, _non_negative(float(state.get("time_s", 0.0)), "time_s"))
            optimizer.load_state_dict(state["optimizer"])
            _check_optimizer_state(optimizer)
            scaler.load_state_dict(state["scaler"])
            schedule = LRSchedule(**state["schedule"])
            per_rank = state.get("ranks") or [{"views": state["views"], "rng": state["rng"]}]
            if len(per_rank) != ctx.world_size:
                _log(f"note: the checkpoint was written by {len(per_rank)} process(es), this run has "
                     f"{ctx.world_size}: augmentation streams restart from the seed")
            mine = per_rank[ctx.rank] if len(per_rank) == ctx.world_size else per_rank[0]
            views.load_state_dict(mine["views"])
            set_rng_state(mine["rng"], device)
            step, epoch, pos = (int(_non_negative(state[k], k)) for k in ("step", "epoch", "position"))
            skipped.update(state.get("skipped", {}))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
            what = f"no {exc}" if isinstance(exc, KeyError) else one_line(exc)
            raise InputError(f"--resume: {run_dir / LAST} is damaged ({what}): resume from another copy, or start "
                             "a new run") from None
        if ctx.is_main:
            _log(f"{run_dir} is already finished ({step}/{schedule.total_steps} steps): nothing to do"
                 if step >= schedule.total_steps else
                 f"resuming {run_dir} at epoch {epoch + 1}, step {step}/{schedule.total_steps}")
    elif ctx.is_main and tr.time_budget <= 0 and 2 * schedule.warmup_steps >= schedule.total_steps:
        whole = schedule.warmup_steps >= schedule.total_steps
        _log(f"note: the warm-up ({config.optim.warmup_epochs:g} epochs) takes {'all' if whole else 'half or more'} "
             f"of the run ({tr.epochs:g} epochs), so the learning rate {'never' if whole else 'hardly'} decays; the "
             "paper warms up for 10 of 100 or more epochs (set optim.warmup_epochs)")
    budget = StepBudget(tr.time_budget * 60.0, t_start, schedule, config.optim.warmup_epochs / tr.epochs) \
        if tr.time_budget > 0 and state is None else None
    if budget is not None:
        schedule = budget.provisional(schedule)
    proposed = schedule  # under torchrun, rank 0's budget proposes and every rank adopts at log points

    model = dist.data_parallel(net, device)
    log = MetricsLog(run_dir) if ctx.is_main else None
    monitor = KnnMonitor(config, device, precision) if tr.knn_every > 0 and ctx.is_main else None
    knn_pending = False  # an epoch ended, its kNN evaluation has not been logged (an interruption came first)

    def evaluate_knn() -> None:
        nonlocal knn_pending
        assert monitor is not None and log is not None
        at = clock.seconds()
        with clock.paused():
            acc = monitor(net)
            net.train()
        if acc is not None:
            log.write({"epoch": epoch, "step": step, **acc, "time_s": at}, tag="knn")
            _log(f"epoch {epoch}: kNN top-1 {acc['knn_top1']:.4f}")
        knn_pending = False

    def checkpoint(name: str = LAST, gather: bool = True) -> None:
        mine = {"views": views.state_dict(), "rng": rng_state(device)}
        ranks = dist.gather_objects(mine) if gather else [mine]
        if ctx.is_main:
            save_checkpoint({
                "config": config_to_dict(config), "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(), "schedule": dataclasses.asdict(schedule), "views": mine["views"],
                "rng": mine["rng"], "ranks": ranks, "world_size": ctx.world_size, "step": step, "epoch": epoch,
                "position": pos, "skipped": dict(skipped), "time_s": clock.seconds(), "knn_pending": knn_pending,
            }, run_dir / name)

    options = StepOptions(tr.channels_last, compile_mode, tr.gather_negatives, ctx.rank, tr.grad_cache_chunk,
                          config.loss.scale)
    train_step = ContrastiveStep(model, optimizer, scaler, precision, device, build_loss(config), options)
    model.train()
    bar = tqdm(total=schedule.total_steps, initial=step, desc="pretrain", unit="step", disable=not progress,
               dynamic_ncols=True)
    window_loss = torch.zeros((), device=device)
    window_acc = torch.zeros((), device=device)
    window_n, window_t = 0, clock.seconds()  # training time: a kNN evaluation inside a window does not count
    done_before = state is not None and step >= schedule.total_steps  # a finished run resumed: nothing runs
    last_loss = _logged_loss(run_dir) if done_before else float("nan")
    stop = False
    saved_at = time.perf_counter()
    probe: tuple[torch.Tensor, torch.Tensor] | None = None  # a fixed batch of views for the diagnostics
    last_views = tr.batch_size // ctx.world_size  # images of the latest step in this process

    def log_window(n: int, lr: float) -> None:
        """One metrics line for the steps since the last one (``n`` images a step here, at rate ``lr``)."""
        nonlocal window_n, window_t, last_loss
        means = dist.all_mean(torch.stack([window_loss, window_acc])) / window_n
        last_loss = float(means[0])  # waits for the device: the window's time includes its work
        now = clock.seconds()
        rec = {"epoch": epoch + 1, "step": step, "loss": last_loss, "contrastive_acc": float(means[1]),
               "lr": lr, "views_per_s": 2 * n * ctx.world_size * window_n / max(now - window_t, 1e-9),
               "time_s": now}
        if log is not None:
            log.write(rec)
        bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['contrastive_acc']:.2f}",
                        lr=f"{lr:.3g}", views_s=f"{rec['views_per_s']:.0f}", refresh=False)
        window_loss.zero_()
        window_acc.zero_()
        window_n, window_t = 0, clock.seconds()

    if ctx.is_main and (tr.diagnostics_every or state is None):  # the same batch in a resumed run
        probe = views.probe(PROBE_VIEWS if tr.diagnostics_every else GRID_PAIRS)
        if state is None:
            save_view_grid(probe[0], probe[1], run_dir / "views.png", max_images=GRID_PAIRS)
    try:
        if state is not None and state.get("knn_pending") and monitor is not None:
            evaluate_knn()  # the evaluation the interruption cut short
        while step < schedule.total_steps and not stop:
            for v1, v2 in views.batches(pos):
                n = last_views = v1.shape[0]
                lr = schedule(step)
                set_lr(optimizer, lr)
                with deferred():  # a stop request waits until the update, the counters and the log window agree
                    loss, accuracy = train_step(v1, v2)
                    step += 1
                    pos += 1
                    window_loss += loss
                    window_acc += accuracy
                    window_n += 1
                if step % tr.log_every == 0 or step == schedule.total_steps:
                    log_window(n, lr)
                bar.update(1)
                if budget is not None:
                    if not ctx.enabled:
                        schedule = budget.update(step, schedule)
                    else:
                        if ctx.is_main:
                            proposed = budget.update(step, proposed)
                        if step % tr.log_every == 0:  # adopt rank 0's fit on every rank at the same step
                            total_steps, warm = dist.broadcast_ints(
                                [proposed.total_steps, proposed.warmup_steps], device)
                            schedule = schedule.refit(total_steps, warm, step)  # the same on every rank
                    bar.total = schedule.total_steps
                if step >= schedule.total_steps or (stop_after_steps is not None and step >= stop_after_steps):
                    stop = True
                    break
            if stop and pos < spe:
                break  # mid-epoch: the checkpoint below records the position
            epoch += 1
            pos = 0
            if isinstance(views, LoaderViews):
                for part in dist.gather_objects(views.skipped):
                    skipped.update(part)
                if ctx.is_main:
                    _write_skipped(run_dir, skipped)
            if probe is not None and log is not None and tr.diagnostics_every \
                    and (epoch % tr.diagnostics_every == 0 or step >= schedule.total_steps):
                with clock.paused():
                    _diagnose(net, probe, precision, device, tr.channels_last, log, epoch, step)
            if monitor is not None and (epoch % tr.knn_every == 0 or step >= schedule.total_steps):
                knn_pending = True
                evaluate_knn()
            due = stop or step >= schedule.total_steps or time.perf_counter() - saved_at >= tr.save_minutes * 60
            if dist.broadcast_ints([int(due)], device)[0]:  # rank 0's clock decides for all
                checkpoint()
                saved_at = time.perf_counter()
            if tr.checkpoint_every and epoch % tr.checkpoint_every == 0:
                checkpoint(f"epoch_{epoch:04d}.pt")
    except KeyboardInterrupt:
        if window_n and not ctx.enabled:  # the steps since the last log line (peers may be gone: no collectives)
            log_window(last_views, schedule(step - 1))
        checkpoint(gather=False)  # peers may be gone: no collectives
        bar.close()
        if log is not None:
            log.close()
        raise
    if pos != 0:
        checkpoint()
    bar.close()
    if log is None:
        return PretrainResult(run_dir, step, schedule.total_steps, epoch, last_loss, len(skipped), step / spe)
    log.close()
    if isinstance(views, LoaderViews):
        skipped.update(views.skipped)
    _write_skipped(run_dir, skipped)
    if skipped and not done_before:
        _log(f"skipped {len(skipped)} unreadable image(s); see {run_dir / 'skipped.txt'}")
    return PretrainResult(run_dir, step, schedule.total_steps, epoch, last_loss, len(skipped), step / spe)
