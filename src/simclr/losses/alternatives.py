"""Alternative contrastive losses for the loss ablation of SimCLR (Chen et al. 2020, Tables 2 and 4).

With ``u`` the l2-normalised projections, ``s_ik = u_i . u_k`` the cosine similarity, ``p`` the positive
of anchor ``i`` and ``N_i`` its negatives (every candidate except ``i`` and ``p``)::

    NT-Logistic (balanced): l_i = -log sig(s_ip / tau) - 1/|N_i| sum_{k in N_i} log sig(-s_ik / tau)
    Margin triplet:         l_i = 1/|N_i| sum_{k in N_i} max(s_ik - s_ip + m, 0)

Both are averaged over the local anchors. Table 2 of the paper writes NT-Logistic with a *sum* over the
negatives; because negatives outnumber positives by 2(N-1) to 1, the paper re-weights the two terms,
and this module uses the balanced form above (a mean over the negatives) by default.

Semi-hard negative mining (Schroff et al. 2015, used for the "sh" rows of Table 4) replaces ``N_i`` by
the negatives that are less similar than the positive, ``s_ik < s_ip`` (NT-Logistic), and additionally
inside the margin, ``s_ip - m < s_ik < s_ip`` (triplet). An anchor with no such negative falls back to
its single hardest negative (largest ``s_ik``). Mining only builds boolean masks: no loops, no host sync.

Layout and ``(z_local, z_global, offset)`` as in :func:`simclr.losses.ntxent.nt_xent_global`
(single process: ``z_global = z_local, offset = 0``). The reference TF code has no such losses.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from simclr.losses.ntxent import (
    ContrastiveOutput,
    _check_temperature,
    check_blocks,
    nt_xent_global,
    similarities,
)

__all__ = ["LOSSES", "ContrastiveLoss", "margin_triplet", "nt_logistic"]


def _check_blocks(z_local: Tensor, z_global: Tensor, offset: int) -> None:
    check_blocks(z_local, z_global, offset)
    if z_global.shape[0] < 3:
        raise ValueError(f"need at least one negative, i.e. z_global with >= 3 rows, got {z_global.shape[0]}")


def _prepare(
    z_local: Tensor, z_global: Tensor, offset: int, normalize: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(sim [2n, M] in >= float32, s_ip [2n], negatives mask, self mask, global positive rows [2n])``."""
    sim, self_mask, pos_idx = similarities(z_local, z_global, offset, normalize)
    rows = torch.arange(sim.shape[0], device=sim.device)
    neg_mask = ~self_mask
    neg_mask[rows, pos_idx] = False
    return sim, sim[rows, pos_idx], neg_mask, self_mask, pos_idx


def _semi_hard(sim: Tensor, pos_sim: Tensor, neg_mask: Tensor, margin: float | None) -> Tensor:
    """Mask of semi-hard negatives; anchors without any fall back to their hardest negative."""
    with torch.no_grad():
        below = sim < pos_sim[:, None]
        if margin is not None:
            below &= sim > pos_sim[:, None] - margin
        keep = neg_mask & below
        hardest = sim.masked_fill(~neg_mask, float("-inf")).argmax(dim=1, keepdim=True)
        fallback = torch.zeros_like(neg_mask).scatter_(1, hardest, True)
        return torch.where(keep.any(dim=1, keepdim=True), keep, fallback)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Row-wise mean of ``values`` over ``mask`` (every row has at least one True)."""
    return torch.where(mask, values, torch.zeros_like(values)).sum(dim=1) / mask.sum(dim=1).to(values.dtype)


def _accuracy(scores: Tensor, self_mask: Tensor, pos_idx: Tensor) -> Tensor:
    with torch.no_grad():
        best = scores.masked_fill(self_mask, float("-inf")).argmax(dim=1)
        return (best == pos_idx).to(scores.dtype).mean()


def nt_logistic(
    z_local: Tensor,
    z_global: Tensor,
    offset: int,
    temperature: float = 0.5,
    *,
    normalize: bool = True,
    semi_hard: bool = False,
) -> ContrastiveOutput:
    """Balanced NT-Logistic loss (Table 2), optionally with semi-hard negative mining (Table 4).

    Per anchor ``i`` with positive ``p`` and negative set ``N_i``::

        l_i = -log sigmoid(s_ip / tau) - (1 / |N_i|) * sum_{k in N_i} log sigmoid(-s_ik / tau)

    i.e. Table 2's sum over negatives replaced by a mean so positive and negatives weigh equally.
    ``N_i`` is all M - 2 other candidates, or with ``semi_hard`` those with ``s_ik < s_ip`` (if none,
    the single hardest negative, largest ``s_ik``). For identical embeddings the loss is
    ``softplus(-1/tau) + softplus(1/tau)``.

    Args:
        z_local: [2n, D] this rank's projections stacked as ``[view1 rows; view2 rows]``.
        z_global: [M, D] all candidates; contains ``z_local`` at rows ``offset .. offset + 2n - 1``.
        offset: Row of ``z_global`` where ``z_local`` starts (0 in single-process use).
        temperature: Temperature tau > 0.
        normalize: l2-normalise first so that similarities are cosine.
        semi_hard: Restrict each anchor's negatives to the semi-hard ones.

    Returns:
        :class:`ContrastiveOutput`: loss averaged over the 2n local anchors (at least float32), and the
        detached contrastive accuracy (positive ranked first among all candidates but self).

    Raises:
        ValueError: on inconsistent shapes or offset, no negative at all, or ``temperature <= 0``.
    """
    _check_blocks(z_local, z_global, offset)
    _check_temperature(temperature)
    sim, pos_sim, neg_mask, self_mask, pos_idx = _prepare(z_local, z_global, offset, normalize)
    mask = _semi_hard(sim, pos_sim, neg_mask, None) if semi_hard else neg_mask
    logits = sim / temperature
    per_anchor = -F.logsigmoid(pos_sim / temperature) - _masked_mean(F.logsigmoid(-logits), mask)
    return ContrastiveOutput(loss=per_anchor.mean(), accuracy=_accuracy(logits, self_mask, pos_idx))


def margin_triplet(
    z_local: Tensor,
    z_global: Tensor,
    offset: int,
    margin: float = 1.0,
    *,
    normalize: bool = True,
    semi_hard: bool = False,
) -> ContrastiveOutput:
    """Margin triplet loss (Table 2), optionally with semi-hard negative mining (Table 4).

    Per anchor ``i`` with positive ``p`` and negative set ``N_i``::

        l_i = (1 / |N_i|) * sum_{k in N_i} max(s_ik - s_ip + margin, 0)

    ``N_i`` is all M - 2 other candidates, or with ``semi_hard`` those with
    ``s_ip - margin < s_ik < s_ip`` (if none, the single hardest negative, largest ``s_ik``). For
    identical embeddings the loss equals ``margin``.

    Args:
        z_local: [2n, D] this rank's projections stacked as ``[view1 rows; view2 rows]``.
        z_global: [M, D] all candidates; contains ``z_local`` at rows ``offset .. offset + 2n - 1``.
        offset: Row of ``z_global`` where ``z_local`` starts (0 in single-process use).
        margin: Margin m > 0.
        normalize: l2-normalise first so that similarities are cosine.
        semi_hard: Restrict each anchor's negatives to the semi-hard ones.

    Returns:
        :class:`ContrastiveOutput` as for :func:`nt_logistic`.

    Raises:
        ValueError: on inconsistent shapes or offset, no negative at all, or ``margin <= 0``.
    """
    _check_blocks(z_local, z_global, offset)
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    sim, pos_sim, neg_mask, self_mask, pos_idx = _prepare(z_local, z_global, offset, normalize)
    mask = _semi_hard(sim, pos_sim, neg_mask, margin) if semi_hard else neg_mask
    per_anchor = _masked_mean(F.relu(sim - pos_sim[:, None] + margin), mask)
    return ContrastiveOutput(loss=per_anchor.mean(), accuracy=_accuracy(sim, self_mask, pos_idx))


class ContrastiveLoss(Protocol):
    """Uniform signature of the :data:`LOSSES` entries; each ignores the knobs it does not use."""

    def __call__(self, z_local: Tensor, z_global: Tensor, offset: int, *, temperature: float = 0.5,
                 margin: float = 1.0, normalize: bool = True, semi_hard: bool = False) -> ContrastiveOutput:
        ...


def _nt_xent_entry(z_local: Tensor, z_global: Tensor, offset: int, *, temperature: float = 0.5,
                   margin: float = 1.0, normalize: bool = True, semi_hard: bool = False) -> ContrastiveOutput:
    if semi_hard:
        raise ValueError("semi-hard negative mining is not defined for nt_xent")
    return nt_xent_global(z_local, z_global, offset, temperature, normalize=normalize)


def _nt_logistic_entry(z_local: Tensor, z_global: Tensor, offset: int, *, temperature: float = 0.5,
                       margin: float = 1.0, normalize: bool = True,
                       semi_hard: bool = False) -> ContrastiveOutput:
    return nt_logistic(z_local, z_global, offset, temperature, normalize=normalize, semi_hard=semi_hard)


def _margin_triplet_entry(z_local: Tensor, z_global: Tensor, offset: int, *, temperature: float = 0.5,
                          margin: float = 1.0, normalize: bool = True,
                          semi_hard: bool = False) -> ContrastiveOutput:
    return margin_triplet(z_local, z_global, offset, margin, normalize=normalize, semi_hard=semi_hard)


LOSSES: dict[str, ContrastiveLoss] = {"nt_xent": _nt_xent_entry, "nt_logistic": _nt_logistic_entry,
                                      "margin_triplet": _margin_triplet_entry}
"""Loss name -> callable ``(z_local, z_global, offset, *, temperature, margin, normalize, semi_hard)``.

``nt_xent`` ignores ``margin`` and rejects ``semi_hard=True``; ``nt_logistic`` ignores ``margin``;
``margin_triplet`` ignores ``temperature``.
"""
