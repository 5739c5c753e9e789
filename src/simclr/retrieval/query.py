"""``simclr search``: embed the queries (or read their embeddings), find their nearest index images, score them.

Queries are image files, a dataset SPEC (folder, archive, cifar10; every split), or a ``simclr embed`` file.
The index is a ``simclr embed`` file; its ``meta`` names the checkpoint and image side the queries are
embedded with, and the dataset its images are shown from.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from simclr.data.image_source import ImageSource
from simclr.data.images import is_image_file
from simclr.data.sources import load_source
from simclr.errors import InputError
from simclr.evaluation.run import EvalSetup, load_learned
from simclr.retrieval.embed import embed_source
from simclr.retrieval.embeddings import Embeddings, check_same_network, label_names, load_embeddings
from simclr.retrieval.nearest import nearest
from simclr.retrieval.scores import search_scores
from simclr.retrieval.sheet import SheetRow, draw_sheet, picture_loader, source_from_meta
from simclr.runtime.checkpoint import weights_digest
from simclr.runtime.device import pick_device


class Queries(NamedTuple):
    """Query vectors, labels (-1 unlabeled), names (as given on the command line, else ``paths``), the index row
    each may not return (or None), and where their images are: ``paths`` in the embedded ``source``, or in the
    dataset named by the ``meta`` of the embeddings file they were read from."""

    vectors: torch.Tensor
    labels: np.ndarray
    names: list[str]
    paths: list[str]
    exclude: torch.Tensor | None
    source: ImageSource | None
    meta: dict[str, Any] | None = None
    classes: tuple[str, ...] | None = None  # the names the labels number (None: not known)
    skipped: tuple[tuple[str, str], ...] = ()  # query images that could not be read: (name, reason)


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """For each query: its name, and its k results (index paths, cosine similarities, index rows)."""

    queries: Queries
    index: Embeddings
    scores: torch.Tensor
    rows: torch.Tensor
    metrics: dict[str, Any] | None

    def rows_for_csv(self) -> list[dict[str, Any]]:
        """Every result of every query, one row each: query, query_label, rank, path, label, score."""
        return [{"query": q, "query_label": int(self.queries.labels[i]), **hit}
                for i, q in enumerate(self.queries.names) for hit in self.results(i)]

    def results(self, i: int) -> list[dict[str, Any]]:
        """Query ``i``'s results, best first: rank, path, label, score."""
        return [{"rank": r + 1, "path": self.index.paths[int(j)], "label": int(self.index.labels[int(j)]),
                 "score": round(float(s), 4)} for r, (s, j) in enumerate(zip(self.scores[i], self.rows[i]))]


def sheet_sources(result: SearchResult, images: str | Path | None = None) -> tuple[ImageSource, ImageSource]:
    """Where a search's contact sheet draws its results and its queries from (``images``: where the index's
    collection lies now, if moved); found before anything is written, so a missing collection fails first."""
    index_source = source_from_meta(result.index.meta, images, paths=result.index.paths)
    if result.queries.source is not None:
        return index_source, result.queries.source
    made = result.queries.meta or {}
    if made and all(made.get(k) == result.index.meta.get(k) for k in ("data", "split")):
        return index_source, index_source
    return index_source, source_from_meta(made, movable=False)


def files_source(files: list[str]) -> ImageSource:
    """Image files as an unlabeled source (paths relative to their common folder)."""
    absolute = [Path(f).resolve() for f in files]
    for f, a in zip(files, absolute):
        if not a.is_file():
            raise InputError(f"query image not found: {f}")
    root = Path(os.path.commonpath([str(a.parent) for a in absolute]))
    return ImageSource("query images", tuple(a.relative_to(root).as_posix() for a in absolute),
                       np.full(len(files), -1, dtype=np.int64), (), root=root)


def _query_source(query: list[str], setup: EvalSetup) -> tuple[ImageSource, dict[str, str] | None]:
    """The queries' images and, for image files given one by one, the name the user gave each (by path)."""
    if all(is_image_file(q) and not Path(q).is_dir() for q in query):
        source = files_source(query)
        return source, dict(zip(source.paths, query))
    if len(query) != 1:
        raise InputError("--query takes image files, or one folder, archive or dataset, or one .npz file")
    return load_source(query[0], "all", data_root=Path(setup.data_root) if setup.data_root else None,
                       cache_dir=Path(setup.cache_dir) if setup.cache_dir else None), None


def open_queries(query: list[str], index: Embeddings, on: str, setup: EvalSetup,
                 checkpoint: str | None = None) -> Queries:
    """Read or embed the queries the way the index was embedded (same checkpoint, image side and vector)."""
    if len(query) == 1 and query[0].lower().endswith(".npz"):
        emb = load_embeddings(query[0])
        check_same_network(index.meta, emb.meta.get("network"), f"the network {query[0]} was embedded with")
        same = Path(query[0]).resolve() == Path(index.meta["file"]).resolve()
        exclude = torch.arange(len(emb.paths)) if same else None  # a file searched against itself
        return Queries(emb.vectors(on), emb.labels, emb.paths, emb.paths, exclude, None, emb.meta, emb.classes)
    checkpoint = checkpoint or index.meta.get("checkpoint")
    if not checkpoint:
        raise InputError(f"{index.meta['file']} does not name its checkpoint: give --checkpoint")
    if not Path(checkpoint).exists():
        raise InputError(f"checkpoint not found: {checkpoint} (the index was made with it; give --checkpoint)")
    source, given = _query_source(query, setup)
    size = setup.image_size or int(index.meta.get("image_size") or 0)
    crop = setup.eval_crop if setup.eval_crop is not None else index.meta.get("eval_crop")  # as the index was made
    learned = load_learned(checkpoint, dataclasses.replace(setup, image_size=size,
                                                           eval_crop=float(crop) if crop else None))
    check_same_network(index.meta, weights_digest(learned.model), f"checkpoint {checkpoint}")
    feats = embed_source(learned.encoder(with_z=on == "z"), learned.config, source, setup,
                         in_memory=False if given else None)  # a few files: no dataset-sized decode
    vectors = feats.h if on == "h" else feats.z
    assert vectors is not None
    names = [given[p] for p in feats.paths] if given else feats.paths
    skipped = tuple((given[p] if given else p, why) for p, why in feats.skipped)
    return Queries(vectors, feats.single_labels(), names, feats.paths, None, source, None, label_names(source),
                   skipped)


def search(index_file: str | Path, query: list[str], k: int, setup: EvalSetup, on: str = "h",
           checkpoint: str | None = None) -> SearchResult:
    """The ``k`` nearest index images of every query by cosine similarity of h (or z); scores with labels."""
    if k < 1:
        raise InputError(f"--k must be >= 1, got {k}")
    index = load_embeddings(index_file)
    index_vectors = index.vectors(on)
    queries = open_queries(query, index, on, setup, checkpoint)
    device = pick_device(setup.device)  # the similarity matmuls run there (a GPU for large collections)
    exclude = None if queries.exclude is None else queries.exclude.to(device)
    scores, rows = nearest(index_vectors.to(device), queries.vectors.to(device), k, exclude)
    scores, rows = scores.cpu(), rows.cpu()
    labels, metrics = search_scores(index.labels, index.classes, queries.labels, queries.classes, rows, k)
    queries = queries._replace(labels=labels, classes=queries.classes if index.classes is None else index.classes)
    return SearchResult(queries, index, scores, rows, metrics)


def save_sheet(result: SearchResult, out: Path, max_queries: int = 8, cell: int = 96,
               sources: tuple[ImageSource, ImageSource] | None = None) -> int:
    """A contact sheet: one row per query (up to ``max_queries``), the query then its results with scores.

    Returns the number of rows drawn. Results and queries are drawn from ``sources`` (default:
    :func:`sheet_sources`: queries read from a .npz file from that file's dataset); an image that can no longer
    be read is drawn as an empty frame.
    """
    index_source, query_source = sources if sources is not None else sheet_sources(result)
    result_picture = picture_loader(index_source)
    query_picture = picture_loader(query_source)
    n = min(max_queries, len(result.queries.paths))
    rows: list[SheetRow] = []
    for i in range(n):
        hits = [(result_picture(hit["path"]), f"{hit['rank']}: {hit['score']:.3f}") for hit in result.results(i)]
        rows.append((query_picture(result.queries.paths[i]), hits))
    draw_sheet(rows, out, cell)
    return n
