"""A trained f (and g) as a callable: images in, h (or z) out.

Images are prepared as the evaluation commands prepare them: any mode becomes 8-bit RGB, the shorter side is
resized (bicubic) to the run's image side and the centre cropped, values in [0, 1] (no mean/std
normalisation, as in training). Tensors are taken as already prepared: float [B, 3, H, W] in [0, 1] or uint8.
The network runs in eval mode (batch-norm running statistics) without gradients.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from simclr.config import PRECISIONS, Config
from simclr.data.augment import eval_transform, resize_side
from simclr.data.images import open_rgb, to_rgb
from simclr.errors import InputError
from simclr.evaluation.features import model_encoder
from simclr.evaluation.learned import load_model
from simclr.evaluation.setup import check_sizes
from simclr.models.backbones import LibraryEncoder, parse_arch
from simclr.models.resnet import ResNetEncoder
from simclr.models.simclr import SimCLRNet
from simclr.models.torchvision_compat import to_torchvision
from simclr.runtime.checkpoint import weights_digest
from simclr.runtime.device import Precision, pick_device, pick_precision

ImageLike = str | Path | Image.Image
Images = ImageLike | Sequence[ImageLike] | torch.Tensor


def _check_image_tensor(images: torch.Tensor) -> None:
    if images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise InputError(f"expected images [B, 3, H, W], got a tensor of shape {tuple(images.shape)}")


def _kind(images: object) -> str:
    """What ``images`` is, for an error: its type, or its items' types."""
    if isinstance(images, Sequence) and not isinstance(images, str):
        return "a sequence of " + ", ".join(sorted({type(im).__name__ for im in images}))
    return type(images).__name__


def float_images(images: torch.Tensor) -> torch.Tensor:
    """Image tensors as given to an :class:`Encoder` (uint8, or float in [0, 1]; [3, H, W] or [B, 3, H, W]) as
    float [B, 3, H, W] in [0, 1]."""
    _check_image_tensor(images)
    x = images.unsqueeze(0) if images.dim() == 3 else images
    return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()


class Encoder:
    """A trained SimCLR network ready to embed images; see the module's docstring."""

    def __init__(self, model: SimCLRNet, config: Config, device: torch.device, precision: Precision,
                 image_size: int = 0, eval_crop: float | None = None) -> None:
        self.model = model.eval()
        self.config = config
        self.device = device
        self.precision = precision
        self.image_size = image_size or config.data.image_size
        self.num_features = model.num_features
        self.eval_crop = config.data.eval_crop if eval_crop is None else eval_crop
        self._transform = eval_transform(self.image_size, self.eval_crop)

    def digest(self) -> str:
        """The digest of the network's weights as they are now
        (:func:`~simclr.runtime.checkpoint.weights_digest`; what an embeddings file records of the network
        that made it): every weight is read."""
        return weights_digest(self.model)

    def preprocess(self, image: ImageLike) -> torch.Tensor:
        """One image (a path or a PIL image of any mode) as the network's input: float [3, S, S] in [0, 1]."""
        side = resize_side(self.image_size, self.eval_crop)
        img = open_rgb(image, min_side=side) if isinstance(image, (str, Path)) else to_rgb(image)
        return self._transform(img)

    def _batches(self, images: Images, batch_size: int) -> Iterator[torch.Tensor]:
        """The network's inputs, ``batch_size`` images at a time (files are read one batch at a time, so a
        long list of paths never sits in memory decoded all at once)."""
        if isinstance(images, torch.Tensor):
            _check_image_tensor(images)
            x = images.unsqueeze(0) if images.dim() == 3 else images
            yield from (float_images(chunk) for chunk in x.split(batch_size))  # converted a batch at a time
            return
        if isinstance(images, (str, Path, Image.Image)):
            images = [images]
        if not isinstance(images, Sequence) or not all(isinstance(im, (str, Path, Image.Image))
                                                       for im in images):
            raise InputError(f"images must be paths, PIL images or an image tensor, got {_kind(images)}")
        if len(images) == 0:
            raise InputError("no images given")
        for start in range(0, len(images), batch_size):
            yield torch.stack([self.preprocess(im) for im in images[start:start + batch_size]])

    def __call__(self, images: Images, *, z: bool = False, batch_size: int = 256) -> torch.Tensor:
        """h [B, F] (or z [B, D] with ``z=True``) as float32 on the CPU."""
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        # the network as it is now: a folded copy would cost more than a few images
        encode = model_encoder(self.model, self.device, self.precision, self.config.train.channels_last,
                               with_z=z, fold=False)
        parts = []
        for chunk in self._batches(images, batch_size):
            h, zz = encode(chunk)
            out = zz if z else h
            assert out is not None  # the encoder was built with_z=z
            parts.append(out)
        return torch.cat(parts)

    def torchvision(self) -> nn.Module:
        """f as a torchvision model with the same weights (its own copy, classifier = Identity: its output is
        h), in eval mode: a torchvision ResNet for simclr's ResNets at width 1 (resnet18 ... resnet152), the
        library's model itself for a ``torchvision:NAME`` backbone (with the small-image option's stem, as
        trained).

        simclr's ResNets at other widths (and the wide ResNet-50s) and ``timm:NAME`` backbones raise
        InputError (``simclr export --format timm`` and ``--format safetensors`` hold those). With
        ``model.input_norm: imagenet`` the model takes standardised input, as torchvision's models do (f
        standardised it itself).
        """
        encoder = self.model.encoder
        if isinstance(encoder, LibraryEncoder):
            if parse_arch(encoder.arch).library != "torchvision":
                raise InputError(f"f is {encoder.arch}, not a torchvision model: use f itself "
                                 "(encoder.model.encoder.model is the timm model)")
            return copy.deepcopy(encoder.model).eval()
        if not isinstance(encoder, ResNetEncoder):
            raise InputError(f"f is a {type(encoder).__name__}, which has no torchvision equivalent")
        try:
            return to_torchvision(encoder).eval()
        except ValueError as exc:
            raise InputError(str(exc)) from None


def load_encoder(checkpoint: str | Path, device: str = "auto", image_size: int = 0,
                 eval_crop: float | None = None, precision: str | None = None) -> Encoder:
    """The network of a run folder, checkpoint file or exported folder (``simclr export``'s default
    safetensors format: rebuilt from its config.json, images prepared as it says), on ``device`` (auto: CUDA
    when available), preparing images at ``image_size`` (0: the side the run trained at) as a centre crop
    keeping ``eval_crop`` of the shorter side (None: the run's ``data.eval_crop``), computing in ``precision``
    (``auto``, ``bf16``, ``fp16``, ``fp32``; None: the run's ``train.precision``, whose ``auto`` means bf16 on
    CUDA and on CPUs with AVX-512 BF16 or AMX: pass ``"fp32"`` for exact fp32 embeddings there).

    Reading never executes code from the files (``torch.load(weights_only=True)``; safetensors and JSON for an
    exported folder); a missing or unreadable file raises ``simclr.errors.InputError``.
    """
    check_sizes(image_size, eval_crop)
    if precision is not None and precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)} or None, got {precision!r}")
    dev = pick_device(device)
    model, config = load_model(checkpoint, dev)
    chosen = pick_precision(config.train.precision if precision is None else precision, dev)
    return Encoder(model, config, dev, chosen, image_size, eval_crop)
