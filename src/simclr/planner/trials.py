"""Timed trial steps: the measured cost of each candidate shape on this device, within a stated share of the
budget.

A trial is the real training step (:class:`~simclr.training.step.ContrastiveStep`: the shape's network, loss,
optimiser, precision and memory layout) on views the run's own batch augmentation cuts from random images of
the shape's side (decoding, done once before training, is not timed): one untimed step, then timed ones. On a
CPU the step's cost grows with the batch in proportion, so trials run a smaller batch and scale it; on a GPU
they run the shape's batch. Shapes are measured cheapest first, and measuring stops at the first one that
could not see enough images within the budget to be worth it (:func:`~simclr.planner.choose.worth_it`; larger
ones see fewer) or when the trials' allowance is spent."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import torch

from simclr.build import augment_spec, build_loss, build_model, build_optimizer
from simclr.config import Config
from simclr.config_io import build_config, config_to_dict, unflatten
from simclr.data.batch_augment import BatchAugment
from simclr.errors import InputError, one_line
from simclr.planner.choose import Cost, DataProfile, DeviceProfile, Shape, recipe_settings, steps_in, worth_it
from simclr.runtime.device import pick_precision
from simclr.runtime.memory import step_memory
from simclr.training.step import ContrastiveStep, StepOptions

CPU_TRIAL_PAIRS = 64
"""Pairs of views a CPU trial step runs (the cost is scaled to the shape's batch: an overestimate of about 1.2
times for 256 pairs, measured)."""
STEADY = 0.25
MAX_STEPS = 10


def shape_config(base: Config, shape: Shape, data: DataProfile, device: DeviceProfile,
                 pinned: dict[str, Any] | None = None) -> Config:
    """``base`` with ``shape``'s recipe settings, then the settings given (``pinned``) over them: the network
    its run trains."""
    given = {k: v for k, v in (pinned or {}).items() if v or k not in ("data.image_size", "data.view_size")}
    settings = {**recipe_settings(shape, data, device, 10.0), **given}
    return build_config(config_to_dict(base), *[unflatten(k, v) for k, v in settings.items()])


def time_step(config: Config, device: torch.device, pairs: int, limit_s: float = 30.0) -> float:
    """Seconds of one training step of ``pairs`` pairs of views under ``config``: steps run until two in a row
    agree within :data:`STEADY` (the first steps of a new shape are several times slower while kernels are
    built: 4 s against 0.08 s for a quarter-width ResNet-18 in bf16 here), :data:`MAX_STEPS` or ``limit_s``;
    the faster of the last two counts (noise from other processes only slows steps down)."""
    torch.manual_seed(0)
    net = build_model(config).to(device).train()
    channels_last = config.train.channels_last
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    precision = pick_precision(config.train.precision, device)
    step = ContrastiveStep(net, build_optimizer(config, net), torch.amp.GradScaler(device.type,
                           enabled=precision.scaled), precision, device, build_loss(config),
                           StepOptions(channels_last=channels_last, loss_scale=config.loss.scale))
    gen = torch.Generator(device=device).manual_seed(0)
    side = config.data.image_size
    images = torch.randint(0, 256, (2 * pairs, 3, side, side), dtype=torch.uint8, device=device,
                           generator=gen)
    augment = BatchAugment(augment_spec(config))
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < MAX_STEPS:
        _sync(device)
        t = time.perf_counter()
        both = augment(images, gen)  # the run's augmentation of one batch, both views in one call
        loss, _ = step(both[:pairs], both[pairs:])
        float(loss)  # waits for the device
        times.append(time.perf_counter() - t)
        steady = len(times) >= 3 and max(times[-2:]) <= (1 + STEADY) * min(times[-2:])
        if steady or (len(times) >= 2 and time.perf_counter() - started > limit_s):
            break
    del step, net, images, both
    gc.collect()
    if device.type == "cuda":  # what the trial held is the run's again
        torch.cuda.empty_cache()
    return min(times[-2:])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(base: Config, shapes: list[Shape], data: DataProfile, device_profile: DeviceProfile,
            device: torch.device, budget_s: float | None, allowance_s: float,
            tell: Callable[[str], None] = lambda _: None,
            pinned: dict[str, Any] | None = None) -> dict[Shape, Cost]:
    """The :class:`Cost` of ``shapes`` (cheapest first), measured until one could not get the epochs worth
    it or ``allowance_s`` seconds are spent; shapes whose step cannot fit in memory are left out."""
    costs: dict[Shape, Cost] = {}
    started = time.perf_counter()
    for shape in shapes:
        if costs and time.perf_counter() - started > allowance_s:  # (the cheapest is always measured)
            break
        config = shape_config(base, shape, data, device_profile, pinned)
        side = config.data.view_size or config.data.image_size
        half = pick_precision(config.train.precision, device).dtype is not None
        per_process = shape.batch_size // device_profile.count
        try:
            mem = step_memory(lambda c=config: build_model(c), side, half)  # type: ignore[misc]
            memory = mem.fixed + mem.per_view * 2 * per_process
        except (NotImplementedError, RuntimeError, TypeError, ValueError, AssertionError, InputError):
            # not on the meta device (or not at this side: the trial step below says why): unknown
            memory = 0
        if memory > device_profile.memory:
            tell(f"  {shape.describe()}: needs about {memory / 2**30:.1f} GiB, more than the device has")
            continue
        pairs = min(per_process, CPU_TRIAL_PAIRS) if device.type == "cpu" else per_process
        left = allowance_s - (time.perf_counter() - started)
        try:
            seconds = time_step(config, device, pairs, max(left, 1.0)) * per_process / pairs
        except (RuntimeError, ValueError, AssertionError, InputError) as exc:  # out of memory, small views...
            tell(f"  {shape.describe()}: cannot train here ({one_line(exc)[:100]})")
            continue
        costs[shape] = Cost(seconds, memory)
        tell(f"  {shape.describe()}: {seconds:.3g} s a step")
        if budget_s is not None and not worth_it(shape, steps_in(budget_s, costs[shape]), data):
            break
        if time.perf_counter() - started > allowance_s:
            break
    return costs



def choose_precision(base: Config, shape: Shape, data: DataProfile, device_profile: DeviceProfile,
                     device: torch.device, limit_s: float, pinned: dict[str, Any] | None = None,
                     tell: Callable[[str], None] = lambda _: None) -> tuple[str, str]:
    """The run's ``train.precision`` and why: the one given; bf16 autocast on a GPU that runs it (else fp16
    with loss scaling); fp32 on a CPU without bf16 units (bf16 autocast is several times slower there); on a
    CPU with them, the faster of fp32 and bf16 in trial steps of the cheapest ``shape`` (``limit_s`` each)."""
    if "train.precision" in (pinned or {}):
        given = str((pinned or {})["train.precision"])
        return given, f"{given} (given)"
    if device.type == "cuda":
        name = "bf16" if device_profile.fast_bf16 else "fp16"
        return name, f"{name} autocast, which this GPU runs natively"
    if not device_profile.fast_bf16:
        return "fp32", "fp32: this CPU has no bf16 units (bf16 autocast would run several times slower)"
    pairs = min(shape.batch_size, CPU_TRIAL_PAIRS)
    timed = {}
    for name in ("fp32", "bf16"):
        config = shape_config(base, shape, data, device_profile, {**(pinned or {}), "train.precision": name})
        try:
            timed[name] = time_step(config, device, pairs, limit_s) * shape.batch_size / pairs
        except (RuntimeError, ValueError, AssertionError, InputError) as exc:  # e.g. no bf16 kernel
            tell(f"  {name}: cannot train here ({one_line(exc)[:100]})")
    if not timed:
        return "fp32", "fp32 (no trial step could be timed)"
    best = min(timed, key=lambda k: timed[k])
    other = next((k for k in timed if k != best), None)
    if other is None:
        return best, f"{best}: the only precision that trained"
    return best, (f"{best}: measured {timed[best]:.3g} s a step against {other}'s {timed[other]:.3g} s "
                  f"(the cheapest shape's step)")
