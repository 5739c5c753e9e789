"""Nearest neighbours in a collection (:mod:`~simclr.retrieval.collection`) by cosine similarity: exact
(blocks of the memory-mapped vectors), or approximate with a faiss index, HNSW or IVF-PQ, whose candidates
are re-ranked exactly from the memory-mapped vectors.

An index covers the rows the collection had when it was built; rows added since (the "tail") are searched
exactly, and deleted rows are never returned, so the index stays in step with the collection until it is
rebuilt. Vectors are compared after :func:`prepare`: by default whitened (:func:`fit_transform`: the
collection's mean subtracted, then PCA whitening with shrinkage, fitted on the collection and stored with its
index; BENCHMARKS.md measured it against plain and centred cosine similarity), then scaled to unit length.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from simclr.errors import InputError, missing_extra
from simclr.retrieval.collection import Collection

KINDS = ("auto", "exact", "hnsw", "ivfpq")
EXACT_UP_TO = 200_000
"""``auto`` searches collections up to this many images exactly (a query reads every vector: milliseconds)."""
HNSW_MEMORY_SHARE = 0.3
"""``auto`` builds HNSW (which holds a copy of every vector) while it takes at most this share of the
memory, else IVF-PQ (at most 64 bytes an image)."""
BLOCK = 1 << 16
"""Rows read from the vectors at a time."""
CACHE_BYTES = 1 << 30
"""Exact search holds the prepared vectors in memory up to this size (else reads them block by block)."""
RERANK_BLOCK = 1 << 24
"""Candidate vector values held at once while re-ranking (64 MiB of float32)."""
RERANK = 10
"""IVF-PQ re-ranks this many candidates per result (exactly, from the vectors) unless its build tuned
another number."""


def faiss_module() -> Any:
    """faiss, or a :class:`~simclr.errors.MissingExtra` naming the 'index' extra (exact search needs no
    faiss)."""
    try:
        import faiss
    except ImportError:
        raise missing_extra("an HNSW or IVF-PQ index (faiss)", "index") from None
    return faiss


FEW_QUERIES = 16
"""Up to this many queries, a faiss index searches on one thread (starting a team of threads for one query
costs more than it saves: 8 ms against 0.9 ms a query at 10M x 128 in BENCHMARKS.md); more use every core."""


TRANSFORMS = ("whiten", "centre", "none")
WHITEN_EPS = 0.1
"""Whitening's shrinkage, relative to the largest eigenvalue of the collection's covariance: the best of
BENCHMARKS.md's study on every collection of 1,000 images or more..."""
WHITEN_EPS_SMALL = 1.0
"""...and below that (it never lost to plain cosine similarity there)."""
SMALL = 1000


class Transform(NamedTuple):
    """What vectors go through before their cosine similarity: ``(x - mean) @ projection`` (either None:
    left out), ``kind`` whiten, centre or none."""

    kind: str
    mean: np.ndarray | None = None
    projection: np.ndarray | None = None
    eps: float | None = None


def prepare(x: np.ndarray | torch.Tensor, transform: Transform | None) -> torch.Tensor:
    """Vectors as compared: float32, through ``transform`` (None: as they are), unit length."""
    if isinstance(x, torch.Tensor):
        t = x.detach().to("cpu", torch.float32)
    else:
        t = torch.from_numpy(np.array(x, np.float32))  # a copy: memory-mapped rows are read-only
    if transform is not None and transform.mean is not None:
        t = t - torch.from_numpy(transform.mean)
    if transform is not None and transform.projection is not None:
        t = t @ torch.from_numpy(transform.projection)
    return torch.nn.functional.normalize(t, dim=1)


def fit_transform(vectors: np.ndarray, live: np.ndarray, kind: str = "whiten") -> Transform:
    """``kind`` fitted on the live rows of ``vectors`` (read block by block): their mean, and for whiten the
    projection whose column i is ``v_i / sqrt(l_i + eps * l_1)`` (``v_i`` the unit eigenvectors of their
    covariance, ``l_1 >= ... >= l_F`` its eigenvalues; eps :data:`WHITEN_EPS`, or :data:`WHITEN_EPS_SMALL`
    for fewer than :data:`SMALL` images)."""
    if kind not in TRANSFORMS:
        raise InputError(f"unknown transform {kind!r}: choose from {', '.join(TRANSFORMS)}")
    if kind == "none":
        return Transform("none")
    dim, n = vectors.shape[1], max(1, int(live.sum()))
    total = np.zeros(dim, np.float64)
    moments = np.zeros((dim, dim), np.float64)
    for start in range(0, len(vectors), BLOCK):
        block = np.asarray(vectors[start:start + BLOCK], np.float64)[live[start:start + BLOCK]]
        total += block.sum(0)
        if kind == "whiten":
            moments += block.T @ block
    mean = total / n
    if kind == "centre":
        return Transform("centre", mean.astype(np.float32))
    values, axes = np.linalg.eigh(moments / n - np.outer(mean, mean))
    values, axes = np.clip(values[::-1], 0, None), axes[:, ::-1]
    eps = WHITEN_EPS if n >= SMALL else WHITEN_EPS_SMALL
    shrink = eps * values[0] if values[0] > 0 else 1.0
    projection = axes / np.sqrt(values + shrink)
    return Transform("whiten", mean.astype(np.float32), projection.astype(np.float32), eps)


def choose_kind(rows: int, dim: int, memory: int) -> str:
    """What ``auto`` builds for ``rows`` vectors of ``dim`` on a machine with ``memory`` bytes."""
    if rows <= EXACT_UP_TO:
        return "exact"
    return "hnsw" if rows * (dim * 4 + 32 * 2 * 4) <= HNSW_MEMORY_SHARE * memory else "ivfpq"


def memory_bytes() -> int:
    """This machine's physical memory."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


class Searcher:
    """Searches one generation of a collection, on h or z, exactly or through its faiss ``index`` (built over
    its first ``info["rows"]`` rows; the others searched exactly).

    ``param``: the index's search effort (HNSW efSearch, IVF nprobe), by default the one tuned at build time
    to reach its recall target.
    """

    def __init__(self, collection: Collection, on: str = "h", index: Any = None,
                 info: dict[str, Any] | None = None, transform: Transform | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.collection = collection
        self.device = torch.device(device)  # where exact search runs (the faiss indexes run on the CPU)
        self.on = on
        self.vectors = collection.vectors(on)
        self.index = index
        self.info = info or {"kind": "exact", "rows": 0}
        self.transform: Transform = transform or Transform("none")
        self.kind: str = self.info["kind"]
        self.covered = int(self.info.get("rows", 0)) if index is not None else 0
        self.param = int(self.info.get("param") or 64)
        self.rerank = int(self.info.get("rerank") or RERANK)
        self._cache: torch.Tensor | None = None
        self._selector: Any = None
        if index is not None and not collection.live[:self.covered].all():  # deleted rows the index holds
            faiss = faiss_module()
            live = np.packbits(collection.live[:self.covered], bitorder="little")
            self._selector = (faiss.IDSelectorBitmap(len(live), faiss.swig_ptr(live)), live)  # keeps `live`

    def successor(self, collection: Collection) -> Searcher:
        """This searcher for a later generation of its collection, with the same index and transform and
        the same vectors file (rows added and deleted since): what it has loaded and prepared is kept."""
        after = Searcher(collection, self.on, self.index, self.info, self.transform, self.device)
        after.param, after.rerank = self.param, self.rerank
        cache = self._cache
        if cache is not None and collection.rows > len(cache):
            added = prepare(after.vectors[len(cache):], self.transform).to(self.device)
            cache = torch.cat([cache, added])
        after._cache = cache
        return after

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def _cache_limit(self) -> int:
        """The most bytes of prepared vectors exact search keeps: :data:`CACHE_BYTES` in memory, half the
        free memory of a GPU."""
        if self.device.type == "cuda":
            return int(torch.cuda.mem_get_info(self.device)[0] // 2)
        return CACHE_BYTES

    def _prepared(self) -> torch.Tensor:
        """Every row prepared, on the searcher's device (built block by block: never a second copy of the
        collection in memory)."""
        return torch.cat([prepare(self.vectors[lo:lo + BLOCK], self.transform).to(self.device)
                          for lo in range(0, self.collection.rows, BLOCK)])

    def _exact(self, q: torch.Tensor, k: int, start: int, exclude: np.ndarray | None) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
        """The best ``k`` of rows ``start``.. for prepared queries ``q``: scores and rows (-1: none)."""
        n, dev = self.collection.rows, self.device
        q = q.to(dev)
        best_s = torch.full((len(q), k), -torch.inf, device=dev)
        best_r = torch.full((len(q), k), -1, dtype=torch.int64, device=dev)
        if start == 0 and self._cache is None and n * self.dim * 4 <= self._cache_limit():
            self._cache = self._prepared()
        for lo in range(start, n, BLOCK):
            hi = min(n, lo + BLOCK)
            cached = self._cache
            x = cached[lo:hi] if cached is not None else prepare(self.vectors[lo:hi], self.transform).to(dev)
            sims = q @ x.T
            live = self.collection.live[lo:hi]
            if not live.all():
                sims[:, torch.from_numpy(~live).to(dev)] = -torch.inf
            if exclude is not None:
                hit = (exclude >= lo) & (exclude < hi)
                rows_hit = torch.from_numpy(np.flatnonzero(hit)).to(dev)
                sims[rows_hit, torch.from_numpy(exclude[hit] - lo).to(dev)] = -torch.inf
            s, r = sims.topk(min(k, hi - lo), dim=1)
            best_s, order = torch.cat([best_s, s], 1).topk(k, dim=1)
            best_r = torch.cat([best_r, r + lo], 1).gather(1, order)
        best_r[best_s == -torch.inf] = -1
        return best_s.cpu(), best_r.cpu()

    def _candidates(self, q: torch.Tensor, c: int) -> np.ndarray:
        """The index's ``c`` candidates (rows, -1 none) for prepared queries ``q``, deleted rows excluded."""
        faiss = faiss_module()
        sel = None if self._selector is None else self._selector[0]
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.param, c), sel=sel)
        else:
            params = faiss.SearchParametersIVF(nprobe=self.param, sel=sel)
        # per calling thread: a server's concurrent requests each search on one
        faiss.omp_set_num_threads(1 if len(q) <= FEW_QUERIES else len(os.sched_getaffinity(0)))
        _, rows = self.index.search(q.numpy(), c, params=params)
        return rows

    def _rerank(self, q: torch.Tensor, rows: np.ndarray, k: int,
                transform: Transform | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The best ``k`` of each query's candidate ``rows``, scored exactly from the vectors."""
        flat = np.unique(rows[rows >= 0])
        if len(flat) == 0:
            return torch.full((len(q), k), -torch.inf), torch.full((len(q), k), -1, dtype=torch.int64)
        # sorted rows: the reads go forward through the file
        x = prepare(self.vectors[flat], self.transform if transform is None else transform)
        at = torch.as_tensor(np.searchsorted(flat, np.maximum(rows, 0)))
        step = max(1, RERANK_BLOCK // max(1, rows.shape[1] * x.shape[1]))  # bounded memory: [step, c, D]
        sims = torch.cat([torch.bmm(x[at[i:i + step]], q[i:i + step].unsqueeze(2)).squeeze(2)
                          for i in range(0, len(q), step)])
        sims[torch.as_tensor(rows < 0)] = -torch.inf
        kk = min(k, rows.shape[1])
        s, order = sims.topk(kk, dim=1)
        r = torch.as_tensor(rows).gather(1, order)
        r[s == -torch.inf] = -1
        return s, r

    def search(self, queries: np.ndarray | torch.Tensor, k: int,
               exclude: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine similarities and rows [Q, k'] of each query's k' = min(k, images) most similar images of
        the collection, best first (rows -1 where there are fewer); ``exclude`` [Q]: a row each query may not
        return (-1: none)."""
        if len(self.collection) == 0:
            raise InputError(f"{self.collection.folder} holds no images")
        shape = tuple(queries.shape)
        if len(shape) != 2 or shape[1] != self.dim:
            raise InputError(f"the queries have {shape[-1]} dimensions, the collection {self.dim}: embed "
                             "both with the same checkpoint (and both h, or both z)")
        q = prepare(queries, self.transform)
        want = min(k, len(self.collection) - (exclude is not None))
        if want < 1:
            raise InputError("the collection has too few images to return any result")
        ask = want + (exclude is not None)
        if self.index is None:
            return self._exact(q, want, 0, exclude)
        c = ask * self.rerank if self.kind == "ivfpq" else ask
        s, r = self._rerank(q, self._candidates(q, c), ask)
        if self.covered < self.collection.rows:  # images added since the index was built
            ts, tr = self._exact(q, ask, self.covered, None)
            s, order = torch.cat([s, ts], 1).topk(ask, dim=1)
            r = torch.cat([r, tr], 1).gather(1, order)
        if exclude is not None:
            mine = r == torch.as_tensor(exclude).unsqueeze(1)
            s = s.masked_fill(mine, -torch.inf)
            s, order = s.topk(want, dim=1)
            r = r.gather(1, order)
            r[s == -torch.inf] = -1
        return s, r

    def neighbours(self, k: int, progress: Callable[[int], None] | None = None, batch: int = 4096,
                   plain: bool = False) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """Every live image's ``k`` most similar other images: (its rows [N], scores [N, k], rows [N, k]),
        through the index (all against all); ``plain``: scored (and ordered) by the plain cosine similarity
        of the vectors as they are."""
        live = self.collection.live_rows()
        scores, rows = [], []
        for start in range(0, len(live), batch):
            part = live[start:start + batch]
            s, r = self.search(self.vectors[part], k, exclude=part)
            if plain:
                plain_q = prepare(self.vectors[part], None)
                s, r = self._rerank(plain_q, r.numpy(), r.shape[1], Transform("none"))
            scores.append(s)
            rows.append(r)
            if progress is not None:
                progress(len(part))
        return live, torch.cat(scores), torch.cat(rows)

    def similarity(self, row: int, others: list[int]) -> list[float]:
        """Plain cosine similarities of one row to others (not transformed: the similarity of
        near-duplicates, whose threshold is set on plain h)."""
        x = prepare(self.vectors[sorted({row, *others})], None)
        at = {r: i for i, r in enumerate(sorted({row, *others}))}
        return [float(x[at[row]] @ x[at[o]]) for o in others]
