"""Frozen features of a dataset: h (and z) from a trained model, or raw pixels, at the evaluation
transform.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from simclr.data.decode import Decoded, decode_source
from simclr.data.image_source import ImageSource
from simclr.data.streamed import StreamedImages
from simclr.errors import InputError
from simclr.models.fold import folded_for_inference
from simclr.models.simclr import SimCLRNet
from simclr.runtime.device import Precision

Encode = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]
Decoder = Callable[[ImageSource, int], Decoded]
"""Decodes a whole dataset at a size (e.g. through the decoded-dataset cache)."""


class Features(NamedTuple):
    """h [N, F] (float32, CPU), z [N, D] or None, labels [N] (-1 unlabeled), paths, skipped (path, reason)."""

    h: torch.Tensor
    z: torch.Tensor | None
    labels: torch.Tensor
    paths: list[str]
    skipped: list[tuple[str, str]]

    def single_labels(self) -> np.ndarray:
        """int64 labels [N] for embeddings and search (:func:`single_labels`)."""
        return single_labels(self.labels.numpy())


def single_labels(labels: np.ndarray) -> np.ndarray:
    """int64 labels [N] for embeddings and search: the labels, or -1 for all of a multi-label dataset's images
    (labels [N, C]: no one class each)."""
    if labels.ndim == 2:
        return np.full(len(labels), -1, dtype=np.int64)
    return labels.astype(np.int64)


def eval_batches(source: ImageSource, size: int, in_memory: bool, batch_size: int, workers: int,
                 skipped: list[tuple[str, str]], kept: list[int],
                 decoder: Decoder | None = None, crop: float = 1.0) -> Iterator[torch.Tensor]:
    """Float [B, 3, S, S] batches in [0, 1] (centre crops keeping ``crop`` of the shorter side); fills
    ``kept`` (indices) and ``skipped`` as it goes.

    In memory, the whole dataset is decoded first (by ``decoder``, which crops as it was made to; default: no
    cache); otherwise they are read from their files batch by batch (:class:`StreamedImages`).
    """
    if in_memory:
        decoded = decoder(source, size) if decoder else decode_source(source, size, progress=False,
                                                                      workers=workers, crop=crop)
        skipped.extend(decoded.skipped)
        index = {p: i for i, p in enumerate(source.paths)}
        kept.extend(index[p] for p in decoded.paths)
        for chunk in decoded.images.split(batch_size):
            yield chunk.float().div_(255.0)
        return
    stream = StreamedImages(source, size, crop, workers)
    for x, rows in stream.all(batch_size):
        kept.extend(rows.tolist())
        yield x
    skipped.extend(stream.skipped.items())


def model_encoder(model: SimCLRNet, device: torch.device, precision: Precision, channels_last: bool,
                  with_z: bool = False, *, fold: bool = True) -> Encode:
    """h (and z) of a batch, computed in eval mode (batch-norm running statistics, no updates) by the network
    as it is now: by default a copy with its batch norms folded into the convolutions
    (:mod:`simclr.models.fold`), made here, so the encoder does not see later changes to ``model``;
    ``fold=False`` runs ``model`` itself."""
    model.eval()
    if fold:
        model = folded_for_inference(model)

    @torch.no_grad()
    def encode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with precision.autocast(device):
            if with_z:
                r = model(x)
                return r.h.float().cpu(), r.z.float().cpu()
            return model.encoder(x).float().cpu(), None

    return encode


RAW_SIDE = 32
"""Raw pixels are compared at most this many pixels a side (3,072 values): larger images are area-averaged to
it, so that the baseline's linear fit stays a minute's work (12,288 values at 64 px took three minutes on
16,000 images of a 2-core CPU; 150,528 at 224 px would not fit a laptop)."""


def raw_pixels(x: torch.Tensor) -> tuple[torch.Tensor, None]:
    """The baseline 'encoder': flattened pixels of images ``[N, C, S, S]``, area-averaged to
    :data:`RAW_SIDE` a side when larger."""
    if max(x.shape[-2:]) > RAW_SIDE:
        x = torch.nn.functional.adaptive_avg_pool2d(x.float(), RAW_SIDE)
    return x.flatten(1), None


def extract_features(encode: Encode, source: ImageSource, size: int, in_memory: bool, *,
                     batch_size: int = 256, workers: int = 0, progress: bool = True, desc: str = "features",
                     decoder: Decoder | None = None, crop: float = 1.0,
                     allow_empty: bool = False) -> Features:
    """Run ``encode`` over every readable image of ``source`` (prepared by :func:`eval_batches`); unreadable
    ones are skipped and listed. None readable is an InputError unless ``allow_empty`` (then h is [0, 0])."""
    skipped: list[tuple[str, str]] = []
    kept: list[int] = []
    hs, zs = [], []
    total = (len(source) + batch_size - 1) // batch_size
    for x in tqdm(eval_batches(source, size, in_memory, batch_size, workers, skipped, kept, decoder, crop),
                  total=total, desc=desc, unit="batch", disable=not progress, leave=False):
        h, z = encode(x)
        hs.append(h)
        if z is not None:
            zs.append(z)
    if not hs:
        if allow_empty:
            return Features(torch.zeros(0, 0), None, torch.zeros(0, dtype=torch.int64), [], skipped)
        why = f": {skipped[0][0]} ({skipped[0][1]})" \
            + (f" and {len(skipped) - 1} more" if len(skipped) > 1 else "") if skipped else ""
        raise InputError(f"no readable images in {source.name}{why}")
    labels = torch.as_tensor(source.labels[kept], dtype=torch.int64)
    return Features(torch.cat(hs), torch.cat(zs) if zs else None, labels, [source.paths[i] for i in kept],
                    skipped)
