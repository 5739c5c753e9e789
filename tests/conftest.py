"""Fixtures shared across the test suite."""

from pathlib import Path

import pytest
import torch

from simclr.build import build_model
from simclr.config_io import build_config, config_to_dict
from simclr.runtime.checkpoint import save_checkpoint

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def mini_archive() -> Path:
    """The 700-image CIFAR-10 subset (./train/<class>/NNNN.jpg x50, ./test/<class>/NNNN.jpg x20)."""
    path = (SHARED_DATA / "cifar10-mini.tar.gz").resolve()
    if not path.is_file():
        pytest.skip(f"shared test data missing: {path}")
    return path


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """A flat folder of 20 real ImageNet photos (JPEG, 512x512 but one 1024x683) from small-extras."""
    import tarfile

    archive = (SHARED_DATA / "small-extras.tar.gz").resolve()
    if not archive.is_file():
        pytest.skip(f"shared test data missing: {archive}")
    root = tmp_path_factory.mktemp("extras")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers()
                   if m.name.startswith("./foolbox-samples/imagenet/") and m.isfile()]
        tar.extractall(root, members=members, filter="data")
    folder = root / "foolbox-samples" / "imagenet"
    assert len(list(folder.glob("*.jpg"))) == 20
    return folder


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Archives and decoded datasets go to a temporary cache, never to the user's ~/.cache/simclr."""
    patch = pytest.MonkeyPatch()
    patch.setenv("SIMCLR_CACHE", str(tmp_path_factory.mktemp("simclr-cache")))
    yield
    patch.undo()


def _make_checkpoint(path: Path, width: float = 0.125, *, arch: str = "resnet18", size: int = 16,
                     input_norm: str = "none") -> Path:
    """An untrained simclr checkpoint (config + weights, ``size``-px images, CIFAR stem or the small-image
    option) with non-trivial BN statistics."""
    config = build_config({"data": {"spec": "digits", "image_size": size},
                           "model": {"arch": arch, "width": width, "cifar_stem": True,
                                     "input_norm": input_norm, "head": {"out_dim": 24}},
                           "train": {"precision": "fp32", "device": "cpu"}})
    torch.manual_seed(0)
    model = build_model(config)
    with torch.no_grad():  # non-trivial batch-norm statistics, as after training
        for name, t in model.state_dict().items():
            if "running_var" in name:
                t.uniform_(0.5, 2.0)
            elif "running_mean" in name:
                t.normal_(0.0, 0.1)
    save_checkpoint({"config": config_to_dict(config), "model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def make_checkpoint():
    """``make_checkpoint(path, width=0.125, arch=..., size=..., input_norm=...)`` writes an untrained
    checkpoint (see ``_make_checkpoint``)."""
    return _make_checkpoint
