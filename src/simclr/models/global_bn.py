"""Global batch norm (Section 2.2 of the paper): BN statistics aggregated over all devices, on any backend.

``nn.SyncBatchNorm`` only runs on CUDA tensors; this one works with gloo on CPU as well (and with NCCL).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

_CONVERTIBLE = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _world_size(group: dist.ProcessGroup | None) -> int:
    """Ranks in ``group`` (None: the default group); 1 when torch.distributed is not initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


class _AllReduceSum(torch.autograd.Function):
    """All-reduce (SUM) whose backward all-reduces (SUM) the incoming gradient.

    Every rank's local statistics feed every rank's copy of the sum, so the gradient of the sum of all
    ranks' losses with respect to the local input is the sum over ranks of the gradient received here.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group: dist.ProcessGroup | None) -> torch.Tensor:
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the batch of every rank of ``group``, for inputs [B, C] or [B, C, *].

    In training mode (or when no running statistics are kept) with more than one rank, the per-channel sum,
    sum of squares and element count are all-reduced (in float64) in one collective, and mean / biased
    variance come from the global batch; the running statistics are updated exactly like ``nn.BatchNorm*d``
    (unbiased variance with the global count). Otherwise (eval mode, torch.distributed not initialised, a
    single rank) it is ``F.batch_norm``, i.e. exactly ``nn.BatchNorm*d``. Statistics are computed in float32
    at least (float64 for float64 input); the output has the input dtype (bf16 in, bf16 out, as torch's BN
    under autocast). Every rank must call forward (and backward) the same number of times, as with any
    collective.

    Args:
        num_features: C, the number of channels.
        eps: added to the variance for numerical stability.
        momentum: running-statistics momentum; None for a cumulative moving average.
        affine: learn a per-channel scale and shift.
        track_running_stats: keep running mean / variance for eval mode.
        group: the process group to aggregate over; None means the default (world) group.
        device: device of the parameters and buffers.
        dtype: dtype of the parameters and buffers.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 group: dist.ProcessGroup | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self.group = group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input [B, C, ...] with at least 2 dimensions, got {input.dim()}D")
        if input.shape[1] != self.num_features:
            raise ValueError(f"expected {self.num_features} channels, "
                             f"got input of shape {tuple(input.shape)}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        use_buffers = not self.training or self.track_running_stats
        running_mean = self.running_mean if use_buffers else None
        running_var = self.running_var if use_buffers else None
        if not bn_training or _world_size(self.group) == 1:
            return F.batch_norm(input, running_mean, running_var, self.weight, self.bias, bn_training, factor,
                                self.eps)
        return self._global_forward(input, running_mean, running_var, factor)

    def _global_forward(self, x: torch.Tensor, running_mean: torch.Tensor | None,
                        running_var: torch.Tensor | None, factor: float) -> torch.Tensor:
        """Normalise ``x`` with the statistics of the global batch; update the running ones if given."""
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        stats_dtype = torch.promote_types(x.dtype, torch.float32)
        xf, n_local = x.to(stats_dtype), x.numel() // c
        # Local moments by Welford (var_mean), then sum = n * mean and sum of squares = n * (var + mean^2)
        # in float64: combining them as E[x^2] - E[x]^2 in float32 loses everything when |mean| >> std.
        var, mean = torch.var_mean(xf, dims, correction=0) if n_local else (xf.sum(dims), xf.sum(dims))
        mean = mean.double()
        local = torch.cat([mean * n_local, (var.double() + mean.square()) * n_local,
                           mean.new_full((1,), n_local)])
        total = _AllReduceSum.apply(local, self.group)
        n = total[2 * c]
        mean = total[:c] / n
        var = (total[c:2 * c] / n - mean.square()).clamp_min(0)
        if running_mean is not None and running_var is not None:
            with torch.no_grad():
                unbiased = var * (n / (n - 1))
                running_mean.mul_(1 - factor).add_(mean.to(running_mean.dtype), alpha=factor)
                running_var.mul_(1 - factor).add_(unbiased.to(running_var.dtype), alpha=factor)
        mean, var = mean.to(stats_dtype), var.to(stats_dtype)
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight.to(stats_dtype)
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias.to(stats_dtype)
        shape = [1, c] + [1] * (x.dim() - 2)
        return (x * scale.view(shape) + shift.view(shape)).to(x.dtype)


class GlobalBatchNormAct(GlobalBatchNorm):
    """:class:`GlobalBatchNorm` followed by the dropout and activation of a batch norm that carries them
    (timm's ``BatchNormAct2d``: ``act(drop(bn(x)))``); the same state dict."""

    def __init__(self, num_features: int, eps: float, momentum: float | None, affine: bool,
                 track_running_stats: bool, drop: nn.Module, act: nn.Module,
                 group: dist.ProcessGroup | None = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, group=group)
        self.drop = drop
        self.act = act

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(input)))


def _carries_activation(module: nn.Module) -> bool:
    """A batch norm subclass that applies ``drop`` then ``act`` after normalising (timm's BatchNormAct2d)."""
    return (isinstance(module, nn.modules.batchnorm._BatchNorm) and type(module) not in _CONVERTIBLE
            and isinstance(getattr(module, "act", None), nn.Module)
            and isinstance(getattr(module, "drop", None), nn.Module))


def _global_twin(module: nn.modules.batchnorm._BatchNorm, group: dist.ProcessGroup | None) -> GlobalBatchNorm:
    args = (module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
    if _carries_activation(module):
        out: GlobalBatchNorm = GlobalBatchNormAct(*args, module.drop, module.act, group=group)  # type: ignore[arg-type]
    else:
        out = GlobalBatchNorm(*args, group=group)
    if module.affine:
        out.weight, out.bias = module.weight, module.bias
    out.running_mean, out.running_var = module.running_mean, module.running_var
    out.num_batches_tracked = module.num_batches_tracked
    out.train(module.training)
    if hasattr(module, "qconfig"):
        out.qconfig = module.qconfig
    return out


def other_batch_norms(module: nn.Module) -> list[str]:
    """Names of the batch-norm layers of ``module`` that :func:`convert_global_bn` leaves per device:
    subclasses whose forward it does not know."""
    return [name for name, m in module.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and not isinstance(m, GlobalBatchNorm) and type(m) not in _CONVERTIBLE
            and not _carries_activation(m)]


def convert_global_bn(module: nn.Module, group: dist.ProcessGroup | None = None) -> nn.Module:
    """Replace every BatchNorm1d/2d/3d and SyncBatchNorm in ``module`` by a :class:`GlobalBatchNorm`, and
    every batch norm that carries an activation (timm's BatchNormAct2d) by a :class:`GlobalBatchNormAct`;
    layer, group and other norms are left alone (they need no statistics across devices), as are batch-norm
    subclasses of unknown behaviour (:func:`other_batch_norms` names them).

    Like ``nn.SyncBatchNorm.convert_sync_batchnorm``, the new layers share the original parameters and
    buffers (same tensors, so same device, dtype and requires_grad) and keep the train / eval mode.

    Args:
        module: the model (or a single batch-norm layer).
        group: the process group to aggregate over; None means the default group.

    Returns:
        ``module`` with its batch norms replaced, or the new layer if ``module`` itself is a batch norm.
    """
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm) \
            and (type(module) in _CONVERTIBLE or _carries_activation(module)):
        out = _global_twin(module, group)
    for name, child in module.named_children():
        if out is not module and name in ("drop", "act"):
            continue  # already the twin's
        out.add_module(name, convert_global_bn(child, group))
    return out


__all__ = ["GlobalBatchNorm", "GlobalBatchNormAct", "convert_global_bn", "other_batch_norms"]
