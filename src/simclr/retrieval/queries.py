"""The queries of a search: what the user gave turned into query vectors, with their names, labels and
pictures.

Queries are vectors [Q, F] (or one [F]) already embedded; a ``simclr embed`` file (``.npz``; the index's own
file: every image against the others, none finding itself); image files, or one folder, archive or dataset
name (every split), read as ``simclr embed`` reads a dataset when the caller says how (an ``EvalSetup``, as
``simclr search`` does); or pictures embedded here by the encoder (paths, PIL images, image tensors).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from simclr.data.image_source import ImageSource
from simclr.data.images import is_image_file, open_rgb
from simclr.data.sources import load_source
from simclr.encoder import Encoder, Images, float_images
from simclr.errors import InputError
from simclr.evaluation.setup import EvalSetup
from simclr.retrieval.embed import embed_images
from simclr.retrieval.embeddings import label_names, load_embeddings
from simclr.retrieval.sheet import Pictures, picture_loader, source_from_meta

CheckNetwork = Callable[[str | None, str], None]
"""Refuses vectors of another network than the index's: (the digest of their network, what made them)."""


class Queries(NamedTuple):
    """Query vectors, labels (-1 unlabeled), names (as given, else ``paths``), the index row each may not
    return (or None), and where their pictures are: ``paths`` in the embedded ``source``, or in the dataset
    named by the ``meta`` of the embeddings file they were read from, or the pictures ``given``."""

    vectors: torch.Tensor
    labels: np.ndarray
    names: list[str]
    paths: list[str]
    exclude: torch.Tensor | None
    source: ImageSource | None
    meta: dict[str, Any] | None = None
    classes: tuple[str, ...] | None = None  # the names the labels number (None: not known)
    skipped: tuple[tuple[str, str], ...] = ()  # query images that could not be read: (name, reason)
    given: Images | None = None  # pictures embedded by the encoder, as given


def read_queries(given: Images, index: dict[str, Any], on: str, encoder: Callable[[], Encoder],
                 check: CheckNetwork, setup: EvalSetup | None = None) -> Queries:
    """What the user gave, as query vectors comparable with ``index``'s (see the module's docstring).

    Args:
        given: Vectors, a ``simclr embed`` file, paths, PIL images or image tensors.
        index: The ``meta`` of the collection searched (its own file given as queries excludes each image from
            its results).
        on: ``"h"`` or ``"z"``: which vectors.
        encoder: Gives the network that embeds images, checked to be the index's; called only when there are
            images to embed.
        check: Refuses an embeddings file of another network than the index's.
        setup: Reads paths as ``simclr search`` does (image files, or one folder, archive or dataset; where
            datasets are, batch size, workers, progress); without it they are pictures read by the encoder.

    Returns:
        The queries' vectors, labels, names, skipped images and where their pictures are.
    """
    if isinstance(given, torch.Tensor) and given.dim() <= 2:
        vectors = given.reshape(-1, given.shape[-1])  # one vector [F] is one query
        return Queries(vectors, np.full(len(vectors), -1, np.int64), _numbered(len(vectors)), [], None, None)
    paths = _paths(given)
    if paths and len(paths) == 1 and paths[0].lower().endswith(".npz"):
        return _embeddings_file(paths[0], index, on, check)
    if paths and setup is not None:
        return _embedded(paths, on, encoder, setup)
    vectors = encoder()(given, z=on == "z")
    return Queries(vectors, np.full(len(vectors), -1, np.int64), _names(given, len(vectors)), [], None, None,
                   given=given)


def _paths(given: Images) -> list[str] | None:
    """``given`` as paths, when it is one or a sequence of them (else None)."""
    if isinstance(given, (str, Path)):
        return [str(given)]
    if isinstance(given, Sequence) and all(isinstance(q, (str, Path)) for q in given):
        return [str(q) for q in given]
    return None


def _numbered(n: int) -> list[str]:
    """Names of queries given without one (pictures, vectors): query 1, query 2, ..."""
    return [f"query {i + 1}" for i in range(n)]


def _names(given: Images, n: int) -> list[str]:
    """The names of ``n`` pictures: each path as given, else its number (:func:`_numbered`)."""
    items = [given] if isinstance(given, (str, Path, Image.Image)) else given
    if isinstance(items, torch.Tensor):
        return _numbered(n)
    return [str(q) if isinstance(q, (str, Path)) else name for q, name in zip(items, _numbered(n))]


def _embeddings_file(path: str, index: dict[str, Any], on: str, check: CheckNetwork) -> Queries:
    """The vectors of a ``simclr embed`` file; the index's own file excludes each image from its own
    results."""
    emb = load_embeddings(path)
    check(emb.meta.get("network"), f"the network {path} was embedded with")
    same = "file" in index and Path(path).resolve() == Path(index["file"]).resolve()
    exclude = torch.arange(len(emb.paths)) if same else None  # a file searched against itself
    return Queries(emb.vectors(on), emb.labels, emb.paths, emb.paths, exclude, None, emb.meta, emb.classes)


def _embedded(paths: list[str], on: str, encoder: Callable[[], Encoder], setup: EvalSetup) -> Queries:
    """Image files, or one folder, archive or dataset, embedded as ``simclr embed`` embeds a dataset
    (unreadable images skipped and listed); image files are named as given."""
    source, given = _source(paths, setup)
    feats = embed_images(encoder(), source, setup, with_z=on == "z",
                         in_memory=False if given else None)  # a few files: no dataset-sized decode
    vectors = feats.h if on == "h" else feats.z
    assert vectors is not None
    names = [given[p] for p in feats.paths] if given else feats.paths
    skipped = tuple((given[p] if given else p, why) for p, why in feats.skipped)
    return Queries(vectors, feats.single_labels(), names, feats.paths, None, source, None,
                   label_names(source), skipped)


def _source(paths: list[str], setup: EvalSetup) -> tuple[ImageSource, dict[str, str] | None]:
    """The queries' images and, for image files given one by one, the name the user gave each (by path)."""
    if all(is_image_file(q) and not Path(q).is_dir() for q in paths):
        source = files_source(paths)
        return source, dict(zip(source.paths, paths))
    if len(paths) != 1:
        raise InputError("--query takes image files, or one folder, archive or dataset, or one .npz file")
    return load_source(paths[0], "all", data_root=Path(setup.data.root) if setup.data.root else None,
                       cache_dir=Path(setup.data.cache_dir) if setup.data.cache_dir else None), None


def files_source(files: list[str]) -> ImageSource:
    """Image files as an unlabeled source (paths relative to their common folder)."""
    absolute = [Path(f).resolve() for f in files]
    for f, a in zip(files, absolute):
        if not a.is_file():
            raise InputError(f"query image not found: {f}")
    root = Path(os.path.commonpath([str(a.parent) for a in absolute]))
    return ImageSource("query images", tuple(a.relative_to(root).as_posix() for a in absolute),
                       np.full(len(files), -1, dtype=np.int64), (), root=root)


def query_pictures(queries: Queries, index_meta: dict[str, Any],
                   collection: Pictures) -> Callable[[int], Image.Image | None]:
    """Each query's picture by its number, for a contact sheet: from its embedded images, from the collection
    (``collection``, the index's pictures) or the dataset an embeddings file of queries was made from, or as
    given; None (an empty frame) for vectors. The dataset is looked up now: a missing one fails here."""
    if queries.source is not None:
        embedded = picture_loader(queries.source)
        return lambda i: embedded(queries.paths[i])
    made = queries.meta
    if made is not None:
        same = all(made.get(k) == index_meta.get(k) for k in ("data", "split"))
        found = collection if same else picture_loader(source_from_meta(made, movable=False))
        return lambda i: found(queries.paths[i])
    return given_pictures(queries.given)


def given_pictures(given: Images | None) -> Callable[[int], Image.Image | None]:
    """The pictures of queries given as images (paths, PIL images, image tensors) by number; None for
    vectors."""
    if given is None or (isinstance(given, torch.Tensor) and given.dim() <= 2):
        return lambda i: None
    if isinstance(given, torch.Tensor):
        pixels = (float_images(given).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        return lambda i: Image.fromarray(pixels[i])
    items = [given] if isinstance(given, (str, Path, Image.Image)) else list(given)

    def picture(i: int) -> Image.Image:
        item = items[i]
        return item if isinstance(item, Image.Image) else open_rgb(item)

    return picture
