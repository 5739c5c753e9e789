"""Nearest neighbours by cosine similarity against a brute-force NumPy reference."""

import numpy as np
import pytest
import torch

from simclr.errors import InputError
from simclr.retrieval.nearest import nearest, unit_rows


def _reference(index: np.ndarray, queries: np.ndarray, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
    a = index / np.linalg.norm(index, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    s = q @ a.T
    if exclude is not None:
        s[np.arange(len(q)), exclude] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), order


@pytest.mark.parametrize("chunk", [3, None])
def test_nearest_matches_brute_force(chunk: int) -> None:
    rng = np.random.default_rng(0)
    index, queries = rng.normal(size=(50, 8)), rng.normal(size=(11, 8))
    scores, rows = nearest(torch.tensor(index), torch.tensor(queries), 4, chunk=chunk)
    ref_scores, ref_rows = _reference(index, queries, 4)
    np.testing.assert_array_equal(rows.numpy(), ref_rows)
    np.testing.assert_allclose(scores.numpy(), ref_scores, rtol=1e-5)
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first
    unit = nearest(unit_rows(torch.tensor(index)), torch.tensor(queries), 4, chunk=chunk, index_is_unit=True)
    np.testing.assert_array_equal(unit[1].numpy(), ref_rows)  # an index normalised beforehand: the same
    np.testing.assert_allclose(unit[0].numpy(), ref_scores, rtol=1e-5)


def test_a_collection_against_itself_skips_each_image_itself() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 6))
    plain = nearest(torch.tensor(x), torch.tensor(x), 3)[1]
    assert (plain[:, 0] == torch.arange(20)).all()  # each image is its own best match ...
    scores, rows = nearest(torch.tensor(x), torch.tensor(x), 3, exclude=torch.arange(20), chunk=7)
    ref_scores, ref_rows = _reference(x, x, 3, exclude=np.arange(20))
    np.testing.assert_array_equal(rows.numpy(), ref_rows)  # ... unless excluded
    np.testing.assert_allclose(scores.numpy(), ref_scores, rtol=1e-5)
    assert not (rows == torch.arange(20).unsqueeze(1)).any()


def test_k_larger_than_the_index_and_dimension_mismatch() -> None:
    scores, rows = nearest(torch.eye(3), torch.ones(2, 3), 10)
    assert rows.shape == scores.shape == (2, 3)
    with pytest.raises(InputError, match="dimensions"):
        nearest(torch.eye(3), torch.ones(2, 4), 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nearest_on_the_gpu_matches_the_cpu() -> None:
    g = torch.Generator().manual_seed(2)
    index, queries = torch.randn(300, 16, generator=g), torch.randn(40, 16, generator=g)
    cpu = nearest(index, queries, 5, exclude=torch.arange(40))
    gpu = nearest(index.cuda(), queries.cuda(), 5, exclude=torch.arange(40).cuda())
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=1e-4, atol=1e-5)
    assert torch.equal(gpu[1].cpu(), cpu[1])
