"""Encoder and head shapes for every architecture, the CIFAR stem, and parity with torchvision."""

import pytest
import torch
import torchvision

from simclr.models.heads import HeadSpec, ScaleBatchNorm, build_head
from simclr.models.resnet import ARCHITECTURES, EncoderSpec, build_encoder
from simclr.models.simclr import SimCLRNet

# h dimension at width 1 (Section 3 / Table B of the paper; 2048 x k for ResNet-50 (kx)).
FEATURES = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048,
            "resnet50x2": 4096, "resnet50x4": 8192}


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_full_width_feature_dim_and_size(arch: str) -> None:
    with torch.device("meta"):
        enc = build_encoder(EncoderSpec(arch))
    assert enc.num_features == FEATURES[arch]
    if arch in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
        with torch.device("meta"):
            ref = getattr(torchvision.models, arch)()
        assert _params(enc) == _params(ref) - _params(ref.fc)


def test_wide_resnets_match_the_paper_sizes() -> None:
    # The paper (Table 8/B.1) gives 24M, 94M and 375M parameters for ResNet-50 (1x, 2x, 4x).
    with torch.device("meta"):
        sizes = {a: _params(build_encoder(EncoderSpec(a))) / 1e6
                 for a in ("resnet50", "resnet50x2", "resnet50x4")}
    assert 23 < sizes["resnet50"] < 25
    assert 93 < sizes["resnet50x2"] < 95
    assert 373 < sizes["resnet50x4"] < 376


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("cifar_stem,side", [(True, 32), (False, 64)])
def test_forward_shapes_small_width(arch: str, cifar_stem: bool, side: int) -> None:
    torch.manual_seed(0)
    net = SimCLRNet(EncoderSpec(arch, width=0.125, cifar_stem=cifar_stem), HeadSpec(out_dim=16)).eval()
    out = net(torch.rand(2, 3, side, side))
    assert out.h.shape == (2, net.num_features)
    assert net.num_features == round(FEATURES[arch] * 0.125)
    assert out.z.shape == (2, 16)


def test_cifar_stem_keeps_resolution() -> None:
    enc = build_encoder(EncoderSpec("resnet18", 0.25, cifar_stem=True))
    conv = enc.stem[0]
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in enc.stem)
    std = build_encoder(EncoderSpec("resnet18", 0.25, cifar_stem=False))
    assert std.stem[0].kernel_size == (7, 7) and isinstance(std.stem[3], torch.nn.MaxPool2d)
    feats = {}
    for name, e in (("cifar", enc), ("std", std)):
        feats[name] = e.stages[0](e.stem(torch.rand(1, 3, 32, 32))).shape[-1]
    assert feats == {"cifar": 32, "std": 8}


@pytest.mark.parametrize("kind,expected", [("none", 64), ("linear", 32), ("nonlinear", 32)])
def test_heads(kind: str, expected: int) -> None:
    head = build_head(HeadSpec(kind=kind, out_dim=32), in_dim=64)
    assert head(torch.rand(4, 64)).shape == (4, expected)
    if kind == "nonlinear":
        linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
        assert [lin.out_features for lin in linears] == [64, 32]  # hidden = dim of h (Section 2.1)
        assert any(isinstance(m, torch.nn.BatchNorm1d) for m in head.modules())
        assert not any(isinstance(m, torch.nn.BatchNorm1d)
                       for m in build_head(HeadSpec(batch_norm=False), 64).modules())


@pytest.mark.parametrize("kind", ["linear", "nonlinear"])
def test_heads_end_with_the_reference_codes_batch_norm(kind: str) -> None:
    """google-research/simclr's projection_head: every dense layer without a bias and followed by batch norm,
    the last one's with a scale but no shift (center=False), so z has mean 0 per feature over the batch."""
    torch.manual_seed(0)
    head = build_head(HeadSpec(kind=kind, out_dim=8), in_dim=16).train()
    assert all(m.bias is None for m in head.modules() if isinstance(m, torch.nn.Linear))
    last = list(head.children())[-1]
    assert isinstance(last, ScaleBatchNorm) and last.norm.bias is None
    with torch.no_grad():
        last.weight.copy_(torch.arange(1.0, 9.0))
    z = head(torch.randn(256, 16) * 3 + 1)
    torch.testing.assert_close(z.mean(0), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(0, correction=0), torch.arange(1.0, 9.0), atol=1e-3, rtol=1e-3)
    old = build_head(HeadSpec(kind=kind, out_dim=8, out_bn=False), in_dim=16)  # as before out_bn existed
    assert not any(isinstance(m, ScaleBatchNorm) for m in old.modules())
    assert old(torch.randn(4, 16)).shape == (4, 8)
    assert not any(isinstance(m, ScaleBatchNorm)
                   for m in build_head(HeadSpec(kind=kind, batch_norm=False), 16).modules())


@pytest.mark.parametrize("bad", [HeadSpec(kind="mlp"), HeadSpec(out_dim=0), HeadSpec(layers=1)])
def test_head_validation(bad: HeadSpec) -> None:
    with pytest.raises(ValueError):
        bad.validate()


def test_encoder_validation() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        EncoderSpec("vgg16").validate()
    with pytest.raises(ValueError, match="width"):
        EncoderSpec("resnet18", 0).validate()


def test_narrow_strided_shortcuts_compute_the_strided_convolution() -> None:
    """Below 16 input channels a strided 1x1 shortcut subsamples, then convolves (oneDNN's strided 1x1
    backward corrupted memory there on AVX-512 CPUs at batch 7): the same values and gradients as the strided
    convolution, the same parameter names, and a channels-last training step at that batch runs."""
    from simclr.models.resnet import EncoderSpec, SubsampledPointwise, build_encoder

    torch.manual_seed(0)
    conv = SubsampledPointwise(8, 16, 1, 2, bias=False)
    x = torch.rand(7, 8, 17, 17, requires_grad=True)
    ref_x = x.detach().clone().requires_grad_()
    y = conv(x)
    ref = torch.nn.functional.conv2d(ref_x, conv.weight.detach(), stride=2)
    torch.testing.assert_close(y, ref)
    y.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(x.grad, ref_x.grad)
    narrow = build_encoder(EncoderSpec("resnet18", 0.125, True))
    wide = build_encoder(EncoderSpec("resnet18", 0.25, True))
    # 8 -> 16 channels, stride 2
    assert sum(isinstance(m, SubsampledPointwise) for m in narrow.modules()) == 1
    assert not any(isinstance(m, SubsampledPointwise) for m in wide.modules())
    assert (narrow.state_dict().keys()
            == build_encoder(EncoderSpec("resnet18", 0.125, True)).state_dict().keys())
    assert "stages.1.0.downsample.0.weight" in narrow.state_dict()
    narrow = narrow.to(memory_format=torch.channels_last)
    v = torch.rand(7, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    narrow(v).pow(2).mean().backward()
