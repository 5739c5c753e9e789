"""Weight-decay / LARS-exclusion parameter groups (SimCLR Appendix B.1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from simclr.optim import split_decay_groups


def _model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )


def _names(model: nn.Module, group: dict) -> set[str]:
    ids = {id(p) for p in group["params"]}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def test_conv_bn_linear_split() -> None:
    model = _model()
    groups = split_decay_groups(model, 1e-6)
    assert len(groups) == 2
    decay, no_decay = groups
    assert _names(model, decay) == {"0.weight", "3.weight", "6.weight"}
    assert _names(model, no_decay) == {"1.weight", "1.bias", "3.bias", "6.bias"}
    assert decay["weight_decay"] == 1e-6 and decay["lars_exclude"] is False
    assert no_decay["weight_decay"] == 0.0 and no_decay["lars_exclude"] is True


def test_frozen_parameters_are_left_out() -> None:
    model = _model()
    for p in model[0].parameters():
        p.requires_grad_(False)
    model[6].bias.requires_grad_(False)
    decay, no_decay = split_decay_groups(model, 1e-6)
    assert _names(model, decay) == {"3.weight", "6.weight"}
    assert _names(model, no_decay) == {"1.weight", "1.bias", "3.bias"}


def test_empty_groups_are_dropped() -> None:
    groups = split_decay_groups(nn.BatchNorm1d(4), 1e-6)
    assert len(groups) == 1 and groups[0]["lars_exclude"] is True
    assert split_decay_groups(nn.Linear(2, 2, bias=False), 1e-6)[0]["lars_exclude"] is False
    assert split_decay_groups(nn.Linear(2, 2).requires_grad_(False), 1e-6) == []


def test_shared_parameters_appear_once() -> None:
    layer = nn.Linear(3, 3)
    model = nn.Sequential(layer, layer)
    groups = split_decay_groups(model, 0.1)
    assert sum(len(g["params"]) for g in groups) == 2


@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.AdamW])
def test_groups_work_with_torch_optimizers(opt_cls: type[torch.optim.Optimizer]) -> None:
    model = _model()
    opt = opt_cls(split_decay_groups(model, 1e-4), lr=0.01)
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 0.0]
    assert opt.state_dict()["param_groups"][1]["lars_exclude"] is True


def test_negative_weight_decay_raises() -> None:
    with pytest.raises(ValueError):
        split_decay_groups(nn.Linear(2, 2), -1.0)
