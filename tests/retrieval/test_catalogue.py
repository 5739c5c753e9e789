"""simclr embed --out FOLDER, --update of a collection folder in place, simclr index build / convert, and the
Catalogue that simclr search, duplicates and serve run on a collection folder."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import simclr
from simclr.cli import main
from simclr.errors import InputError
from simclr.retrieval.catalogue import Catalogue, UnknownItem
from simclr.retrieval.collection import Collection
from simclr.retrieval.rowfile import HEADER


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, make_checkpoint) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("cat") / "model.pt")


@pytest.fixture
def shop(tmp_path) -> Path:
    """Two classes of 8 random 20x20 images each, and an exact copy of one."""
    root = tmp_path / "shop"
    rng = np.random.default_rng(1)
    for c, name in enumerate(("bags", "shoes")):
        (root / name).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 128, (20, 20, 3)) + 100 * c
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    shutil.copy(root / "bags" / "0.png", root / "bags" / "copy.png")
    return root


def embed(ckpt, data, out, **kw):
    return simclr.embed(ckpt, data, out=out, progress=False, device="cpu", workers=0, **kw)


def test_embed_to_a_folder_is_a_catalogue_that_finds_itself(ckpt, shop, tmp_path):
    cat = embed(ckpt, shop, tmp_path / "coll")
    assert isinstance(cat, Catalogue) and len(cat) == 17 and cat.kind == "exact"
    assert cat.classes == ("bags", "shoes")
    loaded = simclr.load_index(tmp_path / "coll")
    found = loaded.search([shop / "shoes" / "3.png"], k=3)[0]
    assert found[0].path == "shoes/3.png" and found[0].score == pytest.approx(1.0, abs=1e-4)
    assert found[0].id == cat.collection.paths().index("shoes/3.png")
    by_id = cat.search_ids([found[0].id], 3)[0]
    assert found[0].id not in [h.id for h in by_id] and len(by_id) == 3
    groups = cat.duplicates(0.99999)  # an untrained network: only the exact copy is that close
    assert [sorted(h.path for h in g) for g in groups] == [["bags/0.png", "bags/copy.png"]]
    assert [h.path for h in cat.duplicates_of(groups[0][0].id, 0.99999)] == ["bags/copy.png"]
    picture = cat.picture(found[0].id)
    assert picture.size == (20, 20) and picture.mode == "RGB"
    with pytest.raises(UnknownItem):
        cat.picture(999)
    with pytest.raises(UnknownItem):
        cat.search_ids([-1], 3)


def test_update_in_place_adds_and_deletes_rows_only(ckpt, shop, tmp_path):
    out = tmp_path / "coll"
    embed(ckpt, shop, out)
    h_file = out / Collection(out).manifest["files"]["h"]
    before = h_file.read_bytes()
    (shop / "shoes" / "0.png").unlink()
    Image.new("RGB", (20, 20), (9, 200, 9)).save(shop / "shoes" / "new.png")
    Image.new("RGB", (20, 20), (200, 9, 9)).save(shop / "bags" / "1.png")  # changed content
    result = embed(ckpt, shop, out, update=True)
    assert (result.updated, result.reused, result.dropped, result.embedded) == (True, 15, 2, 2)
    after = Collection(out)
    assert after.rows == 19 and len(after) == 17
    assert h_file.read_bytes()[HEADER:len(before)] == before[HEADER:]  # the rows there are not rewritten
    assert sorted(after.paths()) == sorted(str(p.relative_to(shop)) for p in shop.rglob("*.png"))
    again = embed(ckpt, shop, out, update=True)
    assert (again.reused, again.embedded, Collection(out).rows) == (17, 0, 19)


def test_update_renumbers_labels_when_classes_change(ckpt, shop, tmp_path):
    out = tmp_path / "coll"
    embed(ckpt, shop, out)
    (shop / "aprons").mkdir()
    Image.new("RGB", (20, 20), (1, 2, 3)).save(shop / "aprons" / "a.png")
    embed(ckpt, shop, out, update=True)
    coll = Collection(out)
    assert coll.classes == ("aprons", "bags", "shoes")
    labels = dict(zip(coll.paths(), coll.labels[coll.live_rows()].tolist()))
    assert labels["aprons/a.png"] == 0 and labels["bags/3.png"] == 1 and labels["shoes/3.png"] == 2


def test_add_and_delete_pictures(ckpt, shop, tmp_path):
    cat = embed(ckpt, shop, tmp_path / "coll")
    buf = io.BytesIO()
    Image.open(shop / "shoes" / "5.png").save(buf, "PNG")
    added = cat.add_pictures([("mine.png", buf.getvalue())])
    assert len(added) == 1 and added[0].path.startswith("uploads/") and added[0].label == -1
    assert (tmp_path / "coll" / added[0].path).read_bytes() == buf.getvalue()
    hits = cat.search_ids([added[0].id], 1)[0]
    assert hits[0].path == "shoes/5.png" and hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert cat.picture(added[0].id).size == (20, 20)
    other = Catalogue(tmp_path / "coll")  # a server started before the change...
    cat.delete(added[0].id)
    assert len(cat) == 17 and not cat.collection.has(added[0].id)
    assert len(other) == 18 and other.refresh() and len(other) == 17  # ...moves to the new generation
    assert not other.refresh()


def test_cli_index_build_convert_and_search(ckpt, shop, tmp_path, capsys):
    npz = tmp_path / "shop.npz"
    embed(ckpt, shop, npz)
    assert main(["index", "convert", str(npz), "--out", str(tmp_path / "conv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 17
    assert main(["index", "build", "--embeddings", str(tmp_path / "conv"), "--kind", "hnsw", "--json",
                 "--quiet"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "hnsw" and info["images"] == 17 and info["recall_at_10"] >= 0.95
    assert {"kind", "images", "recall_at_10", "build_s", "transform"} <= set(info)
    assert main(["search", "--index", str(tmp_path / "conv"), "--query", str(shop / "bags" / "2.png"),
                 "--k", "2", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["results"][0]["path"] == "bags/2.png"
    assert main(["duplicates", "--index", str(tmp_path / "conv"), "--threshold", "0.99999", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["groups"] == 1


def test_cli_refusals(ckpt, shop, tmp_path, capsys, make_checkpoint):
    cases = [
        (["index", "build", "--embeddings", str(tmp_path / "none")], "not a simclr collection"),
        (["index", "convert", str(tmp_path / "none.npz"), "--out", str(tmp_path / "c")], "not found"),
        (["index", "build", "--embeddings", str(shop), "--recall", "2"], "--recall"),
        (["index", "build", "--embeddings", str(shop / "bags" / "0.png")], "simclr index convert"),
        (["embed", "--checkpoint", str(ckpt), "--data", str(shop), "--out", str(shop)], "not a simclr"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1
    embed(ckpt, shop, tmp_path / "coll")
    generation = Collection(tmp_path / "coll").generation
    assert main(["embed", "--checkpoint", str(ckpt), "--data", str(shop), "--out", str(tmp_path / "coll"),
                 "--quiet"]) == 2  # replacing a collection would lose its uploads and index: --update
    assert "--update" in capsys.readouterr().err and Collection(tmp_path / "coll").generation == generation
    (shop / "shoes" / "broken.png").write_bytes(b"not a png")
    assert main(["embed", "--checkpoint", str(ckpt), "--data", str(shop), "--out", str(tmp_path / "coll"),
                 "--update", "--quiet"]) == 0
    assert "1 unreadable images skipped: shoes/broken.png (" in capsys.readouterr().out
    other = make_checkpoint(tmp_path / "other.pt", width=0.25)
    code = main(["search", "--index", str(tmp_path / "coll"), "--query", str(shop / "bags" / "2.png"),
                 "--checkpoint", str(other), "--quiet"])
    assert code == 2 and "not the network" in capsys.readouterr().err
    with pytest.raises(InputError, match="index convert"):
        Catalogue(tmp_path / "coll").save(tmp_path / "x.npz")


def test_sheets_of_a_moved_collection(ckpt, shop, tmp_path):
    cat = embed(ckpt, shop, tmp_path / "coll")
    moved = tmp_path / "moved"
    shop.rename(moved)
    found = cat.search([moved / "bags" / "2.png"], k=2)
    assert cat.pictures()("bags/2.png") is None  # no longer where it was embedded
    assert cat.pictures(moved)("bags/2.png").size == (20, 20)
    out = cat.sheet([moved / "bags" / "2.png"], found, tmp_path / "s.png", images=moved)
    assert Image.open(out).size[0] > 20


def test_update_keeps_uploaded_images(ckpt, shop, tmp_path, make_checkpoint):
    out = tmp_path / "coll"
    cat = embed(ckpt, shop, out)
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), (10, 120, 240)).save(buf, "PNG")
    added = cat.add_pictures([("blue.png", buf.getvalue())])[0]
    embed(ckpt, shop, out, update=True)  # the data's images are unchanged: the upload is not "gone"
    assert Collection(out).has(added.id)
    other = make_checkpoint(tmp_path / "other.pt", width=0.25)  # another network: every image embedded again
    result = embed(other, shop, out, update=True)
    assert result.fresh and len(result) == 18
    coll = Collection(out)
    [row] = coll.uploaded_rows().tolist()
    assert coll.paths([row]) == [added.path] and coll.labels[row] == -1
    expected = simclr.load_encoder(other, "cpu")([Image.open(out / added.path)])[0].numpy()
    np.testing.assert_allclose(coll.h[row], expected, atol=1e-4)  # embedded by the new network


def test_update_takes_in_what_a_server_did_meanwhile(ckpt, shop, tmp_path, monkeypatch):
    out = tmp_path / "coll"
    cat = embed(ckpt, shop, out)
    Image.new("RGB", (20, 20), (9, 200, 9)).save(shop / "shoes" / "new.png")
    (shop / "aprons").mkdir()  # new class names: every label renumbered too
    Image.new("RGB", (20, 20), (1, 2, 3)).save(shop / "aprons" / "a.png")
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), (50, 50, 50)).save(buf, "PNG")
    from simclr.retrieval import collect

    real = collect.embed_some

    def slow_embed(*args, **kwargs):  # while the update embeds, the server adds an image and deletes one
        cat.add_pictures([("up.png", buf.getvalue())])
        cat.delete(0)
        return real(*args, **kwargs)

    monkeypatch.setattr(collect, "embed_some", slow_embed)
    embed(ckpt, shop, out, update=True)
    coll = Collection(out)  # readable, with both writers' changes
    assert len(coll) == 17 + 2 - 1 + 1 and any(p.startswith("uploads/") for p in coll.paths())
    assert "aprons/a.png" in coll.paths() and coll.classes == ("aprons", "bags", "shoes")
    assert not coll.has(0)
