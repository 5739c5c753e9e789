"""`simclr search` end to end on the CIFAR-10 subset: embed a collection, query it with images, a dataset or
an embeddings file; results, scores, CSV, contact sheet, and bad input (one line, exit code 2)."""

import csv
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import simclr
from simclr.cli import main
from simclr.errors import InputError


@pytest.fixture(scope="module")
def index(env: dict, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("search")
    files = {}
    for split in ("train", "test"):
        files[split] = root / f"{split}.npz"
        assert main(["embed", "--checkpoint", str(env["run"]), "--data", env["archive"], "--split", split,
                     "--out", str(files[split]), "--z", "--quiet", "--cache-dir", env["cache"]]) == 0
    images = root / "images"
    with tarfile.open(env["archive"]) as tar:
        tar.extractall(images, filter="data")
    return {**files, "images": images}


def _json(args: list[str], capsys) -> dict:
    capsys.readouterr()
    assert main(["search", *args, "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_an_indexed_image_finds_itself_first(index: dict, capsys) -> None:
    """The query is embedded like the index (same checkpoint, side, preprocessing): its own copy scores 1."""
    query = sorted((index["images"]).rglob("train/dog/*.jpg"))[3]
    out = _json(["--index", str(index["train"]), "--query", str(query), "--k", "4"], capsys)
    (only,) = out["results"]
    assert only["query"] == str(query) and len(only["results"]) == 4
    first = only["results"][0]
    assert first["path"].endswith("train/dog/" + query.name)
    assert first["score"] == pytest.approx(1.0, abs=1e-4)
    scores = [r["score"] for r in only["results"]]
    assert scores == sorted(scores, reverse=True) and out["metrics"] is None  # an unlabeled query: no scores


def test_test_split_against_train_scores_and_writes_csv(index: dict, tmp_path: Path, capsys) -> None:
    out_csv = tmp_path / "r.csv"
    out = _json(["--index", str(index["train"]), "--query", str(index["test"]), "--k", "5",
                 "--out", str(out_csv)],
                capsys)
    m = out["metrics"]
    assert m["queries"] == 200 and m["k"] == 5
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 200 * 5
    same = [r["label"] == r["query_label"] for r in rows]
    assert m["precision_at_5"] == pytest.approx(sum(same) / len(same), abs=1e-6)
    firsts = [r["label"] == r["query_label"] for r in rows if r["rank"] == "1"]
    assert m["precision_at_1"] == pytest.approx(sum(firsts) / 200, abs=1e-6)
    assert m["precision_at_1"] > 0.1  # better than chance on ten classes after two epochs


def test_the_collection_against_itself_never_returns_the_query(index: dict, capsys) -> None:
    out = _json(["--index", str(index["train"]), "--query", str(index["train"]), "--k", "3", "--z"], capsys)
    assert out["queries"] == 500
    assert all(r["path"] != q["query"] for q in out["results"] for r in q["results"])


def test_folder_query_and_contact_sheet(index: dict, tmp_path: Path, capsys) -> None:
    sheet = tmp_path / "sheet.png"
    out = _json(["--index", str(index["train"]), "--query", str(index["images"] / "test"), "--k", "2",
                 "--sheet", str(sheet)], capsys)
    assert out["queries"] == 200 and out["metrics"]["queries"] == 200  # class folders give labels
    with Image.open(sheet) as img:
        assert img.size == (3 * 100 + 4, 8 * 116 + 4)  # 8 rows: the query and two results, 96 px cells


def test_bad_search_input_one_line_exit_2(index: dict, env: dict, tmp_path: Path, capsys) -> None:
    def bad(*args: str) -> str:
        capsys.readouterr()
        assert main(["search", *args, "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("simclr: error: ") and "\n" not in err
        return err

    train = str(index["train"])
    assert "not found" in bad("--index", str(tmp_path / "none.npz"), "--query", train)
    assert "is a folder, not a simclr collection" in bad("--index", str(tmp_path), "--query", train)
    assert "must be >= 1" in bad("--index", train, "--query", train, "--k", "0")
    assert "query image not found" in bad("--index", train, "--query", str(tmp_path / "x.jpg"))
    plain = tmp_path / "plain.npz"
    assert main(["embed", "--checkpoint", str(env["run"]), "--data", env["archive"], "--split", "test",
                 "--out", str(plain), "--quiet", "--cache-dir", env["cache"]]) == 0
    assert "holds no z" in bad("--index", str(plain), "--query", train, "--z")
    other = tmp_path / "other.npz"
    np.savez(other, features=np.ones((2, 5), np.float32), labels=np.zeros(2), paths=np.array(["a", "b"]))
    assert "dimensions" in bad("--index", train, "--query", str(other))  # another encoder's vectors: refused
    csv = tmp_path / "kept.csv"
    csv.write_text("earlier results\n")
    assert "--sheet" in bad("--index", train, "--query", train, "--out", str(csv),
                            "--sheet", str(tmp_path / "s.gif"))
    # refused before writing
    assert csv.read_text() == "earlier results\n" and not (tmp_path / "s.gif").exists()
    both = tmp_path / "both.png"
    assert "both name" in bad("--index", train, "--query", train, "--out", str(both), "--sheet", str(both))
    assert not both.exists()


def test_duplicates_groups_planted_copies(index: dict, env: dict, tmp_path: Path, capsys) -> None:
    """`simclr duplicates` on real images with planted copies: an identical file and a lossless PNG of another
    image are grouped with their originals (a two-epoch encoder is too weak to be trusted with edited copies:
    see benchmarks/duplicates.py); the CSV, the JSON and the contact sheet agree."""
    folder = tmp_path / "shop"
    folder.mkdir()
    originals = sorted((index["images"] / "test").rglob("*.jpg"))[::5]  # 40 images, 4 of each class
    for i, f in enumerate(originals):
        (folder / f"{i:02d}.jpg").write_bytes(f.read_bytes())
    (folder / "03_copy.jpg").write_bytes(originals[3].read_bytes())
    with Image.open(originals[7]) as img:
        img.save(folder / "07_png.png")
    emb = tmp_path / "shop.npz"
    assert main(["embed", "--checkpoint", str(env["run"]), "--data", str(folder), "--split", "all",
                 "--out", str(emb),
                 "--quiet", "--cache-dir", env["cache"]]) == 0
    capsys.readouterr()
    groups, sheet = tmp_path / "groups.csv", tmp_path / "dups.png"
    assert main(["duplicates", "--index", str(emb), "--json", "--out", str(groups), "--sheet", str(sheet),
                 "--threshold", "0.995"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = list(csv.DictReader(groups.open()))
    assert [dict(r, score=float(r["score"])) for r in rows] == [
        {k: (str(v) if k != "score" else v) for k, v in r.items()} for r in out["rows"]]
    group_of = {r["path"]: r["group"] for r in rows}
    assert group_of["03.jpg"] == group_of["03_copy.jpg"] and group_of["07.jpg"] == group_of["07_png.png"]
    for planted in ("03", "07"):
        copy = next(r for r in rows if r["path"].startswith(planted) and r["keep"] == "0")
        assert float(copy["score"]) == pytest.approx(1.0, abs=1e-4)
    assert all(float(r["score"]) >= 0.995 for r in rows)
    assert out["images"] == 42 and out["groups"] == len(set(group_of.values())) >= 2
    assert out["duplicates"] == len(rows) - out["groups"] and out["nearest_similarity"]["q99"] <= 1.0001
    with Image.open(sheet) as img:
        assert img.height == min(8, out["groups"]) * 116 + 4
    assert main(["duplicates", "--index", str(emb), "--json", "--z"]) == 2  # this file holds no z
    capsys.readouterr()
    assert main(["duplicates", "--index", str(index["test"]), "--json", "--z"]) == 0
    assert json.loads(capsys.readouterr().out)["threshold"] == 0.95  # z's own default
    assert main(["duplicates", "--index", str(index["test"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["threshold"] == 0.99
    assert main(["duplicates", "--index", str(emb), "--threshold", "0.9999999"]) == 0
    assert "(cosine >= 0.9999999)" in capsys.readouterr().out  # not rounded to 1


def test_duplicates_of_a_single_image(env: dict, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(folder / "only.png")
    emb = tmp_path / "one.npz"
    assert main(["embed", "--checkpoint", str(env["run"]), "--data", str(folder), "--out", str(emb),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["duplicates", "--index", str(emb)]) == 0
    out = capsys.readouterr().out
    assert "0 groups of near-duplicates among 1 images" in out and "nothing to compare it with" in out
    assert main(["duplicates", "--index", str(emb), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nearest_similarity"] is None


def test_bad_duplicates_input_one_line_exit_2(index: dict, env: dict, tmp_path: Path, capsys) -> None:
    def bad(*args: str) -> str:
        capsys.readouterr()
        assert main(["duplicates", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("simclr: error: ") and "\n" not in err
        return err

    test = str(index["test"])
    assert "not found" in bad("--index", str(tmp_path / "none.npz"))
    assert "threshold" in bad("--index", test, "--threshold", "1.5")
    assert "k must be" in bad("--index", test, "--k", "0")
    kept = tmp_path / "kept.csv"
    kept.write_text("earlier groups\n")
    assert "--sheet" in bad("--index", test, "--out", str(kept), "--sheet", str(tmp_path / "s.gif"))
    assert kept.read_text() == "earlier groups\n"
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really")
    assert "not a readable" in bad("--index", str(broken))


def test_a_network_other_than_the_index_s_is_refused(index: dict, env: dict, tmp_path: Path, capsys) -> None:
    """A run trained further (its last.pt replaced) or another run's vectors: refused, not searched."""
    import shutil

    import torch

    import simclr
    from simclr.errors import InputError
    from simclr.runtime.checkpoint import load_checkpoint, save_checkpoint

    run = tmp_path / "run"
    shutil.copytree(env["run"], run)
    own = tmp_path / "own.npz"
    assert main(["embed", "--checkpoint", str(run), "--data", env["archive"], "--split", "test",
                 "--out", str(own),
                 "--quiet", "--cache-dir", env["cache"]]) == 0
    query = str(min(index["images"].rglob("test/cat/*.jpg")))
    assert main(["search", "--index", str(own), "--query", query, "--quiet"]) == 0
    state = load_checkpoint(run)
    state["model"] = {k: v * 1.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint(state, run / "last.pt")  # trained on since the collection was embedded
    capsys.readouterr()
    assert main(["search", "--index", str(own), "--query", query, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not the network" in err and "--update" in err and "\n" not in err
    # same weights
    assert main(["search", "--index", str(index["train"]), "--query", str(own), "--quiet"]) == 0
    assert main(["embed", "--checkpoint", str(run), "--data", env["archive"], "--split", "test", "--out",
                 str(tmp_path / "moved.npz"), "--quiet", "--cache-dir", env["cache"]]) == 0
    assert main(["search", "--index", str(index["train"]), "--query", str(tmp_path / "moved.npz"),
                 "--quiet"]) == 2
    assert "is not the network" in capsys.readouterr().err
    collection = simclr.load_index(own)
    with pytest.raises(InputError, match="is not the network"):
        collection.search(query)
    encoder = simclr.load_encoder(env["run"], device="cpu")
    assert simclr.load_index(index["train"]).search(query, encoder=encoder)[0][0].score > 0.99
    other = simclr.load_encoder(env["run"], device="cpu")
    with torch.no_grad():
        next(other.model.parameters()).mul_(1.01)
    with pytest.raises(InputError, match="is not the network"):
        simclr.load_index(index["train"]).search(query, encoder=other)


def test_queries_are_scored_by_class_name_not_number(index: dict, capsys) -> None:
    """Query folders with only some of the index's classes: their labels number other classes, the names
    match."""
    import shutil

    queries = index["images"].parent / "dogs-and-others"
    for name in ("dog", "truck"):
        shutil.copytree(index["images"] / "test" / name, queries / name)
    (queries / "zebra").mkdir()
    shutil.copy(next((index["images"] / "test" / "cat").iterdir()), queries / "zebra" / "z.jpg")
    by_name = _json(["--index", str(index["train"]), "--query", str(queries), "--k", "5"], capsys)
    m = by_name["metrics"]
    assert m["queries"] == 40 and m["queries_of_other_classes"] == 1
    classes = sorted(p.name for p in (index["images"] / "train").iterdir())
    dog, truck = classes.index("dog"), classes.index("truck")
    hits = [(q["query"].split("/")[0], r["label"]) for q in by_name["results"] for r in q["results"]]
    same = [(name == "dog" and label == dog) or (name == "truck" and label == truck) for name, label in hits
            if name != "zebra"]
    assert m["precision_at_5"] == pytest.approx(sum(same) / len(same), abs=1e-6) and m["precision_at_5"] > 0.1
    capsys.readouterr()
    assert main(["search", "--index", str(index["train"]), "--query", str(queries / "zebra"), "--quiet"]) == 0
    # a folder of files: unlabeled
    assert "no query is of a class the index has" not in capsys.readouterr().out
    zebras = queries.parent / "zebras-only"
    shutil.copytree(queries / "zebra", zebras / "zebra")
    assert main(["search", "--index", str(index["train"]), "--query", str(zebras), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "no query is of a class the index has (1 labelled queries of other classes)" in printed


def test_an_unreadable_query_image_is_reported(index: dict, tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    good = str(min(index["images"].rglob("test/cat/*.jpg")))
    capsys.readouterr()
    assert main(["search", "--index", str(index["train"]), "--query", str(broken), good, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "note: 1 query image(s) could not be read and were left out: " + str(broken) in captured.err
    assert good in captured.out and str(broken) + ":" not in captured.out
    out = _json(["--index", str(index["train"]), "--query", str(broken), good], capsys)
    assert out["queries"] == 1 and [s["query"] for s in out["skipped"]] == [str(broken)]
    # it alone
    assert main(["search", "--index", str(index["train"]), "--query", str(broken), "--quiet"]) == 2
    assert "no readable images in query images: broken.jpg (cannot decode image" in capsys.readouterr().err


def test_a_sheet_of_a_collection_that_has_moved(index: dict, env: dict, tmp_path: Path, capsys) -> None:
    """The sheet draws the collection's images from where they were embedded; once moved, --images says where
    they are now (else one line, before any file is written)."""
    images = tmp_path / "catalogue"
    shutil.copytree(index["images"], images)
    moved = tmp_path / "moved.npz"
    assert main(["embed", "--checkpoint", str(env["run"]), "--data", str(images), "--split", "test",
                 "--out", str(moved), "--quiet"]) == 0
    images.rename(tmp_path / "elsewhere")
    query = str(min((tmp_path / "elsewhere").rglob("test/cat/*.jpg")))
    capsys.readouterr()
    args = ["search", "--index", str(moved), "--query", query, "--k", "2", "--quiet"]
    assert main([*args, "--sheet", str(tmp_path / "s.png"), "--out", str(tmp_path / "r.csv")]) == 2
    err = capsys.readouterr().err
    assert f"the images of {moved} are no longer at {images}" in err and "--images" in err
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "r.csv").exists()
    assert main([*args, "--sheet", str(tmp_path / "s.png"), "--images", str(tmp_path / "elsewhere")]) == 0
    with Image.open(tmp_path / "s.png") as sheet:
        inside = np.asarray(sheet.convert("L"))[10:94, 110:194]  # the first result's cell, inside its frame
    assert inside.std() > 10  # a picture, not an empty (white) frame
    assert main([*args, "--images", str(tmp_path / "elsewhere")]) == 2  # --images serves --sheet only
    assert "give --sheet too" in capsys.readouterr().err
    for part in ("train", "test"):  # the same layout, other images
        (tmp_path / "wrong" / part / "other").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "wrong" / part / "other" / "x.png")
    assert main([*args, "--sheet", str(tmp_path / "t.png"), "--images", str(tmp_path / "wrong")]) == 2
    assert "holds none of the images of" in capsys.readouterr().err and not (tmp_path / "t.png").exists()
    dup = ["duplicates", "--index", str(moved), "--threshold", "0.5", "--sheet", str(tmp_path / "d.png")]
    assert main(dup) == 2 and "are no longer at" in capsys.readouterr().err
    assert main([*dup, "--images", str(tmp_path / "elsewhere")]) == 0 and (tmp_path / "d.png").is_file()
    index_ = simclr.load_index(moved)
    hits = index_.search([query], k=2)
    with pytest.raises(InputError, match="are no longer at"):
        index_.sheet([query], hits, tmp_path / "p.png")
    assert index_.sheet([query], hits, tmp_path / "p.png", images=tmp_path / "elsewhere").is_file()
