"""Whether a training step can fit in memory, checked before the run starts.

The paper's batch of 4096 (8,192 views of 224x224 through a ResNet-50) keeps about 670 GB of activations for
the backward pass in fp32: 128 TPU cores in the paper, far beyond one machine. Run as is on a workstation,
such a step would have the kernel kill the process minutes later (or a GPU raise out-of-memory), with nothing
said. The size of what autograd saves is known before any arithmetic: the network is run on the meta device
(shapes only, no memory, no computation) and the tensors it saves for the backward pass are added up, per
view. That, the weights, their gradients and momenta, and the step's input views are a lower bound of the
step's peak (the measured peak of CPU steps of ResNet-18 and -50 is 1.1-1.3 times it, up to 2 times for small
steps); a run whose lower bound exceeds the memory available is refused in one line that names a batch size,
or a gradient-caching chunk, that fits with room to spare."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from simclr.data.decode import available_memory
from simclr.errors import InputError

HEADROOM = 2
"""The sizes advised leave room for this many times the activations' lower bound (the peak is 1.1-2 times it,
and a process holds more than its step)."""


class StepMemory(NamedTuple):
    """The memory a training step keeps, in bytes: ``per_view`` activations saved for the backward pass (per
    view, at the run's precision) and ``fixed`` (weights, gradients, optimiser momenta)."""

    per_view: int
    fixed: int


def step_memory(make_net: Callable[[], nn.Module], side: int, half: bool) -> StepMemory:
    """The memory of one training step of the network ``make_net()`` (f and g) on views of ``side`` pixels.

    Args:
        make_net: Builds the network (called on the meta device: no weights are allocated).
        side: Side of the training views.
        half: bf16/fp16 autocast: activations at half the bytes (a lower bound: some stay fp32).
    """
    with torch.device("meta"):
        net = make_net()
    net.train()

    def saved_bytes(batch: int) -> int:
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            saved[id(t)] = t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(torch.empty(batch, 3, side, side, device="meta"))
        return sum(saved.values())

    per_view = (saved_bytes(4) - saved_bytes(2)) // 2  # the weights the layers save too cancel out
    params = sum(p.numel() * 4 for p in net.parameters())
    return StepMemory(per_view // 2 if half else per_view, 3 * params)  # weights, gradients, momenta


def meta_copy(module: nn.Module) -> nn.Module:
    """A copy of ``module`` on the meta device for :func:`step_memory`, without the forward and backward hooks
    of the original (which are not meant to see meta tensors)."""
    twin = copy.deepcopy(module).to("meta")
    for m in twin.modules():
        for hooks in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks, m._backward_pre_hooks):
            hooks.clear()
    return twin


def available(device: torch.device) -> int | None:
    """Bytes free for new allocations on ``device`` (a GPU's free memory, the system's ``MemAvailable``); None
    when unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        return available_memory()
    return None


def check_step_fits(memory: StepMemory, free: int | None, *, views: int, chunk: int, side: int, arch: str,
                    batch: int, device: str, batches_held: int = 1) -> None:
    """Refuse a run whose every step would run out of memory.

    Args:
        memory: What the network keeps (:func:`step_memory`).
        free: Bytes available (None: unknown, nothing refused).
        views: Views of a step in this process (``2 x batch / processes``), all of them held as float inputs.
        chunk: Views back-propagated at a time with gradient caching (0: all of them at once).
        side, arch, batch, device: What the message names.
        batches_held: Batches of input views in this memory at once (data-loading workers on the CPU prepare
            ``2 x workers`` ahead of the one in use).
    """
    per_input = 3 * side * side * 4 * batches_held  # a float view, and those of the batches prepared ahead
    active = min(chunk, views) if chunk else views
    need = memory.per_view * active + memory.fixed + per_input * views
    if free is None or need <= free:
        return
    room = max(free - memory.fixed, 0)
    # what fits with HEADROOM times the lower bound's activations: the peak is above the bound, and the
    # process holds more than the step (workers, the optimiser's temporaries)
    batch_fits = room // (2 * (HEADROOM * memory.per_view + per_input))  # pairs of views
    chunk_fits = max(room - per_input * views, 0) // max(HEADROOM * memory.per_view, 1)  # views at once
    cache = 1 << max(int(chunk_fits).bit_length() - 1, 1)  # a power of two
    per_process = views // 2
    what = f"{views:,} views (batch {batch}" \
        + (f", {per_process} per process)" if per_process != batch else ")")
    ways = [f"lower --batch-size to about {batch_fits:,}"
            + (" per process" if per_process != batch else "")] if batch_fits >= 1 else []
    if chunk_fits >= 2:
        ways.append(f"keep the batch and set {'a smaller ' if chunk else ''}train.grad_cache_chunk={cache} "
                    "(gradient caching: the same gradients, a chunk of views in memory at a time)")
    advice = ", or ".join(ways) or "use a smaller network or image side, or a machine with more memory"
    held = f"{_gib(need)}" + (f" ({active:,} views at a time)" if chunk else "")
    raise InputError(f"a training step of {what} of {side}x{side} through {arch} keeps about {held} for the "
                     f"backward pass, and {device} has {_gib(free)} available: {advice}")


def check_finetune_fits(memory: StepMemory, free: int | None, *, batch: int, side: int, device: str,
                        extra: int = 0, images: int = 0) -> None:
    """Refuse fine-tuning whose every step would run out of memory: batches of ``batch`` images of ``side``
    pixels through a network keeping ``memory``, with ``extra`` bytes still to be placed on the device (images
    moved there), against ``free`` bytes (None: unknown). ``images``: the labelled images, when fewer than the
    batch size asked for (a batch is then all of them)."""
    per_input = 3 * side * side * 4
    need = (memory.per_view + per_input) * batch + memory.fixed + extra
    if free is None or need <= free:
        return
    fits = max(free - memory.fixed - extra, 0) // (HEADROOM * memory.per_view + per_input)
    advice = f"lower --batch-size to about {fits:,}" if fits >= 2 else \
        "use a smaller network or image side, or a machine with more memory"
    whole = f" (all {images:,} labelled images)" if images and images <= batch else ""
    raise InputError(f"fine-tuning on batches of {batch:,} images{whole} of {side}x{side} keeps about "
                     f"{_gib(need)} for the backward pass, and {device} has {_gib(free)} available: {advice}")


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"
