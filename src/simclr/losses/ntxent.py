"""NT-Xent, the normalized temperature-scaled cross-entropy loss of SimCLR.

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020,
Section 2.1 (equation 1) and Algorithm 1. For a minibatch of N examples, each augmented twice, every
one of the 2N views is an anchor with one positive (the other view of the same example) and 2(N-1)
negatives (all other views). With cosine similarity ``s_ij`` and temperature ``tau``::

    l(i, j) = -log( exp(s_ij / tau) / sum_{k != i} exp(s_ik / tau) )
    L       = 1 / (2N) * sum_k [ l(2k-1, 2k) + l(2k, 2k-1) ]

Layout convention used throughout this module: the two views are *stacked*, not interleaved, i.e. the
2N rows are ``[z1; z2]`` and row ``i`` (``i < N``) has its positive at row ``i + N``. The loss is
invariant to that ordering.

Differences from the reference TF2 code (``tf2/objective.py``): the reference returns ``mean_over_N(loss_a +
loss_b)``, which is twice the paper's average over 2N anchors; this module returns the paper's average
(training back-propagates it times ``loss.scale``, 2 by default, as the reference). Contrastive accuracy here
ranks the positive against all 2N-1 candidates (the reference only ranks it against the N views of the other
augmentation)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ContrastiveOutput", "nt_xent", "nt_xent_global"]


class ContrastiveOutput(NamedTuple):
    """Result of a contrastive loss.

    Attributes:
        loss: Scalar tensor, the mean of the per-anchor losses; carries the autograd graph.
        accuracy: Scalar float tensor in [0, 1], the fraction of anchors whose positive has the highest
            similarity among the candidates (self excluded). Detached: for logging only.
    """

    loss: Tensor
    accuracy: Tensor


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Return the dtype the logits are computed in: at least float32 (float64 stays float64)."""
    return torch.promote_types(dtype, torch.float32)


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _positive_indices(num_local: int, offset: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Global indices of each local anchor itself and of its positive.

    Args:
        num_local: Number of local anchors 2n, stacked as ``[view1 rows; view2 rows]``.
        offset: Row of ``z_global`` where this block starts.
        device: Device of the returned index tensors.

    Returns:
        ``(self_idx, pos_idx)``, both int64 of shape [2n].
    """
    n = num_local // 2
    local = torch.arange(num_local, device=device)
    partner = torch.cat([local[n:], local[:n]])  # i < n -> i + n, i >= n -> i - n
    return local + offset, partner + offset


def similarities(z_local: Tensor, z_global: Tensor, offset: int,
                 normalize: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Similarities of each local anchor with every candidate, and where each anchor itself and its positive
    are.

    Args:
        z_local: [2n, D] anchors, stacked ``[view1; view2]``.
        z_global: [M, D] candidates; rows ``offset .. offset + 2n - 1`` are the anchors themselves.
        offset: Row of ``z_global`` where ``z_local`` starts.
        normalize: l2-normalise rows so that dot products are cosine similarities.

    Returns:
        ``(sim [2n, M]`` in at least float32, ``self_mask [2n, M]`` (True at each anchor's own column),
        ``pos_idx [2n]`` (each anchor's positive column)).
    """
    dtype = _compute_dtype(z_local.dtype)
    a = z_local.to(dtype)
    b = z_global.to(dtype)
    if normalize:
        a = F.normalize(a, dim=1)
        b = F.normalize(b, dim=1)
    sim = a @ b.T  # [2n, M]
    self_idx, pos_idx = _positive_indices(a.shape[0], offset, sim.device)
    rows = torch.arange(a.shape[0], device=sim.device)
    self_mask = torch.zeros_like(sim, dtype=torch.bool)
    self_mask[rows, self_idx] = True
    return sim, self_mask, pos_idx


def check_blocks(z_local: Tensor, z_global: Tensor, offset: int) -> None:
    """Raise ValueError unless ``z_local`` [2n, D] sits inside ``z_global`` [M, D] at row ``offset``."""
    if z_local.ndim != 2 or z_global.ndim != 2 or z_local.shape[1] != z_global.shape[1]:
        raise ValueError(f"z_local [2n, D] and z_global [M, D] must share D, got {tuple(z_local.shape)} "
                         f"and {tuple(z_global.shape)}")
    num_local = z_local.shape[0]
    if num_local == 0 or num_local % 2:
        raise ValueError(f"z_local must hold 2n >= 2 rows (two stacked views), got {num_local}")
    if offset < 0 or offset + num_local > z_global.shape[0]:
        raise ValueError(f"offset {offset} puts the local block of {num_local} rows outside z_global "
                         f"with {z_global.shape[0]} rows")


def _contrastive_from_embeddings(
    z_local: Tensor,
    z_global: Tensor,
    offset: int,
    temperature: float,
    normalize: bool,
) -> ContrastiveOutput:
    """Shared core of :func:`nt_xent` and :func:`nt_xent_global` (arguments as in :func:`similarities`).

    Returns:
        :class:`ContrastiveOutput` averaged over the 2n local anchors.
    """
    sim, self_mask, pos_idx = similarities(z_local, z_global, offset, normalize)
    logits = (sim / temperature).masked_fill(self_mask, float("-inf"))
    loss = F.cross_entropy(logits, pos_idx, reduction="mean")
    with torch.no_grad():
        accuracy = (logits.argmax(dim=1) == pos_idx).to(sim.dtype).mean()
    return ContrastiveOutput(loss=loss, accuracy=accuracy)


def nt_xent(
    z1: Tensor,
    z2: Tensor,
    temperature: float = 0.5,
    *,
    normalize: bool = True,
) -> ContrastiveOutput:
    """NT-Xent loss of SimCLR over one (local) batch (Section 2.1, Algorithm 1).

    The two views are stacked into a [2N, D] matrix, one matmul gives all pairwise similarities, the
    self-similarity is masked out with ``-inf`` and a cross-entropy picks out the positive. Logits are
    computed in float32 (or float64 for float64 inputs) whatever the input dtype, so bf16/fp16
    projections under autocast are safe. The result lives on the inputs' device and keeps the graph.

    Args:
        z1: [N, D] projections of the first views.
        z2: [N, D] projections of the second views; ``z1[i]`` and ``z2[i]`` form a positive pair.
        temperature: Softmax temperature tau > 0. Default 0.5, the value used for CIFAR-10
            (Appendix B.9); the ImageNet runs use 0.1 (Table 5 / Section 5.1).
        normalize: l2-normalise the projections first so that similarities are cosine (Section 2.1,
            ``sim(u, v) = u.v / (|u||v|)``; Table 5 shows normalisation matters).

    Returns:
        :class:`ContrastiveOutput` with the loss averaged over all 2N anchors and the contrastive
        accuracy over the 2N - 1 candidates of each anchor. For identical embeddings the loss is
        ``log(2N - 1)``.

    Raises:
        ValueError: if shapes disagree, are not 2-D, the batch is empty, or ``temperature <= 0``.
    """
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must both be [N, D] with equal shapes, got {tuple(z1.shape)} "
                         f"and {tuple(z2.shape)}")
    if z1.shape[0] == 0:
        raise ValueError("nt_xent needs at least one pair (N >= 1)")
    _check_temperature(temperature)
    z = torch.cat([z1, z2], dim=0)
    return _contrastive_from_embeddings(z, z, 0, temperature, normalize)


def nt_xent_global(
    z_local: Tensor,
    z_global: Tensor,
    offset: int,
    temperature: float = 0.5,
    *,
    normalize: bool = True,
) -> ContrastiveOutput:
    """NT-Xent with negatives gathered from every device (Section 2.1 and "Global BN", Section 2.2).

    Each local anchor is compared with all ``2nW`` gathered views, itself excluded; its positive is
    found at the right global row. Averaging the returned loss over the W ranks (as gradient
    all-reduce does) gives the NT-Xent loss of the whole global batch of ``nW`` pairs.

    ``z_global`` must contain ``z_local`` at rows ``offset .. offset + 2n - 1``; this is not checked.
    For gradients to reach the local parameters through the candidate side too, the local slice of
    ``z_global`` should carry the graph (e.g. an all-gather whose own slice is ``z_local``).

    Args:
        z_local: [2n, D] this rank's projections stacked as ``[view1 rows; view2 rows]``.
        z_global: [2nW, D] the concatenation over the W ranks of each rank's stacked block.
        offset: ``rank * 2n``, the row of ``z_global`` where this rank's block starts.
        temperature: Softmax temperature tau > 0 (see :func:`nt_xent`).
        normalize: l2-normalise first so that similarities are cosine (see :func:`nt_xent`).

    Returns:
        :class:`ContrastiveOutput` averaged over the 2n local anchors. With W = 1 and ``offset=0``
        this equals ``nt_xent(z_local[:n], z_local[n:])`` exactly.

    Raises:
        ValueError: on inconsistent shapes or offset, or ``temperature <= 0``.
    """
    check_blocks(z_local, z_global, offset)
    _check_temperature(temperature)
    return _contrastive_from_embeddings(z_local, z_global, offset, temperature, normalize)
