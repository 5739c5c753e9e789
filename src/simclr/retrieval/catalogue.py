"""A collection folder as a searchable catalogue (:class:`Catalogue`): the
:class:`~simclr.retrieval.index.Index` of ``simclr search`` and ``simclr duplicates`` over a collection
folder, and what ``simclr serve`` runs: search by pictures or by catalogue items, near-duplicates, the
catalogue's pictures, images added and removed.

A catalogue reads one generation of its collection at a time; :meth:`Catalogue.refresh` moves to the newest
committed one (an index rebuilt, images added by another process). Each call takes the current generation
once, so it sees the old or the new collection, never a mixture."""

from __future__ import annotations

import copy
import hashlib
import io
import threading
import weakref
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from simclr.data.image_source import ImageSource
from simclr.data.images import to_rgb
from simclr.errors import InputError
from simclr.retrieval.ann import Searcher
from simclr.retrieval.ann_build import reopen_searcher
from simclr.retrieval.collect import UPLOADS, add_uploads, delete_rows
from simclr.retrieval.collection import MANIFEST, Collection
from simclr.retrieval.duplicates import NearDuplicates, check_links, default_threshold, link_groups
from simclr.retrieval.index import CHOOSE_ENCODER, Index
from simclr.retrieval.results import Hit
from simclr.retrieval.sheet import Pictures, source_from_meta
from simclr.runtime.device import pick_device


class UnknownItem(InputError):
    """An id that is not an image of the collection (never was, or deleted)."""


class _State(NamedTuple):
    collection: Collection
    searchers: dict[str, Searcher]


class _Shared:
    """What a catalogue and all its snapshots share: the latest searcher on h and z (carried over to the
    next generation), each generation's nearest neighbours and near-duplicate groups, and the data source
    its pictures are read from; with the locks that open and compute them once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # opening searchers
        self.computing = threading.Lock()  # the all-against-all neighbours: one computation at a time
        self.searchers: dict[str, Searcher] = {}
        self.neighbours: dict[tuple[int, str, int], tuple[np.ndarray, torch.Tensor, torch.Tensor]] = {}
        self.groups: dict[tuple[int, str, float, int], NearDuplicates] = {}
        self.source: tuple[int, ImageSource, dict[str, int]] | None = None


class Catalogue(Index):
    """A collection folder (:mod:`~simclr.retrieval.collection`), searched through its index."""

    def __init__(self, folder: str | Path, *, choose_checkpoint: str = CHOOSE_ENCODER,
                 device: str = "auto") -> None:
        self.folder = Path(folder)
        self.skipped = []
        self.choose_checkpoint = choose_checkpoint
        self.device = device
        self._encoders = {}
        self._checked = weakref.WeakSet()
        self._unit = {}
        self._lock = threading.Lock()  # writes, and the moves to a new generation
        self._stamp: tuple[int, int] | None = None
        self._state = self._open()
        self._shared = _Shared()
        self._pinned = False

    def _open(self) -> _State:
        self._stamp = _stamp(self.folder)
        return _State(Collection(self.folder), {})

    def refresh(self) -> bool:
        """Move to the newest committed generation of the collection if it changed on disk (a cheap check
        otherwise); returns whether it did."""
        if self._pinned or _stamp(self.folder) == self._stamp:
            return False
        with self._lock:
            stamp = _stamp(self.folder)
            if stamp == self._stamp:
                return False
            state = self._open()
            if state.collection.generation == self._state.collection.generation:
                return False
            self._state = state  # one assignment: a call sees the old state or the new, never a mixture
            return True

    def snapshot(self) -> Catalogue:
        """This catalogue pinned to its current generation (:meth:`refresh` does nothing on it): for work
        that must see one generation from start to end, such as a request of ``simclr serve``. It shares the
        loaded encoders, the lock and the kept near-duplicate groups."""
        pinned = copy.copy(self)
        pinned._pinned = True
        return pinned

    @property
    def collection(self) -> Collection:
        return self._state.collection

    def searcher(self, on: str = "h") -> Searcher:
        """The searcher of the current generation, on h or z (opened once)."""
        state = self._state
        if on not in state.searchers:
            with self._shared.lock:
                if on not in state.searchers:
                    latest = self._shared.searchers.get(on)
                    opened = reopen_searcher(latest, state.collection, on, str(pick_device(self.device)))
                    state.searchers[on] = opened
                    if latest is None or opened.collection.generation >= latest.collection.generation:
                        self._shared.searchers[on] = opened
        return state.searchers[on]

    @property
    def kind(self) -> str:
        """How it is searched: exact, hnsw or ivfpq."""
        return self.searcher().kind

    @property
    def generation(self) -> int:
        return self.collection.generation

    @property
    def dim(self) -> int:
        return int(self.collection.h.shape[1])

    @property
    def paths(self) -> list[str]:
        return self.collection.paths()

    @property
    def labels(self) -> np.ndarray:
        """Every row's label (deleted rows too: indexed by id)."""
        return self.collection.labels

    @property
    def h(self) -> torch.Tensor:
        return torch.from_numpy(np.array(self.collection.h[self.collection.live_rows()]))

    @property
    def z(self) -> torch.Tensor | None:
        z = self.collection.z
        return None if z is None else torch.from_numpy(np.array(z[self.collection.live_rows()]))

    @property
    def meta(self) -> dict:
        return self.collection.meta

    @property
    def classes(self) -> tuple[str, ...] | None:
        return self.collection.classes

    def __len__(self) -> int:
        return len(self.collection)

    def __repr__(self) -> str:
        return f"Catalogue({self.folder}, {len(self)} images, {self.kind}, h {self.dim})"

    def save(self, path: str | Path) -> Path:
        raise InputError("a collection folder is saved as it changes; for the single-file form use "
                         "simclr index convert")

    def class_name(self, label: int) -> str | None:
        classes = self.classes
        return classes[label] if classes is not None and 0 <= label < len(classes) else None

    def _nearest(self, vectors: torch.Tensor, k: int, exclude: torch.Tensor | None, on: str,
                 device: str) -> tuple[torch.Tensor, torch.Tensor]:
        excluded = None if exclude is None else exclude.cpu().numpy()
        return self.searcher(on).search(vectors.cpu(), k, excluded)

    def hits(self, scores: torch.Tensor, rows: torch.Tensor, collection: Collection | None = None,
             ) -> list[list[Hit]]:
        collection = collection or self.collection
        wanted = sorted({int(j) for j in rows.flatten().tolist() if j >= 0})
        paths = dict(zip(wanted, collection.paths(wanted)))
        return [[Hit(r + 1, paths[j], int(collection.labels[j]), float(s), j)
                 for r, (s, j) in enumerate(zip(srow.tolist(), jrow.tolist())) if j >= 0]
                for srow, jrow in zip(scores, rows)]

    def _check(self, ids: list[int], collection: Collection) -> None:
        for i in ids:
            if not collection.has(i):
                raise UnknownItem(f"no image {i!r} in the collection")

    def item(self, id: int) -> Hit:
        """Image ``id`` of the collection (rank 0, score 1.0)."""
        collection = self.collection
        self._check([id], collection)
        return Hit(0, collection.paths([id])[0], int(collection.labels[id]), 1.0, id)

    def search_pictures(self, pictures: list[Image.Image], k: int = 10) -> list[list[Hit]]:
        """The ``k`` most similar images of the collection for each picture, embedded with its network."""
        searcher = self.searcher()
        vectors = self.encoder(self.device)(pictures)
        return self.hits(*searcher.search(vectors, k), collection=searcher.collection)

    def search_ids(self, ids: list[int], k: int = 10) -> list[list[Hit]]:
        """The ``k`` most similar images of the collection to each of its images ``ids`` (each left out of its
        own results)."""
        searcher = self.searcher()
        collection = searcher.collection
        self._check(ids, collection)
        rows = np.asarray(ids, np.int64)
        return self.hits(*searcher.search(collection.h[rows], k, rows), collection=collection)

    def duplicates(self, threshold: float | None = None, *, k: int = 10, z: bool = False,
                   device: str = "auto") -> NearDuplicates:
        """Groups of near-duplicate images (as :meth:`Index.duplicates`), all against all through the
        collection's index; kept for the generation."""
        on = "z" if z else "h"
        threshold = default_threshold(on) if threshold is None else threshold
        check_links(threshold, k)
        searcher = self.searcher(on)
        generation, shared = searcher.collection.generation, self._shared
        key = (generation, on, float(threshold), k)
        if key in shared.groups:
            return shared.groups[key]
        if len(searcher.collection) < 2:
            return NearDuplicates([], threshold, torch.full((len(searcher.collection),), float("nan")))
        with shared.computing:  # the neighbours once a generation, whatever the thresholds asked
            if (generation, on, k) not in shared.neighbours:
                found = searcher.neighbours(min(k, len(searcher.collection) - 1), plain=True)
                shared.neighbours = {(generation, on, k): found}  # only the latest generation's kept
        live, scores, rows = shared.neighbours[generation, on, k]
        groups_found = link_groups(torch.as_tensor(live), scores, rows, threshold, searcher.similarity)
        hits = [self.hits(torch.tensor([g.scores]), torch.tensor([g.rows]), searcher.collection)[0]
                for g in groups_found.groups]
        groups = {key: v for key, v in shared.groups.items() if key[0] == generation}
        made = NearDuplicates(hits, threshold, groups_found.nearest)
        shared.groups = dict(list(groups.items())[-7:]) | {key: made}
        return shared.groups[key]

    def duplicates_of(self, id: int, threshold: float | None = None, k: int = 10) -> list[Hit]:
        """The images of the collection at least ``threshold`` similar to image ``id`` (at most ``k``)."""
        threshold = default_threshold("h") if threshold is None else threshold
        hits = self.search_ids([id], k)[0]
        scores = self.searcher().similarity(id, [h.id for h in hits])  # plain cosine, as the threshold
        found = sorted((h._replace(score=s) for h, s in zip(hits, scores) if s >= threshold),
                       key=lambda h: -h.score)
        return [h._replace(rank=r + 1) for r, h in enumerate(found)]

    def pictures(self, images: str | Path | None = None) -> Pictures:
        """The collection's images by path, for contact sheets (None: no longer readable): uploaded ones
        from its ``uploads/``, the others from where it was embedded, or ``images``, where that folder or
        archive lies now."""
        collection = self.collection
        moved = None
        if images is not None:
            some = collection.paths(collection.live_rows()[:1000].tolist())
            source = source_from_meta(collection.meta, images, paths=some)
            moved = (source, {p: i for i, p in enumerate(source.paths)})

        def load(path: str) -> Image.Image | None:
            try:
                return self._picture_of(path, collection, moved)
            except InputError:
                return None
        return load

    def etag(self, id: int) -> str:
        """What changes when image ``id`` does: a digest of its path and content digest (UnknownItem for ids
        not in the collection)."""
        collection = self.collection
        self._check([id], collection)
        digests = collection.digests
        content = b"" if digests is None else bytes(digests[id])
        return hashlib.sha256(collection.paths([id])[0].encode() + content).hexdigest()[:24]

    def picture(self, id: int) -> Image.Image:
        """Image ``id`` of the collection (RGB); UnknownItem for ids not in it, InputError when its file is
        gone."""
        collection = self.collection
        self._check([id], collection)
        return self._picture_of(collection.paths([id])[0], collection)

    def _picture_of(self, path: str, collection: Collection,
                    moved: tuple[ImageSource, dict[str, int]] | None = None) -> Image.Image:
        if path.startswith(UPLOADS + "/"):
            try:
                with Image.open(collection.folder / path) as img:
                    return img.convert("RGB")
            except OSError as exc:
                raise InputError(f"cannot read {path}: {exc}") from None
        if moved is not None:
            source, at = moved
            if path not in at:
                raise InputError(f"{path} is not in {source.name}")
            return source.load(at[path])
        shared = self._shared
        kept = shared.source
        if kept is None or kept[0] != collection.generation:
            source = source_from_meta(collection.meta)
            kept = shared.source = (collection.generation, source, {p: i for i, p in enumerate(source.paths)})
        _, source, at = kept
        if path not in at:
            raise InputError(f"{path} is no longer in {source.name}")
        return source.load(at[path])

    def add_pictures(self, files: list[tuple[str, bytes]]) -> list[Hit]:
        """Store the image files (name, bytes) in the collection's ``uploads/``, embed them with its network
        and add them (one new generation); returns them as they are now in the collection."""
        pictures = []
        for name, data in files:
            with Image.open(io.BytesIO(data)) as img:
                pictures.append(to_rgb(img))  # as the collection's own images are read
        with self._lock:
            encoder = self.encoder(self.device)
            h = encoder(pictures).numpy()
            z = encoder(pictures, z=True).numpy() if self.collection.z is not None else None
            rows = add_uploads(self.folder, files, h, z)
            self._state = self._open()
        return [self.item(int(r)) for r in rows]

    def delete(self, id: int) -> None:
        """Remove image ``id`` from the collection (one new generation)."""
        with self._lock:
            self._check([id], self.collection)
            delete_rows(self.folder, [id])
            self._state = self._open()


def _stamp(folder: Path) -> tuple[int, int]:
    """What changes when the manifest is replaced: its inode and modification time."""
    try:
        st = (folder / MANIFEST).stat()
    except OSError:
        return (0, 0)
    return (st.st_ino, st.st_mtime_ns)


def open_catalogue(folder: str | Path, *, choose_checkpoint: str = CHOOSE_ENCODER,
                   device: str = "auto") -> Catalogue:
    """The collection folder ``folder`` as a :class:`Catalogue` (InputError if it is not one)."""
    return Catalogue(folder, choose_checkpoint=choose_checkpoint, device=device)

