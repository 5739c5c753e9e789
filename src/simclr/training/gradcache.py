"""Gradient caching: a contrastive step whose activation memory is bounded by a chunk, not the batch.

Gao et al., "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup", 2021. The loss
couples every embedding with every other one, but its gradient factors through the [M, D] embeddings, which
are small. :func:`cached_backward` therefore (1) embeds the batch chunk by chunk without a graph, (2) takes
the loss and its gradient with respect to all embeddings, and (3) re-embeds each chunk with a graph and
back-propagates that chunk's slice of the cached gradient. Peak activation memory is that of one chunk; the
price is a second forward pass.

Batch norm: in train mode every chunk is normalised with its own statistics, like per-device BN in the
paper without global BN. Passes 1 and 3 see the same chunks, so they agree with each other, and the
parameter gradients are exactly those of plain full-batch back-propagation only when batch statistics do not
depend on the chunking (BN in eval mode, or no BN). With train-mode BN they are the exact gradients of a
slightly different objective: the loss of embeddings computed with per-chunk BN. If ``model`` is given, the
running statistics of its BN modules are snapshotted before pass 1 and restored after it, so that they are
updated once per step, by pass 3 (one momentum update per chunk, as a plain per-chunk forward would do).
Batch norm that synchronises across processes (``SyncBatchNorm``, global BN) communicates on every chunk
forward of both passes: all processes must then run the same number of chunks.

Randomness: pass 3 must reproduce pass 1. The CPU RNG state (and that of the CUDA device of ``x``, or the
    current CUDA device if CUDA is initialised) is saved before each chunk of pass 1 and restored before the
    same chunk of pass 3, so dropout and the like draw the same masks twice; the RNG state after the call is
    the one left by the loss. Other nondeterminism (e.g. nondeterministic CUDA kernels) only perturbs the
    gradient slightly.

With ``chunk_size >= M`` the call falls back to one plain forward and backward (no second pass).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["cached_backward"]

_RNGState = tuple[Tensor, "Tensor | None"]


def _cuda_device(x: Tensor) -> torch.device | None:
    """The CUDA device whose RNG the embedding may use: that of ``x``, else the current one if initialised."""
    if x.is_cuda:
        return x.device
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.device("cuda", torch.cuda.current_device())
    return None


def _get_rng(device: torch.device | None) -> _RNGState:
    return torch.get_rng_state(), None if device is None else torch.cuda.get_rng_state(device)


def _set_rng(state: _RNGState, device: torch.device | None) -> None:
    torch.set_rng_state(state[0])
    if device is not None and state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def _bn_buffers(model: nn.Module | None) -> list[Tensor]:
    """The running-statistics buffers (mean, var, count) of every batch-norm module of ``model``."""
    if model is None:
        return []
    buffers = []
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            buffers += [b for b in (module.running_mean, module.running_var, module.num_batches_tracked)
                        if b is not None]
    return buffers


def cached_backward(embed: Callable[[Tensor], Tensor], x: Tensor, chunk_size: int,
                    loss_fn: Callable[[Tensor], tuple[Tensor, Tensor]],
                    scale: Callable[[Tensor], Tensor] = lambda t: t,
                    model: nn.Module | None = None) -> tuple[Tensor, Tensor]:
    """Back-propagate a batch-level loss through ``embed`` one chunk of the batch at a time.

    Parameter gradients accumulate into their ``.grad`` (the caller zeroes them before, and steps after).

    Args:
        embed: ``embed(x_chunk) -> z_chunk`` of shape [m, D], e.g. ``lambda x: model(x).z`` under autocast.
            It must behave the same on both passes (see the module docstring on RNG and batch norm).
        x: The whole input batch [M, ...], for SimCLR the 2N views stacked as ``[view1; view2]``.
        chunk_size: Rows embedded at once (the last chunk may be smaller); bounds activation memory.
        loss_fn: ``loss_fn(z_all) -> (loss, accuracy)`` on the [M, D] embeddings of the whole batch; treated
            as a black box (it may gather across processes).
        scale: Maps the loss to the tensor that is back-propagated, e.g. a ``GradScaler``'s ``scale``.
        model: The module behind ``embed``; if given, its batch-norm running statistics are updated once per
            call (by the graph pass), not twice.

    Returns:
        ``(loss, accuracy)``, both detached.

    Raises:
        ValueError: if ``chunk_size < 1``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if chunk_size >= x.shape[0]:
        loss, accuracy = loss_fn(embed(x))
        scale(loss).backward()
        return loss.detach(), accuracy.detach()

    chunks = x.split(chunk_size)
    device = _cuda_device(x)
    buffers = _bn_buffers(model)
    with torch.no_grad():
        saved_stats = [b.clone() for b in buffers]
        rng_states = []
        parts = []
        for chunk in chunks:  # pass 1: embeddings only, no graph
            rng_states.append(_get_rng(device))
            parts.append(embed(chunk))
        for b, saved in zip(buffers, saved_stats):
            b.copy_(saved)
    z_all = torch.cat(parts).detach().requires_grad_()
    del parts

    loss, accuracy = loss_fn(z_all)  # pass 2: loss and its gradient w.r.t. every embedding
    scale(loss).backward()
    cached = z_all.grad
    assert cached is not None  # z_all requires grad and the loss depends on it
    del z_all
    after_loss = _get_rng(device)

    for chunk, state, grad in zip(chunks, rng_states, cached.split(chunk_size)):  # pass 3
        _set_rng(state, device)
        embed(chunk).backward(grad)
    _set_rng(after_loss, device)
    return loss.detach(), accuracy.detach()
