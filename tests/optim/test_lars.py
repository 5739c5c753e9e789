"""LARS against updates computed by hand (You et al. 2017; SimCLR reference tf2/lars_optimizer.py)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from simclr.optim import LARS, split_decay_groups
from simclr.optim.lars import _trust_ratio

LR, MOMENTUM, WD, EETA = 0.3, 0.9, 0.1, 0.01


def _params() -> tuple[nn.Parameter, nn.Parameter]:
    weight = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))  # |w| = 5
    bias = nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    return weight, bias


@pytest.fixture(params=[False, True], ids=["loop", "foreach"])
def foreach(request: pytest.FixtureRequest) -> bool:
    """Every hand-computed step is checked for the per-parameter loop and the multi-tensor path."""
    return request.param


def _optimizer(weight: nn.Parameter, bias: nn.Parameter, nesterov: bool = False,
               foreach: bool = False) -> LARS:
    # The bias group asks for weight decay but is excluded: LARS must apply neither decay nor trust ratio.
    return LARS(
        [{"params": [weight]}, {"params": [bias], "weight_decay": WD, "lars_exclude": True}],
        lr=LR, momentum=MOMENTUM, weight_decay=WD, trust_coefficient=EETA, nesterov=nesterov, foreach=foreach,
    )


def _set_grads(weight: nn.Parameter, bias: nn.Parameter, gw: list[float], gb: list[float]) -> None:
    weight.grad = torch.tensor(gw, dtype=torch.float64)
    bias.grad = torch.tensor(gb, dtype=torch.float64)


def test_first_step_by_hand(foreach: bool) -> None:
    weight, bias = _params()
    opt = _optimizer(weight, bias, foreach=foreach)
    _set_grads(weight, bias, [0.6, 0.8], [0.5])
    opt.step()
    # weight: g + wd*w = [0.6 + 0.3, 0.8 + 0.4] = [0.9, 1.2], |g| = 1.5
    #         trust = 0.01 * 5 / 1.5 = 1/30, scaled lr = 0.3 / 30 = 0.01
    #         v = 0.01 * [0.9, 1.2] = [0.009, 0.012], w = [2.991, 3.988]
    assert weight.tolist() == pytest.approx([2.991, 3.988], abs=1e-12)
    assert opt.state[weight]["momentum_buffer"].tolist() == pytest.approx([0.009, 0.012], abs=1e-12)
    # bias (excluded): no decay, trust 1 -> v = 0.3 * 0.5 = 0.15, b = 2 - 0.15 = 1.85
    assert bias.tolist() == pytest.approx([1.85], abs=1e-12)
    assert opt.state[bias]["momentum_buffer"].tolist() == pytest.approx([0.15], abs=1e-12)


def test_second_step_uses_momentum(foreach: bool) -> None:
    weight, bias = _params()
    opt = _optimizer(weight, bias, foreach=foreach)
    _set_grads(weight, bias, [0.6, 0.8], [0.5])
    opt.step()
    _set_grads(weight, bias, [0.3, -0.4], [-1.0])
    opt.step()

    w1 = [2.991, 3.988]
    v1 = [0.009, 0.012]
    g = [0.3 + WD * w1[0], -0.4 + WD * w1[1]]  # [0.5991, -0.0012]
    trust = EETA * math.hypot(*w1) / math.hypot(*g)
    v2 = [MOMENTUM * v1[i] + LR * trust * g[i] for i in range(2)]
    w2 = [w1[i] - v2[i] for i in range(2)]
    assert weight.tolist() == pytest.approx(w2, abs=1e-12)
    assert opt.state[weight]["momentum_buffer"].tolist() == pytest.approx(v2, abs=1e-12)
    # bias: v = 0.9 * 0.15 + 0.3 * (-1.0) = -0.165, b = 1.85 + 0.165 = 2.015
    assert bias.tolist() == pytest.approx([2.015], abs=1e-12)


def test_nesterov_first_step_by_hand(foreach: bool) -> None:
    weight, bias = _params()
    opt = _optimizer(weight, bias, nesterov=True, foreach=foreach)
    _set_grads(weight, bias, [0.6, 0.8], [0.5])
    opt.step()
    # update = momentum * v + scaled_lr * g = 0.9 * [0.009, 0.012] + [0.009, 0.012] = [0.0171, 0.0228]
    assert weight.tolist() == pytest.approx([2.9829, 3.9772], abs=1e-12)
    # bias: 0.9 * 0.15 + 0.15 = 0.285
    assert bias.tolist() == pytest.approx([1.715], abs=1e-12)


def test_lr_lives_inside_the_momentum_buffer() -> None:
    """Changing lr rescales only the new gradient's contribution, as in the reference."""
    bias = nn.Parameter(torch.tensor([0.0], dtype=torch.float64))
    opt = LARS([bias], lr=1.0, momentum=0.5, lars_exclude=True)
    bias.grad = torch.tensor([1.0], dtype=torch.float64)
    opt.step()  # v = 1, b = -1
    opt.param_groups[0]["lr"] = 0.1
    opt.step()  # v = 0.5 * 1 + 0.1 * 1 = 0.6, b = -1.6
    assert bias.tolist() == pytest.approx([-1.6], abs=1e-12)


def test_zero_weight_uses_trust_ratio_one(foreach: bool) -> None:
    weight = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = LARS([weight], lr=0.5, momentum=0.9, weight_decay=0.1, trust_coefficient=EETA, foreach=foreach)
    weight.grad = torch.tensor([1.0, -2.0], dtype=torch.float64)
    opt.step()
    assert weight.tolist() == pytest.approx([-0.5, 1.0], abs=1e-12)  # w - lr * 1 * g


def test_zero_grad_uses_trust_ratio_one_and_stays_finite(foreach: bool) -> None:
    weight = nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
    opt = LARS([weight], lr=0.5, momentum=0.9, trust_coefficient=EETA, foreach=foreach)
    weight.grad = torch.zeros(2, dtype=torch.float64)
    opt.step()
    assert weight.tolist() == [3.0, 4.0]
    assert torch.isfinite(opt.state[weight]["momentum_buffer"]).all()


def test_trust_ratio_helper() -> None:
    w = torch.tensor([3.0, 4.0])
    g = torch.tensor([0.0, 0.5])
    assert _trust_ratio(w, g, 0.01, 0.0).item() == pytest.approx(0.1)
    assert _trust_ratio(w, g, 0.01, 0.5).item() == pytest.approx(0.05)
    assert _trust_ratio(torch.zeros(2), g, 0.01, 0.0).item() == 1.0
    assert _trust_ratio(w, torch.zeros(2), 0.01, 0.0).item() == 1.0


def test_params_without_grad_are_skipped() -> None:
    weight, bias = _params()
    opt = _optimizer(weight, bias)
    weight.grad = torch.tensor([0.6, 0.8], dtype=torch.float64)
    opt.step()
    assert bias.tolist() == [2.0]
    assert bias not in opt.state


def test_closure_is_called_and_its_loss_returned() -> None:
    weight = nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = LARS([weight], lr=0.1)

    def closure() -> float:
        opt.zero_grad()
        loss = (weight**2).sum()
        loss.backward()
        return loss.item()

    assert opt.step(closure) == pytest.approx(5.0)
    assert weight.grad is not None


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 4, generator=g)
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()


def test_state_dict_round_trip() -> None:
    model = _model()
    opt = LARS(split_decay_groups(model, 1e-4), lr=0.5, momentum=0.9, nesterov=True)
    for seed in range(3):
        _train_step(model, opt, seed)

    clone = copy.deepcopy(model)
    restored = LARS(split_decay_groups(clone, 0.0), lr=0.0)
    restored.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert [g["lars_exclude"] for g in restored.param_groups] == [False, True]
    assert restored.param_groups[0]["weight_decay"] == 1e-4
    assert restored.param_groups[0]["nesterov"] is True

    _train_step(model, opt, 42)
    _train_step(clone, restored, 42)
    for a, b in zip(model.parameters(), clone.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_trains_a_model_with_split_groups() -> None:
    model = _model()
    opt = LARS(split_decay_groups(model, 1e-6), lr=1.0)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 4, generator=g), torch.randn(32, 2, generator=g)
    losses = []
    for _ in range(50):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("nesterov", [False, True])
def test_foreach_matches_the_loop_on_a_model(nesterov: bool) -> None:
    loop, multi = _model(), _model()
    multi.load_state_dict(loop.state_dict())
    opts = [LARS(split_decay_groups(m, 1e-4), lr=0.5, nesterov=nesterov, foreach=f)
            for m, f in ((loop, False), (multi, True))]
    for seed in range(4):
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(seed))
        for model, opt in zip((loop, multi), opts):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
    for a, b in zip(loop.parameters(), multi.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "kwargs",
    [{"lr": -1.0}, {"lr": 0.1, "momentum": -0.1}, {"lr": 0.1, "weight_decay": -1e-6},
     {"lr": 0.1, "trust_coefficient": 0.0}, {"lr": 0.1, "eps": -1.0}],
)
def test_invalid_hyperparameters_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LARS([nn.Parameter(torch.zeros(1))], **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    cpu = _model()
    gpu = copy.deepcopy(cpu).cuda()
    opt_cpu = LARS(split_decay_groups(cpu, 1e-4), lr=0.5)
    opt_gpu = LARS(split_decay_groups(gpu, 1e-4), lr=0.5)
    for seed in range(3):
        x = torch.randn(16, 4, generator=torch.Generator().manual_seed(seed))
        for model, opt, inputs in ((cpu, opt_cpu, x), (gpu, opt_gpu, x.cuda())):
            opt.zero_grad()
            model(inputs).pow(2).mean().backward()
            opt.step()
    for a, b in zip(cpu.parameters(), gpu.parameters()):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-4, atol=1e-5)
