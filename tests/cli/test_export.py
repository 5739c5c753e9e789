"""simclr export: torchvision weights that give the run's h, a slim simclr file every command takes, bad
input."""

import hashlib
import json
from pathlib import Path

import pytest
import torch

import simclr
from simclr.cli import main
from simclr.errors import InputError
from simclr.models.torchvision_compat import torchvision_skeleton


def test_torchvision_format_loads_into_torchvision(tmp_path: Path, make_checkpoint, capsys) -> None:
    ckpt = make_checkpoint(tmp_path / "w1.pt", width=1.0)
    out = tmp_path / "resnet18.pt"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--format", "torchvision",
                 "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "torchvision" and info["arch"] == "resnet18" and info["cifar_stem"] is True
    model = torchvision_skeleton("resnet18", cifar_stem=True).eval()
    model.load_state_dict(torch.load(out, weights_only=True))  # strict: every key, nothing else
    x = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), simclr.load_encoder(ckpt, device="cpu")(x), rtol=1e-4, atol=1e-4)
    # the printed recipe builds the same model
    namespace = {"torch": torch, "torchvision": __import__("torchvision")}
    exec(info["load"], namespace)  # noqa: S102 - our own printed line
    with torch.no_grad():
        torch.testing.assert_close(namespace["m"].eval()(x), model(x))


def test_simclr_format_is_a_checkpoint_for_every_command(env: dict, tmp_path: Path, capsys) -> None:
    out = tmp_path / "slim.pt"
    assert main(["export", "--checkpoint", str(env["run"]), "--out", str(out), "--format", "simclr"]) == 0
    assert "simclr.load_encoder" in capsys.readouterr().out
    assert out.stat().st_size < 0.7 * (env["run"] / "last.pt").stat().st_size  # no optimiser state
    for path in (env["run"], out):
        assert main(["eval", "knn", "--checkpoint", str(path), "--data", env["archive"], "--cache-dir",
                     env["cache"], "--json", "--quiet"]) == 0
    full, slim = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert slim["top1"] == full["top1"]
    run = tmp_path / "run"
    run.mkdir()
    out.rename(run / "last.pt")
    assert main(["pretrain", "--out", str(run), "--resume"]) == 2
    assert "exported" in capsys.readouterr().err


def test_refusals(env: dict, tmp_path: Path, capsys) -> None:
    out = tmp_path / "x.pt"
    out.write_bytes(b"keep me")
    assert main(["export", "--checkpoint", str(env["run"]), "--out", str(out),
                 "--format", "torchvision"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("simclr: error: torchvision has no resnet18 at width 0.125") and "\n" not in err
    assert err.endswith("use --format safetensors or onnx")
    assert out.read_bytes() == b"keep me"  # nothing already written is lost
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
    # the folder format: never over a file, a run's folder or any folder but an earlier export
    for target in (out, env["run"], env["root"]):
        assert main(["export", "--checkpoint", str(env["run"]), "--out", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        refusals = ("is a file", "holds the checkpoint", "names a file", "not an earlier export")
        assert "\n" not in err and any(r in err for r in refusals), err
    assert out.read_bytes() == b"keep me"


def test_safetensors_folder_is_a_checkpoint_and_carries_a_model_card(env: dict, tmp_path: Path,
                                                                     capsys) -> None:
    out = tmp_path / "exported"
    assert main(["export", "--checkpoint", str(env["run"]), "--out", str(out), "--json"]) == 0  # the default
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "safetensors" and sorted(p.name for p in out.iterdir()) == \
        ["README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert (config["format"], config["model"]["arch"], config["model"]["width"]) == \
        ("simclr-export", "resnet18", 0.125)
    assert config["preprocessing"]["center_crop"] == 32 and config["training"]["step"] > 0
    card = (out / "README.md").read_text()
    assert f"simclr.load_encoder({str(out)!r})" in card and "10 steps, 2 epochs done" in card
    assert f"Exported by simclr {simclr.__version__} " in card
    assert config["versions"]["simclr"] == simclr.__version__
    images = torch.rand(6, 3, 40, 48)  # resized and cropped as the run's images are
    run_enc, folder_enc = (simclr.load_encoder(p, "cpu", precision="fp32") for p in (env["run"], out))
    torch.testing.assert_close(folder_enc(images), run_enc(images), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(folder_enc(images, z=True), run_enc(images, z=True), atol=1e-5, rtol=1e-5)
    # exporting again replaces the earlier export; any command takes the folder as --checkpoint
    assert main(["export", "--checkpoint", str(env["run"]), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["eval", "knn", "--checkpoint", str(out), "--data", env["archive"],
                 "--cache-dir", env["cache"], "--json", "--quiet"]) == 0
    assert 0.0 < json.loads(capsys.readouterr().out)["top1"] <= 1.0
    (out / "config.json").write_text("{not json")
    assert main(["export", "--checkpoint", str(out), "--out", str(tmp_path / "x.onnx"),
                 "--format", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert "config.json" in err and "\n" not in err


def test_import_reads_safetensors(make_checkpoint, tmp_path: Path, capsys) -> None:
    ckpt = make_checkpoint(tmp_path / "w1.pt", width=1.0)
    weights = tmp_path / "r18.safetensors"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(weights), "--format", "torchvision"]) == 0
    assert main(["import", str(weights), "--out", str(tmp_path / "back.pt"), "--image-size", "16"]) == 0
    x = torch.rand(3, 3, 16, 16)
    torch.testing.assert_close(simclr.load_encoder(tmp_path / "back.pt", "cpu", precision="fp32")(x),
                               simclr.load_encoder(ckpt, "cpu", precision="fp32")(x), atol=1e-5, rtol=1e-5)
    weights.write_bytes(weights.read_bytes()[:100])
    capsys.readouterr()
    assert main(["import", str(weights), "--out", str(tmp_path / "bad.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot read weights" in err and "\n" not in err


def test_the_folder_records_its_weights_digest_and_a_file_name_is_refused(env: dict, tmp_path: Path,
                                                                          capsys) -> None:
    out = tmp_path / "exported"
    assert main(["export", "--checkpoint", str(env["run"]), "--out", str(out)]) == 0
    weights = out / "model.safetensors"
    assert json.loads((out / "config.json").read_text())["tensors"]["sha256"] == \
        hashlib.sha256(weights.read_bytes()).hexdigest()
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 0x10  # inside the last tensor's bytes: safetensors itself would not notice
    weights.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="model.safetensors is damaged: its bytes do not match the sha256"):
        simclr.load_encoder(out, "cpu")
    capsys.readouterr()
    for name in ("f.pt", "model.onnx"):  # the earlier default wrote a file: a script's --out names one
        assert main(["export", "--checkpoint", str(env["run"]), "--out", str(tmp_path / name)]) == 2
        assert "names a file, and the safetensors format writes a folder" in capsys.readouterr().err
        assert not (tmp_path / name).exists()
