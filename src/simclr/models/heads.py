"""Projection head g(.) (Section 2.1 and 4.2 of the paper): z = g(h), used only for the contrastive loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

HEAD_KINDS = ("none", "linear", "nonlinear")


@dataclass(frozen=True)
class HeadSpec:
    """Projection head options.

    Attributes:
        kind: ``"nonlinear"`` (the paper's z = W2 ReLU(W1 h)), ``"linear"`` (z = W h) or ``"none"`` (z = h).
        out_dim: output size of z (128 in the paper).
        hidden_dim: hidden size of the non-linear head; 0 means "the size of h" (the paper's choice).
        batch_norm: batch norm after every linear layer, which then has no bias, as in the reference code
            (``projection_head`` of google-research/simclr: each hidden layer's with a scale and a shift,
            before the ReLU).
        out_bn: with ``batch_norm``, the last layer's too (the reference code's, with a scale but no shift,
            ``center=False``; the linear head's as well); false: z is the last linear layer's output, with a
            bias (a checkpoint whose config has no ``out_bn`` was written before it existed, and loads so).
        layers: number of linear layers of the non-linear head (2 in the paper).
    """

    kind: str = "nonlinear"
    out_dim: int = 128
    hidden_dim: int = 0
    batch_norm: bool = True
    out_bn: bool = True
    layers: int = 2

    def validate(self) -> None:
        if self.kind not in HEAD_KINDS:
            raise ValueError(f"head kind must be one of {', '.join(HEAD_KINDS)}, got {self.kind!r}")
        if self.out_dim < 1:
            raise ValueError(f"head out_dim must be >= 1, got {self.out_dim}")
        if self.hidden_dim < 0:
            raise ValueError(f"head hidden_dim must be >= 0, got {self.hidden_dim}")
        if self.layers < 2 and self.kind == "nonlinear":
            raise ValueError(f"a non-linear head needs layers >= 2, got {self.layers}")


def build_head(spec: HeadSpec, in_dim: int) -> nn.Module:
    """Build g for features h of size ``in_dim``. Input [B, in_dim], output [B, out_dim] (or in_dim for
    none)."""
    spec.validate()
    if spec.kind == "none":
        return nn.Identity()
    out_bn = spec.batch_norm and spec.out_bn
    if spec.kind == "linear":
        if out_bn:
            return nn.Sequential(nn.Linear(in_dim, spec.out_dim, bias=False), ScaleBatchNorm(spec.out_dim))
        return nn.Linear(in_dim, spec.out_dim, bias=not spec.batch_norm)
    hidden = spec.hidden_dim or in_dim
    mods: list[nn.Module] = []
    dim = in_dim
    for _ in range(spec.layers - 1):
        mods.append(nn.Linear(dim, hidden, bias=not spec.batch_norm))
        if spec.batch_norm:
            mods.append(nn.BatchNorm1d(hidden))
        mods.append(nn.ReLU(inplace=True))
        dim = hidden
    mods.append(nn.Linear(dim, spec.out_dim, bias=not out_bn))
    if out_bn:
        mods.append(ScaleBatchNorm(spec.out_dim))
    return nn.Sequential(*mods)


class ScaleBatchNorm(nn.Module):
    """Batch norm with a learned per-feature scale and no shift (TensorFlow's ``center=False``): the reference
    code's output layer of the projection head. Input and output [B, C]."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(features, affine=False)  # global batch norm replaces it like any other
        # 1-d: excluded from weight decay and LARS adaptation
        self.weight = nn.Parameter(torch.ones(features))

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x) * self.weight


__all__ = ["HEAD_KINDS", "HeadSpec", "ScaleBatchNorm", "build_head"]
