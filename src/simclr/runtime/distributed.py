"""Running under ``torchrun``: the process group, each rank's device, and the collectives SimCLR needs.

``torchrun`` starts one process per device and tells each its place through environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); a plain ``simclr pretrain`` sees none of
them and runs as a world of one, where every function here is a no-op. The backend is NCCL for CUDA devices
and gloo for CPUs.

Negatives from every device (Section 2.2 of the paper, "Global BN" and the TPU implementation): each rank
embeds its own 2n views, gathers the 2N = 2n x world views of all ranks with :func:`gather_with_grad`, and
contrasts its anchors against all of them. The gather's backward sums, over ranks, the gradient that every
rank's loss sends to a rank's views, so that after DDP averages the parameter gradients they equal those of
one process computing the mean loss over the global batch.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> DistContext:
        """Read torchrun's variables (absent: a world of one)."""
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                   int(os.environ.get("LOCAL_RANK", "0")))


def restart_count() -> int:
    """How many times torchrun's elastic agent has restarted this job's workers (0 on the first attempt)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def device_for(ctx: DistContext, device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for CUDA jobs (made current), else ``device``
    unchanged."""
    if device.type == "cuda" and ctx.enabled:
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    return device


def init_process_group(ctx: DistContext, device: torch.device, timeout_minutes: float) -> None:
    """Join the job's process group (NCCL on CUDA, gloo on CPU); a world of one joins nothing.

    ``timeout_minutes`` bounds every collective, so a rank whose peer died fails instead of hanging.
    """
    if not ctx.enabled or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {"timeout": datetime.timedelta(minutes=timeout_minutes)}
    if backend == "nccl":
        kwargs["device_id"] = device
    # torchrun's elastic agent keeps its store across restarts: a key space per attempt keeps the restarted
    # workers from reading the addresses of the workers they replace.
    store, _, _ = next(dist.rendezvous("env://", rank=ctx.rank, world_size=ctx.world_size,
                                       timeout=kwargs["timeout"]))
    store = dist.PrefixStore(f"simclr/attempt_{restart_count()}", store)
    dist.init_process_group(backend, store=store, rank=ctx.rank, world_size=ctx.world_size, **kwargs)


def data_parallel(net: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``net`` in DistributedDataParallel (gradients averaged over ranks; buffers not synced: global batch
    norm keeps them equal), or ``net`` itself in a world of one."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return net
    with warnings.catch_warnings():  # newer torch renames broadcast_buffers; both mean: no buffer syncing
        warnings.filterwarnings("ignore", message=".*broadcast_buffers", category=FutureWarning)
        return torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)


def destroy_process_group(*, wait_for_peers: bool = False) -> None:
    """Leave the process group; ``wait_for_peers`` first waits for every rank (only on a normal finish: after
    a failure a peer may never arrive)."""
    if dist.is_available() and dist.is_initialized():
        if wait_for_peers:
            dist.barrier()
        dist.destroy_process_group()


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; the backward all-reduces (sums) the gradient and keeps this rank's rows."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        ctx.rank = rank
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_with_grad(x: Tensor) -> Tensor:
    """``[n, ...]`` on every rank -> ``[n * world, ...]``, rank r's rows at ``r * n``, differentiable.

    Every rank must pass the same shape. Without a process group it returns ``x``.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


def all_mean(values: Tensor) -> Tensor:
    """Mean over ranks of a tensor (for logging); unchanged in a world of one."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / dist.get_world_size()


def broadcast_ints(values: list[int], device: torch.device) -> list[int]:
    """Rank 0's integers on every rank (a host sync; for rare decisions that all ranks must share)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    t = torch.tensor(values, dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return [int(v) for v in t.tolist()]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` in a world of one."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


@contextlib.contextmanager
def main_first(ctx: DistContext) -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks (for work that fills a shared cache)."""
    if ctx.enabled and not ctx.is_main:
        dist.barrier()
    yield
    if ctx.enabled and ctx.is_main:
        dist.barrier()


def broadcast_text(text: str | None, device: torch.device) -> str:
    """Rank 0's ``text`` on every rank (the others pass None), as UTF-8 bytes in two broadcasts (its length,
    then the bytes; no pickling); ``text`` itself in a world of one."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return text or ""
    main = dist.get_rank() == 0
    data = torch.frombuffer(bytearray((text or "").encode()), dtype=torch.uint8) if main else None
    size = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64, device=device)
    dist.broadcast(size, 0)
    buf = data.to(device) if data is not None else torch.empty(int(size.item()), dtype=torch.uint8,
                                                                  device=device)
    dist.broadcast(buf, 0)
    return bytes(buf.cpu().tolist()).decode()
