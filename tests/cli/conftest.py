"""A small pretrained run on the CIFAR-10 subset, shared by the command-line tests of this package."""

from pathlib import Path

import pytest
import yaml

from simclr.cli import main

RECIPE = {
    "model": {"arch": "resnet18", "width": 0.125, "head": {"out_dim": 32}},
    "augment": {"preset": "cifar10"},
    "loss": {"temperature": 0.5},
    "optim": {"base_lr": 4.0, "warmup_epochs": 1},
    "train": {"batch_size": 100, "log_every": 1, "precision": "fp32"},
}


@pytest.fixture(scope="package")
def env(mini_archive: Path, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cli")
    cfg = root / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**RECIPE, "data": {"cache_dir": str(root / "cache")}}))
    run = root / "run"
    code = main(["pretrain", "--data", str(mini_archive), "--out", str(run), "--config", str(cfg),
                 "--epochs", "2", "--seed", "3", "--device", "cpu", "--quiet"])
    assert code == 0
    return {"archive": str(mini_archive), "run": run, "cfg": cfg, "root": root, "cache": str(root / "cache")}
