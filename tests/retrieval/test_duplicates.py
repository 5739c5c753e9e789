"""Near-duplicate groups: who is grouped with whom, the image kept, no chains, bad settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simclr.errors import InputError
from simclr.retrieval.duplicates import duplicate_groups
from simclr.retrieval.embeddings import Embeddings
from simclr.retrieval.index import Index


def _at_angles(degrees: list[float], dim: int = 8) -> torch.Tensor:
    """Unit vectors in one plane at the given angles (cosine of two = cos of their difference), other rows of
    the remaining dimensions far from them all."""
    v = torch.zeros(len(degrees), dim)
    for i, a in enumerate(degrees):
        v[i, 0], v[i, 1] = math.cos(math.radians(a)), math.sin(math.radians(a))
    return v


def test_copies_are_grouped_with_the_first_kept_and_loners_left_out() -> None:
    v = torch.randn(12, 16, generator=torch.Generator().manual_seed(0))
    v[7] = v[2] * 3 + 0.01  # a copy (scale does not matter: cosine similarity)
    v[9] = v[2] - 0.02
    v[11] = v[4] + 0.01
    found = duplicate_groups(v, 0.99)
    assert [g.rows for g in found.groups] == [[2, 7, 9], [4, 11]]  # largest first, the lowest row kept
    first = found.groups[0]
    assert first.scores[0] == pytest.approx(1.0) and all(0.99 <= s <= 1.0 for s in first.scores)
    unit = torch.nn.functional.normalize(v, dim=1)
    sims = unit @ unit.T
    assert first.scores[1] == pytest.approx(float(sims[2, 7]), abs=1e-4)
    sims.fill_diagonal_(-2)
    torch.testing.assert_close(found.nearest, sims.max(1).values)  # every image's most similar other
    assert duplicate_groups(v * 5, 0.99).groups == found.groups


def test_groups_do_not_grow_by_chains() -> None:
    """a-b and b-c are within the threshold, a-c is not: c stays out of a's group (it is not as close to the
    image kept), so small steps never join far-apart images."""
    v = _at_angles([0, 10, 20, 90, 92])
    t = math.cos(math.radians(12))  # 10 degrees apart: linked; 20 apart: not
    groups = duplicate_groups(v, t).groups
    assert [g.rows for g in groups] == [[0, 1], [3, 4]]
    assert groups[0].scores == [pytest.approx(1.0), pytest.approx(math.cos(math.radians(10)), abs=1e-4)]
    # the most similar pair starts a group and the lower of the two is kept: here 1-2 (5 degrees), then 0
    # joins (10 degrees from 1)
    groups = duplicate_groups(_at_angles([0, 10, 15]), t).groups
    assert [g.rows for g in groups] == [[1, 0, 2]]


def test_identical_images_and_small_collections() -> None:
    v = torch.ones(6, 4) + torch.arange(6).unsqueeze(1) * 1e-4  # all near-identical
    assert [g.rows for g in duplicate_groups(v, 0.99).groups] == [[0, 1, 2, 3, 4, 5]]
    assert duplicate_groups(torch.ones(1, 4), 0.9).groups == []
    assert duplicate_groups(torch.ones(1, 4), 0.9).nearest.isnan().all()
    for threshold in (-1.0, 1.5):
        with pytest.raises(InputError, match="threshold"):
            duplicate_groups(v, threshold)
    with pytest.raises(InputError, match="k must be"):
        duplicate_groups(v, 0.9, k=0)


def test_index_duplicates_and_csv_rows() -> None:
    h = _at_angles([0, 1, 45, 90, 90.5, 91])
    emb = Embeddings(h, None, np.array([0, 0, 1, 2, 2, 3]), [f"im{i}.jpg" for i in range(6)], {})
    groups = Index(emb).duplicates(0.999, device="cpu")
    assert [[hit.path for hit in g] for g in groups] == [["im3.jpg", "im4.jpg", "im5.jpg"],
                                                         ["im0.jpg", "im1.jpg"]]
    assert [hit.rank for hit in groups[0]] == [1, 2, 3] and [hit.label for hit in groups[0]] == [2, 2, 3]
    with pytest.raises(InputError, match="no z"):
        Index(emb).duplicates(z=True, device="cpu")
    rows = Index(emb).duplicates(0.999, device="cpu").rows()
    assert [(r["group"], r["rank"], r["keep"], r["path"]) for r in rows] == [
        (1, 1, 1, "im3.jpg"), (1, 2, 0, "im4.jpg"), (1, 3, 0, "im5.jpg"), (2, 1, 1, "im0.jpg"),
        (2, 2, 0, "im1.jpg")]
