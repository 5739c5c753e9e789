"""Fixtures shared by the pretraining tests (test_pretrain.py, test_resume.py, test_metrics_rows.py)."""

from pathlib import Path

import pytest

from simclr.training.loop import pretrain
from simclr.training.monitor import KnnMonitor


@pytest.fixture(scope="package")
def full_run(tmp_path_factory) -> Path:
    """A whole run of test_pretrain.py's tiny recipe (three epochs on digits), made once for the package."""
    from .test_pretrain import _config

    run = tmp_path_factory.mktemp("full")
    result = pretrain(_config(), run, progress=False)
    assert result.step == result.total_steps == 3 * (1437 // 64)
    return run


@pytest.fixture
def knn_cut_once(monkeypatch) -> list[int]:
    """A kNN monitor whose first evaluation is cut short by Ctrl-C; later ones give top-1 0.5. Returns its
    calls."""
    calls: list[int] = []

    def interrupted_once(self, net):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return {"knn_top1": 0.5, "knn_top5": 0.9}

    monkeypatch.setattr(KnnMonitor, "__call__", interrupted_once)
    return calls
