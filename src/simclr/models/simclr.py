"""The SimCLR network: encoder f and projection head g, returning (h, z)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from simclr.models.backbones import LibraryEncoder, is_library_arch
from simclr.models.heads import HeadSpec, build_head
from simclr.models.resnet import IMAGENET_MEAN, IMAGENET_STD, EncoderSpec, build_encoder


class Representations(NamedTuple):
    """h = f(x) [B, num_features], the representation used downstream; z = g(h) [B, out_dim] for the loss."""

    h: torch.Tensor
    z: torch.Tensor


def make_encoder(spec: EncoderSpec) -> nn.Module:
    """f for ``spec``: simclr's ResNet, or a timm / torchvision backbone; either has ``num_features``."""
    spec.validate()
    if is_library_arch(spec.arch):
        return LibraryEncoder(spec.arch, spec.cifar_stem, spec.image_size, spec.input_norm, IMAGENET_MEAN,
                              IMAGENET_STD)
    return build_encoder(spec)


class SimCLRNet(nn.Module):
    """f followed by g. ``forward(x)`` gives ``Representations(h, z)``."""

    def __init__(self, encoder: EncoderSpec, head: HeadSpec) -> None:
        super().__init__()
        self.encoder = make_encoder(encoder)
        self.num_features: int = int(self.encoder.num_features)  # type: ignore[arg-type]
        self.head = build_head(head, self.num_features)

    def forward(self, x: torch.Tensor) -> Representations:
        h = self.encoder(x)
        return Representations(h, self.head(h))
