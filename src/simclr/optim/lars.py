"""LARS: layer-wise adaptive rate scaling (You, Gitman and Ginsburg, 2017, arXiv:1708.03888).

SimCLR trains with LARS at large batch sizes (Chen et al. 2020, Section 2.2 "Training with large batch
size" and Appendix B.1). This is a port of the reference ``tf2/lars_optimizer.py`` in its default
"classic momentum" mode: for each parameter ``w`` with gradient ``g``::

    g           = g + weight_decay * w                        (unless excluded)
    trust_ratio = eeta * |w| / (|g| + eps)  if |w| > 0 and |g| > 0, else 1   (unless excluded: 1)
    scaled_lr   = lr * trust_ratio
    v           = momentum * v + scaled_lr * g
    w           = w - v                                       (nesterov: w - (momentum * v + scaled_lr * g))

Note that, as in the reference, the learning rate sits *inside* the momentum buffer (unlike
``torch.optim.SGD``, which keeps ``v`` free of lr and multiplies afterwards). A change of lr therefore
acts on new gradients only, and the buffer holds a parameter-space step, not a gradient average.

Batch-norm parameters and biases are excluded from both weight decay and trust-ratio scaling in the
paper (Appendix B.1); here that is a per-parameter-group flag ``lars_exclude`` (see
:func:`simclr.optim.param_groups.split_decay_groups`) rather than the reference's name regexes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["LARS"]


def _trust_ratio(param: Tensor, grad: Tensor, eeta: float, eps: float) -> Tensor:
    """Layer-wise trust ratio ``eeta * |w| / (|g| + eps)``, or 1 where either norm is zero.

    Args:
        param: The parameter tensor w (any shape).
        grad: Its (weight-decayed) gradient g, same shape.
        eeta: Trust coefficient (You et al. 2017, eq. 6).
        eps: Added to ``|g|`` for numerical safety.

    Returns:
        A 0-dim tensor on the parameter's device; computed without host synchronisation.
    """
    w_norm = torch.linalg.vector_norm(param)
    g_norm = torch.linalg.vector_norm(grad)
    ratio = eeta * w_norm / (g_norm + eps)
    return torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))


def _update_one(group: dict[str, Any], p: Tensor, grad: Tensor, buf: Tensor) -> None:
    """The LARS update of one parameter (the reference's per-variable loop)."""
    lr: float = group["lr"]
    if group["lars_exclude"]:
        scaled_lr: Tensor | float = lr
    else:
        if group["weight_decay"] != 0.0:
            grad = grad.add(p, alpha=group["weight_decay"])
        scaled_lr = lr * _trust_ratio(p, grad, group["trust_coefficient"], group["eps"])
    scaled_grad = grad * scaled_lr
    buf.mul_(group["momentum"]).add_(scaled_grad)
    update = buf * group["momentum"] + scaled_grad if group["nesterov"] else buf
    p.sub_(update)


def _update_foreach(group: dict[str, Any], params: list[Tensor], grads: list[Tensor],
                    bufs: list[Tensor]) -> None:
    """The same update as :func:`_update_one` for a whole group, with multi-tensor kernels."""
    lr: float = group["lr"]
    if group["lars_exclude"]:
        scaled_grads = torch._foreach_mul(grads, lr)
    else:
        if group["weight_decay"] != 0.0:
            grads = list(torch._foreach_add(grads, params, alpha=group["weight_decay"]))
        w_norm = torch.stack(torch._foreach_norm(params))
        g_norm = torch.stack(torch._foreach_norm(grads))
        ratio = group["trust_coefficient"] * w_norm / (g_norm + group["eps"])
        ratio = torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))
        scaled_grads = torch._foreach_mul(grads, list((lr * ratio).to(grads[0].dtype).unbind()))
    torch._foreach_mul_(bufs, group["momentum"])
    torch._foreach_add_(bufs, scaled_grads)
    if group["nesterov"]:
        update = list(torch._foreach_add(torch._foreach_mul(bufs, group["momentum"]), scaled_grads))
    else:
        update = bufs
    torch._foreach_sub_(params, update)


class LARS(Optimizer):
    """LARS optimiser with classic momentum, following the SimCLR reference implementation.

    Every option below is also a per-parameter-group key, so one optimiser can hold a decayed,
    trust-scaled group and an excluded group (batch-norm parameters and biases).

    Args:
        params: Parameters or parameter-group dicts.
        lr: Base learning rate. SimCLR uses ``0.3 * batch_size / 256`` with warm-up and cosine decay
            (Section 2.2, Appendix B.1); see :mod:`simclr.optim.schedule`.
        momentum: Momentum coefficient, 0.9 as in the reference code.
        weight_decay: L2 penalty added to the gradient; the paper uses 1e-6 (Appendix B.1). Default 0.
        trust_coefficient: eeta of You et al. (2017), 0.001 as in the reference (``EETA_DEFAULT``).
        eps: Added to the gradient norm in the trust ratio. Default 0 as in the reference, which
            instead guards zero norms with a trust ratio of 1.
        nesterov: Use Nesterov momentum (reference ``use_nesterov``).
        foreach: Update all parameters of a group with multi-tensor ``torch._foreach_*`` kernels (a few
            dozen kernel launches per step instead of about ten per parameter; the same arithmetic).
            ``None`` (default) = on for CUDA parameters, off elsewhere.
        lars_exclude: If true, the group gets neither weight decay nor trust-ratio scaling (trust ratio
            1): plain momentum SGD with the lr inside the buffer. Set it for batch-norm parameters and
            biases (Appendix B.1).

    Raises:
        ValueError: on a negative lr, momentum, weight decay or eps, or a non-positive trust coefficient.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 0.0,
        *,
        nesterov: bool = False,
        foreach: bool | None = None,
        lars_exclude: bool = False,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if momentum < 0.0:
            raise ValueError(f"momentum must be >= 0, got {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if trust_coefficient <= 0.0:
            raise ValueError(f"trust_coefficient must be > 0, got {trust_coefficient}")
        if eps < 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "eps": eps,
            "nesterov": nesterov,
            "foreach": foreach,
            "lars_exclude": lars_exclude,
        }
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore pickled state, filling group keys that older versions may lack."""
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("nesterov", False)
            group.setdefault("lars_exclude", False)
            group.setdefault("eps", 0.0)
            group.setdefault("foreach", None)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one optimisation step.

        Args:
            closure: Optional callable that re-evaluates the model and returns the loss; it is run
                with gradients enabled.

        Returns:
            The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("LARS does not support sparse gradients")
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                bufs.append(state["momentum_buffer"])
            foreach = group["foreach"]
            if foreach is None:
                foreach = bool(params) and all(p.is_cuda for p in params)
            if foreach and params:
                _update_foreach(group, params, [p.grad for p in params], bufs)
            else:
                for p, buf in zip(params, bufs):
                    _update_one(group, p, p.grad, buf)
        return loss
