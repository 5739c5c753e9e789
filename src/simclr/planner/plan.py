"""``--recipe auto``: profile the data and the device, time trial steps of the candidate shapes, choose
(:mod:`simclr.planner.choose`), and say the plan in one short block."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import torch

from simclr.build import open_source
from simclr.config import Config
from simclr.data.decode import native_side
from simclr.errors import InputError
from simclr.planner.choose import (
    DataProfile,
    DeviceProfile,
    Plan,
    choose,
    duration,
    hold_in_memory,
    pin,
    shapes,
)
from simclr.planner.trials import choose_precision, measure
from simclr.runtime.device import cpu_has_fast_bf16, cpu_name, pick_device
from simclr.runtime.memory import available

TRIAL_SHARE = 0.05
"""The share of a time budget the trial steps may take (at most :data:`TRIAL_MAX_S`); without a budget,
:data:`TRIAL_MAX_S`."""
TRIAL_MIN_S, TRIAL_MAX_S = 2.0, 60.0


def device_profile(device: torch.device) -> DeviceProfile:
    """This machine's device as the planner sees it (processes under torchrun: ``WORLD_SIZE``)."""
    count = int(os.environ.get("WORLD_SIZE", "1") or 1)
    memory = available(device) or 1 << 50  # unknown (no /proc/meminfo): nothing is refused for it
    if device.type == "cuda":
        return DeviceProfile("cuda", torch.cuda.get_device_name(device), os.cpu_count() or 1,
                             torch.cuda.is_bf16_supported(), memory, count)
    return DeviceProfile("cpu", cpu_name(), torch.get_num_threads(), cpu_has_fast_bf16(), memory, count)


def data_profile(config: Config) -> DataProfile:
    """The training images: how many, their native side, labelled or not."""
    source = open_source(config, "train")
    side = native_side(source)
    if side == 0 or len(source) == 0:
        raise InputError(f"no readable images in {source.name}")
    if len(source) < 2:
        raise InputError(f"{source.name} holds one image: contrastive learning needs at least two")
    return DataProfile(len(source), side, bool(source.classes))


def plan_recipe(config: Config, pinned: dict[str, Any] | None = None,
                tell: Callable[[str], None] = lambda _: None) -> tuple[Plan, dict[str, Any]]:
    """The plan for ``config``'s data, device and time budget (``train.time_budget``, minutes; 0 = none), and
    what it found out (for :func:`render`). The trial steps' time is taken from the budget."""
    t0 = time.perf_counter()
    device = pick_device(config.train.device)
    data, profile = data_profile(config), device_profile(device)
    budget_s = config.train.time_budget * 60 or None
    allowance = TRIAL_MAX_S if budget_s is None else \
        min(TRIAL_MAX_S, max(TRIAL_MIN_S, TRIAL_SHARE * budget_s))
    tell(f"planning: timing trial steps on {profile.describe()} (at most {allowance:.0f} s"
         + (f", {100 * allowance / budget_s:.0f}% of the budget)" if budget_s else ")"))
    candidates = pin(shapes(data, profile), pinned or {})
    said: list[str] = []

    def both(line: str) -> None:
        said.append(line.strip())
        tell(line)

    precision, precision_why = choose_precision(config, candidates[0], data, profile, device, allowance / 4,
                                                pinned, both)
    pinned = {**(pinned or {}), "train.precision": precision}
    left_s = max(allowance - (time.perf_counter() - t0), 1.0)
    costs = measure(config, candidates, data, profile, device, budget_s, left_s, both, pinned)
    if not costs:
        why = said[-1] if said else "none was measured"
        raise InputError(f"no candidate shape can be trained on {profile.describe()} ({why}); give a recipe "
                         "instead (--config or --recipe paper)")
    spent = time.perf_counter() - t0
    left = None if budget_s is None else max(budget_s - spent, 0.1 * budget_s) * 0.95  # setup and decoding
    plan = choose(data, profile, costs, left)
    in_memory, memory_why = hold_in_memory(plan, data, profile, costs[plan.shape].memory)
    if device.type == "cuda" or precision == ("bf16" if profile.fast_bf16 else "fp32"):
        precision = "auto"  # what auto picks here, and on another machine (a rerun of the plan) what suits it
    plan.settings.update({"train.precision": precision, "data.in_memory": "true" if in_memory else "false"})
    if "data.in_memory" in (pinned or {}):
        memory_why = f"data.in_memory {pinned['data.in_memory']} (given)"
    return plan, {"data": data, "device": profile, "trial_s": spent, "budget_s": budget_s,
                  "precision": precision_why, "memory": memory_why}


def render(plan: Plan, facts: dict[str, Any], yours: dict[str, Any]) -> str:
    """The plan in one short block: what was found, what was chosen, why; ``yours``: settings given on the
    command line, which replace the plan's."""
    data, device, s = facts["data"], facts["device"], plan.settings
    budget = f"budget {facts['budget_s'] / 60:g} min" if facts["budget_s"] else "no time budget"
    stem = ", CIFAR stem" if s["model.cifar_stem"] else ""
    optimiser = (f"{s['optim.name'].upper()} {s['optim.base_lr']:g} ({s['optim.lr_scaling']} scaling), "
                 f"warm-up {round(s['optim.warmup_epochs'], 3):g} epochs then cosine; "
                 f"temperature {s['loss.temperature']:g}")
    lines = [(f"plan (--recipe auto): {data.images:,} images of {data.side} px on {device.describe()}, "
             f"{budget}"),
             f"  network    {plan.shape.describe()}{stem}",
             f"  optimiser  {optimiser}",
             f"  precision  {facts['precision']}",
             f"  data       {facts['memory']}",
             (f"  length     {plan.steps:,} steps, {plan.epochs:.1f} epochs, "
             f"about {duration(plan.seconds)}"),
             f"  measured   trial steps took {facts['trial_s']:.0f} s"]
    lines += [f"  why        {r}" for r in plan.reasons]
    if yours:
        given = ", ".join(f"{k}={v}" for k, v in sorted(yours.items()))
        lines.append(f"  yours      {given} (replace the plan's)")
    return "\n".join(lines)
