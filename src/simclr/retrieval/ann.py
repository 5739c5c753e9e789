"""Nearest neighbours in a collection (:mod:`~simclr.retrieval.collection`) by cosine similarity: exact
(blocks of the memory-mapped vectors), or approximate with a faiss index, HNSW or IVF-PQ, whose candidates
are re-ranked exactly from the memory-mapped vectors.

An index covers the rows the collection had when it was built; rows added since (the "tail") are searched
exactly, and deleted rows are never returned, so the index stays in step with the collection until it is
rebuilt. Vectors are compared after :func:`prepare`: the collection's mean (stored with the index)
subtracted, then scaled to unit length.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from simclr.errors import InputError
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
RERANK = 10
"""IVF-PQ re-ranks this many candidates per result (exactly, from the vectors) unless its build tuned
another number."""


def faiss_module() -> Any:
    """faiss, or an InputError saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise InputError("approximate indexes need faiss: pip install faiss-cpu (or faiss-gpu)") from None
    faiss.omp_set_num_threads(len(os.sched_getaffinity(0)))
    return faiss


def prepare(x: np.ndarray | torch.Tensor, centre: np.ndarray | None) -> torch.Tensor:
    """Vectors as compared: float32, ``centre`` subtracted (if any), unit length."""
    t = torch.from_numpy(np.array(x, np.float32))  # a copy: memory-mapped rows are read-only
    if centre is not None:
        t = t - torch.as_tensor(centre, dtype=torch.float32)
    return torch.nn.functional.normalize(t, dim=1)


def fit_centre(vectors: np.ndarray, live: np.ndarray) -> np.ndarray:
    """The mean of the live rows of ``vectors`` (read block by block), float32."""
    total = np.zeros(vectors.shape[1], np.float64)
    for start in range(0, len(vectors), BLOCK):
        block = np.asarray(vectors[start:start + BLOCK], np.float64)
        total += block[live[start:start + BLOCK]].sum(0)
    return (total / max(1, int(live.sum()))).astype(np.float32)


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
                 info: dict[str, Any] | None = None) -> None:
        self.collection = collection
        self.on = on
        self.vectors = collection.vectors(on)
        self.index = index
        self.info = info or {"kind": "exact", "rows": 0, "centre": None}
        centre = self.info.get("centre")
        self.centre = None if centre is None else np.asarray(centre, np.float32)
        self.kind: str = self.info["kind"]
        self.covered = int(self.info.get("rows", 0)) if index is not None else 0
        self.param = int(self.info.get("param") or 64)
        self.rerank = int(self.info.get("rerank") or RERANK)
        self._cache: torch.Tensor | None = None
        self._selector: Any = None

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def _exact(self, q: torch.Tensor, k: int, start: int, exclude: np.ndarray | None) -> tuple[torch.Tensor,
                                                                                             torch.Tensor]:
        """The best ``k`` of rows ``start``.. for prepared queries ``q``: scores and rows (-1: none)."""
        n = self.collection.rows
        best_s = torch.full((len(q), k), -torch.inf)
        best_r = torch.full((len(q), k), -1, dtype=torch.int64)
        if start == 0 and self._cache is None and n * self.dim * 4 <= CACHE_BYTES:
            self._cache = prepare(self.vectors, self.centre)
        for lo in range(start, n, BLOCK):
            hi = min(n, lo + BLOCK)
            x = self._cache[lo:hi] if self._cache is not None else prepare(self.vectors[lo:hi], self.centre)
            sims = q @ x.T
            dead = torch.as_tensor(~self.collection.live[lo:hi])
            sims[:, dead] = -torch.inf
            if exclude is not None:
                hit = torch.as_tensor((exclude >= lo) & (exclude < hi))
                rows_hit = torch.nonzero(hit).flatten()
                sims[rows_hit, torch.as_tensor(exclude[hit.numpy()] - lo)] = -torch.inf
            s, r = sims.topk(min(k, hi - lo), dim=1)
            best_s, order = torch.cat([best_s, s], 1).topk(k, dim=1)
            best_r = torch.cat([best_r, r + lo], 1).gather(1, order)
        best_r[best_s == -torch.inf] = -1
        return best_s, best_r

    def _candidates(self, q: torch.Tensor, c: int) -> np.ndarray:
        """The index's ``c`` candidates (rows, -1 none) for prepared queries ``q``, deleted rows excluded."""
        faiss = faiss_module()
        if self._selector is None and len(self.collection.deleted):
            live = np.packbits(self.collection.live[:self.covered], bitorder="little")
            self._selector = (faiss.IDSelectorBitmap(self.covered, faiss.swig_ptr(live)), live)
        sel = None if self._selector is None else self._selector[0]
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.param, c), sel=sel)
        else:
            params = faiss.SearchParametersIVF(nprobe=self.param, sel=sel)
        _, rows = self.index.search(q.numpy(), c, params=params)
        return rows

    def _rerank(self, q: torch.Tensor, rows: np.ndarray, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The best ``k`` of each query's candidate ``rows``, scored exactly from the vectors."""
        flat = np.unique(rows[rows >= 0])
        if len(flat) == 0:
            return torch.full((len(q), k), -torch.inf), torch.full((len(q), k), -1, dtype=torch.int64)
        x = prepare(self.vectors[flat], self.centre)  # sorted rows: the reads go forward through the file
        at = torch.as_tensor(np.searchsorted(flat, np.maximum(rows, 0)))
        sims = (q.unsqueeze(1) * x[at]).sum(-1)
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
        q = torch.as_tensor(np.asarray(queries, np.float32))
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InputError(f"the queries have {q.shape[-1]} dimensions, the collection {self.dim}: embed "
                             "both with the same checkpoint (and both h, or both z)")
        q = prepare(q, self.centre)
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

    def neighbours(self, k: int, progress: Callable[[int], None] | None = None,
                   batch: int = 4096) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        """Every live image's ``k`` most similar other images: (its rows [N], scores [N, k], rows [N, k]),
        through the index (all against all)."""
        live = self.collection.live_rows()
        scores, rows = [], []
        for start in range(0, len(live), batch):
            part = live[start:start + batch]
            s, r = self.search(self.vectors[part], k, exclude=part)
            scores.append(s)
            rows.append(r)
            if progress is not None:
                progress(len(part))
        return live, torch.cat(scores), torch.cat(rows)

    def similarity(self, row: int, others: list[int]) -> list[float]:
        """Cosine similarities of one row to others, as searches compare them."""
        x = prepare(self.vectors[sorted({row, *others})], self.centre)
        at = {r: i for i, r in enumerate(sorted({row, *others}))}
        return [float(x[at[row]] @ x[at[o]]) for o in others]
