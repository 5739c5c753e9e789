"""Decode a whole dataset once into one uint8 tensor, skipping (and recording) images that cannot be read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
import torch.utils.data
from tqdm import tqdm

from simclr.data.augment import fit_square, resize_side
from simclr.data.image_source import ImageSource
from simclr.data.images import CorruptImageError
from simclr.errors import InputError
from simclr.interrupts import ignore_stop_signals

IN_MEMORY_MAX_SIDE = 64
"""Images up to this side are held decoded in memory (on the training device) by default."""


class Decoded(NamedTuple):
    """A decoded dataset.

    Attributes:
        images: uint8 [N, 3, S, S].
        labels: int64 [N]; -1 for unlabeled.
        paths: identifiers of the N kept images.
        skipped: (path, reason) of every image that could not be decoded.
    """

    images: torch.Tensor
    labels: torch.Tensor
    paths: list[str]
    skipped: list[tuple[str, str]]


MEMINFO = "/proc/meminfo"


def available_memory() -> int | None:
    """Bytes of memory a new allocation can have without swapping (Linux's ``MemAvailable``); None when
    unknown."""
    try:
        with open(MEMINFO) as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits(n: int, size: int, name: str) -> None:
    """Refuse, before decoding, a dataset whose uint8 tensor ``[n, 3, size, size]`` would not fit in the
    memory available (rather than being killed by the kernel halfway, with nothing said)."""
    need, free = n * 3 * size * size, available_memory()
    if free is not None and need > 0.9 * free:
        raise InputError(f"{n} images of {name} decoded at {size}x{size} need {_bytes(need)} of memory, "
                         f"{_bytes(free)} is available: use a smaller image side or fewer images, or "
                         "read them from their files batch by batch (pretrain --set data.in_memory=false; "
                         "eval --in-memory false)")


def _bytes(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


SIDE_SAMPLES = 16
"""Images :func:`native_side` reads, spread evenly over the dataset."""


def native_side(source: ImageSource) -> int:
    """The median longest side of up to :data:`SIDE_SAMPLES` readable images spread evenly over the dataset
    (unreadable ones skipped; all of an in-memory array), 0 when none of them (or of the first 50) can be
    read."""
    if source.array is not None:
        return int(max(source.array.shape[1:3]))
    n = len(source)
    k = min(n, SIDE_SAMPLES)
    picks = sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)})
    sides = []
    for i in [*picks, *(j for j in range(min(n, 50)) if j not in picks)]:
        try:
            sides.append(max(source.load(i).size))
        except CorruptImageError:
            continue
        if len(sides) >= len(picks):
            break
    return int(sorted(sides)[(len(sides) - 1) // 2]) if sides else 0


def _resize_array(array: np.ndarray, size: int, crop: float = 1.0) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)
    if crop < 1.0:  # the central part first, then the resize: as resize-then-crop, within rounding
        h, w = x.shape[-2:]
        keep = max(1, round(min(h, w) * crop))
        top, left = round((h - keep) / 2), round((w - keep) / 2)  # placed as fit_square places its crop
        x = x[..., top : top + keep, left : left + keep]
    if x.shape[-1] == size and x.shape[-2] == size:
        return x.contiguous()
    out = []
    for chunk in x.split(4096):
        y = F.interpolate(chunk.float(), size=(size, size), mode="bicubic", align_corners=False,
                          antialias=True)
        out.append(y.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def decode_source(source: ImageSource, size: int, *, progress: bool = True, workers: int = 0,
                  crop: float = 1.0) -> Decoded:
    """Decode every image of ``source`` to ``size x size`` (shorter side, centre crop keeping ``crop`` of it,
    see :func:`fit_square`), skipping corrupt ones.

    Files are decoded by ``workers`` processes when there are enough of them to pay for starting those (in
    order, so the result is the same), straight into one uint8 ``[N, 3, S, S]`` tensor."""
    labels = torch.as_tensor(np.asarray(source.labels), dtype=torch.int64)
    if source.array is not None:
        return Decoded(_resize_array(source.array, size, crop), labels, list(source.paths), [])
    images = torch.empty((len(source), 3, size, size), dtype=torch.uint8)
    pixels = images.numpy()  # the same memory
    keep: list[int] = []
    skipped: list[tuple[str, str]] = []
    with tqdm(total=len(source), desc=f"decoding {source.name}", unit="img", disable=not progress,
              leave=False, mininterval=1.0) as bar:
        for chunk in _decoded_chunks(source, size, workers if len(source) >= _PARALLEL_MIN else 0, crop):
            for i, item in chunk:
                if isinstance(item, str):
                    skipped.append((source.paths[i], item))
                else:
                    pixels[len(keep)] = np.asarray(item).transpose(2, 0, 1)
                    keep.append(i)
            bar.update(len(chunk))
    return Decoded(images[: len(keep)], labels[keep], [source.paths[i] for i in keep], skipped)


_PARALLEL_MIN = 2048  # fewer files decode faster than worker processes start
_CHUNK = 256


class _Chunks(torch.utils.data.Dataset):
    """Chunk ``j`` of a file-backed source: ``(index, uint8 [S, S, 3] or the reason it could not be
    read)``."""

    def __init__(self, source: ImageSource, size: int, crop: float = 1.0) -> None:
        self.source, self.size, self.crop = source, size, crop

    def __len__(self) -> int:
        return (len(self.source) + _CHUNK - 1) // _CHUNK

    def __getitem__(self, j: int) -> list[tuple[int, np.ndarray | str]]:
        out: list[tuple[int, np.ndarray | str]] = []
        for i in range(j * _CHUNK, min((j + 1) * _CHUNK, len(self.source))):
            try:
                image = self.source.load(i, min_side=resize_side(self.size, self.crop))
                out.append((i, fit_square(image, self.size, self.crop)))
            except CorruptImageError as exc:
                out.append((i, str(exc)))
        return out


def _decoded_chunks(source: ImageSource, size: int, workers: int,
                    crop: float = 1.0) -> Iterator[list[tuple[int, Any]]]:
    chunks = _Chunks(source, size, crop)
    if workers <= 0:
        yield from (chunks[j] for j in range(len(chunks)))
        return
    loader = torch.utils.data.DataLoader(chunks, batch_size=None, num_workers=workers, collate_fn=as_is,
                                         prefetch_factor=2, worker_init_fn=ignore_stop_signals)
    yield from loader


def as_is(items: list[Any]) -> list[Any]:
    """A DataLoader ``collate_fn`` that hands the items on as they are (a list; picklable for workers)."""
    return items
