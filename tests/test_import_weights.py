"""simclr import: torchvision-style ResNet weights as a simclr checkpoint that computes the same h."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torchvision

import simclr
from simclr.cli import main
from simclr.errors import InputError
from simclr.importer import import_weights, infer_model
from simclr.models.torchvision_compat import torchvision_skeleton
from simclr.runtime.checkpoint import load_checkpoint

NORMALIZE = torchvision.transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Random weights with non-trivial batch-norm statistics, in eval mode."""
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1.0, 0.1)
                m.bias.normal_(0.0, 0.1)
    return model.eval()


def test_wrapped_prefixed_weights_give_torchvisions_h(tmp_path: Path, capsys) -> None:
    tv = _trained_like(torchvision.models.resnet18())
    wrapped = {"epoch": 90, "state_dict": {f"module.{k}": v for k, v in tv.state_dict().items()}}
    torch.save(wrapped, tmp_path / "r18.pth")
    assert main(["import", str(tmp_path / "r18.pth"), "--out", str(tmp_path / "r18.pt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["arch"], info["width"], info["cifar_stem"], info["image_size"]) == \
        ("resnet18", 1.0, False, 224)
    # fc.weight, fc.bias left out
    assert (info["features"], info["tensors"], info["ignored"]) == (512, 120, 2)
    encoder = simclr.load_encoder(tmp_path / "r18.pt", "cpu", precision="fp32")
    tv.fc = torch.nn.Identity()
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), tv(x), atol=1e-4, rtol=1e-4)
    assert load_checkpoint(tmp_path / "r18.pt")["imported"] == {"weights": str(tmp_path / "r18.pth"),
                                                                 "head": "untrained"}


def test_cifar_stem_and_imagenet_standardisation(tmp_path: Path) -> None:
    small = _trained_like(torchvision_skeleton("resnet18", cifar_stem=True))
    torch.save({"model": {"backbone": {f"backbone.{k}": v for k, v in small.state_dict().items()}}},
               tmp_path / "cifar.pth")
    # the same function from simclr
    info = simclr.import_weights(tmp_path / "cifar.pth", tmp_path / "cifar.pt")
    assert info["cifar_stem"] and info["image_size"] == 32
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(simclr.load_encoder(tmp_path / "cifar.pt", "cpu", precision="fp32")(x),
                                   small(x), atol=1e-4, rtol=1e-4)
    supervised = _trained_like(torchvision.models.resnet50())
    torch.save(supervised.state_dict(), tmp_path / "r50.pth")
    info = import_weights(tmp_path / "r50.pth", tmp_path / "r50.pt", input_norm="imagenet", image_size=96)
    assert (info["arch"], info["features"], info["input_norm"], info["image_size"]) == ("resnet50", 2048,
                                                                                        "imagenet", 96)
    encoder = simclr.load_encoder(tmp_path / "r50.pt", "cpu", precision="fp32")
    supervised.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(encoder(x), supervised(NORMALIZE(x)), atol=1e-3, rtol=1e-3)
        # back out through simclr export's torchvision model: it takes standardised input
        torch.testing.assert_close(encoder.torchvision()(NORMALIZE(x)), supervised(NORMALIZE(x)), atol=1e-3,
                                   rtol=1e-3)
    plain = import_weights(tmp_path / "r50.pth", tmp_path / "plain.pt")
    assert plain["input_norm"] == "none"
    assert not torch.allclose(simclr.load_encoder(tmp_path / "plain.pt", "cpu", precision="fp32")(x),
                              encoder(x), atol=1e-2)


def _keys(blocks: tuple[int, ...], bottleneck: bool, stem: torch.Tensor) -> dict[str, torch.Tensor]:
    weights = {"conv1.weight": stem}
    for stage, n in enumerate(blocks, start=1):
        for b in range(n):
            for conv in ("conv1", "conv2", "conv3") if bottleneck else ("conv1", "conv2"):
                weights[f"layer{stage}.{b}.{conv}.weight"] = torch.zeros(1)
    return weights


def test_architecture_is_read_from_the_weights() -> None:
    imagenet, cifar = torch.zeros(64, 3, 7, 7), torch.zeros(64, 3, 3, 3)
    assert infer_model(_keys((2, 2, 2, 2), False, cifar), "f") == {"arch": "resnet18", "width": 1.0,
                                                                   "cifar_stem": True}
    assert infer_model(_keys((3, 4, 6, 3), False, imagenet), "f")["arch"] == "resnet34"
    assert infer_model(_keys((3, 4, 23, 3), True, imagenet), "f")["arch"] == "resnet101"
    assert infer_model(_keys((3, 8, 36, 3), True, imagenet), "f")["arch"] == "resnet152"
    # the paper's released ResNet-50 (2x), (4x): every layer widened
    for width in (2, 4):
        wide = infer_model(_keys((3, 4, 6, 3), True, torch.zeros(64 * width, 3, 7, 7)), "f")
        assert (wide["arch"], wide["width"]) == (f"resnet50x{width}", 1.0)
    assert infer_model(_keys((2, 2, 2, 2), False, torch.zeros(32, 3, 3, 3)), "f")["width"] == 0.5
    with pytest.raises(InputError, match="2-2-3-2 basic blocks per stage is none of"):
        infer_model(_keys((2, 2, 3, 2), False, imagenet), "f")
    for stem in (torch.zeros(0, 3, 7, 7), torch.zeros(64, 1, 7, 7), torch.zeros(64, 3, 5, 5),
                 torch.zeros(64, 3)):
        with pytest.raises(InputError, match=rf"conv1.weight is of shape {re.escape(str(tuple(stem.shape)))}"
                                             r"; a ResNet's stem is \[C, 3, 7, 7\]"):
            infer_model(_keys((2, 2, 2, 2), False, stem), "f")
    no_stem = _keys((2, 2, 2, 2), False, imagenet)
    del no_stem["conv1.weight"]
    with pytest.raises(InputError, match="conv1.weight is missing"):
        infer_model(no_stem, "f")


def test_bad_weights_are_one_line_errors(tmp_path: Path, capsys, make_checkpoint) -> None:
    def fails(path: Path, *extra: str) -> str:
        out = tmp_path / "out.pt"
        assert main(["import", str(path), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("simclr: error: ") and "\n" not in err and not out.exists()
        return err

    assert "weights file not found" in fails(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    assert "cannot read weights" in fails(tmp_path / "junk.pth")
    torch.save({"a": torch.zeros(3)}, tmp_path / "other.pth")
    assert "not a torchvision-style ResNet" in fails(tmp_path / "other.pth")
    simclr_checkpoint = make_checkpoint(tmp_path / "ours.pt")
    assert "it is a simclr checkpoint, which every command takes as it is" in fails(simclr_checkpoint)
    torch.save({"epoch": 3}, tmp_path / "empty.pth")
    assert "holds no state dict of tensors" in fails(tmp_path / "empty.pth")
    wide = torchvision.models.wide_resnet50_2().state_dict()
    torch.save(wide, tmp_path / "wide.pth")
    assert "layer1.0.conv1.weight has shape (128, 64, 1, 1)" in fails(tmp_path / "wide.pth")
    r18 = torchvision.models.resnet18().state_dict()
    moco = {**{f"encoder_q.{k}": v for k, v in r18.items()}, **{f"encoder_k.{k}": v for k, v in r18.items()}}
    torch.save(moco, tmp_path / "moco.pth")
    assert "holds several ResNets" in fails(tmp_path / "moco.pth")
    del r18["layer2.1.bn2.running_var"]
    torch.save(r18, tmp_path / "cut.pth")
    assert "layer2.1.bn2.running_var is missing" in fails(tmp_path / "cut.pth")
    assert "--image-size must be >= 8" in fails(tmp_path / "cut.pth", "--image-size", "4")


class _Payload:
    def __reduce__(self):  # what an unsafe torch.load would run
        return (Path.touch, (Path(_Payload.marker),))

    marker = ""


def test_loading_never_runs_code_from_the_file(tmp_path: Path, capsys) -> None:
    _Payload.marker = str(tmp_path / "ran")
    # torch.load(weights_only=False) would run it
    torch.save({"state_dict": _Payload()}, tmp_path / "evil.pth")
    assert main(["import", str(tmp_path / "evil.pth"), "--out", str(tmp_path / "out.pt")]) == 2
    assert "cannot read weights" in capsys.readouterr().err and not (tmp_path / "ran").exists()


def test_imported_checkpoint_serves_the_other_commands(tmp_path: Path, capsys) -> None:
    torch.save(_trained_like(torchvision_skeleton("resnet18", cifar_stem=True)).state_dict(),
               tmp_path / "w.pth")
    assert main(["import", str(tmp_path / "w.pth"), "--out", str(tmp_path / "w.pt"),
                 "--image-size", "16"]) == 0
    assert "projection head is untrained, so use h" in capsys.readouterr().out
    assert main(["eval", "knn", "--checkpoint", str(tmp_path / "w.pt"), "--data", "digits", "--json",
                 "--quiet", "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["top1"] > 0.5  # random conv features of 8x8 digits at 16 px: far above chance (0.1)


def test_torchvision_names_fetch_its_supervised_weights(tmp_path: Path, monkeypatch, capsys) -> None:
    from urllib.error import URLError

    from torchvision.models._api import WeightsEnum

    supervised = _trained_like(torchvision.models.resnet18())
    fetched = []

    def fake_download(self, *args, **kwargs):  # what torchvision would download (no network in tests)
        fetched.append(str(self))
        return supervised.state_dict()

    monkeypatch.setattr(WeightsEnum, "get_state_dict", fake_download)
    assert main(["import", "torchvision:resnet18", "--out", str(tmp_path / "sup.pt"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    # torchvision's input
    assert fetched == ["ResNet18_Weights.IMAGENET1K_V1"] and info["input_norm"] == "imagenet"
    supervised.fc = torch.nn.Identity()
    x = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(simclr.load_encoder(tmp_path / "sup.pt", "cpu", precision="fp32")(x),
                                   supervised(NORMALIZE(x)), atol=1e-4, rtol=1e-4)

    def offline(self, *args, **kwargs):
        raise URLError("network unreachable")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    assert main(["import", "torchvision:resnet50", "--out", str(tmp_path / "r50.pt")]) == 2
    err = capsys.readouterr().err
    assert "cannot download torchvision's ResNet50_Weights.IMAGENET1K_V2" in err and "\n" not in err.strip()
    assert main(["import", "torchvision:vgg16", "--out", str(tmp_path / "vgg.pt")]) == 2
    assert "torchvision:vgg16: choose from torchvision:resnet18" in capsys.readouterr().err
