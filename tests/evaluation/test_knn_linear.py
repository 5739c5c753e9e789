"""kNN and linear evaluation against independent references."""

import numpy as np
import pytest
import torch

from simclr.evaluation.knn import knn_accuracy, knn_scores, topk_accuracy
from simclr.evaluation.linear import linear_eval


def _numpy_knn(bank, bank_y, queries, num_classes, k, t):
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    out = np.zeros((len(q), num_classes))
    for i, row in enumerate(q):
        sims = b @ row
        for j in np.argsort(-sims, kind="stable")[:k]:
            out[i, bank_y[j]] += np.exp(sims[j] / t)
    return out


@pytest.mark.parametrize("k", [1, 5, 200])
def test_knn_scores_match_numpy(k: int) -> None:
    rng = np.random.default_rng(0)
    bank, queries = rng.normal(size=(120, 8)), rng.normal(size=(30, 8))
    labels = rng.integers(0, 4, 120)
    got = knn_scores(torch.tensor(bank), torch.tensor(labels), torch.tensor(queries), 4, k=k, temperature=0.1)
    np.testing.assert_allclose(got.numpy(), _numpy_knn(bank, labels, queries, 4, min(k, 120), 0.1), rtol=1e-4)


def test_knn_separable_clusters_and_topk() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 16, generator=gen) * 5
    y = torch.arange(5).repeat_interleave(40)
    x = centres[y] + torch.randn(200, 16, generator=gen) * 0.1
    acc = knn_accuracy(x[::2], y[::2], x[1::2], y[1::2], 5, k=10)
    assert acc["top1"] == 1.0 and acc["top5"] == 1.0 and acc["mean_class_top1"] == 1.0
    wrong = y[1::2].clone()
    wrong[wrong == 4] = 3  # every query of class 4 labelled 3: class 3 half right, class 4 absent
    acc = knn_accuracy(x[::2], y[::2], x[1::2], wrong, 5, k=10)
    assert acc["top1"] == pytest.approx(0.8) \
        and acc["mean_class_top1"] == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    scores = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05]])
    assert topk_accuracy(scores, torch.tensor([2, 0]), (1, 2)) == {"top1": 0.5, "top2": 1.0}
    labels = torch.tensor([0] * 11 + [1] * 29)  # 11 of 40 right: 0.275 exactly, as JSON prints it
    assert topk_accuracy(torch.tensor([[1.0, 0.0]]).repeat(40, 1), labels, (1,)) == {"top1": 0.275}


def test_linear_eval_learns_a_linear_rule_and_chance_on_noise() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(600, 10, generator=gen)
    w = torch.randn(10, 3, generator=gen)
    y = (x @ w).argmax(1)
    res = linear_eval(x[:500], y[:500], x[500:], y[500:], 3)
    assert res["top1"] > 0.9
    noise_y = torch.randint(0, 3, (600,), generator=gen)
    res = linear_eval(x[:500], noise_y[:500], x[500:], noise_y[500:], 3)
    assert res["top1"] < 0.55


def test_sgd_solver_learns_the_rule_and_agrees_with_lbfgs() -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(600, 10, generator=gen)
    y = (x @ torch.randn(10, 3, generator=gen)).argmax(1)
    sgd = linear_eval(x[:500], y[:500], x[500:], y[500:], 3, solver="sgd", epochs=30)
    lbfgs = linear_eval(x[:500], y[:500], x[500:], y[500:], 3)
    assert sgd["solver"] == "sgd" and lbfgs["solver"] == "lbfgs"
    assert sgd["top1"] > 0.9 and abs(sgd["top1"] - lbfgs["top1"]) < 0.06
    again = linear_eval(x[:500], y[:500], x[500:], y[500:], 3, solver="sgd", epochs=30)
    assert again["top1"] == sgd["top1"]  # seeded
    with pytest.raises(ValueError, match="solver"):
        linear_eval(x, y, x, y, 3, solver="adam")


def test_fit_sgd_uses_the_papers_learning_rate_and_cosine_decay() -> None:
    from simclr.evaluation.linear import fit_sgd

    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(64, 4, generator=gen), torch.randint(0, 2, (64,), generator=gen)
    # zero epochs of training leave the zero-initialised classifier: uniform logits
    model = fit_sgd(x, y, 2, epochs=0)
    assert torch.equal(model.weight, torch.zeros(2, 4)) and torch.equal(model.bias, torch.zeros(2))


def test_frozen_check_detects_a_changed_batch_norm_statistic() -> None:
    from simclr.evaluation.learned import check_frozen, fingerprint

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    before = fingerprint(net)
    net.eval()
    with torch.no_grad():
        net(torch.randn(8, 3))
    check_frozen(net, before)  # eval mode: nothing moves
    net.train()
    with torch.no_grad():
        net(torch.randn(8, 3))  # train mode updates running statistics even without gradients
    with pytest.raises(RuntimeError, match="running_mean"):
        check_frozen(net, before)


def test_weight_decay_grids() -> None:
    from simclr.evaluation.linear import PAPER_WEIGHT_DECAYS, WEIGHT_DECAYS, weight_decay_grid

    assert weight_decay_grid("default") == WEIGHT_DECAYS
    paper = weight_decay_grid("paper")
    # Appendix B.8: 45 log-spaced values, 1e-6 ... 1e5
    assert paper == PAPER_WEIGHT_DECAYS and len(paper) == 45
    assert paper[0] == pytest.approx(1e-6) and paper[-1] == pytest.approx(1e5)
    np.testing.assert_allclose(np.diff(np.log10(paper)), 11 / 44)
    assert weight_decay_grid("0.1, 1e-3,0.1") == (1e-3, 0.1) and weight_decay_grid([0, 2]) == (0.0, 2.0)
    for bad in ("", "lots", "-1", "inf", [], [float("nan")]):
        with pytest.raises(ValueError, match="weight decays"):
            weight_decay_grid(bad)


def test_linear_eval_picks_from_the_given_grid() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(400, 20, generator=gen)
    y = (x[:, :2] @ torch.randn(2, 4, generator=gen)).argmax(1)
    paper = linear_eval(x[:300], y[:300], x[300:], y[300:], 4, weight_decays=(1e-6, 1e-2, 1e5))
    assert paper["weight_decays_tried"] == 3 and paper["weight_decay"] < 1e5 and paper["top1"] >= 0.85
    # a grid of one overwhelming penalty leaves weights near zero: the majority class for every test point
    crushed = linear_eval(x[:300], y[:300], x[300:], y[300:], 4, weight_decays=(1e5,))
    assert crushed["weight_decay"] == 1e5
    assert crushed["top1"] == pytest.approx(
        float((y[300:] == torch.bincount(y[:300]).argmax()).float().mean()))


def test_linear_eval_selects_by_the_given_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    from simclr.evaluation import linear

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(400, 20, generator=gen)
    y = (x[:, :2] @ torch.randn(2, 4, generator=gen)).argmax(1)
    grid = (1e-6, 1e-2, 1e5)
    # a stand-in per-class score that prefers the smallest logits, i.e. the heaviest penalty, unlike top-1
    monkeypatch.setattr(linear, "mean_class_accuracy", lambda scores, labels: -float(scores.abs().mean()))
    assert linear_eval(x[:300], y[:300], x[300:], y[300:], 4, weight_decays=grid)["weight_decay"] < 1e5
    picked = linear_eval(x[:300], y[:300], x[300:], y[300:], 4, weight_decays=grid, metric="mean_class_top1")
    assert picked["weight_decay"] == 1e5
    with pytest.raises(ValueError, match="metric"):
        linear_eval(x[:300], y[:300], x[300:], y[300:], 4, metric="top5")


def test_a_single_training_row_is_standardised_without_nan() -> None:
    from simclr.evaluation.linear import feature_stats

    mean, std = feature_stats(torch.tensor([[1.0, 2.0, 3.0]]))
    assert torch.equal(mean, torch.tensor([1.0, 2.0, 3.0])) and torch.isfinite(std).all()
    x, y = torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([0, 1])
    out = linear_eval(x, y, x, y, 2)  # the weight decay is picked fitting one row, scoring the other
    assert 0.0 <= out["top1"] <= 1.0


def test_raw_pixels_are_area_averaged_to_32_a_side() -> None:
    from simclr.evaluation.features import RAW_SIDE, raw_pixels

    small = torch.rand(2, 3, 32, 32)
    assert torch.equal(raw_pixels(small)[0], small.flatten(1))  # CIFAR-sized: the pixels as they are
    big = torch.rand(2, 3, 64, 64)
    got = raw_pixels(big)[0]
    assert got.shape == (2, 3 * RAW_SIDE * RAW_SIDE)
    # each value is the mean of a 2 x 2 block
    torch.testing.assert_close(got.view(2, 3, 32, 32)[1, 2, 5, 7], big[1, 2, 10:12, 14:16].mean())


def test_linear_eval_shows_one_step_per_fit(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from simclr.evaluation import linear

    bars = []

    class Recorded(linear.tqdm):  # type: ignore[name-defined,misc]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(linear, "tqdm", Recorded)
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(60, 4, generator=gen), torch.arange(60) % 3
    linear_eval(x[:40], y[:40], x[40:], y[40:], 3, weight_decays=(1e-4, 1e-2), progress=True,
                desc="fits (raw)")
    assert [(b.desc, b.n, b.total) for b in bars] == [("fits (raw)", 3, 3)]  # two weight decays, the refit
    assert "fits (raw)" in capsys.readouterr().err
