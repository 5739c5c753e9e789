"""An embedded collection of images, searched by cosine similarity from Python (``simclr.embed``,
``simclr.load_index``): the ``.npz`` that ``simclr embed`` writes, held in memory with a ``search`` method."""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from simclr.data.images import open_rgb
from simclr.encoder import Encoder, Images, float_images, load_encoder
from simclr.errors import InputError, is_number, is_whole
from simclr.retrieval.duplicates import NearDuplicates, default_threshold, group_rows, near_duplicates
from simclr.retrieval.embeddings import Embeddings, check_same_network, load_embeddings, save_embeddings
from simclr.retrieval.nearest import nearest, unit_rows
from simclr.retrieval.results import Hit
from simclr.retrieval.sheet import Pictures, draw_sheet, picture_loader, source_from_meta
from simclr.runtime.device import pick_device


class Index:
    """A collection's h (and z), image paths, labels and ``meta`` (which checkpoint and image side made them).

    ``search`` embeds query images with that checkpoint at that side, as ``simclr search`` does, so an image of
    the collection finds itself with similarity 1.
    """

    def __init__(self, embeddings: Embeddings, skipped: list[tuple[str, str]] | None = None) -> None:
        self.embeddings = embeddings
        self.skipped = list(skipped or [])  # images that could not be read when the collection was embedded
        self._encoders: dict[str, Encoder] = {}  # device -> the collection's encoder there
        self._checked: weakref.WeakSet[Encoder] = weakref.WeakSet()  # encoders given, found to be the index's network
        self._unit: dict[tuple[str, str], torch.Tensor] = {}  # (h or z, device) -> normalised once for all searches

    @property
    def paths(self) -> list[str]:
        return self.embeddings.paths

    @property
    def labels(self) -> np.ndarray:
        return self.embeddings.labels

    @property
    def h(self) -> torch.Tensor:
        return self.embeddings.features

    @property
    def z(self) -> torch.Tensor | None:
        return self.embeddings.z

    @property
    def meta(self) -> dict:
        return self.embeddings.meta

    def __len__(self) -> int:
        return len(self.embeddings.paths)

    def __repr__(self) -> str:
        z = f", z {self.z.shape[1]}" if self.z is not None else ""
        return f"Index({len(self)} images, h {self.h.shape[1]}{z}, checkpoint {self.meta.get('checkpoint')!r})"

    def save(self, path: str | Path) -> Path:
        """Write the collection as ``simclr embed`` does (``simclr search --index`` reads it); returns the path."""
        save_embeddings(self.embeddings, path)
        return Path(path)

    def encoder(self, device: str = "auto") -> Encoder:
        """The encoder the collection was embedded with, on ``device`` (loaded once per device, from the
        checkpoint its ``meta`` names)."""
        dev = str(pick_device(device))
        if dev not in self._encoders:
            checkpoint = self.meta.get("checkpoint")
            if not checkpoint:
                raise InputError(f"{self.meta.get('file', 'the index')} does not name its checkpoint: "
                                 "pass encoder=simclr.load_encoder(...)")
            if not Path(checkpoint).exists():
                raise InputError(f"checkpoint not found: {checkpoint} (the index was made with it; "
                                 "pass encoder=simclr.load_encoder(...))")
            crop = self.meta.get("eval_crop")
            encoder = load_encoder(checkpoint, dev, image_size=int(self.meta.get("image_size") or 0),
                                   eval_crop=float(crop) if crop else None)
            check_same_network(self.meta, encoder.digest(), f"checkpoint {checkpoint}")
            self._encoders[dev] = encoder
        return self._encoders[dev]

    def search(self, queries: Images, k: int = 10, *, z: bool = False, encoder: Encoder | None = None,
               device: str = "auto") -> list[list[Hit]]:
        """The ``k`` most similar images of the collection for each query, best first.

        ``queries``: image paths, PIL images or image tensors [B, 3, H, W] (embedded with ``encoder``, by default
        the collection's own; one given must hold the weights the collection was embedded with, checked the first
        time it is given), or vectors [Q, F] (or one [F]) already embedded. The encoder and the similarity
        search run on ``device`` (auto: CUDA when present). ``z=True`` compares z
        (the collection must hold z: ``simclr.embed(..., z=True)``). Returns one list of :class:`Hit` per query.
        """
        _whole("k", k)
        on = "z" if z else "h"
        dev = pick_device(device)  # the similarities are computed there (a GPU for a large collection)
        if (on, str(dev)) not in self._unit:
            self._unit[on, str(dev)] = unit_rows(self.embeddings.vectors(on).to(dev))
        if isinstance(queries, torch.Tensor) and queries.dim() <= 2:
            vectors = queries.reshape(-1, queries.shape[-1])  # one vector [F] is one query
        else:
            if encoder is not None and encoder not in self._checked:  # the first time it is given (a digest
                check_same_network(self.meta, encoder.digest(), "the encoder given")  # reads every weight)
                self._checked.add(encoder)
            vectors = (encoder or self.encoder(device))(queries, z=z)
        scores, rows = nearest(self._unit[on, str(dev)], vectors.detach().to(dev), k, index_is_unit=True)
        scores, rows = scores.cpu(), rows.cpu()
        return [[Hit(r + 1, self.paths[int(j)], int(self.labels[int(j)]), float(s))
                 for r, (s, j) in enumerate(zip(srow, jrow))] for srow, jrow in zip(scores, rows)]

    def duplicates(self, threshold: float | None = None, *, k: int = 10, z: bool = False,
                   device: str = "auto") -> NearDuplicates:
        """Groups of near-duplicate images in the collection, largest first: what ``simclr duplicates`` runs.

        Images are linked when one is among the other's ``k`` most similar with a cosine similarity of at least
        ``threshold`` (default 0.99 on h, 0.95 on z), each member of a group as similar to its first image
        (:func:`~simclr.retrieval.duplicates.duplicate_groups`). Each group is a list of :class:`Hit`, the first
        the one to keep, each scored by its cosine similarity to that one.
        """
        if not is_whole(k):
            raise InputError(f"k must be a whole number >= 1, got {k!r}")
        on = "z" if z else "h"
        threshold = default_threshold(on) if threshold is None else threshold
        if not is_number(threshold):
            raise InputError(f"threshold must be a number, got {threshold!r}")
        vectors = self.embeddings.vectors(on).to(pick_device(device))
        return near_duplicates(vectors, self.paths, self.labels, threshold, k)

    def pictures(self, images: str | Path | None = None) -> Pictures:
        """The collection's images by path, for contact sheets: from where it was embedded, or ``images``, where
        its folder or archive lies now if it has moved since (InputError now if they are not there)."""
        return picture_loader(source_from_meta(self.meta, images, paths=self.paths))

    def sheet(self, queries: Images, hits: list[list[Hit]], out: str | Path, cell: int = 96,
              images: str | Path | None = None) -> Path:
        """Save a contact sheet of a search: each query's picture beside its results' pictures and similarities
        (PNG, JPEG or WebP by the suffix of ``out``). ``queries`` and ``hits`` as given to and returned by
        :meth:`search`; vector queries are drawn as empty frames, and so are images no longer readable.
        ``images``: where the collection's folder or archive lies now, if it has moved since it was embedded."""
        load = self.pictures(images)
        draw_sheet([(q, [(load(h.path), f"{h.rank}: {h.score:.3f}") for h in row])
                    for q, row in zip(_pictures(queries, len(hits)), hits)], out, cell)
        return Path(out)

    def duplicates_sheet(self, groups: list[list[Hit]], out: str | Path, cell: int = 96,
                         images: str | Path | None = None, *, max_groups: int = 8, most: int = 8) -> Path:
        """Save a contact sheet of near-duplicates (:meth:`duplicates`): the ``max_groups`` largest groups, each
        the image kept then up to ``most`` others with their similarity to it. ``images`` as for :meth:`sheet`."""
        draw_sheet(group_rows(groups, self.pictures(images), max_groups, most), out, cell, first="keep")
        return Path(out)


def _whole(name: str, value: object) -> None:
    if not is_whole(value) or value < 1:
        raise InputError(f"{name} must be a whole number >= 1, got {value!r}")


def _pictures(queries: Images, n: int) -> list[Image.Image | None]:
    """The queries of :meth:`Index.search` as pictures (None for embedded vectors)."""
    if isinstance(queries, torch.Tensor):
        if queries.dim() <= 2:
            return [None] * n
        return [Image.fromarray((t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
                for t in float_images(queries)]
    items = [queries] if isinstance(queries, (str, Path, Image.Image)) else list(queries)
    return [open_rgb(q) if isinstance(q, (str, Path)) else q for q in items]


def load_index(path: str | Path) -> Index:
    """Read a ``simclr embed`` file (never unpickles); a missing or corrupt file raises InputError."""
    return Index(load_embeddings(path))
