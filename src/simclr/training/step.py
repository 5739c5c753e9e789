"""One SimCLR training step: both views through f and g in one forward pass, the loss, backward, optimiser
step.

The forward and the loss form one function so that ``torch.compile`` can fuse them (``compile`` in the run's
config): ``off`` runs eagerly; ``default`` compiles with Inductor; ``cudagraphs`` compiles and replays the
step's kernels as CUDA graphs (``mode="reduce-overhead"``), which removes the per-kernel launch cost that
dominates small-image training on a fast GPU; ``auto`` picks ``off`` on CPU (compiling made CPU training
slower here) and ``cudagraphs`` on CUDA. The step never waits for the device: it returns the loss and the
contrastive accuracy as device tensors, and the caller reads them only when it logs.

Under torchrun the loss contrasts this rank's views against the views of every rank (``gather_negatives``,
see :mod:`simclr.runtime.distributed`). With ``grad_cache_chunk`` > 0 the step embeds the views in chunks of
that many views and back-propagates through cached embedding gradients (:mod:`simclr.training.gradcache`), so
activation memory is bounded by a chunk instead of the batch; it is never compiled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from simclr.config import COMPILE_MODES
from simclr.losses import ContrastiveOutput
from simclr.runtime.device import Precision
from simclr.runtime.distributed import gather_with_grad
from simclr.training.gradcache import cached_backward

Loss = Callable[[Tensor, Tensor, int], ContrastiveOutput]
"""``loss(z_local, z_global, offset)``: the contrastive loss with its settings bound
(:class:`simclr.losses.Objective`, made by ``simclr.build.build_loss``)."""


def pick_compile(mode: str, device: torch.device) -> str:
    """The compile mode a run uses: ``auto`` means ``cudagraphs`` on CUDA and ``off`` elsewhere."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    if mode == "auto":
        return "cudagraphs" if device.type == "cuda" else "off"
    if mode == "cudagraphs" and device.type != "cuda":
        return "default"  # CUDA graphs need CUDA; Inductor alone still applies
    return mode


@dataclass(frozen=True)
class StepOptions:
    """How the step runs (none of it changes what it computes, except ``loss_scale`` the gradient's size).

    Attributes:
        channels_last: feed the network NHWC tensors.
        compile: one of :data:`COMPILE_MODES`, resolved with :func:`pick_compile`.
        gather_negatives: under torchrun, contrast against the views of all ranks (else only local ones).
        rank: this process's rank (the offset of its views among the gathered ones).
        grad_cache_chunk: views per chunk for gradient caching (0 = plain back-propagation).
        loss_scale: the loss is multiplied by this for the gradient; the step returns it unscaled.
    """

    channels_last: bool = True
    compile: str = "off"
    gather_negatives: bool = True
    rank: int = 0
    grad_cache_chunk: int = 0
    loss_scale: float = 1.0


class ContrastiveStep:
    """Callable ``step(v1, v2) -> (loss, accuracy)`` that also updates the parameters.

    Args:
        model: a network whose output has a ``.z`` (``SimCLRNet``), or its DDP wrapper (whose ``module``'s
            batch-norm running statistics gradient caching then protects).
        optimizer: its optimiser (the caller sets the learning rate before each step).
        scaler: gradient scaler (enabled for fp16 only).
        precision: autocast dtype.
        device: the training device.
        loss: the contrastive loss, settings bound (:data:`Loss`).
        options: how the step runs (:class:`StepOptions`).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                 precision: Precision, device: torch.device, loss: Loss,
                 options: StepOptions | None = None) -> None:
        options = options or StepOptions()
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.precision, self.device, self.loss, self.options = precision, device, loss, options
        self.compile = "off" if options.grad_cache_chunk else pick_compile(options.compile, device)
        inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        self.bn_owner = inner if isinstance(inner, nn.Module) else model  # whose BN statistics to keep
        self._forward: Callable[[Tensor], tuple[Tensor, Tensor]] = self._forward_loss
        if self.compile != "off":
            mode = "reduce-overhead" if self.compile == "cudagraphs" else "default"
            self._forward = torch.compile(self._forward_loss, mode=mode, dynamic=False)

    def _embed(self, x: Tensor) -> Tensor:
        with self.precision.autocast(self.device):
            return self.model(x).z

    def _loss(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The loss of this rank's stacked ``[z1; z2]`` against its own or all ranks' views."""
        z_all = gather_with_grad(z) if self.options.gather_negatives else z
        offset = self.options.rank * z.shape[0] if z_all is not z else 0
        out = self.loss(z, z_all, offset)
        return out.loss, out.accuracy

    def _scaled(self, loss: Tensor) -> Tensor:
        """What is back-propagated: the loss times ``loss_scale``, then the gradient scaler's factor."""
        scale = self.options.loss_scale
        return self.scaler.scale(loss * scale if scale != 1 else loss)

    def _forward_loss(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._loss(self._embed(x))

    def __call__(self, v1: Tensor, v2: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([v1, v2]).to(self.device, non_blocking=True)
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        if self.options.grad_cache_chunk:
            loss, accuracy = cached_backward(self._embed, x, self.options.grad_cache_chunk, self._loss,
                                             self._scaled, self.bn_owner)
        else:
            if self.compile == "cudagraphs":
                torch.compiler.cudagraph_mark_step_begin()
            loss, accuracy = self._forward(x)
            self._scaled(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.compile == "cudagraphs":  # the outputs live in memory the next replay overwrites
            return loss.detach().clone(), accuracy.detach().clone()
        return loss.detach(), accuracy.detach()
