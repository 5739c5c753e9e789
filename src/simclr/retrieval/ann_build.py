"""Building a collection's index (``simclr index build``): exact, HNSW or IVF-PQ (faiss), its search effort
tuned on a sample of the collection's own images to reach a recall@10 target against exact search, written
beside the collection and named by its manifest; and opening the searcher of a collection."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from simclr.errors import InputError
from simclr.files import atomic_file
from simclr.retrieval.ann import (
    BLOCK,
    KINDS,
    TRANSFORMS,
    Searcher,
    Transform,
    choose_kind,
    faiss_module,
    fit_transform,
    memory_bytes,
    prepare,
)
from simclr.retrieval.collection import Collection
from simclr.retrieval.collection_write import CollectionWriter

RECALL_TARGET = 0.95
SAMPLE = 200
"""Images of the collection whose search is compared with exact search to measure recall@10."""
IVFPQ_LEAST = 1000
"""Fewest images an IVF-PQ index is built for (its lists and codes are trained on them)."""
TRAIN_SAMPLE = 100_000
"""Images an IVF-PQ index is trained on (a random sample)."""
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
EFFORT = {"hnsw": (16, 32, 64, 128, 256, 512, 1024), "ivfpq": (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)}
"""The search efforts tried, least first: HNSW's efSearch, IVF's nprobe."""
RERANKS = (10, 25, 60, 150)
"""IVF-PQ: candidates re-ranked per result, tried least first."""


def _ivfpq(faiss: Any, dim: int, rows: int) -> tuple[Any, dict[str, int]]:
    """An untrained IVF-PQ index: about 4 sqrt(rows) lists, product codes of 4 bits per 4 dimensions
    (faiss's fast-scan layout), searched by inner product."""
    nlist = int(2 ** round(math.log2(max(64, min(65536, 4 * math.sqrt(rows))))))
    m = next((m for m in (128, 64, 32, 16, 8, 4, 2) if dim % m == 0 and m <= max(2, dim // 4)), None)
    if m is None:
        raise InputError(f"an IVF-PQ index needs an even number of dimensions, not {dim}: use --kind hnsw")
    index = faiss.index_factory(dim, f"IVF{nlist},PQ{m}x4fs", faiss.METRIC_INNER_PRODUCT)
    return index, {"nlist": nlist, "pq_bytes": m // 2}


def _sample_rows(live: np.ndarray, size: int, seed: int) -> np.ndarray:
    rows = np.flatnonzero(live)
    return np.sort(np.random.default_rng(seed).choice(rows, min(size, len(rows)), replace=False))


def recall_at_10(searcher: Searcher, queries: np.ndarray, rows: np.ndarray | None = None,
                 truth: torch.Tensor | None = None) -> float:
    """The share of each query's 10 nearest images (exact search; ``truth``, if already known) that
    ``searcher`` returns, on average; ``rows``: the queries' own rows in the collection, left out of both (as
    if they were new images)."""
    k = min(10, len(searcher.collection) - (rows is not None))
    if truth is None:
        truth = searcher._exact(prepare(queries, searcher.transform), k, 0, rows)[1]
    found = searcher.search(queries, k, rows)[1]
    hits = sum(len(set(t.tolist()) & set(f.tolist()) - {-1}) for t, f in zip(truth, found))
    return hits / max(1, int((truth >= 0).sum()))


def _tune(searcher: Searcher, queries: np.ndarray, rows: np.ndarray, target: float) -> tuple[int, float]:
    """The least search effort that reaches ``target`` recall@10 on ``queries`` (else the most), and its
    recall; for IVF-PQ, with the fewest candidates re-ranked per result (:data:`RERANKS`) that can."""
    recall = 0.0
    k = min(10, len(searcher.collection) - 1)
    truth = searcher._exact(prepare(queries, searcher.transform), k, 0, rows)[1]  # once for every effort
    for rerank in RERANKS if searcher.kind == "ivfpq" else (1,):
        searcher.rerank = rerank
        for effort in EFFORT[searcher.kind]:
            searcher.param = effort
            recall = recall_at_10(searcher, queries, rows, truth)
            if recall >= target:
                return effort, recall
    return searcher.param, recall


def _fill(collection: Collection, kind: str, vectors: np.ndarray, fitted: Transform, info: dict[str, Any],
          seed: int, progress: Callable[[int, int], None] | None) -> Any:
    """The faiss index of ``kind`` (None for exact) over every row of ``vectors``, trained and filled."""
    if kind == "exact":
        return None
    rows, dim = collection.rows, int(vectors.shape[1])
    faiss = faiss_module()
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        info["params"] = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}
    else:
        index, info["params"] = _ivfpq(faiss, dim, rows)
        train = vectors[_sample_rows(collection.live, TRAIN_SAMPLE, seed)]
        index.train(prepare(train, fitted).numpy())
    for start in range(0, rows, BLOCK):
        index.add(prepare(vectors[start:start + BLOCK], fitted).numpy())
        if progress is not None:
            progress(min(rows, start + BLOCK), rows)
    return index


def build_index(collection: Collection, kind: str = "auto", *, on: str = "h", transform: str = "whiten",
                target: float = RECALL_TARGET, seed: int = 0,
                progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Build ``collection``'s index over its current rows, write it beside it and commit it; returns what
    the manifest records of it: kind, images, rows covered, the transform (whiten, centre or none: fitted on
    the collection, :func:`~simclr.retrieval.ann.fit_transform`), tuned search effort, recall@10 on a
    sample, build seconds. ``progress(done, total)`` is told of the rows added."""
    if kind not in KINDS:
        raise InputError(f"unknown index kind {kind!r}: choose from {', '.join(KINDS)}")
    if transform not in TRANSFORMS:
        raise InputError(f"unknown transform {transform!r}: choose from {', '.join(TRANSFORMS)}")
    if not 0 < target <= 1:
        raise InputError(f"the recall target must be in (0, 1], got {target}")
    if len(collection) == 0:
        raise InputError(f"{collection.folder} holds no images")
    began = time.perf_counter()
    vectors = collection.vectors(on)
    rows, dim = collection.rows, int(vectors.shape[1])
    chosen = choose_kind(len(collection), dim, memory_bytes()) if kind == "auto" else kind
    if chosen != "exact":
        faiss_module()  # the 'index' extra, before any work
    fitted = fit_transform(vectors, collection.live, transform)
    info: dict[str, Any] = {"kind": chosen, "asked": kind, "on": on, "rows": rows, "images": len(collection),
                            "transform": {"kind": transform, "eps": fitted.eps, "file": None}, "file": None,
                            "network": collection.meta.get("network")}
    if chosen == "ivfpq" and len(collection) < IVFPQ_LEAST:
        raise InputError(f"an IVF-PQ index needs at least {IVFPQ_LEAST:,} images to train on, not "
                         f"{len(collection):,}: use --kind exact or hnsw (auto chooses)")
    try:
        index = _fill(collection, chosen, vectors, fitted, info, seed, progress)
    except RuntimeError as exc:  # faiss's own refusals
        raise InputError(f"faiss could not build the {chosen} index: {str(exc).splitlines()[0]}") from None
    searcher = Searcher(collection, on, index, info, fitted)
    sample = _sample_rows(collection.live, SAMPLE, seed + 1)  # searched as new images: themselves left out
    if index is None:
        info["param"], info["recall_at_10"] = None, 1.0
    else:
        info["param"], recall = _tune(searcher, vectors[sample], sample, target)
        info["rerank"] = searcher.rerank
        info["recall_at_10"] = round(recall, 4)
    info["build_s"] = round(time.perf_counter() - began, 2)
    return _commit(collection, index, info, fitted)


def _commit(collection: Collection, index: Any, info: dict[str, Any], transform: Transform) -> dict[str, Any]:
    """Write the index and transform files (if any) and name them in the next generation's manifest, unless
    the collection was written anew since the build began (rows added or deleted since are fine)."""
    folder, on = collection.folder, info["on"]
    with CollectionWriter(folder) as writer:
        anew = writer.manifest["files"].get(on) != collection.manifest["files"].get(on)
        if anew or writer.rows < info["rows"]:
            raise InputError(f"{folder} was embedded anew while its index was built: build it again")
        stamp = time.time_ns()
        if index is not None:
            name = f"index-{stamp}.faiss"
            tmp = folder / f".{name}.tmp"
            faiss_module().write_index(index, str(tmp))
            tmp.rename(folder / name)
            info["file"] = name
        if transform.mean is not None:
            name = f"transform-{stamp}.npy"
            rows = [transform.mean[None]] + ([] if transform.projection is None else [transform.projection])
            with atomic_file(folder / name) as fh:
                np.save(fh, np.concatenate(rows).astype(np.float32), allow_pickle=False)
            info["transform"]["file"] = name
        writer.set_index(info)
        writer.commit()
    return info


def open_searcher(collection: Collection, on: str = "h", device: str = "cpu") -> Searcher:
    """The searcher of ``collection`` on h or z: through its index when it has one for them, else exact
    (whitened as an index would be). Exact search runs on ``device`` (a GPU: torch there, the vectors held
    in its memory when they fit in half of what is free); faiss indexes on the CPU."""
    info = collection.index_info
    if info is not None and info.get("on", "h") == on:
        transform = read_transform(collection, info)
        if info.get("file") is None:
            return Searcher(collection, on, None, info, transform, device)
        path = collection.folder / info["file"]
        faiss = faiss_module()
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise InputError(f"{path} is not a readable faiss index: {str(exc).splitlines()[0]}") from None
        if index.d != collection.vectors(on).shape[1] or index.ntotal != info.get("rows"):
            raise InputError(f"{path} does not match its collection: build it again (simclr index build)")
        return Searcher(collection, on, index, info, transform)
    transform = fit_transform(collection.vectors(on), collection.live)
    return Searcher(collection, on, None, {"kind": "exact", "rows": 0}, transform, device)


def reopen_searcher(previous: Searcher | None, collection: Collection, on: str = "h",
                    device: str = "cpu") -> Searcher:
    """The searcher of ``collection``: ``previous`` (a searcher of an earlier generation) carried over when
    the index, its transform and the vectors file are the same (rows only added or deleted since), else
    opened afresh."""
    if previous is None or previous.on != on or previous.device != torch.device(device):
        return open_searcher(collection, on, device)
    before = previous.collection
    same = (before.index_info == collection.index_info and before.folder == collection.folder
            and before.manifest["files"].get(on) == collection.manifest["files"].get(on)
            and collection.rows >= before.rows)
    return previous.successor(collection) if same else open_searcher(collection, on, device)


def read_transform(collection: Collection, info: dict[str, Any]) -> Transform:
    """The transform an index was built with (its file: the mean, then the projection's rows, if any)."""
    spec = info.get("transform") or {"kind": "none"}
    if spec.get("file") is None:
        return Transform(str(spec.get("kind", "none")))
    path = collection.folder / str(spec["file"])
    try:
        values = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable transform: {exc}") from None
    dim = collection.vectors(info.get("on", "h")).shape[1]
    shape_ok = values.ndim == 2 and values.shape[1] == dim and len(values) in (1, dim + 1)
    if values.dtype != np.float32 or not shape_ok:
        raise InputError(f"{path} does not match its collection: build the index again (simclr index build)")
    projection = values[1:] if len(values) > 1 else None
    return Transform(str(spec["kind"]), values[0], projection, spec.get("eps"))

