"""Planning under torchrun: rank 0 plans alone, before it joins the process group, and sends the config."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from simclr.config import Config
from simclr.config_io import build_config, config_to_dict
from simclr.errors import InputError, one_line
from simclr.runtime import distributed as dist
from simclr.runtime.device import pick_device


def planned_on_rank0(plan: Callable[[], Config], base: Config) -> Config:
    """``plan()``; under torchrun, called by rank 0 alone (its trial steps on its device, for its share of the
    batch) before it joins the process group, and the config it returns sent to the other ranks (JSON text, no
    pickle), which wait there; an error of the plan is every rank's. ``base``: the config of the settings
    given (its device and process-group timeout)."""
    ctx = dist.DistContext.from_env()
    if not ctx.enabled:
        return plan()
    device = dist.device_for(ctx, pick_device(base.train.device))
    message: dict[str, Any] = {}
    failure: BaseException | None = None
    if ctx.is_main:  # before joining: no trial step may meet another rank's collective
        try:
            message = {"config": config_to_dict(plan())}
        except Exception as exc:  # noqa: BLE001 - every rank must hear of it, not wait for the timeout
            message, failure = {"error": one_line(exc)}, exc
    dist.init_process_group(ctx, device, base.train.dist_timeout)
    got = json.loads(dist.broadcast_text(json.dumps(message) if ctx.is_main else None, device))
    if "error" in got:  # rank 0 says why (a traceback where it is not bad input); the others, in one line
        dist.destroy_process_group(wait_for_peers=True)
        if failure is not None:
            raise failure
        raise InputError(f"rank 0 could not plan the recipe: {got['error']}")
    return build_config(got["config"])
