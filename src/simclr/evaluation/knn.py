"""Weighted k-nearest-neighbour classifier on features (Wu et al. 2018), the common cheap SSL monitor."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def knn_scores(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, num_classes: int,
               k: int = 200, temperature: float = 0.1, chunk: int = 1024) -> torch.Tensor:
    """Class scores of each query from its k most cosine-similar bank features, weighted by exp(sim / T).

    Args:
        bank: [N, D] features with labels ``bank_labels`` [N] (int64, >= 0).
        queries: [M, D] features to classify.
        num_classes: number of classes C.
        k: neighbours (capped at N); temperature: the weighting temperature.

    Returns:
        [M, C] float scores (higher = more likely).
    """
    bank = F.normalize(bank.float(), dim=1)
    queries = F.normalize(queries.float(), dim=1)
    k = min(k, len(bank))
    out = []
    for q in queries.split(chunk):
        sim, idx = (q @ bank.T).topk(k, dim=1)
        weights = (sim / temperature).exp()
        one_hot = F.one_hot(bank_labels[idx], num_classes).float()
        out.append((one_hot * weights.unsqueeze(-1)).sum(1))
    return torch.cat(out) if out else torch.zeros(0, num_classes)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor,
                  ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Fraction of rows whose true label is among the top-k scores, for each k (capped at C)."""
    out = {}
    for k in ks:
        kk = min(k, scores.shape[1])
        hit = (scores.topk(kk, dim=1).indices == labels.unsqueeze(1)).any(dim=1)
        out[f"top{k}"] = int(hit.sum()) / len(labels) if len(labels) else float("nan")  # exact: no float32
    return out


def mean_class_accuracy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of each class present in ``labels``, averaged over those classes (the paper's metric for
    Aircraft, Pets, Caltech-101 and Flowers); NaN for no rows."""
    if not len(labels):
        return float("nan")
    hit = scores.argmax(dim=1) == labels
    per_class = [int(hit[labels == c].sum()) / int((labels == c).sum()) for c in labels.unique()]
    return sum(per_class) / len(per_class)


def knn_accuracy(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor,
                 query_labels: torch.Tensor, num_classes: int, k: int = 200,
                 temperature: float = 0.1) -> dict[str, float]:
    """Top-1 and top-5 accuracy of the weighted kNN classifier, and its mean per-class top-1
    (``mean_class_top1``, the paper's metric for some transfer datasets)."""
    scores = knn_scores(bank, bank_labels, queries, num_classes, k, temperature)
    return {**topk_accuracy(scores, query_labels),
            "mean_class_top1": mean_class_accuracy(scores, query_labels)}
