"""Gradient caching: chunked back-propagation gives the gradients of plain back-propagation."""

import copy

import pytest
import torch
from torch import Tensor, nn

from simclr.losses import nt_xent
from simclr.training.gradcache import cached_backward

N = 6  # pairs: M = 2N = 12 views
TOL = {"rtol": 1e-5, "atol": 1e-5}


class SubclassedBN(nn.BatchNorm2d):
    """A batch-norm subclass: its running statistics must be handled like those of the base class."""


def _net(norm: str = "bn", dropout: float = 0.0) -> nn.Module:
    """Conv, optional batch norm, pooling, then a small MLP head; float64 so comparisons can be tight."""
    torch.manual_seed(0)
    bn = {"bn": nn.BatchNorm2d(8), "subclass": SubclassedBN(8), "none": nn.Identity()}[norm]
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), bn, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Dropout(dropout), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)).double()


def _batch() -> Tensor:
    return torch.rand(2 * N, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _loss(z: Tensor) -> tuple[Tensor, Tensor]:
    out = nt_xent(z[:N], z[N:], 0.5)
    return out.loss, out.accuracy


def _grads(model: nn.Module) -> list[Tensor]:
    return [p.grad.clone() for p in model.parameters()]


def _plain(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
    loss, acc = _loss(model(x))
    loss.backward()
    return loss.detach(), acc, _grads(model)


def _per_chunk_reference(model: nn.Module, x: Tensor, chunk_size: int) -> list[Tensor]:
    """Embed each chunk with a graph (per-chunk BN), concatenate, one loss, one backward."""
    _loss(torch.cat([model(c) for c in x.split(chunk_size)]))[0].backward()
    return _grads(model)


def _assert_close(got: list[Tensor], want: list[Tensor]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL)


@pytest.mark.parametrize("chunk_size", [1, 4, 5, 12, 20])
@pytest.mark.parametrize("norm, train", [("bn", False), ("none", True)], ids=["bn-eval", "no-bn-train"])
def test_gradients_match_plain_full_batch_backward(chunk_size: int, norm: str, train: bool) -> None:
    x = _batch()
    model = _net(norm).train(train)
    ref = copy.deepcopy(model)
    loss, acc = cached_backward(model, x, chunk_size, _loss, model=model)
    ref_loss, ref_acc, ref_grads = _plain(ref, x)
    _assert_close(_grads(model), ref_grads)
    torch.testing.assert_close(loss, ref_loss, **TOL)
    torch.testing.assert_close(acc, ref_acc)
    assert not loss.requires_grad and not acc.requires_grad


@pytest.mark.parametrize("norm", ["bn", "subclass"])
def test_train_mode_bn_stats_updated_once_and_gradients_are_per_chunk_bn(norm: str) -> None:
    x, chunk_size = _batch(), 5  # chunks of 5, 5 and 2 rows
    model = _net(norm).train()
    stats_ref, grad_ref = copy.deepcopy(model), copy.deepcopy(model)
    cached_backward(model, x, chunk_size, _loss, model=model)

    with torch.no_grad():
        for chunk in x.split(chunk_size):  # one plain forward of the same chunks
            stats_ref(chunk)
    bn, bn_ref = model[1], stats_ref[1]
    assert int(bn.num_batches_tracked) == 3
    assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(bn, name), getattr(bn_ref, name), rtol=0, atol=1e-12)

    _assert_close(_grads(model), _per_chunk_reference(grad_ref, x, chunk_size))


def test_without_model_bn_stats_are_updated_by_both_passes() -> None:
    x = _batch()
    model = _net("bn").train()
    cached_backward(model, x, 4, _loss)  # no model: nothing restores the statistics after pass 1
    assert int(model[1].num_batches_tracked) == 6


def test_dropout_draws_the_same_masks_in_both_passes() -> None:
    x, chunk_size = _batch(), 5
    model = _net("none", dropout=0.5).train()
    ref = copy.deepcopy(model)
    torch.manual_seed(123)
    cached_backward(model, x, chunk_size, _loss, model=model)
    after = torch.rand(3)
    torch.manual_seed(123)  # the reference draws the same masks chunk after chunk
    want = _per_chunk_reference(ref, x, chunk_size)
    _assert_close(_grads(model), want)
    torch.testing.assert_close(after, torch.rand(3))  # and the RNG ends where the reference left it


def test_scale_is_applied_to_the_backpropagated_loss() -> None:
    x = _batch()
    model = _net("bn").eval()
    scaled = copy.deepcopy(model)
    loss, _ = cached_backward(model, x, 5, _loss)
    scaled_loss, _ = cached_backward(scaled, x, 5, _loss, scale=lambda t: t * 8)
    _assert_close(_grads(scaled), [8 * g for g in _grads(model)])
    torch.testing.assert_close(scaled_loss, loss)  # the returned loss is unscaled


def test_gradients_accumulate_into_existing_grad() -> None:
    x = _batch()
    model = _net("none")
    ref = copy.deepcopy(model)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    cached_backward(model, x, 5, _loss)
    _assert_close(_grads(model), [g + 1 for g in _plain(ref, x)[2]])


def test_chunk_size_must_be_positive() -> None:
    model = _net("none")
    with pytest.raises(ValueError, match="chunk_size"):
        cached_backward(model, _batch(), 0, _loss)
