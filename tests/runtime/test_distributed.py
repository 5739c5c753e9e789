"""Two gloo processes equal one process on the same global batch: loss, gradients, batch-norm statistics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from simclr.losses import Objective
from simclr.models.global_bn import convert_global_bn
from simclr.models.heads import HeadSpec
from simclr.models.resnet import EncoderSpec
from simclr.models.simclr import SimCLRNet
from simclr.optim import LARS, split_decay_groups
from simclr.runtime.device import Precision
from simclr.runtime.distributed import DistContext, data_parallel, gather_with_grad
from simclr.training.step import ContrastiveStep, StepOptions

WORLD = 2
N_GLOBAL = 8  # images; each rank gets 4, i.e. 8 views


def _net() -> SimCLRNet:
    torch.manual_seed(0)
    return SimCLRNet(EncoderSpec("resnet18", 0.125, True), HeadSpec(hidden_dim=32, out_dim=16))


def _global_views() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return torch.rand(N_GLOBAL, 3, 16, 16, generator=g), torch.rand(N_GLOBAL, 3, 16, 16, generator=g)


def _step(model: torch.nn.Module, gather: bool, rank: int) -> ContrastiveStep:
    opt = LARS(split_decay_groups(model, 1e-6), lr=0.1)
    return ContrastiveStep(model, opt, torch.amp.GradScaler("cpu", enabled=False), Precision(None, False),
                           torch.device("cpu"), Objective(temperature=0.5),
                           StepOptions(channels_last=False, gather_negatives=gather, rank=rank))


def _bn_stats(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k}


def _worker(rank: int, store: str, out: str, gather: bool, sync_bn: bool) -> None:
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        net = _net()
        if sync_bn:
            net = convert_global_bn(net)
        ddp = data_parallel(net, torch.device("cpu"))
        assert isinstance(ddp, torch.nn.parallel.DistributedDataParallel)
        v1, v2 = _global_views()
        n = N_GLOBAL // WORLD
        x = torch.cat([v1[rank * n : (rank + 1) * n], v2[rank * n : (rank + 1) * n]])
        loss, acc = _step(ddp, gather, rank)._forward_loss(x)
        loss.backward()
        losses = gather_with_grad(torch.stack([loss.detach(), acc]).view(1, 2))
        if rank == 0:
            torch.save({"loss": losses[:, 0].mean(), "acc": losses[:, 1].mean(),
                        "grads": {k: p.grad.clone() for k, p in net.named_parameters()},
                        "bn": _bn_stats(net)}, out)
        torch_dist.barrier()  # leave together: a rank tearing gloo down while its peer still works can abort
    finally:
        torch_dist.destroy_process_group()
    # Skip the interpreter's teardown: gloo's threads racing C++ static destructors at exit have aborted a
    # worker ("terminate called without an active exception") after its work was done and saved.
    os._exit(0)


def _run_two(tmp_path: Path, gather: bool = True, sync_bn: bool = True) -> dict:
    out = tmp_path / f"rank0-{gather}-{sync_bn}.pt"
    store = tmp_path / f"store-{gather}-{sync_bn}"
    mp.start_processes(_worker, args=(str(store), str(out), gather, sync_bn), nprocs=WORLD,
                       start_method="spawn", join=True)
    return torch.load(out, weights_only=True)


@pytest.fixture(scope="module")
def single() -> dict:
    """One process, plain batch norm, the whole global batch in one forward."""
    net = _net()
    v1, v2 = _global_views()
    loss, acc = _step(net, True, 0)._forward_loss(torch.cat([v1, v2]))
    loss.backward()
    return {"loss": loss.detach(), "acc": acc,
            "grads": {k: p.grad.clone() for k, p in net.named_parameters()}, "bn": _bn_stats(net)}


def test_two_processes_equal_one_on_the_global_batch(tmp_path: Path, single: dict) -> None:
    two = _run_two(tmp_path)
    torch.testing.assert_close(two["loss"], single["loss"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(two["acc"], single["acc"])
    assert two["grads"].keys() == single["grads"].keys()
    for name, grad in single["grads"].items():
        torch.testing.assert_close(two["grads"][name], grad, rtol=1e-5, atol=1e-5, msg=name)
    for name, stat in single["bn"].items():  # global BN: statistics over both ranks' views
        torch.testing.assert_close(two["bn"][name], stat, rtol=1e-5, atol=1e-6, msg=name)


def _max_grad_gap(a: dict, b: dict) -> float:
    return max(float((a["grads"][k] - b["grads"][k]).abs().max()) for k in a["grads"])


def test_without_the_gather_or_global_bn_the_result_differs(tmp_path: Path, single: dict) -> None:
    no_gather = _run_two(tmp_path, gather=False)
    assert _max_grad_gap(no_gather, single) > 1e-3
    assert not torch.allclose(no_gather["loss"], single["loss"], rtol=1e-3)
    local_bn = _run_two(tmp_path, sync_bn=False)
    assert _max_grad_gap(local_bn, single) > 1e-3
    assert any(not torch.allclose(local_bn["bn"][k], v, rtol=1e-4) for k, v in single["bn"].items())


def test_context_from_torchrun_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert DistContext.from_env() == DistContext(0, 1, 0) and not DistContext.from_env().enabled
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = DistContext.from_env()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.enabled, ctx.is_main) == (3, 4, 1, True, False)
    assert os.environ["RANK"] == "3"


def test_gather_without_a_process_group_is_the_identity() -> None:
    x = torch.randn(4, 2)
    assert gather_with_grad(x) is x
