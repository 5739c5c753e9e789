"""Contrastive losses (SimCLR, Section 2.1)."""

from simclr.losses.ntxent import ContrastiveOutput, nt_xent, nt_xent_global

__all__ = ["ContrastiveOutput", "nt_xent", "nt_xent_global"]
