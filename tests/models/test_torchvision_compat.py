"""f as a torchvision ResNet: the same keys as torchvision's model (without fc) and the same h."""

import pytest
import torch
import torchvision

from simclr.models.resnet import EncoderSpec, build_encoder
from simclr.models.torchvision_compat import (
    to_torchvision,
    torchvision_key,
    torchvision_skeleton,
    torchvision_state_dict,
)


def _trained_looking(spec: EncoderSpec) -> torch.nn.Module:
    """An encoder whose weights and batch-norm statistics are all non-trivial (zero-init BN gammas
    included)."""
    torch.manual_seed(0)
    enc = build_encoder(spec)
    with torch.no_grad():
        for name, t in enc.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) * 0.5 + 0.5 if "running_var" in name or name.endswith("weight")
                        and t.dim() == 1 else t + 0.05 * torch.randn_like(t))
    return enc.eval()


@pytest.mark.parametrize(("arch", "cifar_stem", "side"), [("resnet18", True, 32), ("resnet50", False, 64)])
def test_same_h_as_simclr(arch: str, cifar_stem: bool, side: int) -> None:
    enc = _trained_looking(EncoderSpec(arch, 1.0, cifar_stem))
    tv_model = to_torchvision(enc).eval()
    x = torch.rand(3, 3, side, side)
    with torch.no_grad():
        ours, theirs = enc(x), tv_model(x)
    assert theirs.shape == ours.shape == (3, enc.num_features)
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)


def test_keys_are_torchvisions_without_fc() -> None:
    state = torchvision_state_dict(build_encoder(EncoderSpec("resnet34")))
    ref = torchvision.models.resnet34(weights=None).state_dict()
    assert set(state) == {k for k in ref if not k.startswith("fc.")}
    assert all(state[k].shape == ref[k].shape for k in state)
    # a plain torchvision model (its own fc kept) takes the weights as they are
    missing, unexpected = torchvision.models.resnet34(weights=None).load_state_dict(state, strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and unexpected == []


def test_key_mapping() -> None:
    assert torchvision_key("stem.0.weight") == "conv1.weight"
    assert torchvision_key("stem.1.running_mean") == "bn1.running_mean"
    assert torchvision_key("stages.0.1.conv2.weight") == "layer1.1.conv2.weight"
    assert torchvision_key("stages.3.0.downsample.1.bias") == "layer4.0.downsample.1.bias"
    with pytest.raises(KeyError):
        torchvision_key("head.0.weight")


@pytest.mark.parametrize(("arch", "width"), [("resnet18", 0.5), ("resnet50x2", 1.0)])
def test_no_torchvision_counterpart_is_refused(arch: str, width: float) -> None:
    with torch.device("meta"):
        enc = build_encoder(EncoderSpec(arch, width))
    with pytest.raises(ValueError, match="torchvision has no"):
        torchvision_state_dict(enc)


def test_skeleton_shape() -> None:
    m = torchvision_skeleton("resnet18", cifar_stem=True)
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert isinstance(m.maxpool, torch.nn.Identity) and isinstance(m.fc, torch.nn.Identity)
    with pytest.raises(ValueError):
        torchvision_skeleton("resnet50x4", cifar_stem=False)
