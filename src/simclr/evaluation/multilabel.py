"""Multi-label classification (PASCAL VOC2007 in the paper's transfer table): targets, loss, and 11-point mAP.

A multi-label dataset gives every image a row of codes, one per class (``ABSENT``, ``PRESENT``, or
``DIFFICULT``: the class is there only as objects marked difficult; :mod:`simclr.data.named_sets`). As VOC's
own evaluation, difficult entries count neither way: they are left out of the loss and of the average
precision. The metric is the VOC2007 devkit's 11-point interpolated average precision, averaged over the
classes (the paper reports it for VOC2007, Appendix B.8). The linear classifier is one logistic regression per
class on standardised features (full batch, L-BFGS, an l2 penalty chosen on held-out images by mAP)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from simclr.data.named_sets import DIFFICULT, PRESENT
from simclr.evaluation.linear import LinearModel, fit_lbfgs, pick_weight_decay

__all__ = ["ap11", "fit_multilabel", "is_multilabel", "map11", "multilabel_linear_eval", "multilabel_loss"]


def is_multilabel(labels: Tensor | Any) -> bool:
    """Whether ``labels`` are rows of per-class codes ``[N, C]`` rather than one class per image ``[N]``."""
    return getattr(labels, "ndim", 1) == 2


def multilabel_loss(logits: Tensor, codes: Tensor) -> Tensor:
    """Mean binary cross-entropy of ``logits [N, C]`` against ``codes [N, C]`` over the entries that are not
    ``DIFFICULT``."""
    known = codes != DIFFICULT
    target = (codes == PRESENT).to(logits.dtype)
    losses = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (losses * known).sum() / known.sum().clamp_min(1)


def ap11(scores: Tensor, codes: Tensor) -> float:
    """The VOC2007 11-point interpolated average precision of one class: the mean over recall levels
    t = 0, 0.1, ..., 1 of the highest precision reached at a recall of at least t (0 where none is).
    Difficult entries are left out; NaN when the class has no positive image."""
    known = codes != DIFFICULT
    scores, positive = scores[known].double(), (codes[known] == PRESENT).double()
    total = positive.sum()
    if total == 0:
        return float("nan")
    order = torch.argsort(scores, descending=True, stable=True)
    hits = positive[order].cumsum(0)
    precision = hits / torch.arange(1, len(order) + 1, dtype=torch.float64)
    best = []
    for k in range(11):  # recall = hits / total >= k / 10, compared exactly in whole numbers
        reached = 10 * hits >= k * total
        best.append(float(precision[reached].max()) if reached.any() else 0.0)
    return sum(best) / 11


def map11(scores: Tensor, codes: Tensor) -> float:
    """:func:`ap11` averaged over the classes that have a positive image (NaN if none has)."""
    values = [ap11(scores[:, c], codes[:, c]) for c in range(codes.shape[1])]
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


def fit_multilabel(x: Tensor, codes: Tensor, weight_decay: float, max_iter: int = 200) -> LinearModel:
    """One logistic regression per class on standardised ``x [N, D]`` (full batch, L-BFGS): minimises
    :func:`multilabel_loss` + ``weight_decay`` x the squared weights."""
    return fit_lbfgs(x, codes.shape[1], lambda logits: multilabel_loss(logits, codes), weight_decay, max_iter)


def multilabel_linear_eval(train_x: Tensor, train_codes: Tensor, test_x: Tensor, test_codes: Tensor,
                           seed: int = 0, weight_decays: Sequence[float] = (1e-6, 1e-4, 1e-2),
                           holdout: Tensor | None = None) -> dict[str, Any]:
    """Linear evaluation on frozen features of a multi-label dataset: the weight decay with the best mAP on a
    held-out tenth of the training features (or their ``holdout`` rows; the smallest of equals), refitted on
    all; test 11-point mAP."""
    best_wd = pick_weight_decay(train_x, train_codes, weight_decays, seed, fit_multilabel, map11, holdout)
    model = fit_multilabel(train_x, train_codes, best_wd)
    return {"map11": map11(model.logits(test_x), test_codes), "weight_decay": best_wd,
            "weight_decays_tried": len(weight_decays), "solver": "lbfgs"}
