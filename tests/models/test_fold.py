"""Batch norms folded into convolutions for inference: the same outputs, no batch norm left, the model
untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import simclr
from simclr.build import build_model
from simclr.config_io import build_config
from simclr.evaluation.features import model_encoder
from simclr.models.fold import folded_for_inference
from simclr.runtime.device import Precision


def _trained_like(arch: str, width: float, cifar_stem: bool) -> nn.Module:
    config = build_config({"data": {"spec": "digits"},
                           "model": {"arch": arch, "width": width, "cifar_stem": cifar_stem}})
    torch.manual_seed(0)
    net = build_model(config)
    # statistics and scales as after training (zero-initialised residual scales included)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if "running_var" in name or (name.endswith("weight") and t.ndim == 1):
                t.uniform_(0.5, 1.5)
            elif "running_mean" in name or (name.endswith("bias") and t.ndim == 1):
                t.normal_(0.0, 0.1)
    return net


@pytest.mark.parametrize("arch,width,cifar_stem,side,channels_last", [
    ("resnet18", 0.25, True, 16, False), ("resnet18", 0.25, True, 16, True),
    ("resnet50", 0.125, False, 64, True)])
def test_folded_network_computes_the_same_h_and_z(arch, width, cifar_stem, side, channels_last) -> None:
    net = _trained_like(arch, width, cifar_stem)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = folded_for_inference(net.train())
    bns = [m for m in folded.encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    convs = [m for m in folded.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert not bns and all(c.bias is not None for c in convs)  # every convolution took its batch norm
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) == channels_last for c in convs
               if c.kernel_size != (1, 1))
    assert not any(p.requires_grad for p in folded.parameters()) and not folded.training
    x = torch.rand(6, 3, side, side)
    net.eval()
    with torch.no_grad():
        want, got = net(x), folded(x)
    for a, b in ((want.h, got.h), (want.z, got.z)):
        assert float((a - b).norm() / a.norm()) < 1e-5
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # the original is untouched
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == len(convs)


def test_sync_batch_norm_folds_too() -> None:
    net = nn.SyncBatchNorm.convert_sync_batchnorm(_trained_like("resnet18", 0.125, True)).eval()
    folded = folded_for_inference(net)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.encoder.modules())
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert float((net(x).h - folded(x).h).norm() / net(x).h.norm()) < 1e-5


def test_a_python_encoder_runs_the_network_as_it_is_when_called(make_checkpoint, tmp_path) -> None:
    """Not a folded copy made earlier: weights changed in place, even through .data (no version bump), count;
    and it works on a network loaded under torch.inference_mode (inference tensors have no version
    counter)."""
    encoder = simclr.load_encoder(make_checkpoint(tmp_path / "m.pt"), device="cpu")
    x = torch.rand(3, 3, 16, 16)
    first = encoder(x)
    for p in encoder.model.parameters():
        p.data.mul_(0.5)
    second = encoder(x)
    encode = model_encoder(encoder.model, torch.device("cpu"), Precision(None, False), True)  # folded now
    assert not torch.allclose(first, second)
    assert float((second - encode(x)[0]).norm() / second.norm()) < 1e-5
    with torch.inference_mode():
        loaded = simclr.load_encoder(tmp_path / "m.pt", device="cpu")
        torch.testing.assert_close(loaded(x), first, rtol=1e-5, atol=1e-6)


def test_a_global_batch_norm_with_its_own_process_group_folds(tmp_path) -> None:
    import torch.distributed as dist

    from simclr.models.global_bn import GlobalBatchNorm, convert_global_bn

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        net = convert_global_bn(_trained_like("resnet18", 0.125, True), dist.new_group([0])).eval()
        assert any(isinstance(m, GlobalBatchNorm) for m in net.modules())
        folded = folded_for_inference(net)  # the process group is shared, not copied (it cannot be)
        x = torch.rand(2, 3, 16, 16)
        with torch.no_grad():
            assert float((net(x).h - folded(x).h).norm() / net(x).h.norm()) < 1e-5
    finally:
        dist.destroy_process_group()
