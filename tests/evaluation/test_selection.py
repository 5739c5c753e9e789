"""Transfer's hyper-parameter search (Appendix B.8): the paper's grids, the held-out split and the choice."""

import math

import numpy as np
import pytest

from simclr.evaluation.finetune import FinetuneSpec
from simclr.evaluation.selection import (
    PAPER_FINETUNE_GRID,
    PAPER_SCRATCH_GRID,
    Grid,
    holdout_split,
    parse_grids,
    select,
)


def test_paper_grids() -> None:
    ft, sc = PAPER_FINETUNE_GRID, PAPER_SCRATCH_GRID
    # fine-tuning: 7 learning rates 1e-4..0.1; 7 weight decays 1e-6..1e-3 and none
    assert len(ft.lrs) == 7 and ft.lrs[0] == pytest.approx(1e-4) and ft.lrs[-1] == pytest.approx(0.1)
    assert ft.lrs[1] == pytest.approx(10 ** -3.5)
    assert len(ft.weight_decays) == 8 and ft.weight_decays[0] == 0.0
    assert ft.weight_decays[1] == pytest.approx(1e-6) and ft.weight_decays[-1] == pytest.approx(1e-3)
    # from random initialisation: 7 learning rates 1e-3..1.0, 8 weight decays 1e-5..10^-1.5
    assert len(sc.lrs) == 7 and sc.lrs[0] == pytest.approx(1e-3) and sc.lrs[-1] == pytest.approx(1.0)
    assert len(sc.weight_decays) == 8 and sc.weight_decays[0] == pytest.approx(1e-5)
    assert sc.weight_decays[-1] == pytest.approx(10 ** -1.5) \
        and sc.weight_decays[1] == pytest.approx(10 ** -4.5)
    assert len(ft.cells()) == 56 and len(sc.cells()) == 56


def test_a_cell_divides_the_weight_decay_by_the_learning_rate() -> None:
    grid = Grid((0.01, 0.1), (0.0, 1e-4))
    assert grid.cells() == [(0.01, 0.0), (0.01, 1e-4), (0.1, 0.0), (0.1, 1e-4)]
    spec = grid.spec(FinetuneSpec(epochs=3, seed=5), 0.01, 1e-4)
    assert spec.lr == 0.01 and spec.weight_decay == pytest.approx(1e-2) and (spec.epochs, spec.seed) == (3, 5)


def test_parse_grids() -> None:
    assert parse_grids("none") is None and parse_grids(None) is None and parse_grids("") is None
    assert parse_grids("paper") == (PAPER_FINETUNE_GRID, PAPER_SCRATCH_GRID)
    ft, sc = parse_grids(" 0.1,0.01/1e-5,0 ")
    assert ft == sc == Grid((0.01, 0.1), (0.0, 1e-5))
    for bad in ("fast", "0.1", "0.1/0/1", "a/0", "0.1/", "0/0", "-1/0", "0.1/-1", "inf/0"):
        with pytest.raises(ValueError, match="grid"):
            parse_grids(bad)


def test_holdout_split_is_class_by_class_and_seeded() -> None:
    labels = np.repeat([0, 1, 2, 3], [30, 10, 4, 1])
    fit, val = holdout_split(labels, 0.1, seed=0)
    assert len(np.intersect1d(fit, val)) == 0 and len(fit) + len(val) == len(labels)
    assert np.array_equal(np.sort(np.concatenate([fit, val])), np.arange(len(labels)))
    # 10% of each class, rounded: 3 + 1 + 0 + 0; the single image of class 3 stays for training
    assert [int((labels[val] == c).sum()) for c in range(4)] == [3, 1, 0, 0]
    again = holdout_split(labels, 0.1, seed=0)
    assert np.array_equal(val, again[1]) and not np.array_equal(val, holdout_split(labels, 0.1, seed=1)[1])
    assert [int((labels[holdout_split(labels, 0.5, 0)[1]] == c).sum()) for c in range(4)] == [15, 5, 2, 0]
    with pytest.raises(ValueError, match="too few"):
        holdout_split(np.arange(5), 0.1, seed=0)  # one image per class: none to hold out


def test_select_takes_the_best_cell_and_the_first_of_equals() -> None:
    grid = Grid((0.001, 0.01, 0.1), (0.0, 1e-5))
    seen: list[dict] = []

    def score(spec: FinetuneSpec) -> float:  # best at lr 0.01; weight decay does not matter
        return -abs(math.log10(spec.lr) + 2)

    spec, rows = select(grid, FinetuneSpec(epochs=2), score, on_cell=seen.append)
    assert (spec.lr, spec.weight_decay, spec.epochs) == (0.01, 0.0, 2)  # first of the two equal cells
    assert rows == seen and [(r["lr"], r["weight_decay"]) for r in rows] == grid.cells()
    assert rows[2]["val"] == 0.0 and rows[0]["val"] == pytest.approx(-1.0)

    spec, _ = select(grid, FinetuneSpec(), lambda s: math.nan if s.lr == 0.01 else s.weight_decay * s.lr)
    assert (spec.lr, spec.weight_decay * spec.lr) == pytest.approx((0.001, 1e-5))  # NaN never wins
    spec, rows = select(grid, FinetuneSpec(), lambda s: math.nan)
    assert (spec.lr, spec.weight_decay) == (0.001, 0.0) and all(math.isnan(r["val"]) for r in rows)
