"""Parameter groups that leave batch-norm parameters and biases out of weight decay and LARS scaling.

SimCLR, Appendix B.1: "... we exclude batch normalization and bias parameters from weight decay and
LARS adaptation". The reference code does this by name regexes; here the rule is structural: every
parameter with ``ndim <= 1`` (batch-norm / layer-norm weights and biases, every bias vector) is excluded,
every matrix or convolution kernel is decayed and trust-scaled; so are those a timm module lists in its
``no_weight_decay()`` (a vision transformer's position embedding and class token), as timm's training does.
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["split_decay_groups"]


def _no_weight_decay(model: nn.Module) -> set[str]:
    """Names (in ``model``) of the parameters its modules list in timm's ``no_weight_decay()`` (a vision
    transformer's position embedding and class token), which timm's own training leaves undecayed."""
    names: set[str] = set()
    for prefix, module in model.named_modules():
        listed = getattr(module, "no_weight_decay", None)
        if callable(listed):
            names |= {f"{prefix}.{n}" if prefix else n for n in listed()}
    return names


def split_decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split a model's trainable parameters into a decayed group and an excluded group.

    The groups are plain dicts accepted by any ``torch.optim.Optimizer``: the extra ``lars_exclude``
    key drives :class:`simclr.optim.LARS` and is carried along (ignored) by SGD, AdamW and the like.

    Args:
        model: The module whose parameters to split; parameters with ``requires_grad=False`` (e.g. a
            frozen encoder) are left out, shared parameters appear once.
        weight_decay: Weight decay of the decayed group; the paper uses 1e-6 with LARS (Appendix B.1).

    Returns:
        Up to two groups, in this order, empty ones dropped:
        ``{"params": [ndim >= 2 params], "weight_decay": weight_decay, "lars_exclude": False}`` and
        ``{"params": [ndim <= 1 params], "weight_decay": 0.0, "lars_exclude": True}``.

    Raises:
        ValueError: if ``weight_decay`` is negative.
    """
    if weight_decay < 0.0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    spared = _no_weight_decay(model)
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name in spared else decay).append(param)
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": weight_decay, "lars_exclude": False},
        {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True},
    ]
    return [group for group in groups if group["params"]]
