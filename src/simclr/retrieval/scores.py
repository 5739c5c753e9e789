"""Retrieval scores of a search whose queries are labelled: precision@1, precision@k and recall@k, the
queries' labels matched to the index's by class name."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from simclr.errors import InputError


def as_index_labels(query_labels: np.ndarray, query_classes: tuple[str, ...] | None,
                    index_classes: tuple[str, ...] | None) -> np.ndarray:
    """The queries' labels in the index's numbering, matched by class name (-1 for a class the index does not
    have, and for unlabeled queries); unchanged when either side's class names are not known."""
    if query_classes is None or index_classes is None or query_classes == index_classes:
        return query_labels
    at = {name: i for i, name in enumerate(index_classes)}
    table = np.asarray([at.get(name, -1) for name in query_classes] + [-1], dtype=np.int64)
    return table[np.where(query_labels >= 0, query_labels, len(query_classes))]


def retrieval_scores(index_labels: np.ndarray, query_labels: np.ndarray,
                     rows: torch.Tensor) -> dict[str, float]:
    """Precision@1, precision@k (share of the k results in the query's class) and recall@k (at least one is).

    Only labelled queries count; every result's label is compared, an unlabeled result never matches.
    """
    labelled = query_labels >= 0
    if not labelled.any():
        raise InputError("retrieval scores need labelled queries")
    # the labels may be memory-mapped: only the results' are read
    chosen = rows[torch.as_tensor(labelled)].numpy()
    found = torch.from_numpy(np.where(chosen >= 0, np.asarray(index_labels)[np.maximum(chosen, 0)], -2))
    same = found == torch.as_tensor(query_labels[labelled]).unsqueeze(1)
    k = rows.shape[1]
    return {"k": k, "queries": int(labelled.sum()), "precision_at_1": float(same[:, 0].float().mean()),
            f"precision_at_{k}": float(same.float().mean()),
            f"recall_at_{k}": float(same.any(1).float().mean())}


def search_scores(index_labels: np.ndarray, index_classes: tuple[str, ...] | None, query_labels: np.ndarray,
                  query_classes: tuple[str, ...] | None, rows: torch.Tensor,
                  k: int) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The queries' labels in the index's numbering (:func:`as_index_labels`) and the scores of their search
    for ``k`` results (``rows`` [Q, k'], k' <= k): None when nothing can be scored (unlabeled queries or
    index).

    Labelled queries of classes the index does not have are counted (``queries_of_other_classes``), not
    scored: no result can have their class.
    """
    labels = as_index_labels(query_labels, query_classes, index_classes)
    other = int(((query_labels >= 0) & (labels < 0)).sum())
    metrics: dict[str, Any] | None = None
    if (labels >= 0).any() and (index_labels >= 0).any():
        metrics = retrieval_scores(index_labels, labels, rows)
    elif other:  # labelled queries, none of a class the index has
        metrics = {"k": k, "queries": 0}
    if other and metrics is not None:
        metrics["queries_of_other_classes"] = other
    return labels, metrics
