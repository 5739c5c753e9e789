"""GlobalBatchNorm: parity with nn.BatchNorm on one process, and global statistics over 2 gloo processes."""

import copy
import multiprocessing
import time
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from simclr.models import global_bn
from simclr.models.global_bn import GlobalBatchNorm, convert_global_bn

TOL = {"rtol": 0, "atol": 1e-10}


def _randomise(model: nn.Module) -> nn.Module:
    """Give every batch norm non-trivial affine parameters and running statistics."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_()
                if m.track_running_stats:
                    m.running_mean.normal_()
                    m.running_var.uniform_(0.5, 2.0)
    return model


def _bn_pair(shape: tuple[int, ...], **kwargs) -> tuple[nn.Module, GlobalBatchNorm]:
    cls = nn.BatchNorm1d if len(shape) < 4 else nn.BatchNorm2d
    ref = _randomise(cls(shape[1], **kwargs).double())
    ours = GlobalBatchNorm(shape[1], **kwargs).double()
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _steps(ref: nn.Module, ours: nn.Module, shape: tuple[int, ...], steps: int = 3) -> None:
    """Train steps then one eval step on the same inputs; outputs, gradients and buffers must agree."""
    for step in range(steps + 1):
        if step == steps:
            ref.eval(), ours.eval()
        x = (torch.randn(shape, dtype=torch.float64) * 3 + 1).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        target = torch.randn(shape, dtype=torch.float64)
        out_ref, out = ref(x), ours(x2)
        torch.testing.assert_close(out, out_ref, **TOL)
        (out_ref - target).square().sum().backward()
        (out - target).square().sum().backward()
        torch.testing.assert_close(x2.grad, x.grad, **TOL)
        for (name, a), (_, b) in zip(ref.named_parameters(), ours.named_parameters()):
            torch.testing.assert_close(b.grad, a.grad, **TOL, msg=name)
        for (name, a), (_, b) in zip(ref.named_buffers(), ours.named_buffers()):
            torch.testing.assert_close(b, a, **TOL, msg=name)


SHAPES = [(6, 5), (6, 5, 4), (4, 3, 5, 5)]
OPTIONS = [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False}]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kwargs", OPTIONS)
def test_equals_batchnorm_without_distributed(shape: tuple[int, ...], kwargs: dict) -> None:
    assert not dist.is_initialized()
    torch.manual_seed(0)
    _steps(*_bn_pair(shape, **kwargs), shape)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kwargs", OPTIONS)
def test_global_code_path_on_one_rank_equals_batchnorm(monkeypatch: pytest.MonkeyPatch,
                                                       shape: tuple[int, ...], kwargs: dict) -> None:
    # Pretend to be one of 2 ranks whose all-reduce is the identity: the sum/sum-of-squares path then
    # has to reproduce nn.BatchNorm exactly (outputs, gradients, running statistics).
    calls = []
    monkeypatch.setattr(global_bn, "_world_size", lambda group: 2)
    monkeypatch.setattr(global_bn.dist, "all_reduce",
                        lambda tensor, op=None, group=None: calls.append(tensor))
    torch.manual_seed(0)
    _steps(*_bn_pair(shape, **kwargs), shape)
    # One collective per forward and one per backward that use batch statistics: the 3 training steps, and
    # the eval step too when no running statistics are kept (then eval normalises with the global batch).
    assert len(calls) == (3 if kwargs.get("track_running_stats", True) else 4) * 2


def test_global_code_path_keeps_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(global_bn, "_world_size", lambda group: 2)
    monkeypatch.setattr(global_bn.dist, "all_reduce", lambda tensor, op=None, group=None: None)
    torch.manual_seed(0)
    bn = _randomise(GlobalBatchNorm(4))
    x = (torch.randn(8, 4, 3, 3) * 2 + 5).bfloat16().requires_grad_()
    out = bn(x)
    assert out.dtype == torch.bfloat16 and bn.running_mean.dtype == torch.float32
    expected = nn.functional.batch_norm(x.detach().float(), None, None, bn.weight, bn.bias, True, 0.0, bn.eps)
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=2e-2)
    out.float().sum().backward()
    assert x.grad.dtype == torch.bfloat16 and bn.weight.grad.dtype == torch.float32


def test_global_code_path_is_stable_for_large_means(monkeypatch: pytest.MonkeyPatch) -> None:
    # float32 E[x^2] - E[x]^2 over the batch would be off by O(1) here; Welford + float64 combination is not.
    monkeypatch.setattr(global_bn, "_world_size", lambda group: 2)
    monkeypatch.setattr(global_bn.dist, "all_reduce", lambda tensor, op=None, group=None: None)
    torch.manual_seed(0)
    x = torch.randn(64, 4, 8, 8) + 1000
    bn, ref = GlobalBatchNorm(4), nn.BatchNorm2d(4).double()
    torch.testing.assert_close(bn(x), ref(x.double()).float(), rtol=0, atol=1e-4)
    torch.testing.assert_close(bn.running_var, ref.running_var.float(), rtol=1e-5, atol=0)


def test_rejects_bad_inputs() -> None:
    bn = GlobalBatchNorm(3)
    with pytest.raises(ValueError, match="2 dimensions"):
        bn(torch.randn(3))
    with pytest.raises(ValueError, match="3 channels"):
        bn(torch.randn(2, 4, 5))


def _make_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5),
                          nn.BatchNorm1d(5, momentum=None))
    return _randomise(model.double())


def test_convert_global_bn_copies_parameters_and_buffers() -> None:
    model = _make_model()
    model[1].weight.requires_grad_(False)
    model[6].eval()
    ref = copy.deepcopy(model)
    converted = convert_global_bn(model)
    assert [type(m) for m in converted] == [nn.Conv2d, GlobalBatchNorm, nn.ReLU, nn.AdaptiveAvgPool2d,
                                            nn.Flatten, nn.Linear, GlobalBatchNorm]
    assert not converted[1].weight.requires_grad and converted[6].weight.requires_grad
    assert converted[1].training and not converted[6].training
    assert converted[6].momentum is None and converted[1].eps == ref[1].eps
    assert converted.state_dict().keys() == ref.state_dict().keys()
    for (name, a), b in zip(ref.state_dict().items(), converted.state_dict().values()):
        assert b.dtype == a.dtype and b.device == a.device
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=name)
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(converted.eval()(x), ref.eval()(x), rtol=0, atol=0)
    single = convert_global_bn(nn.SyncBatchNorm(7))
    assert isinstance(single, GlobalBatchNorm) and single.num_features == 7


SPLIT = 5  # rank 0 gets the first 5 of the 8 samples, rank 1 the other 3: uneven on purpose


def _train(model: nn.Module, batches: list[torch.Tensor], targets: list[torch.Tensor]) -> dict:
    """Two training steps (gradients accumulate) then an eval forward; what the comparison needs."""
    outs = []
    for x, t in zip(batches, targets):
        out = model(x)
        (out - t).square().sum().backward()
        outs.append(out.detach())
    model.eval()
    with torch.no_grad():
        outs.append(model(batches[0]))
    return {"outs": outs, "grads": {n: p.grad.clone() for n, p in model.named_parameters()},
            "buffers": {n: b.clone() for n, b in model.named_buffers()}}


def _worker(rank: int, world: int, tmp: str) -> None:
    tmp_path = Path(tmp)
    try:
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=rank, world_size=world,
                                timeout=timedelta(seconds=60))
        data = torch.load(tmp_path / "inputs.pt")
        part = slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)
        results = {}
        for mode in ("global", "local"):
            model = _make_model()
            model.load_state_dict(data["state"])
            if mode == "global":
                model = convert_global_bn(model)
            results[mode] = _train(model, [b[part] for b in data["batches"]],
                                   [t[part] for t in data["targets"]])
            for grad in results[mode]["grads"].values():
                dist.all_reduce(grad)
        torch.save(results, tmp_path / f"rank{rank}.pt")
        dist.destroy_process_group()
    except BaseException:
        (tmp_path / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


def _spawn(world: int, tmp_path: Path, timeout: float = 90.0) -> None:
    """Run ``_worker`` on ``world`` spawned processes; fail (never hang) if one fails or times out."""
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(rank, world, str(tmp_path)), daemon=True)
             for rank in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        if any(p.exitcode not in (None, 0) for p in procs):
            break
        time.sleep(0.05)
    for p in procs:
        if p.is_alive():
            p.kill()
        p.join(10)
    errors = "\n".join(f.read_text() for f in sorted(tmp_path.glob("rank*.err")))
    codes = [p.exitcode for p in procs]
    assert codes == [0] * world, f"worker exit codes {codes} (negative: killed, e.g. timeout)\n{errors}"


def test_two_gloo_processes_match_one_process_on_the_full_batch(tmp_path: Path) -> None:
    model = _make_model()
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(8, 3, 6, 6, generator=gen, dtype=torch.float64) * 2 + 1 for _ in range(2)]
    targets = [torch.randn(8, 5, generator=gen, dtype=torch.float64) for _ in range(2)]
    torch.save({"state": model.state_dict(), "batches": batches, "targets": targets}, tmp_path / "inputs.pt")
    _spawn(2, tmp_path)
    ref = _train(model, batches, targets)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    ours = [r["global"] for r in ranks]
    for step, out in enumerate(ref["outs"]):
        torch.testing.assert_close(ours[0]["outs"][step], out[:SPLIT], **TOL)
        torch.testing.assert_close(ours[1]["outs"][step], out[SPLIT:], **TOL)
    for rank in ours:
        for name, grad in ref["grads"].items():
            torch.testing.assert_close(rank["grads"][name], grad, **TOL, msg=name)
        for name, buf in ref["buffers"].items():
            torch.testing.assert_close(rank["buffers"][name], buf, **TOL, msg=name)

    # Negative control: per-rank (local) statistics give other gradients and running statistics.
    local = ranks[0]["local"]
    assert not torch.allclose(local["buffers"]["1.running_mean"], ref["buffers"]["1.running_mean"], atol=1e-3)
    assert not torch.allclose(local["buffers"]["6.running_var"], ref["buffers"]["6.running_var"], atol=1e-3)
    assert not torch.allclose(local["grads"]["0.weight"], ref["grads"]["0.weight"], atol=1e-3)
    assert not torch.allclose(local["outs"][0], ref["outs"][0][:SPLIT], atol=1e-3)
