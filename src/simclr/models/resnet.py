"""ResNet encoders f(.) of the paper (Section 3, Appendix B): torchvision ResNets, wide ResNet-50, width
multiplier.

h = f(x) is the output of global average pooling; the classification layer is removed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet as tv

from simclr.errors import require
from simclr.models.backbones import LIBRARIES, parse_arch

# name -> (block, layers, width factor of the paper's wide ResNet-50 (x2, x4))
_ARCHS: dict[str, tuple[type[nn.Module], list[int], int]] = {
    "resnet18": (tv.BasicBlock, [2, 2, 2, 2], 1),
    "resnet34": (tv.BasicBlock, [3, 4, 6, 3], 1),
    "resnet50": (tv.Bottleneck, [3, 4, 6, 3], 1),
    "resnet101": (tv.Bottleneck, [3, 4, 23, 3], 1),
    "resnet152": (tv.Bottleneck, [3, 8, 36, 3], 1),
    "resnet50x2": (tv.Bottleneck, [3, 4, 6, 3], 2),
    "resnet50x4": (tv.Bottleneck, [3, 4, 6, 3], 4),
}

ARCHITECTURES: tuple[str, ...] = tuple(_ARCHS)
INPUT_NORMS: tuple[str, ...] = ("none", "imagenet")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NARROW_SHORTCUT = 16
"""Input channels below which a strided 1x1 shortcut runs as :class:`SubsampledPointwise`."""


class SubsampledPointwise(nn.Conv2d):
    """A 1x1 convolution of stride s (no padding) computed as a stride-1 convolution of every s-th pixel: the
    same values and the same parameters, through another oneDNN kernel. On AVX-512 CPUs, oneDNN's strided 1x1
    backward (torch 2.14) corrupts memory for fewer than 16 input channels in channels-last layout at some
    batch sizes (7, 9: a segfault or "double free"), which the networks narrower than a quarter-width ResNet
    meet."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sh, sw = self.stride
        return F.conv2d(x[:, :, ::sh, ::sw], self.weight, self.bias)


def _shortcut_conv(inplanes: int, planes: int, stride: int) -> nn.Conv2d:
    """The 1x1 projection of a residual shortcut (:class:`SubsampledPointwise` when strided and narrow)."""
    kind = SubsampledPointwise if stride != 1 and inplanes < NARROW_SHORTCUT else nn.Conv2d
    return kind(inplanes, planes, 1, stride, bias=False)


@dataclass(frozen=True)
class EncoderSpec:
    """What encoder to build.

    Attributes:
        arch: one of ``ARCHITECTURES``, or ``timm:NAME`` / ``torchvision:NAME``
            (:mod:`simclr.models.backbones`).
        width: channel multiplier applied to every layer (1.0 = the paper's network); small widths make
            CPU training practical. simclr's ResNets only: other backbones come in the sizes their library
            names.
        cifar_stem: replace the 7x7 stride-2 convolution and max-pool with a 3x3 stride-1 convolution and
            no max-pool, as the paper does for CIFAR-10 (Appendix B.9); for other backbones the small-image
            option of :mod:`simclr.models.backbones`.
        input_norm: ``none`` (the paper's: pixels in [0, 1] as they are) or ``imagenet`` (standardise each
            channel with ImageNet's mean and deviation first, for weights trained that way, e.g.
            torchvision's).
        image_size: the side of the images the network is built for (vision transformers' position
            embeddings; ignored by convolutional networks).
    """

    arch: str = "resnet50"
    width: float = 1.0
    cifar_stem: bool = False
    input_norm: str = "none"
    image_size: int = 224

    def validate(self) -> None:
        library, name = parse_arch(self.arch)
        if library != "simclr":
            if not name:
                raise ValueError(f"{library}: needs a model name, e.g. {library}:resnet50")
            if library == "timm":  # said with the configuration, before any data is read
                require(("timm",), "model.arch timm:NAME", "timm")
            if self.width != 1.0:
                raise ValueError(f"width {self.width:g} scales simclr's own ResNets only; {self.arch} comes "
                                 "in the size its library names (pick a smaller model instead)")
        elif self.arch not in _ARCHS:
            raise ValueError(f"unknown architecture {self.arch!r}; choose from {', '.join(ARCHITECTURES)} "
                             f"or {' / '.join(f'{lib}:NAME' for lib in LIBRARIES)}")
        if not 0.0 < self.width <= 16.0:
            raise ValueError(f"width must be in (0, 16], got {self.width}")
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {self.input_norm!r}")


def _channels(base: int, multiplier: float) -> int:
    return max(1, round(base * multiplier))


class ResNetEncoder(nn.Module):
    """A ResNet trunk ending in global average pooling.

    Input: images [B, 3, H, W]. Output: h [B, num_features].
    """

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__()
        spec.validate()
        block, layers, wide = _ARCHS[spec.arch]
        # torchvision widens only the bottleneck's inner 3x3 width via width_per_group; the paper's
        # ResNet-50 (x2, x4) widens every layer, which is what a uniform channel multiplier does.
        mult = spec.width * wide
        self.spec = spec
        stem_out = _channels(64, mult)
        if spec.cifar_stem:
            self.stem = nn.Sequential(
                nn.Conv2d(3, stem_out, 3, 1, 1, bias=False), nn.BatchNorm2d(stem_out), nn.ReLU(inplace=True)
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(3, stem_out, 7, 2, 3, bias=False),
                nn.BatchNorm2d(stem_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            )
        self._inplanes = stem_out
        stages = []
        for i, n_blocks in enumerate(layers):
            planes = _channels(64 * 2**i, mult)
            stages.append(self._make_stage(block, planes, n_blocks, stride=1 if i == 0 else 2))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = self._inplanes
        self.normalize = spec.input_norm == "imagenet"
        # not persistent: the state dict (and so every checkpoint) is the same with or without
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._init_weights()

    def _make_stage(self, block: type[nn.Module], planes: int, blocks: int, stride: int) -> nn.Sequential:
        expansion: int = block.expansion  # type: ignore[attr-defined]
        downsample = None
        if stride != 1 or self._inplanes != planes * expansion:
            downsample = nn.Sequential(
                _shortcut_conv(self._inplanes, planes * expansion, stride),
                nn.BatchNorm2d(planes * expansion),
            )
        mods = [block(self._inplanes, planes, stride, downsample)]
        self._inplanes = planes * expansion
        mods += [block(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Zero-init the last BN of each residual branch (as torchvision's zero_init_residual).
        for m in self.modules():
            if isinstance(m, tv.Bottleneck):
                nn.init.zeros_(m.bn3.weight)
            elif isinstance(m, tv.BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        x = self.stages(self.stem(x))
        return torch.flatten(self.pool(x), 1)


def build_encoder(spec: EncoderSpec) -> ResNetEncoder:
    """Build simclr's ResNet encoder f for ``spec``; see ``EncoderSpec``
    (:func:`simclr.models.simclr.make_encoder` builds any backbone)."""
    return ResNetEncoder(spec)
