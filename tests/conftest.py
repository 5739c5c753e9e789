"""Fixtures shared across the test suite."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def mini_archive() -> Path:
    """The 700-image CIFAR-10 subset (./train/<class>/NNNN.jpg x50, ./test/<class>/NNNN.jpg x20)."""
    path = (SHARED_DATA / "cifar10-mini.tar.gz").resolve()
    if not path.is_file():
        pytest.skip(f"shared test data missing: {path}")
    return path


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Archives and decoded datasets go to a temporary cache, never to the user's ~/.cache/simclr."""
    patch = pytest.MonkeyPatch()
    patch.setenv("SIMCLR_CACHE", str(tmp_path_factory.mktemp("simclr-cache")))
    yield
    patch.undo()
