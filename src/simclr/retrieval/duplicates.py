"""Near-duplicates in an embedded collection: groups of images whose embeddings are almost the same.

Two images are linked when one is among the other's ``k`` nearest (cosine similarity of h, or z) with a
similarity of at least ``threshold``. Links are taken most similar first: two ungrouped images start a group,
whose first image (the lower row) is the one to keep; an ungrouped image joins the group of the image it is
linked to only when it is as similar to that group's first image too. So every member of a group is within the
threshold of the image kept, and groups never grow by chains of small steps into one giant group (on the
compressed similarities of a weak encoder, connected components of the links would join most of a collection).
The nearest-neighbour search runs in bounded memory (:func:`~simclr.retrieval.nearest.nearest`), so any
collection size works; ``k`` bounds how many links one image can have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from simclr.errors import InputError
from simclr.retrieval.nearest import nearest, unit_rows
from simclr.retrieval.results import Hit
from simclr.retrieval.sheet import Pictures, SheetRow

DEFAULT_THRESHOLD = 0.99
"""The least cosine similarity of h that makes two images near-duplicates by default: the similarities of h
(the average of non-negative activations) crowd near 1; with a CIFAR-10 encoder this finds three in four
edited copies while few images are grouped with another class (BENCHMARKS.md)."""
DEFAULT_Z_THRESHOLD = 0.95
"""The default on z, which spreads wider: about as few images grouped with another class as h at 0.99
(BENCHMARKS.md)."""


def default_threshold(on: str) -> float:
    """The default threshold on h (``on="h"``) or z."""
    return DEFAULT_Z_THRESHOLD if on == "z" else DEFAULT_THRESHOLD


class Group(NamedTuple):
    """One group of near-duplicates: its rows in the collection (the first is the one to keep, the rest in row
    order) and each row's cosine similarity to that first one (1.0 for itself)."""

    rows: list[int]
    scores: list[float]


class Duplicates(NamedTuple):
    """The groups of near-duplicates, and every image's cosine similarity to its most similar other image [N]
    (its distribution helps to choose a threshold)."""

    groups: list[Group]
    nearest: torch.Tensor


def duplicate_groups(vectors: torch.Tensor, threshold: float, k: int = 10) -> Duplicates:
    """The groups of near-duplicates among the rows of ``vectors`` [N, F], largest first (then by first row).

    Args:
        vectors: Embeddings, one row per image (any scale: compared by cosine similarity).
        threshold: The least cosine similarity that links two images, in (-1, 1].
        k: How many nearest neighbours of each image are considered for links.

    Returns:
        Every group of two or more linked images (images without a near-duplicate are in none), and each
        image's similarity to its nearest other image.
    """
    check_links(threshold, k)
    n = len(vectors)
    if n < 2:
        return Duplicates([], torch.full((n,), float("nan")))
    unit = unit_rows(vectors)
    scores, rows = nearest(unit, unit, k, exclude=torch.arange(n, device=vectors.device), index_is_unit=True)
    unit = unit.cpu()

    def similarity(row: int, others: list[int]) -> list[float]:
        return (unit[others] @ unit[row]).tolist()

    return link_groups(torch.arange(n), scores.cpu(), rows.cpu(), threshold, similarity)


def check_links(threshold: float, k: int) -> None:
    """InputError unless ``threshold`` is in (-1, 1] and ``k`` >= 1."""
    if not -1 < threshold <= 1:
        raise InputError(f"the similarity threshold must be in (-1, 1], got {threshold}")
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")


def link_groups(ids: torch.Tensor, scores: torch.Tensor, rows: torch.Tensor, threshold: float,
                similarity: Callable[[int, list[int]], list[float]]) -> Duplicates:
    """:func:`duplicate_groups` from each image's nearest neighbours: image ``ids[i]``'s neighbours are
    ``rows[i]`` (ids, -1 none) with cosine similarities ``scores[i]``, best first; ``similarity(id, ids)``
    compares one image with others."""
    sims, neighbours, owners = scores.tolist(), rows.tolist(), ids.tolist()
    links = sorted(((sims[i][j], owners[i], neighbours[i][j])
                    for i, j in (scores >= threshold).nonzero().tolist() if neighbours[i][j] >= 0),
                   key=lambda link: (-link[0], min(link[1:]), max(link[1:])))
    keeper: dict[int, int] = {}  # image -> the first image of its group
    members: dict[int, list[int]] = {}  # first image -> its group
    for _, i, j in links:  # most similar first
        if i in keeper and j in keeper:
            continue
        if i not in keeper and j not in keeper:
            first = min(i, j)
            keeper[i] = keeper[j] = first
            members[first] = [first, max(i, j)]
            continue
        new, old = (j, keeper[i]) if i in keeper else (i, keeper[j])
        if similarity(new, [old])[0] >= threshold:  # joins only a group whose first image is as close
            keeper[new] = old
            members[old].append(new)
    groups = []
    for first, group in members.items():
        group = [first, *sorted(group[1:])]
        groups.append(Group(group, [round(float(x), 4) for x in similarity(first, group)]))
    groups.sort(key=lambda g: (-len(g.rows), g.rows[0]))
    nearest = scores[:, 0].float() if scores.shape[1] else torch.full((len(ids),), float("nan"))
    return Duplicates(groups, nearest)


class NearDuplicates(list[list[Hit]]):
    """The groups of near-duplicates of a collection, largest first, each a list of :class:`Hit` (the first
    the one to keep, each scored by its cosine similarity to that one), with the ``threshold`` that made them,
    the number of ``images`` and every image's similarity to its most similar other image (``nearest``
    [N])."""

    def __init__(self, groups: list[list[Hit]], threshold: float, nearest: torch.Tensor) -> None:
        super().__init__(groups)
        self.threshold = threshold
        self.nearest = nearest

    def rows(self) -> list[dict[str, Any]]:
        """Every grouped image, one row each (group, rank, keep, path, label, score): the rows of the CSV
        file."""
        return [{"group": g + 1, "rank": h.rank, "keep": int(h.rank == 1), "path": h.path, "label": h.label,
                 "score": h.score} for g, group in enumerate(self) for h in group]

    def summary(self, index: str) -> dict[str, Any]:
        """The JSON object of ``simclr duplicates --json`` (``index``: the collection's file as named): the
        counts, the median, 90th and 99th percentile of ``nearest`` (None for one image) and :meth:`rows`."""
        images = len(self.nearest)
        nearest = self.nearest.numpy()
        spread = {f"q{q}": round(float(np.quantile(nearest, q / 100)), 4) for q in (50, 90, 99)} \
            if images > 1 else None  # one image has no nearest other
        return {"index": index, "images": images, "threshold": self.threshold, "groups": len(self),
                "duplicates": sum(len(g) - 1 for g in self), "nearest_similarity": spread,
                "rows": self.rows()}


def near_duplicates(vectors: torch.Tensor, paths: list[str], labels: np.ndarray, threshold: float,
                    k: int = 10) -> NearDuplicates:
    """:func:`duplicate_groups` of a collection's ``vectors`` as :class:`Hit` of its ``paths`` and
    ``labels``."""
    found = duplicate_groups(vectors, threshold, k)
    groups = [[Hit(r + 1, paths[i], int(labels[i]), s, i) for r, (i, s) in enumerate(zip(g.rows, g.scores))]
              for g in found.groups]
    return NearDuplicates(groups, threshold, found.nearest)


def group_rows(groups: list[list[Hit]], pictures: Pictures, max_groups: int = 8,
               most: int = 8) -> list[SheetRow]:
    """A contact sheet's rows: the ``max_groups`` largest groups, each the image kept then up to ``most``
    others captioned with their similarity to it."""
    return [(pictures(g[0].path), [(pictures(h.path), f"{h.score:.3f}") for h in g[1:most + 1]])
            for g in groups[:max_groups]]
