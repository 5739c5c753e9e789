"""Search of a collection: the whitening transform (reference values), exact search against brute force, the
faiss indexes' recall after tuning, and an index kept in step with images added and deleted since it was
built."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simclr.errors import InputError
from simclr.retrieval.ann import Searcher, Transform, choose_kind, fit_transform, prepare
from simclr.retrieval.ann_build import build_index, open_searcher, recall_at_10
from simclr.retrieval.collection import MANIFEST, Collection
from simclr.retrieval.collection_write import CollectionWriter, create_collection


def clustered(n: int, dim: int, seed: int = 0, centres_seed: int = 0) -> np.ndarray:
    """Non-negative vectors in 40 clusters (the same for every ``seed``), like h after its ReLU."""
    centres = np.random.default_rng(centres_seed).normal(size=(40, dim))
    rng = np.random.default_rng(seed + 1000)
    return np.maximum(centres[rng.integers(0, 40, n)] + 0.4 * rng.normal(size=(n, dim)), 0).astype(np.float32)


def collection_of(folder, h: np.ndarray) -> Collection:
    n = len(h)
    cols = {"h": h, "labels": np.arange(n) % 5, "digests": np.zeros((n, 16), np.uint8)}
    return create_collection(folder, cols, [f"i/{i}" for i in range(n)], {"network": "net"}, None)


def brute(h: np.ndarray, q: np.ndarray, k: int, transform: Transform | None) -> np.ndarray:
    sims = prepare(q, transform) @ prepare(h, transform).T
    return sims.topk(k, dim=1).indices.numpy()


def test_whitening_reference_values():
    x = np.array([[2, 0], [-2, 0], [0, 1], [0, -1]], np.float32) + np.float32([5, 3])
    t = fit_transform(x, np.ones(4, bool), "whiten")
    # covariance diag(2, 0.5); fewer than 1,000 images: shrinkage 1.0 x the top eigenvalue (2)
    np.testing.assert_allclose(t.mean, [5, 3])
    np.testing.assert_allclose(np.abs(t.projection), [[1 / np.sqrt(4), 0], [0, 1 / np.sqrt(2.5)]], atol=1e-6)
    assert t.eps == 1.0
    y = prepare(np.array([[7, 3]], np.float32), t)
    np.testing.assert_allclose(y.abs().numpy(), [[1, 0]], atol=1e-6)
    centred = fit_transform(x, np.array([True, True, False, False]), "centre")  # live rows only
    np.testing.assert_allclose(centred.mean, [5, 3]) and centred.projection is None
    assert fit_transform(x, np.ones(4, bool), "none") == Transform("none")
    with pytest.raises(InputError, match="unknown transform"):
        fit_transform(x, np.ones(4, bool), "pca")


def test_auto_kind_by_size_and_memory():
    assert choose_kind(10_000, 512, 24 << 30) == "exact"
    assert choose_kind(1_000_000, 512, 24 << 30) == "hnsw"
    assert choose_kind(10_000_000, 512, 24 << 30) == "ivfpq"


def test_exact_search_is_brute_force_with_exclusions_and_deletions(tmp_path):
    h = clustered(700, 16)
    coll = collection_of(tmp_path / "c", h)
    searcher = open_searcher(coll)
    assert searcher.kind == "exact" and searcher.transform.kind == "whiten"
    q = h[:20] + 0.01
    scores, rows = searcher.search(q, 5)
    np.testing.assert_array_equal(rows.numpy(), brute(h, q, 5, searcher.transform))
    assert torch.all(scores[:, :-1] >= scores[:, 1:])
    _, rows = searcher.search(h[:3], 4, exclude=np.array([0, 1, 2]))
    assert all(i not in r for i, r in enumerate(rows.tolist()))
    with CollectionWriter(coll.folder) as w:
        w.delete([int(r) for r in rows[0, :2]])
        after = w.commit()
    _, again = open_searcher(after).search(h[:1], 4)
    assert not set(again[0].tolist()) & set(rows[0, :2].tolist())
    with pytest.raises(InputError, match="dimensions"):
        searcher.search(np.zeros((1, 3), np.float32), 2)


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_index_reaches_its_recall_target_and_is_written(tmp_path, kind):
    h = clustered(6000, 32, seed=1)
    coll = collection_of(tmp_path / "c", h)
    info = build_index(coll, kind, target=0.9)
    assert info["kind"] == kind and info["recall_at_10"] >= 0.9 and info["images"] == 6000
    assert info["network"] == "net" and info["transform"]["kind"] == "whiten" and info["build_s"] >= 0
    reopened = Collection(coll.folder)
    assert json.loads((coll.folder / MANIFEST).read_text())["index"]["file"] == info["file"]
    searcher = open_searcher(reopened)
    assert searcher.kind == kind and searcher.index.ntotal == 6000
    queries = clustered(100, 32, seed=7)  # not in the collection
    assert recall_at_10(searcher, queries) >= 0.85


def test_index_stays_in_step_with_images_added_and_deleted(tmp_path):
    h = clustered(3000, 16, seed=2)
    coll = collection_of(tmp_path / "c", h)
    build_index(coll, "hnsw")
    added = clustered(5, 16, seed=3) * 3
    with CollectionWriter(coll.folder) as w:
        rows = w.add({"h": added, "labels": np.zeros(5, np.int64), "digests": np.zeros((5, 16), np.uint8)},
                     [f"new/{i}" for i in range(5)])
        w.delete([10, 11])
        now = w.commit()
    searcher = open_searcher(now)
    assert searcher.covered == 3000 and now.rows == 3005
    _, found = searcher.search(added, 1)
    assert found[:, 0].tolist() == rows.tolist()  # the tail, searched exactly, finds the new images
    _, found = searcher.search(h[10:12], 3)
    assert not {10, 11} & set(found.flatten().tolist())  # deleted images are never returned


def test_plain_neighbours_and_similarity(tmp_path):
    h = clustered(400, 8, seed=4)
    h[5] = h[4]  # an exact copy
    coll = collection_of(tmp_path / "c", h)
    searcher = open_searcher(coll)
    _live, scores, rows = searcher.neighbours(3, plain=True)
    assert rows[4, 0] == 5 and rows[5, 0] == 4 and abs(float(scores[4, 0]) - 1) < 1e-6
    assert searcher.similarity(4, [5]) == pytest.approx([1.0], abs=1e-6)
    expected = float(torch.nn.functional.cosine_similarity(torch.tensor(h[0:1]), torch.tensor(h[1:2])))
    assert searcher.similarity(0, [1]) == pytest.approx([expected], abs=1e-6)


def test_a_damaged_index_file_is_refused(tmp_path):
    coll = collection_of(tmp_path / "c", clustered(300, 8))
    info = build_index(coll, "hnsw")
    (coll.folder / info["file"]).write_bytes(b"not a faiss index")
    with pytest.raises(InputError, match="not a readable faiss index"):
        open_searcher(Collection(coll.folder))


def test_empty_searcher_refuses(tmp_path):
    coll = collection_of(tmp_path / "c", clustered(2, 8))
    with CollectionWriter(coll.folder) as w:
        w.delete([0, 1])
        empty = w.commit()
    with pytest.raises(InputError, match="holds no images"):
        Searcher(empty).search(np.zeros((1, 8), np.float32), 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_exact_search_on_a_gpu_matches_the_cpu(tmp_path):
    h = clustered(5000, 32)
    coll = collection_of(tmp_path / "c", h)
    cpu, gpu = open_searcher(coll, device="cpu"), open_searcher(coll, device="cuda")
    q = h[:50] + 0.01
    (s1, r1), (s2, r2) = cpu.search(q, 10, exclude=np.arange(50)), gpu.search(q, 10, exclude=np.arange(50))
    assert gpu._cache is not None and gpu._cache.is_cuda and r2.device.type == "cpu"
    assert (r1 == r2).float().mean() > 0.99 and torch.allclose(s1, s2, atol=1e-4)


def test_index_refusals(tmp_path):
    few = collection_of(tmp_path / "few", clustered(300, 8))
    with pytest.raises(InputError, match="at least 1,000 images"):
        build_index(few, "ivfpq")
    odd = collection_of(tmp_path / "odd", clustered(1200, 7))
    with pytest.raises(InputError, match="even number of dimensions"):
        build_index(odd, "ivfpq")
    manifest = json.loads((few.folder / MANIFEST).read_text())
    for index in ("hnsw", {"kind": "hnsw", "file": "../x.faiss"}, {"kind": "hnsw", "transform": 3}):
        (few.folder / MANIFEST).write_text(json.dumps(dict(manifest, index=index)))
        with pytest.raises(InputError):
            Collection(few.folder)


def test_an_index_built_while_the_collection_was_replaced_is_not_committed(tmp_path, monkeypatch):
    coll = collection_of(tmp_path / "c", clustered(400, 8))
    from simclr.retrieval import ann_build

    real = ann_build._tune

    def replaced_meanwhile(*args):
        collection_of(tmp_path / "c", clustered(400, 8, seed=9))  # simclr embed --out, during the build
        return real(*args)

    monkeypatch.setattr(ann_build, "_tune", replaced_meanwhile)
    with pytest.raises(InputError, match="embedded anew"):
        build_index(coll, "hnsw")
    assert Collection(coll.folder).index_info is None
