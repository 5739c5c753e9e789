"""simclr.load_encoder: images in, the same h as `simclr embed` out; z; tensors; torchvision; bad input."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import simclr
from simclr.errors import InputError


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, make_checkpoint) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("api") / "model.pt")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        p = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_same_h_as_simclr_embed(ckpt: Path, images: list[Path], tmp_path: Path) -> None:
    enc = simclr.load_encoder(ckpt, device="cpu")
    assert (enc.image_size, enc.num_features) == (16, 64)
    h = enc(images)
    out = tmp_path / "e.npz"
    simclr.embed(ckpt, images[0].parent, device="cpu", progress=False, out=out)
    with np.load(out) as f:
        order = [Path(p).name for p in f["paths"]]
        ref = torch.from_numpy(f["features"])
    assert h.shape == (5, 64) and h.dtype == torch.float32
    torch.testing.assert_close(h, ref[[order.index(p.name) for p in images]], rtol=1e-4, atol=1e-5)


def test_inputs_of_every_kind_agree(ckpt: Path, images: list[Path]) -> None:
    enc = simclr.load_encoder(ckpt, device="cpu")
    from_paths = enc([str(p) for p in images])
    pil = [Image.open(p) for p in images]
    torch.testing.assert_close(enc(pil), from_paths)
    u8 = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in pil])
    torch.testing.assert_close(enc(u8), from_paths, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(enc(u8.float() / 255), from_paths, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(enc(u8, batch_size=2), from_paths, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(enc(images[0]), from_paths[:1])
    # any mode and size: grayscale and RGBA become RGB, a large image is resized and centre-cropped to 16
    assert enc(Image.new("L", (40, 64), 128)).shape == (1, 64)
    assert enc(Image.new("RGBA", (20, 20), (255, 0, 0, 0))).shape == (1, 64)
    assert enc.preprocess(Image.new("RGB", (48, 32))).shape == (3, 16, 16)


def test_files_are_read_one_batch_at_a_time(ckpt: Path, images: list[Path], monkeypatch) -> None:
    enc = simclr.load_encoder(ckpt, device="cpu")
    whole = enc(images)
    read, seen = [], []
    original = enc.preprocess
    monkeypatch.setattr(enc, "preprocess", lambda im: read.append(im) or original(im))
    from simclr import encoder as api

    make = api.model_encoder

    def spying(*args, **kwargs):
        encode = make(*args, **kwargs)
        return lambda x: seen.append((len(read), len(x))) or encode(x)

    monkeypatch.setattr(api, "model_encoder", spying)
    torch.testing.assert_close(enc(images, batch_size=2), whole, rtol=1e-4, atol=1e-5)
    assert seen == [(2, 2), (4, 2), (5, 1)]  # never more than one batch decoded ahead of the network


def test_z(ckpt: Path, images: list[Path]) -> None:
    enc = simclr.load_encoder(ckpt, device="cpu")
    z = enc(images, z=True)
    assert z.shape == (5, 24)
    with torch.no_grad():
        torch.testing.assert_close(z, enc.model.head(enc(images)), rtol=1e-4, atol=1e-5)


def test_torchvision_model_gives_h(tmp_path: Path, images: list[Path], make_checkpoint) -> None:
    enc = simclr.load_encoder(make_checkpoint(tmp_path / "w1.pt", width=1.0), device="cpu")
    x = torch.stack([enc.preprocess(p) for p in images])
    with torch.no_grad():
        torch.testing.assert_close(enc.torchvision()(x), enc(x), rtol=1e-4, atol=1e-4)


def test_bad_input(ckpt: Path, tmp_path: Path) -> None:
    enc = simclr.load_encoder(ckpt, device="cpu")
    with pytest.raises(InputError, match="expected images"):
        enc(torch.zeros(2, 1, 16, 16))
    with pytest.raises(InputError, match="no images"):
        enc([])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="cannot decode image"):
        enc([bad])
    with pytest.raises(InputError, match="^image not found: .*nothere.jpg$"):  # missing, not called corrupt
        enc([tmp_path / "nothere.jpg"])
    with pytest.raises(InputError, match="not found"):
        simclr.load_encoder(tmp_path / "missing.pt")
    with pytest.raises(InputError, match="torchvision has no"):
        enc.torchvision()  # width 0.125
    for wrong, kind in ((5, "int"), ([5], "a sequence of int"),
                        ([tmp_path / "a.png", 5], "a sequence of PosixPath, int")):
        with pytest.raises(InputError,
                           match=f"images must be paths, PIL images or an image tensor, got {kind}$"):
            enc(wrong)


def test_api_arguments_of_the_wrong_type_are_one_line_errors(ckpt: Path, tmp_path: Path) -> None:
    from simclr.retrieval.embeddings import Embeddings
    from simclr.retrieval.index import Index

    for options, says in (({"subset_file": 5}, "subset_file must be a path, got 5"),
                          ({"label_fraction": "0.1"}, "label_fraction must be in \\(0, 1\\], got '0.1'"),
                          ({"seed": -1}, "seed must be a whole number >= 0"),
                          ({"baseline": "no"}, "baseline must be True or False"),
                          ({"protocol": "transfer", "finetune_grid": 5},
                           "finetune_grid must be none, paper or"),
                          ({"protocol": "probe", "transforms": 5},
                           "transforms: a comma-separated string or a list"),
                          ({"eval_crop": "x"}, "eval_crop must be in \\(0, 1\\], got 'x'"),
                          ({"holdout": "0.2"}, "holdout must be a fraction in \\[0, 1\\), got '0.2'"),
                          ({"image_size": "16"},
                           "image_size must be 0 \\(the run's\\) or a whole number >= 8")):
        with pytest.raises(InputError, match=says):
            simclr.evaluate(ckpt, "digits", **{"protocol": "finetune", **options})
    with pytest.raises(InputError, match="eval_crop must be in"):
        simclr.load_encoder(ckpt, eval_crop="x")
    with pytest.raises(InputError, match="z must be True or False, got 'yes'"):
        simclr.embed(ckpt, "digits", z="yes")
    with pytest.raises(InputError, match="settings must be a dict of config keys to values, got list"):
        simclr.pretrain("digits", tmp_path / "run", settings=["train.epochs=1"])
    with pytest.raises(InputError, match="settings keys are config keys"):
        simclr.pretrain("digits", tmp_path / "run", settings={5: 1})
    with pytest.raises(InputError, match="config must be a path"):
        simclr.pretrain("digits", tmp_path / "run", config=5)
    assert not (tmp_path / "run").exists()
    index = Index(Embeddings(torch.randn(4, 8), None, np.zeros(4, np.int64),
                             [f"{i}.png" for i in range(4)], {}))
    for k in ("3", 2.5, 0, True):
        with pytest.raises(InputError, match="k must be a whole number >= 1"):
            index.search(torch.randn(2, 8), k=k)
    with pytest.raises(InputError, match="threshold must be a number, got 'x'"):
        index.duplicates("x")
    assert [len(hits) for hits in index.search(torch.randn(2, 8), k=3)] == [3, 3]


def test_import_simclr_does_not_load_torch() -> None:
    code = ("import sys, simclr; assert 'torch' not in sys.modules; simclr.load_encoder; "
            "assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_pretrain_from_python(tmp_path: Path) -> None:
    settings = {"data.image_size": 16, "model": {"arch": "resnet18", "width": 0.125},
                "model.head.out_dim": 16, "augment.preset": "cifar10", "train.epochs": 1,
                "train.batch_size": 128, "train.device": "cpu", "train.precision": "fp32"}
    model = settings["model"]
    run = simclr.pretrain("digits", tmp_path / "run", settings=settings, progress=False)
    # the caller's dict kept
    assert settings["model"] is model and model == {"arch": "resnet18", "width": 0.125}
    assert run.step == run.total_steps == 1437 // 128 and run.run_dir == tmp_path / "run"
    enc = simclr.load_encoder(run.run_dir, device="cpu")
    assert enc.config.model.width == 0.125 and enc.config.model.head.out_dim == 16 and enc.num_features == 64
    assert enc(torch.rand(2, 3, 16, 16)).shape == (2, 64)
    again = simclr.pretrain(None, run.run_dir, resume=True, progress=False)  # complete: nothing to do
    assert again.step == run.step
    with pytest.raises(InputError, match="unknown config key"):
        simclr.pretrain("digits", tmp_path / "bad", settings={"train.epoch": 1})
    with pytest.raises(InputError, match="config file not found"):
        simclr.pretrain("digits", tmp_path / "bad", config=tmp_path / "missing.yaml")
    assert not (tmp_path / "bad").exists()


def test_load_encoder_takes_a_precision(ckpt: Path) -> None:
    """None keeps the run's setting; "fp32" computes in fp32 whatever the CPU; a bad name is one
    InputError."""
    assert simclr.load_encoder(ckpt, device="cpu", precision="fp32").precision.dtype is None
    assert simclr.load_encoder(ckpt, device="cpu", precision="bf16").precision.dtype == torch.bfloat16
    with pytest.raises(InputError, match="precision must be one of"):
        simclr.load_encoder(ckpt, device="cpu", precision="half")
