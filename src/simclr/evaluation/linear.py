"""Linear evaluation on frozen features: multinomial logistic regression fitted with L-BFGS.

The paper's protocol (Appendix B.5) trains a linear layer on frozen h with SGD; on cached features a
full-batch L-BFGS fit of the same model is faster and deterministic. The weight decay is chosen on a
held-out 10% of the training features, then the model is refitted on all of them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from simclr.evaluation.knn import topk_accuracy

WEIGHT_DECAYS = (1e-6, 1e-4, 1e-2)


class LinearModel(NamedTuple):
    """Standardisation statistics and the classifier weights: logits = ((x - mean) / std) @ weight.T + bias."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() - self.mean) / self.std) @ self.weight.T + self.bias


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float,
                 max_iter: int = 200) -> LinearModel:
    """Fit softmax regression on [N, D] features and int64 labels [N] (full batch, L-BFGS)."""
    x = x.float()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    xs = (x - mean) / std
    w = torch.zeros(num_classes, x.shape[1], requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(xs @ w.T + b, y) + weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return LinearModel(mean, std, w.detach(), b.detach())


def linear_eval(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                num_classes: int, seed: int = 0) -> dict[str, float]:
    """Choose the weight decay on a held-out tenth of the training set, refit, report test top-1/top-5."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(train_x), generator=gen)
    n_val = max(1, len(train_x) // 10)
    val, fit = perm[:n_val], perm[n_val:]
    best_wd, best_acc = WEIGHT_DECAYS[0], -1.0
    for wd in WEIGHT_DECAYS:
        model = fit_logistic(train_x[fit], train_y[fit], num_classes, wd)
        acc = topk_accuracy(model.logits(train_x[val]), train_y[val], (1,))["top1"]
        if acc > best_acc:
            best_wd, best_acc = wd, acc
    model = fit_logistic(train_x, train_y, num_classes, best_wd)
    result = topk_accuracy(model.logits(test_x), test_y)
    result["weight_decay"] = best_wd
    return result
