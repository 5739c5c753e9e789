"""A contrastive loss with its settings bound: what the training step calls on its embeddings.

The step needs one callable ``(z_local, z_global, offset) -> ContrastiveOutput``; :class:`Objective` binds
the loss's name, temperature, normalisation, margin and semi-hard mining once (``simclr.build.build_loss``
makes it from a config), so the step knows nothing of which loss it trains with. Single-process NT-Xent
(``z_global is z_local``) takes the one-batch :func:`~simclr.losses.ntxent.nt_xent`, which gives the same
loss.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from simclr.losses.alternatives import LOSSES
from simclr.losses.ntxent import ContrastiveOutput, nt_xent

__all__ = ["Objective"]


@dataclass(frozen=True)
class Objective:
    """Callable ``objective(z_local, z_global, offset) -> ContrastiveOutput`` (the layout of
    :func:`~simclr.losses.ntxent.nt_xent_global`).

    Attributes:
        name: a key of :data:`~simclr.losses.alternatives.LOSSES`.
        temperature: NT-Xent and NT-Logistic temperature.
        normalize: l2-normalise z before the similarities.
        margin: margin of the triplet loss.
        semi_hard: semi-hard negative mining (NT-Logistic and margin triplet only).
    """

    name: str = "nt_xent"
    temperature: float = 0.5
    normalize: bool = True
    margin: float = 1.0
    semi_hard: bool = False

    def __post_init__(self) -> None:
        if self.name not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.name!r}")

    def __call__(self, z_local: Tensor, z_global: Tensor, offset: int) -> ContrastiveOutput:
        if self.name == "nt_xent" and z_global is z_local:
            n = z_local.shape[0] // 2
            return nt_xent(z_local[:n], z_local[n:], self.temperature, normalize=self.normalize)
        return LOSSES[self.name](z_local, z_global, offset, temperature=self.temperature, margin=self.margin,
                                 normalize=self.normalize, semi_hard=self.semi_hard)
