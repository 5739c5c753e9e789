"""The one place where a config becomes objects: data, pair streams, model, loss, optimiser, schedule."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from simclr.config import Config
from simclr.data.augment_spec import AugmentSpec
from simclr.data.cache import decode_cached
from simclr.data.decode import IN_MEMORY_MAX_SIDE, Decoded, native_side
from simclr.data.image_source import ImageSource
from simclr.data.sources import cache_root, load_source
from simclr.data.views import LoaderViews, MemoryViews
from simclr.errors import InputError
from simclr.losses import Objective
from simclr.models.resnet import EncoderSpec
from simclr.models.simclr import SimCLRNet
from simclr.optim import LARS, LRSchedule, scale_lr, split_decay_groups, warmup_steps_for


def open_source(config: Config, split: str, spec: str | None = None) -> ImageSource:
    """Load the ``split`` of ``spec`` (default: the config's dataset)."""
    d = config.data
    return load_source(spec or d.spec, split, data_root=Path(d.root) if d.root else None,
                       cache_dir=Path(d.cache_dir) if d.cache_dir else None, holdout=d.holdout,
                       seed=config.train.seed)


def decode(config: Config, source: ImageSource, size: int, progress: bool = True, workers: int | None = None,
           crop: float = 1.0) -> Decoded:
    """Decode ``source`` at ``size`` into memory (keeping ``crop`` of the shorter side: evaluation passes
    ``data.eval_crop``), through the decoded-dataset cache when enabled, by ``workers`` processes (default
    ``data.workers``)."""
    d = config.data
    return decode_cached(source, size, cache_folder(config), progress=progress,
                         workers=d.workers if workers is None else workers, crop=crop)


def cache_folder(config: Config) -> Path | None:
    """The cache folder of decoded datasets and of file digests (``data.cache_dir``, ``$SIMCLR_CACHE`` or
    ``~/.cache/simclr``); None when ``data.decode_cache`` is off."""
    d = config.data
    return cache_root(Path(d.cache_dir) if d.cache_dir else None) if d.decode_cache else None


class DataPlan(NamedTuple):
    """Resolved image side and whether the dataset is held decoded in memory."""

    image_size: int
    in_memory: bool


def plan_data(config: Config, source: ImageSource) -> DataPlan:
    """Resolve ``data.image_size`` and ``data.in_memory`` (``auto``) for this dataset."""
    side = native_side(source)
    if side == 0:
        raise InputError(f"no readable images in {source.name}")
    small = side <= IN_MEMORY_MAX_SIDE
    in_memory = small if config.data.in_memory == "auto" else config.data.in_memory == "true"
    size = config.data.image_size or (side if small else 224)
    return DataPlan(size, in_memory)


def resolve(config: Config, plan: DataPlan) -> Config:
    """Fill the ``auto`` values (image size, in-memory, CIFAR stem) so the saved config is explicit."""
    stem = config.model.cifar_stem
    if stem is None:
        stem = plan.image_size <= IN_MEMORY_MAX_SIDE
    return dataclasses.replace(
        config,
        data=dataclasses.replace(config.data, image_size=plan.image_size,
                                 in_memory="true" if plan.in_memory else "false"),
        model=dataclasses.replace(config.model, cifar_stem=stem),
    )


class TrainData(NamedTuple):
    """A run's training split: the config with its ``auto`` values resolved for it, the images, and the images
    decoded into memory (None when they are read from disk batch by batch)."""

    config: Config
    source: ImageSource
    decoded: Decoded | None


def open_train_data(config: Config, progress: bool = True) -> TrainData:
    """Open the training split, resolve the config for it (:func:`resolve`) and decode it into memory when
    ``data.in_memory`` says so."""
    source = open_source(config, "train")
    config = resolve(config, plan_data(config, source))
    decoded = decode(config, source, config.data.image_size, progress=progress) \
        if config.data.in_memory == "true" else None
    return TrainData(config, source, decoded)


def build_views(data: TrainData, device: torch.device, *, rank: int = 0, world_size: int = 1,
                compile: bool = False) -> MemoryViews | LoaderViews:
    """The stream of augmented view pairs of this process (its share of every batch): from the decoded images
    on ``device`` (``compile``: the augmentation compiled), else from DataLoader workers.

    Raises:
        InputError: no readable image, or a batch the data (or the processes) cannot fill.
    """
    config, tr = data.config, data.config.train
    try:
        if data.decoded is not None:
            if len(data.decoded.images) == 0:
                raise InputError(f"no readable images in {data.source.name}")
            return MemoryViews(data.decoded.images.to(device), augment_spec(config), tr.batch_size, tr.seed,
                               compile=compile, rank=rank, world_size=world_size)
        return LoaderViews(data.source, augment_spec(config), tr.batch_size, tr.seed, default_workers(config),
                           pin_memory=device.type == "cuda", rank=rank, world_size=world_size)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def augment_spec(config: Config) -> AugmentSpec:
    """The augmentation, producing views of ``data.view_size`` (or ``data.image_size``)."""
    return dataclasses.replace(config.augment, size=config.data.view_size or config.data.image_size)


def build_model(config: Config) -> SimCLRNet:
    """f and g from a resolved config (``cifar_stem`` decided)."""
    m = config.model
    return SimCLRNet(EncoderSpec(m.arch, m.width, bool(m.cifar_stem), m.input_norm,
                                 config.data.image_size or 224), m.head)


def peak_lr(config: Config) -> float:
    """The learning rate after warm-up: base x batch/256, base x sqrt(batch) or base (Appendix B.1)."""
    o = config.optim
    if o.lr_scaling == "none":
        return o.base_lr
    return scale_lr(o.base_lr, config.train.batch_size, o.lr_scaling)


def build_loss(config: Config) -> Objective:
    """The configured contrastive loss with its temperature, normalisation, margin and mining bound."""
    lo = config.loss
    return Objective(lo.name, lo.temperature, normalize=lo.normalize, margin=lo.margin,
                     semi_hard=lo.semi_hard)


def build_schedule(config: Config, steps_per_epoch: int) -> LRSchedule:
    """Warm-up and cosine decay over ``train.epochs`` epochs of ``steps_per_epoch`` steps (at least one)."""
    total = max(1, round(config.train.epochs * steps_per_epoch))
    warmup = min(total, warmup_steps_for(config.optim.warmup_epochs, steps_per_epoch))
    return LRSchedule(total, warmup, peak_lr(config), config.optim.final_lr)


def build_optimizer(config: Config, model: nn.Module) -> torch.optim.Optimizer:
    """LARS / SGD / AdamW over two groups: weights with decay, and 1-D (BN, bias) parameters without."""
    o = config.optim
    groups = split_decay_groups(model, o.weight_decay)
    lr = peak_lr(config)
    if o.name == "lars":
        return LARS(groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay,
                    trust_coefficient=o.trust_coefficient)
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=o.weight_decay)


def default_workers(config: Config) -> int:
    """DataLoader workers: the configured number, never more than the CPUs there are."""
    return min(config.data.workers, os.cpu_count() or 1)
