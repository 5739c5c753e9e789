"""An embedded collection of images searched by cosine similarity: the ``.npz`` that ``simclr embed`` writes,
held in memory with the one ``search`` (what ``simclr search`` runs, and ``simclr.load_index(...).search``
from Python) and ``duplicates`` (what ``simclr duplicates`` runs). The checkpoint a search embeds its queries
with, and that it is the network the collection was embedded with, are checked here."""

from __future__ import annotations

import functools
import weakref
from pathlib import Path

import numpy as np
import torch

from simclr.encoder import Encoder, Images, load_encoder
from simclr.errors import InputError, is_number, is_whole
from simclr.evaluation.setup import EvalSetup
from simclr.retrieval.duplicates import NearDuplicates, default_threshold, group_rows, near_duplicates
from simclr.retrieval.embeddings import Embeddings, check_same_network, load_embeddings, save_embeddings
from simclr.retrieval.nearest import nearest, unit_rows
from simclr.retrieval.queries import given_pictures, query_pictures, read_queries
from simclr.retrieval.results import Hit, SearchResult, sheet_rows
from simclr.retrieval.scores import search_scores
from simclr.retrieval.sheet import Pictures, draw_sheet, picture_loader, source_from_meta
from simclr.runtime.device import pick_device

CHOOSE_ENCODER = "pass encoder=simclr.load_encoder(...)"
"""What a message tells a Python caller to do to embed queries with another checkpoint than the index
names."""


class Index:
    """A collection's h (and z), image paths, labels and ``meta`` (which checkpoint and image side made them).

    ``search`` embeds query images with that checkpoint at that side, as ``simclr search`` does, so an image
    of the collection finds itself with similarity 1. ``choose_checkpoint``: what messages tell the user to do
    to name another checkpoint (a command names its option).
    """

    def __init__(self, embeddings: Embeddings, skipped: list[tuple[str, str]] | None = None, *,
                 choose_checkpoint: str = CHOOSE_ENCODER) -> None:
        self.embeddings = embeddings
        self.skipped = list(skipped or [])  # images that could not be read when the collection was embedded
        self.choose_checkpoint = choose_checkpoint
        self._encoders: dict[tuple[str, str], Encoder] = {}  # (device, checkpoint) -> its encoder there
        self._checked: weakref.WeakSet[Encoder] = weakref.WeakSet()  # encoders given, the index's network
        self._unit: dict[tuple[str, str], torch.Tensor] = {}  # (h or z, device) -> normalised once for all

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
    def dim(self) -> int:
        """The width of h."""
        return int(self.embeddings.features.shape[1])

    @property
    def meta(self) -> dict:
        return self.embeddings.meta

    def __len__(self) -> int:
        return len(self.embeddings.paths)

    def __repr__(self) -> str:
        z = f", z {self.z.shape[1]}" if self.z is not None else ""
        checkpoint = self.meta.get("checkpoint")
        return f"Index({len(self)} images, h {self.h.shape[1]}{z}, checkpoint {checkpoint!r})"

    def save(self, path: str | Path) -> Path:
        """Write the collection as ``simclr embed`` does (``simclr search --index`` reads it); returns the
        path."""
        save_embeddings(self.embeddings, path)
        return Path(path)

    def encoder(self, device: str = "auto", checkpoint: str | Path | None = None) -> Encoder:
        """The encoder the collection was embedded with (from the checkpoint its ``meta`` names, or
        ``checkpoint``), on ``device``: loaded once per device, and refused unless it is the network the
        collection was embedded with."""
        dev = str(pick_device(device))
        checkpoint = str(checkpoint) if checkpoint else self.meta.get("checkpoint")
        if not checkpoint:
            raise InputError(f"{self.meta.get('file', 'the index')} does not name its checkpoint: "
                             f"{self.choose_checkpoint}")
        if (dev, checkpoint) not in self._encoders:
            if not Path(checkpoint).exists():
                raise InputError(f"checkpoint not found: {checkpoint} (the index was made with it; "
                                 f"{self.choose_checkpoint})")
            crop = self.meta.get("eval_crop")
            encoder = load_encoder(checkpoint, dev, image_size=int(self.meta.get("image_size") or 0),
                                   eval_crop=float(crop) if crop else None)
            self._same_network(encoder.digest(), f"checkpoint {checkpoint}")
            self._encoders[dev, checkpoint] = encoder
        return self._encoders[dev, checkpoint]

    def _same_network(self, digest: str | None, what: str) -> None:
        """The one check that query vectors (of a network with weights' ``digest``, made by ``what``) are
        comparable with the collection's (:func:`~simclr.retrieval.embeddings.check_same_network`)."""
        check_same_network(self.meta, digest, what)

    def _query_encoder(self, encoder: Encoder | None, device: str, checkpoint: str | Path | None) -> Encoder:
        """``encoder``, checked the first time it is given (a digest reads every weight), else
        :meth:`encoder`."""
        if encoder is None:
            return self.encoder(device, checkpoint)
        if encoder not in self._checked:
            self._same_network(encoder.digest(), "the encoder given")
            self._checked.add(encoder)
        return encoder

    def search(self, queries: Images, k: int = 10, *, z: bool = False, encoder: Encoder | None = None,
               device: str = "auto", checkpoint: str | Path | None = None,
               setup: EvalSetup | None = None) -> SearchResult:
        """The ``k`` most similar images of the collection for each query, best first: what ``simclr search``
        runs.

        Args:
            queries: Image paths, PIL images or image tensors [B, 3, H, W] (embedded by the encoder); vectors
                [Q, F] (or one [F]) already embedded; or a ``simclr embed`` file (the collection's own: every
                image against the others, none finding itself).
            k: Results per query.
            z: Compare z instead of h (the collection must hold z: ``simclr.embed(..., z=True)``).
            encoder: Embeds image queries (default: the collection's own network, or ``checkpoint``'s); it
                must hold the weights the collection was embedded with, checked the first time it is given.
            device: Where the encoder and the similarity search run (auto: CUDA when present).
            checkpoint: Embed image queries with this run instead of the one the collection names.
            setup: Read paths as ``simclr search`` reads them (where datasets are, batch size, workers,
                progress): image files, or one folder, archive or dataset name (every split, labelled by its
                class folders), in batches, unreadable images skipped. Without it paths are pictures, each
                read here by the encoder.

        Returns:
            One list of :class:`Hit` per query, with the queries' names and labels, the images skipped, and
            the retrieval scores of labelled queries (:class:`~simclr.retrieval.results.SearchResult`).
        """
        _whole("k", k)
        on = "z" if z else "h"
        network = functools.partial(self._query_encoder, encoder, device, checkpoint)  # loaded only if needed
        asked = read_queries(queries, self.meta, on, network, self._same_network, setup)
        scores, rows = self._nearest(asked.vectors.detach(), k, asked.exclude, on, device)
        classes = self.classes
        labels, metrics = search_scores(self.labels, classes, asked.labels, asked.classes, rows, k)
        asked = asked._replace(labels=labels, classes=asked.classes if classes is None else classes)
        return SearchResult(self.hits(scores, rows), asked, metrics)

    @property
    def classes(self) -> tuple[str, ...] | None:
        """The names the labels number (None: not recorded)."""
        return self.embeddings.classes

    def _nearest(self, vectors: torch.Tensor, k: int, exclude: torch.Tensor | None, on: str,
                 device: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine similarities and rows [Q, k'] of each query's nearest images (best first, on the CPU)."""
        dev = pick_device(device)  # the similarities are computed there (a GPU for a large collection)
        if (on, str(dev)) not in self._unit:
            self._unit[on, str(dev)] = unit_rows(self.embeddings.vectors(on).to(dev))
        exclude = None if exclude is None else exclude.to(dev)
        scores, rows = nearest(self._unit[on, str(dev)], vectors.to(dev), k, exclude, index_is_unit=True)
        return scores.cpu(), rows.cpu()

    def hits(self, scores: torch.Tensor, rows: torch.Tensor) -> list[list[Hit]]:
        """Each query's hits from its similarities and rows (-1: none) [Q, k]."""
        return [[Hit(r + 1, self.paths[j], int(self.labels[j]), float(s), j)
                 for r, (s, j) in enumerate(zip(srow.tolist(), jrow.tolist())) if j >= 0]
                for srow, jrow in zip(scores, rows)]

    def duplicates(self, threshold: float | None = None, *, k: int = 10, z: bool = False,
                   device: str = "auto") -> NearDuplicates:
        """Groups of near-duplicate images in the collection, largest first: what ``simclr duplicates`` runs.

        Images are linked when one is among the other's ``k`` most similar with a cosine similarity of at
        least ``threshold`` (default 0.99 on h, 0.95 on z), each member of a group as similar to its first
        image (:func:`~simclr.retrieval.duplicates.duplicate_groups`). Each group is a list of :class:`Hit`,
        the first the one to keep, each scored by its cosine similarity to that one.
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
        """The collection's images by path, for contact sheets: from where it was embedded, or ``images``,
        where its folder or archive lies now if it has moved since (InputError now if they are not there)."""
        return picture_loader(source_from_meta(self.meta, images, paths=self.paths))

    def sheet(self, queries: Images, hits: list[list[Hit]], out: str | Path, cell: int = 96,
              images: str | Path | None = None, *, most: int | None = None) -> Path:
        """Save a contact sheet of a search: each query's picture beside its results' pictures and
        similarities.

        Args:
            queries: The queries as given to :meth:`search` (drawn when ``hits`` is not its result).
            hits: As :meth:`search` returns them (its queries are drawn as the search read them), or any lists
                of hits.
            out: The picture to write, PNG, JPEG or WebP by its suffix.
            cell: The side of each picture on the sheet.
            images: Where the collection's folder or archive lies now, if it has moved since it was embedded.
            most: Draw only the first ``most`` queries (default all).

        Returns:
            ``out``. Vector queries are drawn as empty frames, and so are images no longer readable.
        """
        collection = self.pictures(images)
        picture = query_pictures(hits.queries, self.meta, collection) if isinstance(hits, SearchResult) \
            else given_pictures(queries)
        draw_sheet(sheet_rows(hits[:most], picture, collection), out, cell)
        return Path(out)

    def duplicates_sheet(self, groups: list[list[Hit]], out: str | Path, cell: int = 96,
                         images: str | Path | None = None, *, max_groups: int = 8, most: int = 8) -> Path:
        """Save a contact sheet of near-duplicates (:meth:`duplicates`): the ``max_groups`` largest groups,
        each the image kept then up to ``most`` others with their similarity to it. ``images`` as for
        :meth:`sheet`."""
        draw_sheet(group_rows(groups, self.pictures(images), max_groups, most), out, cell, first="keep")
        return Path(out)


def _whole(name: str, value: object) -> None:
    if not is_whole(value) or value < 1:
        raise InputError(f"{name} must be a whole number >= 1, got {value!r}")


def load_index(path: str | Path, *, choose_checkpoint: str = CHOOSE_ENCODER) -> Index:
    """Read a ``simclr embed`` file (never unpickles); a missing or corrupt file raises InputError.
    ``choose_checkpoint`` as for :class:`Index`."""
    return Index(load_embeddings(path), choose_checkpoint=choose_checkpoint)
