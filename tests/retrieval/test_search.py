"""Nearest neighbours by cosine similarity against a brute-force NumPy reference; retrieval scores by hand;
the embeddings reader's refusals."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from simclr.errors import InputError
from simclr.retrieval.search import load_embeddings, nearest, retrieval_scores, unit_rows


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
    np.testing.assert_array_equal(unit[1].numpy(), ref_rows)  # an index normalised beforehand: the same answer
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


def test_retrieval_scores_by_hand() -> None:
    index_labels = np.array([0, 0, 1, 1, -1])
    query_labels = np.array([0, 1, -1])
    rows = torch.tensor([[0, 2, 4], [4, 1, 0], [2, 3, 0]])
    m = retrieval_scores(index_labels, query_labels, rows)
    # query 0 (class 0): hits 0 yes, 2 no, 4 no -> p@1 1, p@3 1/3, recall 1
    # query 1 (class 1): 4 no, 1 no, 0 no -> p@1 0, p@3 0, recall 0; query 2 is unlabeled: not counted
    assert m == {"k": 3, "queries": 2, "precision_at_1": 0.5, "precision_at_3": pytest.approx(1 / 6),
                 "recall_at_3": 0.5}


def _write(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_load_embeddings_reads_what_embed_writes(tmp_path: Path) -> None:
    meta = json.dumps({"checkpoint": "/x/last.pt", "image_size": 32})
    p = _write(tmp_path / "e.npz", features=np.ones((2, 3), np.float32), labels=np.array([0, -1]),
               paths=np.array(["a.png", "b.png"]), meta=np.asarray(meta))
    e = load_embeddings(p)
    assert e.features.shape == (2, 3) and e.z is None and e.paths == ["a.png", "b.png"]
    assert e.meta["image_size"] == 32 and e.meta["file"] == str(p)
    with pytest.raises(InputError, match="no z"):
        e.vectors("z")


def test_load_embeddings_refuses_bad_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_embeddings(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable"):
        load_embeddings(junk)
    with pytest.raises(InputError, match="no labels, paths"):
        load_embeddings(_write(tmp_path / "f.npz", features=np.ones((2, 3))))
    with pytest.raises(InputError, match="do not match"):
        load_embeddings(_write(tmp_path / "m.npz", features=np.ones((2, 3)), labels=np.zeros(3),
                               paths=np.array(["a", "b"])))
    good = {"features": np.ones((2, 3)), "labels": np.zeros(2), "paths": np.array(["a", "b"])}
    for n, (change, why) in enumerate([
            ({"features": np.zeros((0, 3)), "labels": np.zeros(0), "paths": np.array([], dtype=str)}, "holds no images"),
            ({"features": np.array([[1.0, np.nan, 0], [1, 2, 3]])}, "features are not all finite"),
            ({"z": np.full((2, 4), np.inf)}, "z are not all finite"),
            ({"meta": np.asarray("[1, 2]")}, "meta entry is not a JSON object"),
            ({"meta": np.asarray('{"image_size": "big"}')}, "image_size is 'big', not a whole number"),
            ({"meta": np.asarray('{"checkpoint": 5}')}, "checkpoint is 5, not a string")]):
        with pytest.raises(InputError, match=why):
            load_embeddings(_write(tmp_path / f"bad{n}.npz", **{**good, **change}))
    pickled = _write(tmp_path / "p.npz", features=np.ones((1, 3)), labels=np.zeros(1),
                     paths=np.array([{"code": 1}], dtype=object))
    with pytest.raises(InputError, match="not a readable"):  # object arrays would need unpickling: refused
        load_embeddings(pickled)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nearest_on_the_gpu_matches_the_cpu() -> None:
    g = torch.Generator().manual_seed(2)
    index, queries = torch.randn(300, 16, generator=g), torch.randn(40, 16, generator=g)
    cpu = nearest(index, queries, 5, exclude=torch.arange(40))
    gpu = nearest(index.cuda(), queries.cuda(), 5, exclude=torch.arange(40).cuda())
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], rtol=1e-4, atol=1e-5)
    assert torch.equal(gpu[1].cpu(), cpu[1])
