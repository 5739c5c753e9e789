"""A catalogue across generations: what it has loaded carried over to the next generation, near-duplicates
computed once a generation whatever the threshold, uploads removed with their last image, and the checks of
its near-duplicate options."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import simclr
from simclr.errors import InputError
from simclr.retrieval.ann_build import build_index
from simclr.retrieval.catalogue import Catalogue
from simclr.retrieval.collection import Collection


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, make_checkpoint) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("gen") / "model.pt")


@pytest.fixture
def cat(ckpt, tmp_path) -> Catalogue:
    rng = np.random.default_rng(3)
    root = tmp_path / "shop"
    root.mkdir()
    for i in range(30):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3)).astype(np.uint8)).save(root / f"{i}.png")
    return simclr.embed(ckpt, root, out=tmp_path / "coll", progress=False, device="cpu", workers=0)


def png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buf, "PNG")
    return buf.getvalue()


def test_the_next_generation_keeps_what_was_loaded(cat):
    build_index(cat.collection, "hnsw")
    cat.refresh()
    before = cat.searcher()
    assert before.index is not None
    [added] = cat.add_pictures([("a.png", png((200, 10, 10)))])
    after = cat.searcher()
    assert after is not before and after.collection.rows == 31
    assert after.index is before.index and after.transform is before.transform  # not read or fitted again
    assert cat.search_ids([added.id], 1)[0][0].id != added.id
    assert cat.search(cat.picture(added.id), k=1)[0][0].id == added.id  # the tail holds the new image


def test_exact_cache_grows_with_the_collection(cat):
    cat.search_ids([0], 3)
    cache = cat.searcher()._cache
    assert cache is not None and len(cache) == 30
    cat.add_pictures([("b.png", png((10, 200, 10)))])
    grown = cat.searcher()._cache
    assert len(grown) == 31 and torch.equal(grown[:30], cache)


def test_neighbours_once_a_generation(cat, monkeypatch):
    searcher = cat.searcher()
    calls = []
    real = type(searcher).neighbours
    monkeypatch.setattr(type(searcher), "neighbours", lambda *a, **k: calls.append(1) or real(*a, **k))
    for threshold in (0.9, 0.99, 0.999, 0.9):
        cat.duplicates(threshold)
    assert len(calls) == 1


def test_duplicates_options_are_checked(cat):
    for threshold, k in ((5, 10), (float("nan"), 10), (0.9, 0)):
        with pytest.raises(InputError):
            cat.duplicates(threshold, k=k)
    for row in range(1, 30):
        cat.delete(row)
    assert list(cat.duplicates()) == []  # one image left: nothing to group


def test_a_deleted_upload_leaves_the_folder(cat):
    data = png((1, 2, 3))
    first, second = cat.add_pictures([("x.png", data), ("y.png", data)])  # the same bytes: one file
    path = cat.folder / first.path
    assert first.path == second.path and path.exists()
    cat.delete(first.id)
    assert path.exists()  # still the image of another row
    cat.delete(second.id)
    assert not path.exists() and not Collection(cat.folder).has(second.id)
