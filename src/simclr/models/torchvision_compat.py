"""f as a plain torchvision ResNet: the same weights under torchvision's names, for use in any torchvision
code.

simclr's encoder already uses torchvision's residual blocks; only the stem (``stem.0``, ``stem.1`` =
``conv1``, ``bn1``) and the stages (``stages.i`` = ``layer{i+1}``) are named differently. The classifier
``fc`` is not part of f: the torchvision model gets ``fc = Identity`` so that its output is h. With the CIFAR
stem, ``conv1`` is a 3x3 stride-1 convolution and there is no max-pool (``maxpool = Identity``), the usual
CIFAR variant of torchvision's ResNet.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torchvision.models import resnet as tv

from simclr.models.resnet import ResNetEncoder

TORCHVISION_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")

_STEM = {"stem.0.": "conv1.", "stem.1.": "bn1."}


def _check(encoder: ResNetEncoder) -> None:
    spec = encoder.spec
    if spec.arch not in TORCHVISION_ARCHS or spec.width != 1.0:
        raise ValueError(f"torchvision has no {spec.arch} at width {spec.width:g}: only "
                         f"{', '.join(TORCHVISION_ARCHS)} at width 1 map onto torchvision's ResNet")


def torchvision_key(name: str) -> str:
    """torchvision's name of one of the encoder's parameters or buffers."""
    for ours, theirs in _STEM.items():
        if name.startswith(ours):
            return theirs + name[len(ours):]
    m = re.match(r"stages\.(\d+)\.(.*)", name)
    if m is None:
        raise KeyError(f"not a parameter of simclr's ResNet encoder: {name}")
    return f"layer{int(m.group(1)) + 1}.{m.group(2)}"


def torchvision_state_dict(encoder: ResNetEncoder) -> dict[str, torch.Tensor]:
    """The encoder's weights and batch-norm statistics under torchvision's names (no ``fc``)."""
    _check(encoder)
    return {torchvision_key(k): v.detach().clone() for k, v in encoder.state_dict().items()}


def torchvision_skeleton(arch: str, cifar_stem: bool) -> tv.ResNet:
    """An untrained torchvision ResNet shaped like simclr's f: ``fc = Identity``; the CIFAR stem if asked."""
    if arch not in TORCHVISION_ARCHS:
        raise ValueError(f"torchvision has no {arch}; choose from {', '.join(TORCHVISION_ARCHS)}")
    model: tv.ResNet = getattr(tv, arch)(weights=None)
    if cifar_stem:
        model.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()  # type: ignore[assignment]
    model.fc = nn.Identity()  # type: ignore[assignment]
    return model


def to_torchvision(encoder: ResNetEncoder) -> tv.ResNet:
    """A torchvision ResNet computing the same h as ``encoder`` (its own copy of the weights); for an encoder
    with ``input_norm="imagenet"``, from input standardised with ImageNet's mean and deviation, as
    torchvision's models take it."""
    _check(encoder)
    model = torchvision_skeleton(encoder.spec.arch, encoder.spec.cifar_stem)
    model.load_state_dict(torchvision_state_dict(encoder))
    return model.to(next(encoder.parameters()).device)
