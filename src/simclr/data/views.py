"""Streams of positive pairs (x_i, x_j) for pretraining, with explicit, checkpointable random state.

Two paths share one interface (``batches(epoch, start)``, ``state_dict``/``load_state_dict``):

* ``MemoryViews``: the dataset is one uint8 tensor on the training device; each step indexes a batch and
  augments it there in one go (``BatchAugment``), with per-image randomness from a device generator.
* ``LoaderViews``: a DataLoader decodes and augments images one at a time in worker processes
  (``view_transform``); for folders of large images. Corrupt images are skipped and reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from simclr.data.ablation_ops import AblationAugment
from simclr.data.augment_spec import AugmentSpec
from simclr.data.batch_augment import BatchAugment, apply_params
from simclr.data.crop_views import CropFirstViews
from simclr.data.image_source import ImageSource
from simclr.data.images import CorruptImageError
from simclr.interrupts import ignore_stop_signals

Pair = tuple[torch.Tensor, torch.Tensor]

PROBE_SALT = 1_000_003
"""Added to the seed for the probe batch's own random numbers (see ``MemoryViews.probe``)."""


def _probe_order(images: int, seed: int) -> torch.Tensor:
    """The probe batch's images, first to last: a permutation drawn from ``seed`` alone."""
    return torch.randperm(images, generator=torch.Generator().manual_seed(seed + PROBE_SALT))


def _check_batch(batch_size: int, images: int, world_size: int) -> None:
    if images < batch_size:
        raise ValueError(f"batch size {batch_size} is larger than the dataset ({images} images): give a "
                         f"smaller --batch-size (train.batch_size)")
    if batch_size % world_size or batch_size // world_size < 2:
        raise ValueError(f"the batch size ({batch_size}) must be a multiple of the number of processes "
                         f"({world_size}) with at least 2 images each")


def epoch_batches(images: int, batch_size: int, generator: torch.Generator, rank: int = 0,
                  world_size: int = 1) -> torch.Tensor:
    """One epoch's image indices per step for ``rank``, int64 ``[steps, batch_size / world_size]``: a shared
    random permutation cut into global batches of ``batch_size`` (the rest dropped), of which this rank takes
    the ``rank``-th ``1/world_size``."""
    local = batch_size // world_size
    order = torch.randperm(images, generator=generator)[: images // batch_size * batch_size]
    return order.view(-1, world_size, local)[:, rank]


class MemoryViews:
    """Batches of two augmented views of images held in memory.

    Args:
        images: uint8 [N, 3, H, W], on the device where augmentation and training run.
        spec: augmentation parameters.
        batch_size: images per step (each gives two views); the last partial batch of an epoch is dropped.
        seed: seeds the shuffling (CPU generator) and the augmentation (generator on the images' device).
        compile: compile the augmentation (see ``BatchAugment``).
        rank, world_size: under torchrun, this process's share: ``batch_size`` is the global batch, every
            rank draws the same permutation and takes its ``batch_size / world_size`` images of each step.

    Both views of a batch come from one augmentation call on the batch stacked twice (2B independent draws):
    half the kernel launches of two calls, the same distribution.
    """

    def __init__(self, images: torch.Tensor, spec: AugmentSpec, batch_size: int, seed: int, *,
                 compile: bool = False, rank: int = 0, world_size: int = 1) -> None:
        _check_batch(batch_size, len(images), world_size)
        self.images = images
        self.batch_size = batch_size
        self.local = batch_size // world_size
        self.rank, self.world_size = rank, world_size
        self.augment = BatchAugment(spec, compile=compile)
        self.ablation = AblationAugment(spec.ops, spec, asymmetric=spec.asymmetric) \
            if spec.ops or spec.asymmetric else None
        self.seed = seed
        self._shuffle = torch.Generator().manual_seed(seed)
        self._aug = torch.Generator(device=images.device).manual_seed(seed + 1 + 7919 * rank)
        self._epoch_state = self._shuffle.get_state()

    def probe(self, n: int) -> Pair:
        """Two views of ``n`` images (at most all) drawn from the seed alone, apart from the training stream:
        the same batch whenever it is asked for, in a run or after it was resumed (the diagnostics' fixed
        batch)."""
        idx = _probe_order(len(self.images), self.seed)[:n].to(self.images.device)
        aug = torch.Generator(device=self.images.device).manual_seed(self.seed + PROBE_SALT)
        if self.ablation is not None:
            return self.ablation(self.images.index_select(0, idx), aug)
        x = self.images.index_select(0, torch.cat([idx, idx]))
        # never compiled for this shape
        both = apply_params(x, self.augment.sample(x, aug), self.augment.spec)
        return both[: len(idx)], both[len(idx):]

    @property
    def steps_per_epoch(self) -> int:
        return len(self.images) // self.batch_size

    def batches(self, start: int = 0) -> Iterator[Pair]:
        """One epoch from step ``start``: the order is drawn when the epoch begins (from saved state on
        resume)."""
        if start == 0:
            self._epoch_state = self._shuffle.get_state()
        else:
            self._shuffle.set_state(self._epoch_state)
        steps = epoch_batches(len(self.images), self.batch_size, self._shuffle, self.rank, self.world_size)
        for idx in steps[start:].to(self.images.device):
            if self.ablation is not None:
                yield self.ablation(self.images.index_select(0, idx), self._aug)
                continue
            both = self.augment(self.images.index_select(0, torch.cat([idx, idx])), self._aug)
            yield both[: self.local], both[self.local :]

    def state_dict(self) -> dict[str, Any]:
        return {"shuffle_state": self._shuffle.get_state(), "epoch_state": self._epoch_state,
                "aug_state": self._aug.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._shuffle.set_state(state["shuffle_state"])
        self._epoch_state = state["epoch_state"]
        self._aug.set_state(state["aug_state"])


_MASK64 = (1 << 64) - 1


def image_seed(seed: int, epoch: int, i: int) -> int:
    """The seed of image ``i``'s two views in ``epoch`` (splitmix64 of the three): independent of which worker
    or rank draws them, so every image gets its own random numbers and a resumed epoch replays them
    exactly."""
    x = (seed * 0x9E3779B97F4A7C15 + (epoch + 1) * 0xD1B54A32D192ED03
         + (i + 1) * 0xCA5A826395121157) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class _PairDataset(Dataset):
    def __init__(self, source: ImageSource, views: CropFirstViews, seed: int) -> None:
        self.source = source
        self.views = views  # both crops drawn first: a large JPEG is decoded no larger than they need
        self.seed = seed
        self.epoch = 0  # set before each epoch's workers start

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int] | tuple[None, str, int]:
        try:
            # the views' own stream; the caller's generator is untouched
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(image_seed(self.seed, self.epoch, i))
                v1, v2 = self.views(self.source, i)
        except CorruptImageError as exc:
            return None, str(exc), i
        return v1, v2, i


def _collate(items: list[Any]) -> tuple[torch.Tensor | None, torch.Tensor | None, list[tuple[int, str]]]:
    good = [it for it in items if it[0] is not None]
    bad = [(it[2], it[1]) for it in items if it[0] is None]
    if not good:
        return None, None, bad
    return torch.stack([g[0] for g in good]), torch.stack([g[1] for g in good]), bad


class LoaderViews:
    """Batches of two augmented views decoded and augmented per image in DataLoader workers.

    Shuffling comes from ``seed`` and the epoch, and each image's augmentation from its own seed
    (:func:`image_seed` of ``seed``, the epoch and the image), whichever worker process or torchrun rank draws
    it: an epoch is reproducible, a resumed run replays it exactly, and ranks never share random numbers;
    ``skipped`` collects (path, reason) of corrupt images met so far."""

    def __init__(self, source: ImageSource, spec: AugmentSpec, batch_size: int, seed: int, workers: int,
                 pin_memory: bool = False, *, rank: int = 0, world_size: int = 1) -> None:
        _check_batch(batch_size, len(source), world_size)
        if spec.ops or spec.asymmetric:
            raise ValueError("augment.ops / augment.asymmetric (the augmentation ablation) need in-memory "
                             "data: set data.in_memory=true")
        self.source = source
        self.batch_size = batch_size
        self.seed = seed
        self.workers = workers
        self.pin_memory = pin_memory
        self.rank, self.world_size = rank, world_size
        self.dataset = _PairDataset(source, CropFirstViews(spec), seed)
        self.epoch = 0
        self.skipped: dict[str, str] = {}

    @property
    def steps_per_epoch(self) -> int:
        return len(self.source) // self.batch_size

    def batches(self, start: int = 0) -> Iterator[Pair]:
        """One epoch from step ``start``. Under torchrun every rank yields the same number of equal-sized
        batches: a corrupt image's place is taken by another image of the same local batch."""
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        steps = epoch_batches(len(self.source), self.batch_size, gen, self.rank,
                              self.world_size)[start:].tolist()
        self.dataset.epoch = self.epoch  # before the workers are started with a copy of it
        loader = DataLoader(self.dataset, batch_sampler=steps, num_workers=self.workers, collate_fn=_collate,
                            pin_memory=self.pin_memory, persistent_workers=False,
                            worker_init_fn=ignore_stop_signals,
                            generator=gen)  # its worker seeds come from here, not from the caller's generator
        local = self.batch_size // self.world_size
        for v1, v2, bad in loader:
            for i, reason in bad:
                self.skipped[self.source.paths[i]] = reason
            if self.world_size > 1:
                if v1 is None or v2 is None:
                    raise RuntimeError(f"every image of a batch on rank {self.rank} is unreadable")
                if len(v1) < local:
                    fill = torch.arange(local - len(v1)) % len(v1)
                    v1, v2 = torch.cat([v1, v1[fill]]), torch.cat([v2, v2[fill]])
            elif v1 is None or v2 is None or len(v1) < 2:
                continue
            yield v1, v2
        self.epoch += 1

    def probe(self, n: int) -> Pair:
        """Two views of ``n`` readable images (at most all) drawn from the seed alone, in this process (see
        ``MemoryViews.probe``); every image's views from its own seed, as in training."""
        order = _probe_order(len(self.source), self.seed)
        probe = _PairDataset(self.source, self.dataset.views, self.seed + PROBE_SALT)
        pairs = []
        for i in order.tolist():
            item = probe[i]
            if item[0] is not None:
                pairs.append((item[0], item[1]))
                if len(pairs) == n:
                    break
        if not pairs:
            raise CorruptImageError(f"no readable image in {self.source.name}")
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
