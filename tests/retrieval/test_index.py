"""simclr.embed / simclr.load_index / Index.search: the Python side of `simclr embed` and `simclr search`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import simclr
from simclr.api import eval_setup
from simclr.cli import main
from simclr.errors import InputError
from simclr.retrieval.embeddings import Embeddings, load_embeddings
from simclr.retrieval.index import Index
from simclr.retrieval.results import Hit


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, make_checkpoint) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("index") / "model.pt")


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """Two classes of 6 random 20x20 images each (class folders give labels), and one unreadable file."""
    root = tmp_path_factory.mktemp("shop")
    rng = np.random.default_rng(1)
    for c, name in enumerate(("bags", "shoes")):
        (root / name).mkdir()
        for i in range(6):
            pixels = rng.integers(0, 128, (20, 20, 3)) + 100 * c  # the classes differ in brightness
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    (root / "shoes" / "broken.png").write_bytes(b"not a png")
    return root


def test_embed_matches_the_command_and_saves_its_format(ckpt: Path, shop: Path, tmp_path: Path,
                                                        capsys) -> None:
    index = simclr.embed(ckpt, shop, device="cpu", progress=False, out=tmp_path / "api.npz")
    assert len(index) == 12 and index.h.shape == (12, 64) and index.z is None
    assert [p for p, _ in index.skipped] == ["shoes/broken.png"]
    assert sorted(set(index.labels.tolist())) == [0, 1] and "checkpoint" in index.meta
    assert "12 images" in repr(index)
    assert main(["embed", "--checkpoint", str(ckpt), "--data", str(shop), "--split", "all", "--out",
                 str(tmp_path / "cli.npz"), "--device", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    cli, api = load_embeddings(tmp_path / "cli.npz"), load_embeddings(tmp_path / "api.npz")
    assert api.paths == cli.paths == index.paths and (api.labels == cli.labels).all()
    torch.testing.assert_close(api.features, cli.features)
    made = {k: v for k, v in cli.meta.items() if k != "file"}
    assert {k: v for k, v in api.meta.items() if k != "file"} == made


def test_an_image_of_the_collection_finds_itself_as_the_command_does(ckpt: Path, shop: Path, tmp_path: Path,
                                                                      capsys) -> None:
    index = simclr.embed(ckpt, str(shop), device="cpu", progress=False)
    queries = [shop / "bags" / "3.png", shop / "shoes" / "0.png"]
    hits = index.search(queries, k=4)
    assert [len(h) for h in hits] == [4, 4] and all(isinstance(x, Hit) for x in hits[0])
    assert [h[0].path for h in hits] == ["bags/3.png", "shoes/0.png"]
    assert hits[0][0].rank == 1 and hits[0][0].score == pytest.approx(1.0, abs=1e-4)
    assert [x.score for x in hits[0]] == sorted((x.score for x in hits[0]), reverse=True)
    index.save(tmp_path / "shop.npz")
    assert main(["search", "--index", str(tmp_path / "shop.npz"), "--query", *map(str, queries), "--k", "4",
                 "--json", "--device", "cpu", "--quiet"]) == 0
    cli = json.loads(capsys.readouterr().out)["results"]
    for mine, theirs in zip(hits, cli):
        assert [x.path for x in mine] == [r["path"] for r in theirs["results"]]
        assert [x.score for x in mine] == pytest.approx([r["score"] for r in theirs["results"]], abs=1e-4)
    # PIL images and embedded vectors give the same answer
    pil = index.search([Image.open(q) for q in queries], k=4)
    assert [[x.path for x in h] for h in pil] == [[x.path for x in h] for h in hits]
    vectors = index.search(index.h[:2], k=1)
    assert [h[0].path for h in vectors] == index.paths[:2]
    assert index.search(index.h[5], k=1)[0][0].path == index.paths[5]  # one vector


def test_contact_sheet(ckpt: Path, shop: Path, tmp_path: Path) -> None:
    index = simclr.embed(ckpt, shop, device="cpu", progress=False)
    queries = [shop / "bags" / "2.png", Image.open(shop / "shoes" / "4.png")]
    out = index.sheet(queries, index.search(queries, k=3), tmp_path / "hits.png")
    with Image.open(out) as sheet:
        assert sheet.size == (4 * 100 + 4, 2 * 116 + 4)  # query + 3 results per row, 96-pixel cells
        query_cell = np.asarray(sheet.convert("RGB"))[4:100, 4:100]
        best_cell = np.asarray(sheet.convert("RGB"))[4:100, 104:200]
    np.testing.assert_array_equal(query_cell, best_cell)  # the query found itself: the same picture beside it
    vectors = index.sheet(index.h[:1], index.search(index.h[:1], k=2), tmp_path / "v.jpg")
    assert Image.open(vectors).size == (3 * 100 + 4, 116 + 4)
    with pytest.raises(InputError, match="sheet"):
        index.sheet(queries, index.search(queries, k=1), tmp_path / "hits.gif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hits.png", "v.jpg"]


def test_z_and_a_loaded_index(ckpt: Path, shop: Path, tmp_path: Path) -> None:
    out = tmp_path / "z.npz"
    simclr.embed(ckpt, shop, z=True, device="cpu", progress=False, out=out)
    index = simclr.load_index(out)
    assert index.z is not None and index.z.shape == (12, 24)
    hit = index.search(shop / "shoes" / "5.png", k=2, z=True)[0][0]
    assert hit.path == "shoes/5.png" and hit.label == index.labels[index.paths.index("shoes/5.png")]
    plain = simclr.embed(ckpt, shop, device="cpu", progress=False)
    with pytest.raises(InputError, match="holds no z"):
        plain.search(shop / "bags" / "0.png", z=True)


def test_image_side_and_encoder_come_from_the_index(ckpt: Path, shop: Path) -> None:
    index = simclr.embed(ckpt, shop, image_size=24, device="cpu", progress=False)
    assert index.meta["image_size"] == 24 and index.encoder().image_size == 24
    assert index.search(shop / "bags" / "1.png", k=1)[0][0].score == pytest.approx(1.0, abs=1e-4)
    encoder = simclr.load_encoder(ckpt, "cpu", image_size=24)
    assert encoder.preprocess(shop / "bags" / "1.png").shape == (3, 24, 24)


def test_the_eval_crop_comes_from_the_index(ckpt: Path, shop: Path, tmp_path: Path, capsys) -> None:
    index = simclr.embed(ckpt, shop, eval_crop=0.6, device="cpu", progress=False)
    assert index.meta["eval_crop"] == 0.6 and index.encoder().eval_crop == 0.6
    whole = simclr.embed(ckpt, shop, device="cpu", progress=False)
    assert whole.meta["eval_crop"] == 1.0 and not torch.allclose(index.h, whole.h)
    query = shop / "bags" / "1.png"
    assert index.search(query, k=1)[0][0].score == pytest.approx(1.0, abs=1e-4)  # prepared as the index was
    index.save(tmp_path / "crop.npz")
    assert main(["search", "--index", str(tmp_path / "crop.npz"), "--query", str(query), "--k", "1", "--json",
                 "--device", "cpu", "--quiet"]) == 0
    best = json.loads(capsys.readouterr().out)["results"][0]["results"][0]
    assert best["score"] == pytest.approx(1.0, abs=1e-4)
    # a 20 px image kept at half its side for 10 px: resized to 20 (as it is), the central 10 x 10
    central = simclr.load_encoder(ckpt, "cpu", image_size=10, eval_crop=0.5).preprocess(query)
    pixels = torch.from_numpy(np.array(Image.open(query).convert("RGB"))[5:15, 5:15]).permute(2, 0, 1)
    torch.testing.assert_close(central.reshape(3, 10, 10), pixels.float() / 255, atol=1e-6, rtol=0)


def test_bad_input(ckpt: Path, shop: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        simclr.load_index(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a readable"):
        simclr.load_index(tmp_path / "bad.npz")
    with pytest.raises(InputError):
        simclr.embed(ckpt, tmp_path / "no-such-folder", device="cpu", progress=False)
    anonymous = Index(Embeddings(torch.rand(3, 64), None, np.full(3, -1), ["a", "b", "c"], {}))
    with pytest.raises(InputError, match="does not name its checkpoint"):
        anonymous.search(shop / "bags" / "0.png")
    encoder = simclr.load_encoder(ckpt, "cpu")
    assert len(anonymous.search(shop / "bags" / "0.png", k=5, encoder=encoder)[0]) == 3  # k beyond the size
    with pytest.raises(InputError, match="k must be"):
        anonymous.search(torch.rand(1, 64), k=0)
    with pytest.raises(InputError, match="dimensions"):
        anonymous.search(torch.rand(1, 10))
    with pytest.raises(InputError, match="image_size"):
        simclr.load_encoder(ckpt, "cpu", image_size=4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_search_on_the_gpu_matches_the_cpu(ckpt: Path, shop: Path) -> None:
    index = simclr.embed(ckpt, shop, device="cpu", progress=False)
    cpu = index.search(index.h[:4], k=3, device="cpu")
    gpu = index.search(index.h[:4], k=3, device="cuda")
    assert [[h.path for h in row] for row in gpu] == [[h.path for h in row] for row in cpu]
    cpu_scores = [h.score for row in cpu for h in row]
    assert [h.score for row in gpu for h in row] == pytest.approx(cpu_scores, abs=1e-4)


def test_an_image_damaged_after_embedding_is_an_empty_frame_on_both_sheets(ckpt: Path, shop: Path,
                                                                            tmp_path: Path, capsys) -> None:
    import shutil

    collection = tmp_path / "shop"
    shutil.copytree(shop, collection)
    index = simclr.embed(ckpt, collection, device="cpu", progress=False, out=tmp_path / "shop.npz")
    (collection / "bags" / "0.png").write_bytes(b"damaged since")
    row = index.paths.index("bags/0.png")
    hits = index.search(index.h[row], k=2)
    assert hits[0][0].path == "bags/0.png"
    with Image.open(index.sheet(index.h[row], hits, tmp_path / "api.png")) as sheet:
        pixels = np.asarray(sheet.convert("RGB"))
    assert (pixels[6:98, 106:198] == 255).all()  # the damaged best hit: an empty (white) frame
    assert not (pixels[6:98, 206:298] == 255).all()  # the second hit is drawn
    query = str(shop / "bags" / "0.png")  # the undamaged original
    assert main(["search", "--index", str(tmp_path / "shop.npz"), "--query", query, "--k", "2", "--device",
                 "cpu", "--quiet", "--sheet", str(tmp_path / "cli.png")]) == 0
    capsys.readouterr()
    with Image.open(tmp_path / "cli.png") as sheet:
        cli = np.asarray(sheet.convert("RGB"))
    assert (cli[6:98, 106:198] == 255).all() and not (cli[6:98, 6:98] == 255).all()


def test_encoders_are_kept_per_device_and_tensors_taken_as_the_encoder_takes_them(ckpt: Path, shop: Path,
                                                                                   tmp_path: Path) -> None:
    from simclr.encoder import float_images

    index = simclr.embed(ckpt, shop, device="cpu", progress=False, image_size=20)  # the images' own side
    assert index.encoder("cpu") is index.encoder("cpu")
    if not torch.cuda.is_available():
        assert index.encoder("auto") is index.encoder("cpu")  # the same device, resolved
    image = torch.from_numpy(np.array(Image.open(shop / "bags" / "1.png"))).permute(2, 0, 1)
    torch.testing.assert_close(float_images(image), image[None].float() / 255)
    assert float_images(image.float() / 255).shape == (1, 3, 20, 20)
    with pytest.raises(InputError, match=r"expected images \[B, 3, H, W\]"):
        float_images(torch.zeros(2, 4, 8, 8))
    uint8_hit = index.search(image, k=1)[0][0]
    float_hit = index.search(image.float() / 255, k=1)[0][0]
    assert uint8_hit.path == float_hit.path == "bags/1.png"
    assert uint8_hit.score == pytest.approx(float_hit.score)
    out = index.sheet(image, [[uint8_hit]], tmp_path / "t.png")
    with Image.open(out) as sheet:
        pixels = np.asarray(sheet.convert("RGB"))
    np.testing.assert_array_equal(pixels[4:100, 4:100], pixels[4:100, 104:200])  # drawn as the file is


def test_the_command_and_python_search_through_one_path(ckpt: Path, shop: Path, tmp_path: Path,
                                                        capsys) -> None:
    """`simclr search` runs Index.search: for image files (one unreadable), a labelled folder, an embeddings
    file and the index itself (all against all), Python given the command's reading setup returns the same
    hits, scores, skipped images, CSV rows and JSON object as the command prints and writes."""
    index_file = str(tmp_path / "shop.npz")
    simclr.embed(ckpt, shop, device="cpu", progress=False, out=index_file)
    simclr.embed(ckpt, shop, split="test", holdout=0.5, device="cpu", progress=False,
                 out=tmp_path / "test.npz")
    setup = eval_setup("", 0, "cpu", 256, 0, False)  # as the command builds it from its flags
    files = [str(shop / "bags" / "3.png"), str(shop / "shoes" / "broken.png"),
             str(shop / "shoes" / "0.png")]
    for query in (files, [str(shop)], [str(tmp_path / "test.npz")], [index_file]):
        capsys.readouterr()
        assert main(["search", "--index", index_file, "--query", *query, "--k", "3", "--json", "--device",
                     "cpu", "--workers", "0", "--quiet", "--out", str(tmp_path / "hits.csv")]) == 0
        cli = json.loads(capsys.readouterr().out)
        found = simclr.load_index(index_file).search(query, 3, device="cpu", setup=setup)
        assert found.summary(index_file) == cli
        with (tmp_path / "hits.csv").open() as f:
            rows = [{k: str(v) for k, v in row.items()} for row in found.csv_rows()]
            assert list(csv.DictReader(f)) == rows
        if query == files:
            assert [s["query"] for s in cli["skipped"]] == [files[1]] and cli["metrics"] is None
            readable = simclr.load_index(index_file).search([files[0], files[2]], 3, device="cpu")
            assert [[h.path for h in row] for row in readable] == [[r["path"] for r in q["results"]]
                                                                   for q in cli["results"]]
        else:
            assert cli["metrics"]["queries"] == cli["queries"] > 1  # labelled by class folders: scored
    assert all(r["path"] != q["query"] for q in cli["results"] for r in q["results"])  # the index itself


def test_a_query_of_another_network_is_refused_once_alike(ckpt: Path, shop: Path, tmp_path: Path, capsys,
                                                          make_checkpoint, monkeypatch) -> None:
    """Image queries embedded with another network's checkpoint, or an embeddings file of another network: the
    command and Python refuse them in the one check, once, with the same one-line message."""
    from simclr.retrieval import index as index_module
    from simclr.runtime.checkpoint import load_checkpoint, save_checkpoint

    index_file = str(tmp_path / "shop.npz")
    simclr.embed(ckpt, shop, device="cpu", progress=False, out=index_file)
    other = make_checkpoint(tmp_path / "other.pt")
    state = load_checkpoint(other)
    state["model"] = {k: v * 1.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint(state, other)  # the same architecture, other weights
    simclr.embed(other, shop, device="cpu", progress=False, out=tmp_path / "other.npz")
    checks: list[str] = []
    check = index_module.check_same_network

    def counted(meta: dict, digest: str | None, what: str) -> None:
        checks.append(what)
        check(meta, digest, what)

    monkeypatch.setattr(index_module, "check_same_network", counted)
    image = str(shop / "bags" / "1.png")
    setup = eval_setup("", 0, "cpu", 256, 0, False)
    for query, options, flags in (([image], {"checkpoint": str(other)}, ["--checkpoint", str(other)]),
                                  ([str(tmp_path / "other.npz")], {}, [])):
        said = []
        for reading in (setup, None):  # as the command reads paths, and Python's own way
            checks.clear()
            with pytest.raises(InputError, match="is not the network") as refused:
                simclr.load_index(index_file).search(query, 2, device="cpu", setup=reading, **options)
            assert len(checks) == 1
            said.append(str(refused.value))
        checks.clear()
        capsys.readouterr()
        assert main(["search", "--index", index_file, "--query", *query, *flags, "--device", "cpu",
                     "--workers", "0", "--quiet"]) == 2
        assert len(checks) == 1
        err = capsys.readouterr().err
        assert err == f"simclr: error: {said[0]}\n" and said[0] == said[1] and "\n" not in said[0]
