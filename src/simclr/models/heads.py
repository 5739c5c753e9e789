"""Projection head g(.) (Section 2.1 and 4.2 of the paper): z = g(h), used only for the contrastive loss."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

HEAD_KINDS = ("none", "linear", "nonlinear")


@dataclass(frozen=True)
class HeadSpec:
    """Projection head options.

    Attributes:
        kind: ``"nonlinear"`` (the paper's z = W2 ReLU(W1 h)), ``"linear"`` (z = W h) or ``"none"`` (z = h).
        out_dim: output size of z (128 in the paper).
        hidden_dim: hidden size of the non-linear head; 0 means "the size of h" (the paper's choice).
        batch_norm: batch-norm after each hidden layer (the reference code does, Appendix B.9 of v2 code).
        layers: number of linear layers of the non-linear head (2 in the paper).
    """

    kind: str = "nonlinear"
    out_dim: int = 128
    hidden_dim: int = 0
    batch_norm: bool = True
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
    """Build g for features h of size ``in_dim``. Input [B, in_dim], output [B, out_dim] (or in_dim for none)."""
    spec.validate()
    if spec.kind == "none":
        return nn.Identity()
    if spec.kind == "linear":
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
    mods.append(nn.Linear(dim, spec.out_dim))
    return nn.Sequential(*mods)


__all__ = ["HEAD_KINDS", "HeadSpec", "build_head"]
