"""lightly 1.6's published CIFAR-10 SimCLR recipe, built once for the benchmarks that run it beside simclr.

``LightlyDataset`` over the image folder with ``SimCLRTransform(input_size=32, cj_strength=0.5,
gaussian_blur=0.0)`` in DataLoader workers, a ResNet-18 with the CIFAR stem (simclr's encoder, so both train
the same network), ``SimCLRProjectionHead(512, 512, 128)``, ``NTXentLoss`` and SGD (lr 0.06 x batch / 128,
momentum 0.9, weight decay 5e-4), as lightly's CIFAR-10 benchmark script (batch 512, lr_factor = batch / 128, cosine
over max_epochs = 200, stepped per epoch). lightly is a benchmark-only extra: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # SimCLRTransform's default normalisation (and lightly's test transform)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LightlyRecipe(NamedTuple):
    loader: torch.utils.data.DataLoader
    backbone: nn.Module  # h: [B, 512]
    model: nn.Module  # backbone, then the projection head: z
    criterion: nn.Module
    optimizer: torch.optim.Optimizer


def lightly_recipe(data: str, batch: int, workers: int, device: torch.device) -> LightlyRecipe:
    from lightly.data import LightlyDataset
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    from simclr.data.sources import load_source
    from simclr.models.resnet import EncoderSpec, build_encoder

    source = load_source(data, "train")
    assert source.root is not None
    transform = SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0)
    dataset = LightlyDataset(input_dir=str(source.root / "train"), transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=device.type == "cuda")
    backbone = build_encoder(EncoderSpec("resnet18", 1.0, True))
    model = nn.Sequential(backbone, SimCLRProjectionHead(512, 512, 128)).to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.06 * batch / 128, momentum=0.9, weight_decay=5e-4)
    return LightlyRecipe(loader, backbone, model, NTXentLoss(), opt)


def lightly_step(recipe: LightlyRecipe, x0: torch.Tensor, x1: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One training step of the two views; returns the loss (a tensor: no device sync here)."""
    x0 = x0.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    x1 = x1.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    dtype = torch.bfloat16 if device.type == "cuda" else None
    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        z0, z1 = recipe.model(x0), recipe.model(x1)
    loss = recipe.criterion(z0.float(), z1.float())
    recipe.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    recipe.optimizer.step()
    return loss.detach()
