"""The images of one dataset split, before any transform: :class:`ImageSource`."""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from simclr.data.images import MinSide, open_rgb


@dataclass(frozen=True, eq=False)
class ImageSource:
    """The images of one dataset split, before any transform.

    Attributes:
        name: ``"cifar10"``, ``"digits"``, or the folder / archive path as given.
        paths: One identifier per image: a POSIX path relative to ``root`` for file-backed sources,
            else ``"<name>/<split>/<index>"`` (cifar10) or ``"digits/<index>"``.
        labels: int64 [N]; -1 for unlabeled images. A multi-label dataset (VOC2007) has int64 [N, C] instead,
            a code per class (:data:`~simclr.data.named_sets.ABSENT`, ``PRESENT`` or ``DIFFICULT``).
        classes: Class names, index = label (or column); empty when unlabeled.
        array: uint8 [N, H, W, 3] when the whole dataset is decoded in memory, else None.
        root: Folder that ``paths`` are relative to, for file-backed sources, else None.
    """

    name: str
    paths: tuple[str, ...]
    labels: np.ndarray
    classes: tuple[str, ...]
    array: np.ndarray | None = None
    root: Path | None = None

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.paths) or (
            self.array is not None and len(self.array) != len(self.paths)
        ):
            raise ValueError("paths, labels and array must have the same length")
        if self.array is None and self.root is None:
            raise ValueError("an ImageSource needs either an array or a root folder")

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, rows: Sequence[int] | np.ndarray) -> ImageSource:
        """The images at ``rows`` (in that order) as a source of their own."""
        rows = np.asarray(rows, dtype=np.int64)
        return dataclasses.replace(self, paths=tuple(self.paths[int(i)] for i in rows),
                                   labels=self.labels[rows],
                                   array=None if self.array is None else self.array[rows])

    def load(self, i: int, min_side: MinSide = 0) -> Image.Image:
        """Return image ``i`` as an 8-bit RGB image (a JPEG file possibly at a reduced scale that keeps its
        shorter side >= ``min_side``, see :func:`~simclr.data.images.open_rgb`; in-memory images as they are,
        a callable ``min_side`` then called with their size).

        Raises:
            CorruptImageError: The file cannot be decoded (the caller may skip and count it).
        """
        if self.array is not None:
            if callable(min_side):
                min_side(self.array.shape[2], self.array.shape[1])
            return Image.fromarray(self.array[i])
        assert self.root is not None
        return open_rgb(self.root / self.paths[i], name=f"{self.paths[i]} in {self.name}", min_side=min_side)

    def read_bytes(self, i: int) -> bytes:
        """Return the encoded bytes of image ``i``: the file's bytes, or a lossless PNG for in-memory data."""
        if self.array is None:
            assert self.root is not None
            return (self.root / self.paths[i]).read_bytes()
        buffer = io.BytesIO()
        Image.fromarray(self.array[i]).save(buffer, format="PNG")
        return buffer.getvalue()
