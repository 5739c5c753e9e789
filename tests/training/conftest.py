"""Fixtures shared by the pretraining tests (test_pretrain.py, test_resume.py)."""

from pathlib import Path

import pytest

from simclr.training.loop import pretrain


@pytest.fixture(scope="package")
def full_run(tmp_path_factory) -> Path:
    """A whole run of test_pretrain.py's tiny recipe (three epochs on digits), made once for the package."""
    from .test_pretrain import _config

    run = tmp_path_factory.mktemp("full")
    result = pretrain(_config(), run, progress=False)
    assert result.step == result.total_steps == 3 * (1437 // 64)
    return run
