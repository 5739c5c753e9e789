"""What a search returns: each result as a :class:`Hit`."""

from __future__ import annotations

from typing import NamedTuple


class Hit(NamedTuple):
    """One search result: its rank (1 = most similar), the image's path in the collection, its label (-1 when
    unlabeled) and the cosine similarity."""

    rank: int
    path: str
    label: int
    score: float
