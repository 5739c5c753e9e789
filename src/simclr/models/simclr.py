"""The SimCLR network: encoder f and projection head g, returning (h, z)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from simclr.models.heads import HeadSpec, build_head
from simclr.models.resnet import EncoderSpec, build_encoder


class Representations(NamedTuple):
    """h = f(x) [B, num_features], the representation used downstream; z = g(h) [B, out_dim] for the loss."""

    h: torch.Tensor
    z: torch.Tensor


class SimCLRNet(nn.Module):
    """f followed by g. ``forward(x)`` gives ``Representations(h, z)``."""

    def __init__(self, encoder: EncoderSpec, head: HeadSpec) -> None:
        super().__init__()
        self.encoder = build_encoder(encoder)
        self.head = build_head(head, self.encoder.num_features)
        self.num_features = self.encoder.num_features

    def forward(self, x: torch.Tensor) -> Representations:
        h = self.encoder(x)
        return Representations(h, self.head(h))
