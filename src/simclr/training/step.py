"""One SimCLR training step: both views through f and g in one forward pass, NT-Xent, backward, optimiser step.

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

import torch
from torch import Tensor, nn

from simclr.config import COMPILE_MODES
from simclr.losses import ContrastiveOutput, nt_xent
from simclr.losses.alternatives import LOSSES
from simclr.runtime.device import Precision
from simclr.runtime.distributed import gather_with_grad
from simclr.training.gradcache import cached_backward


def pick_compile(mode: str, device: torch.device) -> str:
    """The compile mode a run uses: ``auto`` means ``cudagraphs`` on CUDA and ``off`` elsewhere."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    if mode == "auto":
        return "cudagraphs" if device.type == "cuda" else "off"
    if mode == "cudagraphs" and device.type != "cuda":
        return "default"  # CUDA graphs need CUDA; Inductor alone still applies
    return mode


class ContrastiveStep:
    """Callable ``step(v1, v2) -> (loss, accuracy)`` that also updates the parameters.

    Args:
        model: a network whose output has a ``.z`` (``SimCLRNet``).
        optimizer: its optimiser (the caller sets the learning rate before each step).
        scaler: gradient scaler (enabled for fp16 only).
        precision: autocast dtype.
        device: the training device.
        temperature: NT-Xent temperature.
        normalize: l2-normalise z before the similarities.
        channels_last: feed the network NHWC tensors.
        compile: one of :data:`COMPILE_MODES`, resolved with :func:`pick_compile`.
        gather_negatives: under torchrun, contrast against the views of all ranks (else only local ones).
        rank: this process's rank (the offset of its views among the gathered ones).
        grad_cache_chunk: views per chunk for gradient caching (0 = plain back-propagation).
        bn_owner: the module whose batch-norm running statistics gradient caching protects (the unwrapped
            network when ``model`` is a DDP wrapper).
        loss: a name of :data:`simclr.losses.alternatives.LOSSES`; ``margin`` and ``semi_hard`` go with it.
        loss_scale: the loss is multiplied by this for the gradient; the step returns it unscaled.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                 precision: Precision, device: torch.device, *, temperature: float, normalize: bool = True,
                 channels_last: bool = True, compile: str = "off", gather_negatives: bool = True, rank: int = 0,
                 grad_cache_chunk: int = 0, bn_owner: nn.Module | None = None, loss: str = "nt_xent",
                 margin: float = 1.0, semi_hard: bool = False, loss_scale: float = 1.0) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        self.precision = precision
        self.device = device
        self.temperature = temperature
        self.normalize = normalize
        self.channels_last = channels_last
        self.compile = "off" if grad_cache_chunk else pick_compile(compile, device)
        self.gather_negatives = gather_negatives
        self.rank = rank
        self.grad_cache_chunk = grad_cache_chunk
        self.bn_owner = bn_owner if bn_owner is not None else model
        self.loss_name, self.margin, self.semi_hard = loss, margin, semi_hard
        self.loss_scale = loss_scale
        self._forward: Callable[[Tensor], tuple[Tensor, Tensor]] = self._forward_loss
        if self.compile != "off":
            mode = "reduce-overhead" if self.compile == "cudagraphs" else "default"
            self._forward = torch.compile(self._forward_loss, mode=mode, dynamic=False)

    def _embed(self, x: Tensor) -> Tensor:
        with self.precision.autocast(self.device):
            return self.model(x).z

    def _loss(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The loss of this rank's stacked ``[z1; z2]`` against its own or all ranks' views."""
        z_all = gather_with_grad(z) if self.gather_negatives else z
        offset = self.rank * z.shape[0] if z_all is not z else 0
        if self.loss_name == "nt_xent" and z_all is z:
            n = z.shape[0] // 2
            out: ContrastiveOutput = nt_xent(z[:n], z[n:], self.temperature, normalize=self.normalize)
        else:
            out = LOSSES[self.loss_name](z, z_all, offset, temperature=self.temperature, margin=self.margin,
                                         normalize=self.normalize, semi_hard=self.semi_hard)
        return out.loss, out.accuracy

    def _scaled(self, loss: Tensor) -> Tensor:
        """What is back-propagated: the loss times ``loss_scale``, then the gradient scaler's factor (fp16)."""
        return self.scaler.scale(loss * self.loss_scale if self.loss_scale != 1 else loss)

    def _forward_loss(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._loss(self._embed(x))

    def __call__(self, v1: Tensor, v2: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([v1, v2]).to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        self.optimizer.zero_grad(set_to_none=True)
        if self.grad_cache_chunk:
            loss, accuracy = cached_backward(self._embed, x, self.grad_cache_chunk, self._loss, self._scaled,
                                             self.bn_owner)
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
