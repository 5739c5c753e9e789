"""Contrastive losses (SimCLR, Section 2.1)."""

from simclr.losses.ntxent import ContrastiveOutput, nt_xent, nt_xent_global
from simclr.losses.objective import Objective

__all__ = ["ContrastiveOutput", "Objective", "nt_xent", "nt_xent_global"]
