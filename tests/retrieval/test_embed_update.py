"""simclr embed --update: only new and changed images are embedded; the result is what a fresh embedding
gives."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import simclr
from simclr.cli import main
from simclr.errors import InputError
from simclr.evaluation.setup import EvalSetup
from simclr.retrieval import embed as embed_module
from simclr.retrieval.embeddings import Embeddings, load_embeddings, save_embeddings
from simclr.runtime.checkpoint import load_checkpoint, save_checkpoint, weights_digest


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, make_checkpoint) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("update") / "model.pt")


def _catalogue(root: Path, seed: int = 0) -> Path:
    """Two classes of 5 random 20x20 PNGs."""
    rng = np.random.default_rng(seed)
    for name in ("bags", "shoes"):
        (root / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def _setup(data: Path, **kw) -> EvalSetup:
    return EvalSetup.of(str(data), device="cpu", progress=False, batch_size=4, **kw)


def embed(ckpt: Path, setup: EvalSetup, split: str, out: Path, with_z: bool = False,
          update: bool = False) -> dict:
    """What ``simclr embed`` runs (``simclr.embed``), reading as ``setup`` says; its counts as a dict."""
    d = setup.data
    r = simclr.embed(ckpt, d.spec, split=split, z=with_z, out=out, update=update, device=setup.device,
                     batch_size=setup.batch_size, progress=setup.progress, image_size=d.image_size)
    return {"images": len(r), "skipped": len(r.skipped), "dim": int(r.h.shape[1]), "reused": r.reused,
            "embedded": r.embedded, "dropped": r.dropped, "fresh": r.fresh, "updated": r.updated}


@pytest.fixture()
def counted(monkeypatch) -> list[int]:
    """The number of images each call of embed_source embedded."""
    seen: list[int] = []
    real = embed_module.embed_source

    def spy(encode, config, source, setup, *args, **kw):
        seen.append(len(source))
        return real(encode, config, source, setup, *args, **kw)

    monkeypatch.setattr(embed_module, "embed_source", spy)
    return seen


def _same(a: Embeddings, b: Embeddings) -> None:
    assert a.paths == b.paths
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.digests, b.digests)
    assert a.classes == b.classes and a.classes is not None
    torch.testing.assert_close(a.features, b.features, rtol=1e-5, atol=1e-5)
    assert (a.z is None) == (b.z is None)
    if a.z is not None:
        torch.testing.assert_close(a.z, b.z, rtol=1e-5, atol=1e-5)


def test_update_embeds_only_new_and_changed_images_and_equals_a_fresh_embedding(ckpt: Path, tmp_path: Path,
                                                                                 counted: list[int]) -> None:
    shop = _catalogue(tmp_path / "shop")
    out = tmp_path / "index.npz"
    first = embed(ckpt, _setup(shop), "all", out, with_z=True)
    assert first["images"] == 10 and first["updated"] is False and counted == [10]
    # a new image, an image gone, an image edited in place, and a new class that shifts the labels of "shoes"
    Image.fromarray(np.full((20, 20, 3), 7, np.uint8)).save(shop / "bags" / "new.png")
    (shop / "shoes" / "0.png").unlink()
    Image.open(shop / "bags" / "1.png").rotate(90).save(shop / "bags" / "1.png")
    (shop / "caps").mkdir()
    shutil.copy(shop / "bags" / "2.png", shop / "caps" / "copy.png")  # the same bytes under another path
    info = embed(ckpt, _setup(shop), "all", out, with_z=True, update=True)
    assert counted[1:] == [3]  # new.png, the edited 1.png and caps/copy.png; nothing else read by the network
    assert info == {"images": 11, "skipped": 0, "dim": 64, "reused": 8, "embedded": 3, "dropped": 2,
                    "fresh": None, "updated": True}  # shoes/0.png and the old bags/1.png dropped
    fresh = tmp_path / "fresh.npz"
    embed(ckpt, _setup(shop), "all", fresh, with_z=True)
    updated, again = load_embeddings(out), load_embeddings(fresh)
    _same(updated, again)
    assert "caps/copy.png" in updated.paths and updated.labels[updated.paths.index("shoes/1.png")] == 2
    assert counted[-1] == 11
    nothing = embed(ckpt, _setup(shop), "all", out, with_z=True, update=True)
    assert (nothing["reused"], nothing["embedded"], nothing["dropped"]) == (11, 0, 0)
    assert len(counted) == 3  # the network ran on no image at all
    _same(load_embeddings(out), again)


def test_rows_made_another_way_are_not_kept(ckpt: Path, tmp_path: Path, counted: list[int]) -> None:
    shop = _catalogue(tmp_path / "shop")
    out = tmp_path / "index.npz"
    embed(ckpt, _setup(shop), "all", out)
    info = embed(ckpt, _setup(shop, image_size=24), "all", out, update=True)
    assert info["reused"] == 0 and info["embedded"] == 10 and "image side" in info["fresh"]
    info = embed(ckpt, _setup(shop, image_size=24), "all", out, with_z=True, update=True)
    assert info["reused"] == 0 and "z stored or not" in info["fresh"]
    other = tmp_path / "other.pt"
    state = load_checkpoint(ckpt)
    state["model"] = {k: v * 1.01 if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint(state, other)
    info = embed(other, _setup(shop, image_size=24), "all", out, with_z=True, update=True)
    assert info["reused"] == 0 and "the network's weights" in info["fresh"]
    old = load_embeddings(out)  # a file written before digests were kept
    save_embeddings(old._replace(digests=None), out)
    info = embed(other, _setup(shop, image_size=24), "all", out, with_z=True, update=True)
    assert info["reused"] == 0 and "no image digests" in info["fresh"]
    assert load_embeddings(out).digests is not None
    assert counted == [10] * 5


def test_another_dataset_or_split_is_refused_and_the_file_kept(ckpt: Path, tmp_path: Path) -> None:
    shop = _catalogue(tmp_path / "shop")
    out = tmp_path / "index.npz"
    embed(ckpt, _setup(shop), "all", out)
    before = out.read_bytes()
    with pytest.raises(InputError, match=r"holds .*shop \(all\), not .*shop \(train\): --update takes"):
        embed(ckpt, _setup(shop), "train", out, update=True)
    other = _catalogue(tmp_path / "other", seed=1)
    with pytest.raises(InputError, match="--update takes the --data and --split it was made with"):
        embed(ckpt, _setup(other), "all", out, update=True)
    assert out.read_bytes() == before
    assert embed(ckpt, _setup(other), "all", out)["images"] == 10  # without --update: replaced


def test_a_flat_folder_that_gains_a_subfolder_is_refused_and_the_file_kept(ckpt: Path, tmp_path: Path,
                                                                           capsys) -> None:
    """A subfolder in a flat catalogue makes it a folder of classes, whose loose images have none: the update
    would have dropped all but the subfolder's images. It is refused; reading such a folder says what is left
    out."""
    shop = tmp_path / "shop"
    _catalogue(tmp_path / "classes")
    shop.mkdir()
    for png in sorted((tmp_path / "classes").rglob("*.png")):
        shutil.copy(png, shop / f"{png.parent.name}_{png.name}")
    out = tmp_path / "index.npz"
    assert embed(ckpt, _setup(shop), "all", out)["images"] == 10
    before = out.read_bytes()
    (shop / "thumbs").mkdir()
    shutil.copy(shop / "bags_0.png", shop / "thumbs" / "small.png")
    with pytest.raises(InputError, match=r"without classes, which now has class subfolders \(thumbs\): "
                                         r"read as classes, only their 1 image\(s\) would be kept of 10"):
        embed(ckpt, _setup(shop), "all", out, update=True)
    assert out.read_bytes() == before
    assert "note: 10 image(s) directly in" in capsys.readouterr().err
    (shop / "thumbs").rename(shop / "test")  # a test/ folder: now the whole collection
    with pytest.raises(InputError,
                       match=r"read as the folder itself, which now reads as test/ \(a train/, test/"):
        embed(ckpt, _setup(shop), "all", out, update=True)
    assert out.read_bytes() == before
    shutil.rmtree(shop / "test")
    assert embed(ckpt, _setup(shop), "all", out, update=True)["images"] == 10  # as it was: brought up to date
    assert "note: 10" in capsys.readouterr().err  # the refused try said what a test/ folder leaves out
    assert embed(ckpt, _setup(tmp_path / "classes"), "all", tmp_path / "classes.npz")["images"] == 10
    shutil.rmtree(tmp_path / "classes" / "shoes")
    for png in sorted((tmp_path / "classes" / "bags").glob("*.png")):
        png.rename(tmp_path / "classes" / png.name)
    (tmp_path / "classes" / "bags").rmdir()
    with pytest.raises(InputError, match="with classes, which now has none"):
        embed(ckpt, _setup(tmp_path / "classes"), "all", tmp_path / "classes.npz", update=True)
    assert "note:" not in capsys.readouterr().err  # a flat folder: nothing left out


def test_unreadable_images_are_tried_again(ckpt: Path, tmp_path: Path) -> None:
    shop = _catalogue(tmp_path / "shop")
    good = (shop / "bags" / "0.png").read_bytes()
    (shop / "bags" / "0.png").write_bytes(b"not a png")
    out = tmp_path / "index.npz"
    assert embed(ckpt, _setup(shop), "all", out)["skipped"] == 1
    info = embed(ckpt, _setup(shop), "all", out, update=True)
    assert (info["reused"], info["embedded"], info["skipped"]) == (9, 0, 1)
    (shop / "bags" / "0.png").write_bytes(good)
    info = embed(ckpt, _setup(shop), "all", out, update=True)
    assert (info["reused"], info["embedded"], info["skipped"], info["images"]) == (9, 1, 0, 10)


def test_update_of_images_held_in_memory(ckpt: Path, tmp_path: Path, counted: list[int]) -> None:
    out = tmp_path / "digits.npz"
    embed(ckpt, _setup(Path("digits")), "test", out)
    info = embed(ckpt, _setup(Path("digits")), "test", out, update=True)
    assert info["embedded"] == 0 and info["reused"] == info["images"] == 360 and counted == [360]


def test_weights_digest_sees_every_value() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    before = weights_digest(net)
    assert weights_digest(net) == before
    with torch.no_grad():
        net[1].running_mean[1] += 1e-6
    assert weights_digest(net) != before


def test_command_reports_the_update_and_refuses_a_damaged_file(ckpt: Path, tmp_path: Path, capsys) -> None:
    shop = _catalogue(tmp_path / "shop")
    out = tmp_path / "index.npz"
    args = ["embed", "--checkpoint", str(ckpt), "--data", str(shop), "--out", str(out), "--device", "cpu",
            "--quiet", "--split", "all", "--update"]
    assert main(args) == 0
    assert "wrote 10 embeddings" in capsys.readouterr().out
    (shop / "bags" / "3.png").unlink()
    assert main(args) == 0
    assert "9 unchanged kept, 0 new or changed embedded, 1 gone or changed dropped" in capsys.readouterr().out
    assert main([*args, "--z"]) == 0
    captured = capsys.readouterr()
    assert "every image embedded again" in captured.err and "wrote 9 embeddings" in captured.out
    out.write_bytes(b"damaged")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable .npz" in err and out.read_bytes() == b"damaged"


def test_python_api_update(ckpt: Path, tmp_path: Path) -> None:
    shop = _catalogue(tmp_path / "shop")
    out = tmp_path / "index.npz"
    first = simclr.embed(ckpt, shop, device="cpu", progress=False, out=out)
    (shop / "shoes" / "4.png").unlink()
    index = simclr.embed(ckpt, shop, device="cpu", progress=False, out=out, update=True)
    assert len(index) == 9 and index.paths == [p for p in first.paths if p != "shoes/4.png"]
    torch.testing.assert_close(index.h, first.h[:9])
    with pytest.raises(InputError, match="needs out="):
        simclr.embed(ckpt, shop, device="cpu", progress=False, update=True)
    with pytest.raises(InputError, match="update must be True or False"):
        simclr.embed(ckpt, shop, device="cpu", progress=False, out=out, update="yes")


def test_load_embeddings_refuses_digests_of_the_wrong_shape(tmp_path: Path) -> None:
    emb = Embeddings(torch.rand(3, 4), None, np.zeros(3, np.int64), ["a", "b", "c"], {})
    save_embeddings(emb, tmp_path / "ok.npz")
    assert load_embeddings(tmp_path / "ok.npz").digests is None
    np.savez(tmp_path / "bad.npz", features=np.zeros((3, 4), np.float32), labels=np.zeros(3, np.int64),
             paths=np.array(["a", "b", "c"]), digests=np.zeros((2, 16), np.uint8))
    with pytest.raises(InputError, match="digests"):
        load_embeddings(tmp_path / "bad.npz")
