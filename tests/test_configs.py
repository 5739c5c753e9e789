"""Every recipe in configs/ loads, validates and trains a step (scaled down to this CPU)."""

from pathlib import Path

import pytest

from simclr.config_io import load_config
from simclr.runtime.checkpoint import load_checkpoint
from simclr.training.loop import pretrain

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_the_recipes_are_there() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"digits_cpu", "cifar10_cpu", "cifar10_gpu", "cifar10_resnet50", "imagenet_resnet50"} <= names


def test_imagenet_recipe_is_the_papers() -> None:
    c = load_config(Path(CONFIGS[0]).with_name("imagenet_resnet50.yaml"))
    assert (c.model.arch, c.train.batch_size, c.train.epochs, c.optim.name) == ("resnet50", 4096, 100, "lars")
    assert c.optim.base_lr * c.train.batch_size / 256 == pytest.approx(4.8)
    assert (c.optim.weight_decay, c.optim.warmup_epochs, c.loss.temperature) == (1e-6, 10, 0.1)
    assert c.augment.color_strength == 1.0 and c.augment.blur_p == 0.5 and c.data.image_size == 224


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_recipe_trains_one_step(path: Path, mini_archive: Path, tmp_path: Path) -> None:
    overrides = ["train.batch_size=8", "train.device=cpu", "train.precision=fp32", "data.image_size=32",
                 "train.epochs=1", "data.view_size=0", "train.log_every=1"]
    config = load_config(path, overrides, {"data": {"spec": str(mini_archive)}})
    result = pretrain(config, tmp_path / "run", progress=False, stop_after_steps=1)
    assert result.step == 1 and result.loss == result.loss  # finite, not NaN
    assert load_checkpoint(tmp_path / "run")["config"]["model"]["arch"] == config.model.arch
