"""simclr export in every format for simclr's ResNets and timm/torchvision backbones: each written file loads
with the call the result prints and computes the h simclr computes; formats that cannot hold a network are
refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime
import pytest
import torch
import torchvision

import simclr
from simclr.cli import main
from simclr.errors import InputError
from simclr.export import export


@pytest.fixture(scope="module")
def nets(tmp_path_factory, make_checkpoint) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("nets")
    def make(name: str, arch: str, width: float = 1.0, input_norm: str = "none") -> Path:
        return make_checkpoint(root / f"{name}.pt", width, arch=arch, size=32, input_norm=input_norm)

    return {"r18": make("r18", "resnet18"), "r18w025": make("r18w025", "resnet18", width=0.25),
            "vit": make("vit", "timm:test_vit"),
            "convnext": make("convnext", "timm:test_convnext", input_norm="imagenet"),
            "mobilenet": make("mobilenet", "torchvision:mobilenet_v3_small")}


def _h(checkpoint: Path, x: torch.Tensor) -> torch.Tensor:
    return simclr.load_encoder(checkpoint, "cpu", precision="fp32")(x)


def _run_recipe(recipe: str) -> torch.nn.Module:
    """The model ``m`` that the printed ``load`` line builds (run as a user would paste it)."""
    namespace: dict = {}
    exec(recipe, namespace)  # noqa: S102 - our own printed line
    return namespace["m"]


NORMALIZE = torchvision.transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.mark.parametrize(("net", "fmt", "suffix"), [("r18", "torchvision", ".pt"), ("r18", "timm", ".pt"),
                                                    ("mobilenet", "torchvision", ".safetensors"),
                                                    ("vit", "timm", ".safetensors"),
                                                    ("convnext", "timm", ".safetensors")])
def test_library_formats_load_with_the_printed_line(nets, tmp_path: Path, net: str, fmt: str,
                                                    suffix: str) -> None:
    out = tmp_path / f"{net}{suffix}"
    info = export(nets[net], out, fmt)
    m = _run_recipe(info["load"].split("  #")[0])
    assert not m.training
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        theirs = m(NORMALIZE(x) if info["input_norm"] == "imagenet" else x)
    torch.testing.assert_close(theirs, _h(nets[net], x), atol=1e-4, rtol=1e-4)
    if net == "convnext":  # the small-image stem is replaced before loading; standardising is the user's
        assert "m.stem[0] = torch.nn.Conv2d(3, " in info["load"] and "Normalize" in info["load"]
    if net == "vit":  # no change to timm's model: timm reads the file itself
        assert "pretrained_cfg_overlay=dict(file=" in info["load"] and "patch_size=4" in info["load"]
    if net == "mobilenet":
        assert "m.classifier[3] = torch.nn.Identity()" in info["load"]


def test_formats_that_cannot_hold_a_network_say_which_can(nets, tmp_path: Path, capsys) -> None:
    for net, fmt in (("r18w025", "torchvision"), ("r18w025", "timm"), ("vit", "torchvision"),
                     ("mobilenet", "timm")):
        out = tmp_path / f"{net}.{fmt}"
        assert main(["export", "--checkpoint", str(nets[net]), "--out", str(out), "--format", fmt]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and err.endswith("safetensors or onnx") and not out.exists(), err


@pytest.mark.parametrize("net", ["r18w025", "vit"])
def test_onnx_matches_pytorch(nets, tmp_path: Path, net: str) -> None:
    out = tmp_path / f"{net}.onnx"
    info = export(nets[net], out, "onnx")
    assert info["max_abs_diff"] < 1e-4
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # the batch axis is dynamic
        x = torch.rand(batch, 3, 32, 32)
        h = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
        assert h.shape == (batch, info["features"])
        assert (h - _h(nets[net], x)).abs().max() < 1e-4
    meta = {p.key: p.value for p in __import__("onnx").load(str(out)).metadata_props}
    assert json.loads(meta["simclr_model"])["arch"] == info["arch"]


def test_folder_without_run_figures_and_plain_recipes(nets, tmp_path: Path) -> None:
    for net in ("r18", "convnext"):
        out = tmp_path / net
        info = export(nets[net], out)
        card = (out / "README.md").read_text()
        assert "None recorded" in card and "not recorded" in card and info["load_plain"] in card
        m = _run_recipe(info["load_plain"].split("  #")[0])  # without simclr: safetensors, torch, the library
        x = torch.rand(2, 3, 32, 32)
        with torch.no_grad():
            theirs = m(NORMALIZE(x) if info["input_norm"] == "imagenet" else x)
        torch.testing.assert_close(theirs, _h(out, x), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(_h(out, x), _h(nets[net], x), atol=1e-5, rtol=1e-5)
    config = json.loads((tmp_path / "convnext" / "config.json").read_text())
    assert config["model"]["created_with"] == {} and "stem" in config["model"]["stem_change"]
    assert config["model"]["input_norm"] == "imagenet" and config["preprocessing"]["mean"] == [0.0] * 3


def test_encoder_torchvision_for_backbones(nets) -> None:
    x = torch.rand(2, 3, 32, 32)
    m = simclr.load_encoder(nets["mobilenet"], "cpu", precision="fp32").torchvision()
    assert isinstance(m, torchvision.models.MobileNetV3)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _h(nets["mobilenet"], x), atol=1e-5, rtol=1e-5)
    for net in ("vit", "r18w025"):
        with pytest.raises(InputError):
            simclr.load_encoder(nets[net], "cpu").torchvision()
