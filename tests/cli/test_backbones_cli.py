"""timm backbones end to end on the CIFAR-10 subset: a few pretraining steps, resume, kNN, embed and export,
for a tiny ViT, a ConvNeXt, an EfficientNet and a ResNet-50 from timm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from simclr.api import load_encoder
from simclr.cli import main
from simclr.config_io import load_config
from simclr.runtime.checkpoint import load_checkpoint
from simclr.training.loop import pretrain

pytest.importorskip("timm")

# timm name -> h's width
BACKBONES = {"test_vit": 64, "test_convnext": 64, "test_efficientnet": 256, "resnet50": 2048}
RECIPE = {"augment": {"preset": "cifar10"}, "model": {"head": {"hidden_dim": 64, "out_dim": 16}},
          "optim": {"warmup_epochs": 0.05}, "loss": {"temperature": 0.5},
          "train": {"batch_size": 25, "log_every": 1, "precision": "fp32", "knn_every": 0}}


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    cfg = tmp_path_factory.mktemp("bb") / "recipe.yaml"
    cfg.write_text(yaml.safe_dump(RECIPE))
    return cfg


def _rows(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", list(BACKBONES))
def test_timm_backbone_end_to_end(name: str, mini_archive: Path, recipe: Path, tmp_path: Path,
                                  capsys) -> None:
    arch, run, data = f"timm:{name}", tmp_path / "run", str(mini_archive)
    base = ["pretrain", "--data", data, "--out", str(run), "--config", str(recipe), "--arch", arch,
            "--device", "cpu", "--seed", "1", "--quiet"]
    assert main([*base, "--epochs", "0.15"]) == 0  # 500 images / 25 = 20 steps an epoch: 3 steps
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["arch"] == arch and saved["model"]["cifar_stem"] is True
    whole = {r["step"]: r["loss"] for r in _rows(run) if "loss" in r}
    assert sorted(whole) == [1, 2, 3] and all(np.isfinite(v) for v in whole.values())
    # stopped after 2 steps and resumed: the same third step
    config, parts = load_config(run / "config.yaml"), tmp_path / "parts"
    assert pretrain(config, parts, progress=False, stop_after_steps=2).step == 2
    pretrain(config, parts, resume=True, progress=False)
    resumed = {r["step"]: r["loss"] for r in _rows(parts) if "loss" in r}
    assert resumed == pytest.approx(whole, rel=1e-5, abs=1e-6)
    a, b = load_checkpoint(run / "last.pt")["model"], load_checkpoint(parts / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)
    capsys.readouterr()
    assert main(["eval", "knn", "--checkpoint", str(run), "--data", data, "--device", "cpu", "--json"]) == 0
    knn = json.loads(capsys.readouterr().out)
    assert knn["train_images"] == 500 and knn["test_images"] == 200 and 0.0 <= knn["top1"] <= 1.0
    out = tmp_path / "test.npz"
    assert main(["embed", "--checkpoint", str(run), "--data", data, "--split", "test", "--out", str(out),
                 "--device", "cpu"]) == 0
    with np.load(out) as f:
        h = f["features"] if "features" in f else f["h"]
    assert h.shape == (200, BACKBONES[name]) and np.isfinite(h).all()
    exported = tmp_path / "exported"  # the default format: a safetensors folder read back by load_encoder
    assert main(["export", "--checkpoint", str(run), "--out", str(exported)]) == 0
    assert {p.name for p in exported.iterdir()} == {"model.safetensors", "config.json", "README.md"}
    images = _images(mini_archive)
    h = load_encoder(exported, device="cpu")(images)
    assert h.shape == (len(images), BACKBONES[name])
    torch.testing.assert_close(h, load_encoder(run, device="cpu")(images), rtol=1e-5, atol=1e-5)

def _images(archive: Path) -> list:
    import tarfile
    from io import BytesIO

    from PIL import Image

    with tarfile.open(archive) as tar:
        names = [m for m in tar.getmembers() if m.name.endswith(".jpg")][:3]
        return [Image.open(BytesIO(tar.extractfile(m).read())).convert("RGB") for m in names]


def test_time_budget_fits_a_timm_backbone(mini_archive: Path, recipe: Path, tmp_path: Path) -> None:
    """The budget is measured, not modelled: any network's steps are timed and the schedule fitted to them."""
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(mini_archive), "--out", str(run), "--config", str(recipe),
                 "--arch", "timm:test_efficientnet", "--device", "cpu", "--epochs", "100", "--time-budget",
                 "0.15", "--quiet"]) == 0
    state = load_checkpoint(run / "last.pt")
    steps = [r for r in _rows(run) if "loss" in r]
    assert 0 < len(steps) < 100 * 20  # far fewer than 100 epochs' steps: the schedule fitted the budget
    assert state["time_s"] < 0.15 * 60 * 1.5


def test_views_too_small_for_the_network_are_one_line(mini_archive: Path, recipe: Path, tmp_path: Path,
                                                     capsys) -> None:
    run = tmp_path / "run"
    code = main(["pretrain", "--data", str(mini_archive), "--out", str(run), "--config", str(recipe),
                 "--arch", "timm:test_convnext", "--set", "model.cifar_stem=false",
                 "--set", "data.view_size=16", "--device", "cpu", "--epochs", "0.1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "timm:test_convnext cannot take 16x16 views" in err and "Traceback" not in err
    assert not run.exists()  # refused before anything was written
