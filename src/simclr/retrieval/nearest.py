"""Cosine nearest neighbours: each query's most similar rows of a collection, in bounded memory."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from simclr.errors import InputError

SIMILARITY_BLOCK = 2**26
"""Similarities held at once (256 MiB of float32): queries are taken in chunks of this over the index size."""


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit l2 norm, float32 (cosine similarity becomes a dot product)."""
    return F.normalize(x.float(), dim=1)


def nearest(index: torch.Tensor, queries: torch.Tensor, k: int, exclude: torch.Tensor | None = None,
            chunk: int | None = None, index_is_unit: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities [Q, k'] and index rows [Q, k'] of each query's k' = min(k, N) nearest rows, best
    first.

    ``exclude`` [Q] (optional): one index row per query that may not be returned (the query itself when the
    queries are the index), -1 for none. Works in chunks of queries (default: as many as keep the chunk's
    similarities within :data:`SIMILARITY_BLOCK`), so memory stays bounded for any collection size.
    ``index_is_unit``: the rows of ``index`` are already :func:`unit_rows` (a caller searching one collection
    many times normalises it once).
    """
    if index.shape[1] != queries.shape[1]:
        raise InputError(f"the queries have {queries.shape[1]} dimensions, the index {index.shape[1]}: "
                         "embed both with the same checkpoint (and both h, or both z)")
    kk = min(k, len(index) - (exclude is not None))
    if kk < 1:
        raise InputError("the index has too few images to return any result")
    a = index if index_is_unit else unit_rows(index)
    chunk = chunk or max(1, SIMILARITY_BLOCK // len(index))
    sims, rows = [], []
    for start in range(0, len(queries), chunk):
        q = unit_rows(queries[start:start + chunk])
        s = q @ a.T
        if exclude is not None:
            ex = exclude[start:start + chunk]
            hit = ex >= 0
            s[hit.nonzero().squeeze(1), ex[hit]] = float("-inf")
        top = s.topk(kk, dim=1)
        sims.append(top.values)
        rows.append(top.indices)
    return torch.cat(sims), torch.cat(rows)
