"""The embeddings reader: what simclr embed writes, read back; its refusals."""

import json
from pathlib import Path

import numpy as np
import pytest

from simclr.errors import InputError
from simclr.retrieval.embeddings import load_embeddings


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
            ({"features": np.zeros((0, 3)), "labels": np.zeros(0), "paths": np.array([], dtype=str)},
             "holds no images"),
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


def test_features_whose_width_disagrees_with_the_meta_are_refused(tmp_path: Path) -> None:
    """The widths are recorded on writing; a file whose vectors were cut or replaced afterwards is refused."""
    from simclr.retrieval.embeddings import Embeddings, save_embeddings

    torch = pytest.importorskip("torch")
    emb = Embeddings(torch.ones(2, 5), torch.ones(2, 3), np.array([0, 1]), ["a.png", "b.png"],
                     {"image_size": 32}, None, None)
    save_embeddings(emb, tmp_path / "e.npz")
    back = load_embeddings(tmp_path / "e.npz")
    assert back.meta["width"] == 5 and back.meta["z_width"] == 3
    arrays = dict(np.load(tmp_path / "e.npz"))
    with pytest.raises(InputError, match="features are 4 wide, its meta entry says 5: the file was altered"):
        load_embeddings(_write(tmp_path / "cut.npz", **{**arrays, "features": arrays["features"][:, :4]}))
    with pytest.raises(InputError, match="its z are 2 wide, its meta entry says 3"):
        load_embeddings(_write(tmp_path / "cutz.npz", **{**arrays, "z": arrays["z"][:, :2]}))
    meta = json.loads(str(arrays["meta"]))
    del meta["width"], meta["z_width"]  # a file from before the widths were recorded: read as it is
    old = load_embeddings(_write(tmp_path / "old.npz", **{**arrays, "meta": np.asarray(json.dumps(meta))}))
    assert old.features.shape == (2, 5)
