"""The collection folder: append-only row files, the manifest as the commit point, deletions, recovery from an
interrupted writer, and the refusals of damaged or foreign folders."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from simclr.errors import InputError
from simclr.retrieval import rowfile
from simclr.retrieval.collection import MANIFEST, Collection, is_collection
from simclr.retrieval.collection_write import CollectionWriter, check_collection_output, create_collection


def columns(n: int, dim: int = 8, seed: int = 0, z: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {"h": rng.random((n, dim), dtype=np.float32), "labels": rng.integers(0, 3, n),
           "digests": rng.integers(0, 256, (n, 16), dtype=np.uint8)}
    if z:
        out["z"] = rng.random((n, 4), dtype=np.float32)
    return out


@pytest.fixture
def made(tmp_path):
    cols = columns(50)
    coll = create_collection(tmp_path / "c", cols, [f"img/{i}.png" for i in range(50)], {"network": "n1"},
                             ("a", "b", "c"))
    return coll, cols


def test_rowfile_is_an_npy_that_grows_in_place(tmp_path):
    path = tmp_path / "h.npy"
    rowfile.create(path, np.float32, 3)
    first = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert rowfile.append(path, first, 0) == 2
    before = path.read_bytes()
    assert rowfile.append(path, first + 10, 2) == 4
    after = path.read_bytes()
    assert after[rowfile.HEADER:len(before)] == before[rowfile.HEADER:]  # the rows there are not rewritten
    np.testing.assert_array_equal(np.load(path), np.concatenate([first, first + 10]))  # numpy reads it
    view = rowfile.read(path, 3, np.float32, 3)
    assert isinstance(view, np.memmap) and view.shape == (3, 3)
    # rows past the committed count (an interrupted writer's) are cut off by the next append
    assert rowfile.append(path, first[:1] + 99, 3) == 4
    np.testing.assert_array_equal(np.load(path)[3], first[0] + 99)


def test_rowfile_refuses_other_files(tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(InputError, match="not a readable row file"):
        rowfile.read(path, 2, np.float32, 3)
    np.save(path, np.zeros((2, 3), np.float64))
    with pytest.raises(InputError, match="float64"):
        rowfile.read(path, 2, np.float32, 3)
    rowfile.create(path, np.float32, 3)
    with pytest.raises(InputError, match="damaged"):
        rowfile.read(path, 1, np.float32, 3)  # fewer rows than the manifest says
    with pytest.raises(InputError, match="missing"):
        rowfile.read(tmp_path / "none.npy", 0, np.float32, 3)


def test_created_collection_reads_back(made):
    coll, cols = made
    assert is_collection(coll.folder) and len(coll) == 50 and coll.rows == 50 and coll.generation == 1
    np.testing.assert_array_equal(coll.h, cols["h"])
    np.testing.assert_array_equal(coll.labels, cols["labels"])
    assert coll.paths([3, 0]) == ["img/3.png", "img/0.png"] and coll.classes == ("a", "b", "c")
    assert coll.meta["network"] == "n1" and coll.meta["file"] == str(coll.folder)
    assert coll.z is None
    with pytest.raises(InputError, match="holds no z"):
        coll.vectors("z")


def test_writes_are_invisible_until_commit_and_ids_are_for_good(made):
    coll, cols = made
    with CollectionWriter(coll.folder) as w:
        rows = w.add({k: v[:2] for k, v in columns(2, seed=5).items()}, ["new/a.png", "new/b.png"])
        w.delete([0, 7])
        assert len(Collection(coll.folder)) == 50  # not committed yet: readers see the old generation
        after = w.commit()
    assert rows.tolist() == [50, 51]
    assert after.generation == 2 and after.rows == 52 and len(after) == 50
    assert not after.has(0) and not after.has(7) and after.has(51) and not after.has(52)
    assert after.paths()[:2] == ["img/1.png", "img/2.png"] and after.paths()[-1] == "new/b.png"
    np.testing.assert_array_equal(after.h[:50], cols["h"])  # the rows already there are untouched
    assert len(coll) == 50 and coll.generation == 1  # an open generation keeps reading as it was


def test_interrupted_writer_is_undone_by_the_next(made):
    coll, _ = made
    w = CollectionWriter(coll.folder).__enter__()
    w.add(columns(3, seed=9), ["x/1", "x/2", "x/3"])
    w.delete([4])
    w.__exit__()  # gone without committing, as a killed process would
    assert len(Collection(coll.folder)) == 50 and Collection(coll.folder).has(4)
    with CollectionWriter(coll.folder) as w:
        assert w.add(columns(1, seed=2), ["y/1"]).tolist() == [50]  # the abandoned rows were cut off
        again = w.commit()
    assert again.rows == 51 and again.has(4) and again.paths([50]) == ["y/1"]


def test_replacing_a_collection_keeps_the_previous_generation_readable(made):
    coll, _ = made
    old_h = coll.folder / coll.manifest["files"]["h"]
    new = create_collection(coll.folder, columns(5, seed=3), [f"p{i}" for i in range(5)], {}, None)
    assert new.generation == 2 and len(new) == 5 and old_h.exists()  # kept for readers of generation 1
    create_collection(coll.folder, columns(4, seed=4), [f"q{i}" for i in range(4)], {}, None)
    assert not old_h.exists()  # two generations back: removed
    assert sorted(p.name for p in coll.folder.glob("h-*.npy")) == ["h-2.npy", "h-3.npy"]


def test_damaged_and_foreign_folders_are_refused(tmp_path, made):
    coll, _ = made
    with pytest.raises(InputError, match="not a simclr collection"):
        Collection(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "photo.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="not a simclr collection"):
        create_collection(tmp_path / "other", columns(2), ["a", "b"], {}, None)
    with pytest.raises(InputError, match="not a simclr collection"):
        check_collection_output(tmp_path / "other")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        check_collection_output(tmp_path / "file")
    manifest = json.loads((coll.folder / MANIFEST).read_text())
    for change, match in (({"version": 99}, "version 99"), ({"rows": 80}, "damaged"),
                          ({"files": dict(manifest["files"], h="../../etc/passwd")}, "plain name")):
        (coll.folder / MANIFEST).write_text(json.dumps(dict(manifest, **change)))
        with pytest.raises(InputError, match=match):
            Collection(coll.folder)
    (coll.folder / MANIFEST).write_text("{not json")
    with pytest.raises(InputError, match="not readable JSON"):
        Collection(coll.folder)


def test_commit_leaves_no_temporary_files(made):
    coll, _ = made
    (coll.folder / ".collection.json.123.tmp").write_text("left by a killed writer")
    with CollectionWriter(coll.folder) as w:
        w.delete([1])
        w.commit()
    assert not [p for p in os.listdir(coll.folder) if p.endswith(".tmp")]


def test_replaced_files_stay_readable_for_the_previous_generation(made):
    coll, _ = made
    with CollectionWriter(coll.folder) as w:
        w.replace_labels(np.zeros(50, np.int64), ("x",))
        w.set_index({"kind": "exact", "file": None, "transform": {"kind": "none", "file": None}})
        after = w.commit()
    assert (coll.folder / coll.manifest["files"]["labels"]).exists()  # generation 1's, still read
    assert Collection(coll.folder).classes == ("x",) and after.labels.sum() == 0
    with CollectionWriter(coll.folder) as w, pytest.raises(ValueError, match="labels for"):
        w.replace_labels(np.zeros(3, np.int64), None)
    (coll.folder / "index-7.faiss").write_bytes(b"i")
    (coll.folder / "transform-7.npy").write_bytes(b"t")
    with CollectionWriter(coll.folder) as w:
        w.set_index({"kind": "hnsw", "file": "index-7.faiss", "transform": {"kind": "whiten",
                                                                             "file": "transform-7.npy"}})
        w.commit()
    create_collection(coll.folder, columns(3), ["a", "b", "c"], {}, None)  # replaced: the old index stays
    assert (coll.folder / "index-7.faiss").exists() and (coll.folder / "transform-7.npy").exists()


def test_a_commit_that_would_name_short_files_is_refused(made):
    coll, _ = made
    with CollectionWriter(coll.folder) as w:
        w.rows += 5  # as if rows had been added to the items but not to the row files
        with pytest.raises(InputError, match="damaged"):
            w.commit()
    assert Collection(coll.folder).rows == 50  # nothing committed


def test_an_interrupted_first_write_does_not_block_the_next(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / ".lock").write_text("")
    rowfile.create(folder / "h-1.npy", np.float32, 8)  # what a killed first write leaves, no manifest
    check_collection_output(folder)
    assert len(create_collection(folder, columns(4), list("abcd"), {}, None)) == 4
