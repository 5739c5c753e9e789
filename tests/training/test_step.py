"""The training step: eager and torch.compile'd steps agree, compile modes resolve per device."""

import copy

import pytest
import torch

from simclr.losses import Objective, nt_xent
from simclr.models.simclr import Representations
from simclr.optim import LARS, split_decay_groups
from simclr.runtime.device import Precision
from simclr.training.step import ContrastiveStep, StepOptions, pick_compile

FP32 = Precision(None, False)
CPU = torch.device("cpu")
NT_XENT = Objective(temperature=0.5)


class TinyNet(torch.nn.Module):
    """f (conv, batch norm, pooling) and g (MLP): the shape of SimCLRNet, small enough to compile in
    seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.f = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                     torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.g = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))

    def forward(self, x: torch.Tensor) -> Representations:
        h = self.f(x)
        return Representations(h, self.g(h))


def _net() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet()


def _views() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(8, 3, 16, 16, generator=g), torch.rand(8, 3, 16, 16, generator=g)


def _stepper(model: TinyNet, compile: str) -> ContrastiveStep:
    opt = LARS(split_decay_groups(model, 1e-6), lr=0.5)
    return ContrastiveStep(model, opt, torch.amp.GradScaler("cpu", enabled=False), FP32, CPU, NT_XENT,
                           StepOptions(compile=compile))


def test_pick_compile() -> None:
    assert pick_compile("auto", CPU) == "off"
    assert pick_compile("auto", torch.device("cuda")) == "cudagraphs"
    assert pick_compile("cudagraphs", CPU) == "default"
    assert pick_compile("default", CPU) == "default"
    with pytest.raises(ValueError, match="compile mode"):
        pick_compile("fast", CPU)


def test_eager_step_returns_the_loss_and_updates_the_parameters() -> None:
    model = _net()
    before = copy.deepcopy(model)
    v1, v2 = _views()
    with torch.no_grad():
        z = before(torch.cat([v1, v2])).z
    expected = nt_xent(z[:8], z[8:], 0.5)
    loss, acc = _stepper(model, "off")(v1, v2)
    torch.testing.assert_close(loss, expected.loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(acc, expected.accuracy)
    assert not loss.requires_grad
    changed = [not torch.equal(a, b) for a, b in zip(model.parameters(), before.parameters())]
    assert all(changed)


def test_compiled_step_matches_eager() -> None:
    eager, compiled = _net(), _net()
    step_e, step_c = _stepper(eager, "off"), _stepper(compiled, "default")
    for _ in range(2):
        v1, v2 = _views()
        loss_e, _ = step_e(v1, v2)
        loss_c, _ = step_c(v1, v2)
        torch.testing.assert_close(loss_c, loss_e, rtol=1e-4, atol=1e-5)
    for a, b in zip(eager.parameters(), compiled.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cudagraph_step_matches_eager_on_cuda() -> None:
    dev = torch.device("cuda")
    eager, graphed = _net().to(dev), _net().to(dev)
    steps = [ContrastiveStep(m, LARS(split_decay_groups(m, 1e-6), lr=0.5),
                             torch.amp.GradScaler("cuda", enabled=False), FP32, dev, NT_XENT,
                             StepOptions(compile=c))
             for m, c in ((eager, "off"), (graphed, "cudagraphs"))]
    for _ in range(4):
        v1, v2 = (v.to(dev) for v in _views())
        losses = [s(v1, v2)[0] for s in steps]
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-3, atol=1e-4)


def test_gradient_caching_step_matches_the_plain_step_when_bn_is_frozen() -> None:
    plain, cached = _net().eval(), _net().eval()  # BN on running statistics: independent of the chunking
    opt = [LARS(split_decay_groups(m, 1e-6), lr=0.5) for m in (plain, cached)]
    steps = [ContrastiveStep(m, o, torch.amp.GradScaler("cpu", enabled=False), FP32, CPU, NT_XENT,
                             StepOptions(grad_cache_chunk=c))
             for m, o, c in ((plain, opt[0], 0), (cached, opt[1], 6))]
    for _ in range(2):
        v1, v2 = _views()
        loss_p, acc_p = steps[0](v1, v2)
        loss_c, acc_c = steps[1](v1, v2)
        torch.testing.assert_close(loss_c, loss_p, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(acc_c, acc_p)
    for a, b in zip(plain.parameters(), cached.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_gradient_caching_is_never_compiled() -> None:
    step = ContrastiveStep(_net(), LARS(_net().parameters(), lr=0.1),
                           torch.amp.GradScaler("cpu", enabled=False), FP32, CPU, NT_XENT,
                           StepOptions(compile="default", grad_cache_chunk=4))
    assert step.compile == "off"


@pytest.mark.parametrize("chunk", [0, 4])
def test_loss_scale_multiplies_the_gradient_and_not_the_returned_loss(chunk: int) -> None:
    """loss.scale 2 back-propagates the reference code's loss_a + loss_b (twice the paper's average); plain
    SGD then takes twice the step, and the step still returns the paper's average."""
    moved, losses = [], []
    for scale in (1.0, 2.0):
        model = _net()
        before = [p.detach().clone() for p in model.parameters()]
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        step = ContrastiveStep(model, opt, torch.amp.GradScaler("cpu", enabled=False), FP32, CPU, NT_XENT,
                               StepOptions(grad_cache_chunk=chunk, loss_scale=scale))
        loss, _ = step(*_views())
        losses.append(float(loss))
        moved.append([p.detach() - b for p, b in zip(model.parameters(), before)])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    v1, v2 = _views()
    with torch.no_grad():
        z = _net().train()(torch.cat([v1, v2])).z
    assert losses[0] == pytest.approx(float(nt_xent(z[:8], z[8:], 0.5).loss), rel=1e-5)
    for one, two in zip(*moved):
        torch.testing.assert_close(two, 2 * one, rtol=1e-4, atol=1e-6)  # (a bias before batch norm: ~0)
