"""simclr export: torchvision weights that give the run's h, a slim simclr file every command takes, bad
input."""

import json
from pathlib import Path

import torch

import simclr
from simclr.cli import main
from simclr.models.torchvision_compat import torchvision_skeleton


def test_torchvision_format_loads_into_torchvision(tmp_path: Path, make_checkpoint, capsys) -> None:
    ckpt = make_checkpoint(tmp_path / "w1.pt", width=1.0)
    out = tmp_path / "resnet18.pt"
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out), "--json"]) == 0
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
    assert main(["export", "--checkpoint", str(env["run"]), "--out", str(out)]) == 2  # width 0.125
    err = capsys.readouterr().err.strip()
    assert err.startswith("simclr: error: torchvision has no resnet18 at width 0.125") and "\n" not in err
    assert out.read_bytes() == b"keep me"  # nothing already written is lost
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
