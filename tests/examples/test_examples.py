"""The examples run: examples/product_search.py on 20 real photos (small settings), then again (reusing the
run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from simclr.retrieval.embeddings import load_embeddings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_product_search(photos: Path, tmp_path: Path, capsys) -> None:
    example = _load("product_search")
    queries = [str(photos / "imagenet_10_541.jpg"), str(photos / "imagenet_01_559.jpg")]
    small = ["--catalogue", str(photos), "--query", *queries, "--out", str(tmp_path / "shop"), "--k", "3",
             "--epochs", "1", "--batch-size", "10", "--image-size", "64", "--width", "0.125",
             "--device", "cpu"]
    assert example.main(small) == 0
    out = capsys.readouterr().out
    assert "20 catalogue images embedded (0 unreadable skipped)" in out
    lines = out.splitlines()
    for q in queries:  # each query is a catalogue photo: it finds itself first
        first = lines[lines.index(f"{q}:") + 1].split()
        assert first[0] == "1" and float(first[1]) > 0.9999 and first[2] == Path(q).name
    assert len(load_embeddings(tmp_path / "shop" / "catalogue.npz").paths) == 20
    mtime = (tmp_path / "shop" / "run" / "last.pt").stat().st_mtime_ns
    assert example.main(small) == 0  # the finished run is reused, not trained again
    assert (tmp_path / "shop" / "run" / "last.pt").stat().st_mtime_ns == mtime
    capsys.readouterr()
    missing = ["--catalogue", str(tmp_path / "missing"), "--query", queries[0],
               "--out", str(tmp_path / "new")]
    assert example.main(missing) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("product_search: error: ") and "\n" not in err
    (tmp_path / "notes.txt").write_text("not a photo")
    for bad, why in (("nothere.jpg", "query image not found: "), ("notes.txt", "cannot decode image ")):
        fresh = [*small[:2], "--query", str(tmp_path / bad), "--out", str(tmp_path / "unused"), *small[7:]]
        assert example.main(fresh) == 2  # refused before any training: the new --out stays unwritten
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"product_search: error: {why}{tmp_path / bad}") and "\n" not in err
        assert not (tmp_path / "unused").exists()
    fewer = tmp_path / "fewer"  # another catalogue for the same run: the index is made again, not refused
    fewer.mkdir()
    for photo in sorted(photos.glob("*.jpg"))[:5]:
        (fewer / photo.name).write_bytes(photo.read_bytes())
    assert example.main(["--catalogue", str(fewer), *small[2:]]) == 0
    assert "embedding the whole catalogue again" in capsys.readouterr().err
    assert len(load_embeddings(tmp_path / "shop" / "catalogue.npz").paths) == 5


def test_product_search_interrupted(photos: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    example = _load("product_search")

    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(example.simclr, "pretrain", interrupted)
    args = ["--catalogue", str(photos), "--query", str(photos / "imagenet_10_541.jpg"),
            "--out", str(tmp_path)]
    assert example.main(args) == 130
    assert capsys.readouterr().err.strip() == ("product_search: interrupted "
                                               "(the same command continues where it stopped)")
