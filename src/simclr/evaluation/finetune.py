"""Semi-supervised fine-tuning on a labelled subset (Chen et al. 2020, Section 4 and Appendix B.5).

The paper fine-tunes the whole pretrained network on 1% or 10% of the labels, class-balanced, starting
from the encoder f (the representation h; the projection head g is discarded) with a new linear layer on
top. Appendix B.5: Nesterov momentum 0.9, no warm-up, no weight decay or other regularisation, and only
random crop + horizontal flip as augmentation; 60 epochs for 1% and 30 for 10% of the labels, with a
learning rate of 0.05 x BatchSize/256. The same training from a freshly initialised encoder is the
supervised baseline trained on the same labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from simclr.data.streamed import StreamedImages
from simclr.errors import InputError
from simclr.evaluation.batches import Images, TrainBatches, describe_shape, image_batches
from simclr.evaluation.knn import mean_class_accuracy, topk_accuracy
from simclr.evaluation.linear import feature_stats
from simclr.evaluation.multilabel import is_multilabel, map11, multilabel_loss
from simclr.optim import LRSchedule, set_lr, split_decay_groups, warmup_steps_for
from simclr.runtime.device import Precision, pick_device, pick_precision
from simclr.runtime.memory import available, check_finetune_fits, meta_copy, step_memory

__all__ = [
    "FinetuneSpec",
    "evaluate_classifier",
    "finetune",
    "seeded_init",
    "supervised_baseline",
    "transfer_bn_momentum",
]

@dataclass(frozen=True)
class FinetuneSpec:
    """Hyper-parameters of fine-tuning (Appendix B.5 defaults where they apply to small runs).

    Attributes:
        epochs: Passes over the labelled subset (paper: 60 for 1%, 30 for 10% of the labels).
        steps: Updates in all, when > 0, instead of ``epochs`` passes (the paper's transfer fine-tuning:
            20,000 at batch 256, Appendix B.8); the last pass may stop part-way.
        batch_size: Images per update (the last batches of an epoch are evened out, never larger).
        lr: Peak learning rate, used as is (paper: 0.05 x BatchSize/256), cosine-decayed to 0.
        momentum: SGD momentum (paper: 0.9).
        nesterov: Nesterov momentum (paper: yes).
        weight_decay: Paper: none for fine-tuning; batch-norm parameters and biases are never decayed.
        warmup_epochs: Linear warm-up (paper: none).
        seed: Seeds the new linear layer, the batch order and the augmentation (and the baseline encoder).
        augment: Random resized crop + horizontal flip only, as the paper's fine-tuning.
        crop_scale: Crop area range of that augmentation.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
        precision: ``fp32`` (default), ``bf16``, ``fp16`` (CUDA, with a gradient scaler) or ``auto`` (bf16 on
            CUDA and on CPUs with fast bf16, else fp32): the forward passes' autocast; weights stay fp32.
        bn_momentum: The encoder's batch-norm momentum during training, in PyTorch's sense (the weight of the
            new batch statistics), when set; else the encoder's own (0.1). The paper's transfer fine-tuning
            uses ``max(1 - 10/s, 0.9)`` in TensorFlow's sense, :func:`transfer_bn_momentum`.
        frozen: Train the linear layer only, on h of the frozen encoder (eval mode, no gradient): the
            reference code's linear evaluation, on randomly cropped and flipped images; h is standardised with
            its mean and deviation over the (uncropped) training images first, as the cached-feature solvers
            do.
    """

    epochs: int = 30
    steps: int = 0
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    seed: int = 0
    augment: bool = True
    crop_scale: tuple[float, float] = (0.08, 1.0)
    device: str = "cpu"
    precision: str = "fp32"
    bn_momentum: float | None = None
    frozen: bool = False

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field out of range."""
        if self.epochs < 1 or self.batch_size < 1 or self.steps < 0:
            raise ValueError(f"epochs and batch_size must be >= 1 and steps >= 0, got {self.epochs}, "
                             f"{self.batch_size}, {self.steps}")
        if self.bn_momentum is not None and not 0 < self.bn_momentum <= 1:
            raise ValueError(f"bn_momentum must be in (0, 1], got {self.bn_momentum}")
        if not self.lr > 0 or self.weight_decay < 0 or not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"need lr > 0, weight_decay >= 0 and 0 <= warmup_epochs <= epochs, got {self}")
        if not 0 <= self.momentum < 1 or (self.nesterov and self.momentum == 0):
            raise ValueError(f"momentum must be in [0, 1) (> 0 with nesterov), got {self.momentum}")


def transfer_bn_momentum(num_images: int, batch_size: int) -> float:
    """The paper's batch-norm momentum for transfer fine-tuning, ``max(1 - 10/s, 0.9)`` with ``s`` steps per
    epoch (Appendix B.8), as PyTorch's momentum: ``1 - that = min(10/s, 0.1)``."""
    return min(10.0 / math.ceil(max(1, num_images) / max(1, batch_size)), 0.1)


def finetune(encoder: nn.Module, feature_dim: int, num_classes: int, train_images: Images,
             train_labels: Tensor | None, spec: FinetuneSpec, progress: bool = False) -> nn.Sequential:
    """Fine-tune ``encoder`` and a new linear layer on labelled images, all parameters trained (the linear
    layer alone with ``spec.frozen``: the encoder then stays in eval mode and unchanged, batch-norm statistics
    included).

    Pass the encoder f of a pretrained network (``SimCLRNet.encoder``, output h): like the paper, fine-tuning
    starts from h, and the projection head g is not used. The encoder is trained in place (batch-norm in train
    mode, statistics updating); pass a copy to keep the original. SGD (Nesterov) with cosine decay over
    ``spec.steps`` (else ``epochs x steps_per_epoch``) updates minimises the cross-entropy. With
    ``spec.augment`` each image is randomly cropped (area in ``spec.crop_scale``) and flipped: images in
    memory on the device (:class:`BatchAugment` crop sampling; its colour and blur stages, identities at
    probability 0, are skipped), resized back to their side; streamed images from their full files as they are
    decoded. Deterministic for a seed on CPU.

    Args:
        encoder: Maps float images ``[B, 3, S, S]`` in [0, 1] to features ``[B, feature_dim]``.
        feature_dim: Output size of ``encoder``.
        num_classes: Number of classes C; labels must be in ``[0, C)``.
        train_images: uint8 ``[N, 3, S, S]`` (any device; copied to ``spec.device`` once), or
            :class:`StreamedImages` (read again every epoch; unreadable images are left out of their batches
            and listed in its ``skipped``).
        train_labels: int ``[N]``, or multi-label codes ``[N, num_classes]`` (trained with a binary
            cross-entropy per class that leaves difficult entries out); None: the labels of streamed images.
        spec: Hyper-parameters.
        progress: Show a tqdm progress bar.

    Returns:
        ``nn.Sequential(encoder, nn.Linear(feature_dim, num_classes))`` on the device, in eval mode
        (``nn.Sequential(encoder, Standardize, nn.Linear)`` with ``spec.frozen``).

    Raises:
        ValueError: On an invalid spec, empty data, mismatched shapes or labels out of range.
    """
    spec.validate()
    labels, multilabel = _checked_labels(train_images, train_labels, num_classes, spec)
    device = pick_device(spec.device)
    precision = pick_precision(spec.precision, device)
    if not spec.frozen:  # before anything is placed on the device
        _check_memory(encoder, train_images, spec, device, precision)
    linear = _new_linear(feature_dim, num_classes, spec.seed)
    images: Images = train_images.to(device) if isinstance(train_images, Tensor) else train_images
    labels = labels.to(device=device, dtype=torch.int64)
    if spec.frozen:
        encoder.to(device).eval().requires_grad_(False)
        with precision.autocast(device):
            standardize = _standardizer(encoder, images, spec.batch_size, device)
        model = nn.Sequential(encoder, standardize, linear).to(device).train()
        encoder.eval()
    else:
        model = nn.Sequential(encoder, linear).to(device).train()
        if spec.bn_momentum is not None:
            for module in encoder.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = spec.bn_momentum
    loss_of = multilabel_loss if multilabel else F.cross_entropy
    _train(model, images, lambda logits, idx: loss_of(logits.float(), labels[idx]), spec, device, precision,
           progress)
    return model.eval()


def _checked_labels(train_images: Images, train_labels: Tensor | None, num_classes: int,
                    spec: FinetuneSpec) -> tuple[Tensor, bool]:
    """The training labels (a streamed source's own when None) and whether they are multi-label codes;
    ValueError (InputError for too few images) when they do not fit the images or the classes."""
    streamed = train_images if isinstance(train_images, StreamedImages) else None
    if train_labels is None:
        if streamed is None:
            raise ValueError("train_labels are needed for images in memory")
        train_labels = streamed.labels
    n = len(train_images)
    multilabel = is_multilabel(train_labels)
    shape_ok = streamed is not None or (isinstance(train_images, Tensor) and train_images.ndim == 4)
    if n == 0 or not shape_ok or train_labels.shape != ((n, num_classes) if multilabel else (n,)):
        raise ValueError(f"need images [N, 3, S, S] and labels [N] (or codes [N, {num_classes}]), got "
                         f"{describe_shape(train_images)}, {tuple(train_labels.shape)}")
    if not spec.frozen and min(n, spec.batch_size) < 2:
        raise InputError(f"fine-tuning trains batch-norm statistics: it needs batches of at least 2 images, "
                         f"got {n} labelled image(s) and batch size {spec.batch_size}")
    top = 2 if multilabel else num_classes - 1  # codes: absent, present, difficult
    if int(train_labels.min()) < 0 or int(train_labels.max()) > top:
        raise ValueError(f"labels must be in [0, {top}], got [{int(train_labels.min())}, "
                         f"{int(train_labels.max())}]")
    return train_labels, multilabel


def _check_memory(encoder: nn.Module, images: Images, spec: FinetuneSpec, device: torch.device,
                  precision: Precision) -> None:
    """InputError when a training step of the whole network (and images moved to the device) cannot fit."""
    n = len(images)
    side = images.shape[-1] if isinstance(images, Tensor) else images.size
    moved = images.nbytes if isinstance(images, Tensor) and images.device != device else 0
    check_finetune_fits(step_memory(lambda: meta_copy(encoder), side, precision.dtype is not None),
                        available(device), batch=min(spec.batch_size, n), side=side, device=str(device),
                        extra=moved, images=n if n < spec.batch_size else 0)


def _new_linear(feature_dim: int, num_classes: int, seed: int) -> nn.Linear:
    """The classifier on h, as the reference code's: N(0, 0.01) weights, zero bias (seeded)."""
    linear = nn.Linear(feature_dim, num_classes)
    with torch.no_grad():
        init = torch.Generator().manual_seed(seed)
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=init) * 0.01)
        linear.bias.zero_()
    return linear


def _train(model: nn.Sequential, images: Images, loss_of: Callable[[Tensor, Tensor], Tensor],
           spec: FinetuneSpec, device: torch.device, precision: Precision, progress: bool) -> None:
    """SGD (Nesterov) with the warm-up + cosine schedule over the steps of ``spec``; ``model`` is
    ``(encoder, linear)`` or, frozen, ``(encoder, standardize, linear)`` of which only the linear layer
    learns; ``loss_of(logits, rows)`` is the loss of a batch."""
    n = len(images)
    frozen = spec.frozen
    steps_per_epoch = math.ceil(n / spec.batch_size)
    total = spec.steps or spec.epochs * steps_per_epoch
    schedule = LRSchedule(total, warmup_steps_for(spec.warmup_epochs, steps_per_epoch), spec.lr)
    optimizer = torch.optim.SGD(split_decay_groups(model[-1] if frozen else model, spec.weight_decay),
                                lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.scaled)
    order_gen = torch.Generator().manual_seed(spec.seed + 1)
    batches = TrainBatches(images, device, spec.crop_scale if spec.augment else None, spec.seed + 2)
    bar = tqdm(total=total, desc="fine-tuning", unit="step", disable=not progress, leave=False)
    step = epoch = 0
    while step < total:
        # ceil(N / B) near-equal batches: every image once per epoch, no tiny last batch for batch-norm.
        order = torch.randperm(n, generator=order_gen).tensor_split(steps_per_epoch)[: total - step]
        before = step
        for idx, x in batches(order, epoch):
            if len(idx) < 2 and not frozen:
                continue  # what is left of a streamed batch of unreadable images: too few for batch-norm
            with precision.autocast(device):
                if frozen:
                    with torch.no_grad():
                        h = model[1](model[0](x).float())
                    logits = model[2](h)
                else:
                    logits = model(x)
            loss = loss_of(logits, idx)
            set_lr(optimizer, schedule(step))
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            bar.update()
            if progress:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        if step == before:
            raise InputError(f"no readable training images among the {n} given")
        epoch += 1
    bar.close()


class Standardize(nn.Module):
    """``(h - mean) / std`` with fixed statistics (buffers)."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.mean: Tensor
        self.std: Tensor
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, h: Tensor) -> Tensor:
        return (h - self.mean) / self.std


@torch.no_grad()
def _standardizer(encoder: nn.Module, images: Images, batch_size: int, device: torch.device) -> Standardize:
    """The mean and deviation of each feature of ``encoder`` over ``images`` (not augmented)."""
    h = torch.cat([encoder(x).float() for x, _ in image_batches(images, batch_size, device)])
    return Standardize(*feature_stats(h))


@torch.no_grad()
def evaluate_classifier(model: nn.Module, images: Images, labels: Tensor | None, batch_size: int = 512,
                        device: str | torch.device | None = None,
                        precision: str = "fp32") -> dict[str, float]:
    """Top-1 and top-5 (top-min(5, C)) accuracy of a classifier on uint8 images ``[N, 3, S, S]``.

    Args:
        model: Maps float images in [0, 1] to logits ``[B, C]``; run in eval mode (its mode is restored).
        images: uint8 ``[N, 3, S, S]`` (float images in [0, 1] are taken as they are), or
            :class:`StreamedImages` (centre crops; unreadable images are left out and listed in its
            ``skipped``).
        labels: int ``[N]``, or multi-label codes ``[N, C]``; None: the labels of streamed images.
        batch_size: Images per forward pass.
        device: Where to run; ``None`` = where the model's parameters are (the model is moved otherwise).
        precision: The forward passes' autocast, as :attr:`FinetuneSpec.precision`.

    Returns:
        ``{"top1", "top5", "mean_class_top1"}`` as fractions (NaN for no images); the last is the top-1 of
        each class averaged over the classes. For multi-label codes ``[N, C]``: ``{"map11"}``, the 11-point
        mAP.
    """
    if device is None:
        device = next(iter(model.parameters()), torch.empty(0)).device
    else:
        model.to(device)
    was_training = model.training
    model.eval()
    if labels is None:
        if not isinstance(images, StreamedImages):
            raise ValueError("labels are needed for images in memory")
        labels = images.labels
    logits, kept = [], []
    try:
        with pick_precision(precision, torch.device(device)).autocast(torch.device(device)):
            for x, rows in image_batches(images, batch_size, device):
                logits.append(model(x).float().cpu())
                kept.append(rows.cpu())
    finally:
        model.train(was_training)
    scores = torch.cat(logits) if logits else torch.zeros(0, 1)
    labels = labels.cpu().long()[torch.cat(kept)] if kept else labels.cpu().long()[:0]
    if is_multilabel(labels):
        return {"map11": map11(scores, labels)}
    return {**topk_accuracy(scores, labels, (1, 5)), "mean_class_top1": mean_class_accuracy(scores, labels)}


def supervised_baseline(make_encoder: Callable[[], nn.Module], feature_dim: int, num_classes: int,
                        train_images: Images, train_labels: Tensor | None, spec: FinetuneSpec,
                        progress: bool = False) -> nn.Sequential:
    """The supervised baseline: :func:`finetune` from a freshly initialised encoder, same labels and recipe.

    Args:
        make_encoder: Builds a new, randomly initialised encoder (called with torch's global RNG seeded by
            ``spec.seed``, inside a forked RNG state so the caller's stream is untouched).
        feature_dim, num_classes, train_images, train_labels, spec, progress: As :func:`finetune`.

    Returns:
        The trained classifier, in eval mode.
    """
    return finetune(seeded_init(make_encoder, spec.seed), feature_dim, num_classes, train_images,
                    train_labels, spec, progress)


def seeded_init(make_encoder: Callable[[], nn.Module], seed: int) -> nn.Module:
    """``make_encoder()`` with torch's global RNG seeded by ``seed``, inside a forked RNG state (the caller's
    stream is untouched): the same random initialisation for a seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make_encoder()
