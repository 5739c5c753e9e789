"""Linear evaluation on frozen features: multinomial logistic regression.

Two solvers for the same model (a linear layer on standardised, frozen h):

* ``sgd``: the paper's protocol (Appendix B.6): SGD with Nesterov momentum 0.9, cosine decay of the
  learning rate ``0.1 x batch/256`` to zero, no weight decay, cross-entropy, on cached features;
* ``lbfgs`` (default for the small datasets this runs on): a full-batch L-BFGS fit, faster and deterministic,
  with the weight decay (the l2 penalty on the mean cross-entropy) chosen on a held-out 10% of the training
  features before refitting on all of them: from :data:`WEIGHT_DECAYS` by default, or from the paper's grid
  for transfer (Appendix B.8: 45 log-spaced values from 1e-6 to 1e5, :data:`PAPER_WEIGHT_DECAYS`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from tqdm import tqdm

from simclr.evaluation.grids import weight_decay_values
from simclr.evaluation.knn import mean_class_accuracy, topk_accuracy

WEIGHT_DECAYS: tuple[float, ...] = (1e-6, 1e-4, 1e-2)
PAPER_WEIGHT_DECAYS: tuple[float, ...] = tuple(float(10.0 ** e) for e in torch.linspace(-6, 5, 45).double())


def weight_decay_grid(spec: str | float | Sequence[float]) -> tuple[float, ...]:
    """``"default"`` (:data:`WEIGHT_DECAYS`), ``"paper"`` (:data:`PAPER_WEIGHT_DECAYS`), comma-separated
    values, or numbers, as a sorted tuple of distinct weight decays >= 0.

    Raises:
        ValueError: Anything else, or an empty grid.
    """
    values = weight_decay_values(spec)
    if isinstance(values, str):
        return {"default": WEIGHT_DECAYS, "paper": PAPER_WEIGHT_DECAYS}[values]
    return values


class LinearModel(NamedTuple):
    """Standardisation statistics and the classifier weights:
    logits = ((x - mean) / std) @ weight.T + bias.
    """

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() - self.mean) / self.std) @ self.weight.T + self.bias


def feature_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and standard deviation (at least 1e-6) of features ``[N, D]``, to standardise them."""
    return x.mean(0), x.std(0, correction=1 if len(x) > 1 else 0).clamp_min(1e-6)  # one row: no spread


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float,
                 max_iter: int = 200) -> LinearModel:
    """Fit softmax regression on [N, D] features and int64 labels [N] (full batch, L-BFGS)."""
    return fit_lbfgs(x, num_classes, lambda logits: F.cross_entropy(logits, y), weight_decay, max_iter)


def fit_lbfgs(x: torch.Tensor, num_outputs: int, loss: Callable[[torch.Tensor], torch.Tensor],
              weight_decay: float, max_iter: int = 200) -> LinearModel:
    """A linear layer on standardised ``x [N, D]`` minimising ``loss(logits [N, num_outputs])`` +
    ``weight_decay`` x the squared weights, full batch with L-BFGS from zero weights."""
    x = x.float()
    mean, std = feature_stats(x)
    xs = (x - mean) / std
    w = torch.zeros(num_outputs, x.shape[1], requires_grad=True)
    b = torch.zeros(num_outputs, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = loss(xs @ w.T + b) + weight_decay * w.pow(2).sum()
        value.backward()
        return value

    with torch.enable_grad():
        opt.step(closure)
    return LinearModel(mean, std, w.detach(), b.detach())


def rows_besides(rows: torch.Tensor, n: int) -> torch.Tensor:
    """The indices in ``range(n)`` that are not in ``rows``, ascending."""
    kept = torch.ones(n, dtype=torch.bool)
    kept[rows] = False
    return torch.nonzero(kept).squeeze(1)


def pick_weight_decay(x: torch.Tensor, y: torch.Tensor, weight_decays: Sequence[float], seed: int,
                      fit: Callable[[torch.Tensor, torch.Tensor, float], LinearModel],
                      score: Callable[[torch.Tensor, torch.Tensor], float],
                      holdout: torch.Tensor | None = None) -> float:
    """The weight decay whose ``fit`` on nine tenths of ``(x, y)`` has the best ``score(logits, labels)`` on
    the other, seeded tenth (the first of equally good ones); or fitted on the rest and scored on the
    ``holdout`` rows when given (e.g. the dataset's own validation split)."""
    if holdout is not None:
        val, rest = holdout, rows_besides(holdout, len(x))
    else:
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        n_val = max(1, len(x) // 10)
        val, rest = perm[:n_val], perm[n_val:]
    best_wd, best = weight_decays[0], -1.0
    for wd in weight_decays:
        value = score(fit(x[rest], y[rest], wd).logits(x[val]), y[val])
        if value > best:
            best_wd, best = wd, value
    return best_wd


def fit_sgd(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, epochs: int = 90, batch_size: int = 1024,
            lr: float | None = None, weight_decay: float = 0.0, seed: int = 0) -> LinearModel:
    """Fit softmax regression with mini-batch SGD + Nesterov and cosine decay (the paper's linear protocol).

    ``lr`` defaults to ``0.1 x batch_size / 256``.
    """
    x = x.float()
    mean, std = feature_stats(x)
    xs = (x - mean) / std
    gen = torch.Generator().manual_seed(seed)
    layer = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    batch_size = min(batch_size, len(xs))
    steps = epochs * max(1, len(xs) // batch_size)
    peak = 0.1 * batch_size / 256 if lr is None else lr
    opt = torch.optim.SGD(layer.parameters(), lr=peak, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    with torch.enable_grad():
        for _ in range(epochs):
            perm = torch.randperm(len(xs), generator=gen)
            for i in range(max(1, len(xs) // batch_size)):
                idx = perm[i * batch_size : (i + 1) * batch_size]
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(layer(xs[idx]), y[idx]).backward()
                opt.step()
                sched.step()
    return LinearModel(mean, std, layer.weight.detach().clone(), layer.bias.detach().clone())


def linear_eval(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                num_classes: int, seed: int = 0, solver: str = "lbfgs", epochs: int = 90,
                weight_decays: Sequence[float] = WEIGHT_DECAYS, metric: str = "top1",
                holdout: torch.Tensor | None = None, progress: bool = False,
                desc: str = "linear fits") -> dict[str, Any]:
    """Fit a linear classifier on frozen training features and report test top-1/top-5 and the mean per-class
    top-1 (``mean_class_top1``).

    ``solver="lbfgs"`` chooses the weight decay among ``weight_decays`` on a held-out tenth of the training
    set by ``metric`` (``top1`` or ``mean_class_top1``; the smallest of equally good ones), or on the
    ``holdout`` rows of the training set when given, then refits on all (``progress``: a bar over the fits,
    named ``desc``); ``solver="sgd"`` runs :func:`fit_sgd` for ``epochs`` epochs."""
    if solver == "sgd":
        model = fit_sgd(train_x, train_y, num_classes, epochs=epochs, seed=seed)
        return {**_test_accuracy(model, test_x, test_y), "solver": "sgd", "epochs": epochs}
    if solver != "lbfgs":
        raise ValueError(f"solver must be lbfgs or sgd, got {solver!r}")
    if metric not in ("top1", "mean_class_top1"):
        raise ValueError(f"metric must be top1 or mean_class_top1, got {metric!r}")
    def score(logits: torch.Tensor, labels: torch.Tensor) -> float:
        return (topk_accuracy(logits, labels, (1,))["top1"] if metric == "top1"
                else mean_class_accuracy(logits, labels))

    with tqdm(total=len(weight_decays) + 1, desc=desc, unit="fit", disable=not progress, leave=False) as bar:
        def fit(x: torch.Tensor, y: torch.Tensor, wd: float) -> LinearModel:
            model = fit_logistic(x, y, num_classes, wd)
            bar.update()
            return model

        best_wd = pick_weight_decay(train_x, train_y, weight_decays, seed, fit, score, holdout)
        model = fit(train_x, train_y, best_wd)
    return {**_test_accuracy(model, test_x, test_y), "weight_decay": best_wd,
            "weight_decays_tried": len(weight_decays), "solver": "lbfgs"}


def _test_accuracy(model: LinearModel, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    scores = model.logits(x)
    return {**topk_accuracy(scores, y), "mean_class_top1": mean_class_accuracy(scores, y)}
