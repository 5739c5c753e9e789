"""timm and torchvision backbones as f: names, h's width, the small-image option, the parameter groups of LARS
and weight decay, global batch norm, batch-norm folding and the memory pre-check, on each kind of network."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from simclr.errors import InputError
from simclr.models.backbones import parse_arch, small_patch
from simclr.models.fold import folded_for_inference
from simclr.models.global_bn import GlobalBatchNorm, GlobalBatchNormAct, convert_global_bn, other_batch_norms
from simclr.models.heads import HeadSpec
from simclr.models.resnet import EncoderSpec
from simclr.models.simclr import SimCLRNet, make_encoder
from simclr.optim import split_decay_groups
from simclr.runtime.memory import step_memory

pytest.importorskip("timm")

# name -> h's width (timm's num_features; torchvision: the classifier's input)
BACKBONES = {
    "timm:test_vit": 64,
    "timm:test_convnext": 64,
    "timm:test_efficientnet": 256,
    "timm:resnet50": 2048,
    "torchvision:resnet18": 512,
    "torchvision:mobilenet_v3_small": 1024,
}
FAST = [a for a in BACKBONES if a != "timm:resnet50"]


def _encoder(arch: str, small: bool = True, side: int = 32) -> nn.Module:
    torch.manual_seed(0)
    return make_encoder(EncoderSpec(arch, cifar_stem=small, image_size=side))


def test_arch_names_parse() -> None:
    assert parse_arch("timm:vit_small_patch16_224") == ("timm", "vit_small_patch16_224")
    assert parse_arch("torchvision:convnext_tiny") == ("torchvision", "convnext_tiny")
    assert parse_arch("resnet50") == ("simclr", "resnet50")
    assert small_patch(32) == 4 and small_patch(64) == 8 and small_patch(8) == 2


@pytest.mark.parametrize("arch", list(BACKBONES))
def test_h_is_the_pooled_features(arch: str) -> None:
    enc = _encoder(arch).eval()
    with torch.no_grad():
        h = enc(torch.rand(2, 3, 32, 32))
    assert h.shape == (2, BACKBONES[arch]) == (2, enc.num_features)
    assert torch.isfinite(h).all()
    net = SimCLRNet(EncoderSpec(arch, cifar_stem=True, image_size=32), HeadSpec(hidden_dim=32, out_dim=16))
    assert net.num_features == BACKBONES[arch] and net.head(h).shape == (2, 16)  # g sized from h


def test_small_image_option_for_vits_and_cnns() -> None:
    vit = _encoder("timm:test_vit")
    assert vit.created_with["patch_size"] == 4 and vit.created_with["img_size"] == 32
    assert vit.model.patch_embed.grid_size == (8, 8)
    with torch.no_grad():  # views of another side: position embeddings interpolated
        assert vit.eval()(torch.rand(1, 3, 16, 16)).shape == (1, 64)
    big = _encoder("timm:test_vit", small=False, side=64)
    assert "patch_size" not in big.created_with and big.model.patch_embed.patch_size != (8, 8)
    r50 = _encoder("timm:resnet50")
    assert r50.model.conv1.stride == (1, 1) and r50.model.conv1.kernel_size == (3, 3)
    assert isinstance(r50.model.maxpool, nn.Identity) and "maxpool (max-pool) removed" in r50.stem
    plain = _encoder("timm:resnet50", small=False)
    assert plain.model.conv1.stride == (2, 2) and plain.stem == ""
    eff = _encoder("timm:test_efficientnet")
    assert eff.model.conv_stem.stride == (1, 1)
    tv = _encoder("torchvision:resnet18")
    assert tv.model.conv1.stride == (1, 1) and isinstance(tv.model.maxpool, nn.Identity)


def test_torchvision_vit_takes_the_small_patch() -> None:
    vit = _encoder("torchvision:vit_b_16")
    assert vit.created_with["patch_size"] == 4 and vit.created_with["image_size"] == 32
    with torch.no_grad():
        assert vit.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 768)
        with pytest.raises(InputError, match=r"takes 32x32 images only .*--image-size 32"):
            vit(torch.rand(1, 3, 48, 48))  # not torchvision's AssertionError


def test_the_stem_pool_goes_whatever_its_name_and_hidden_dropouts_stay() -> None:
    dense = _encoder("torchvision:densenet121")
    assert isinstance(dense.model.features.pool0, nn.Identity) and "features.pool0" in dense.stem
    assert any(isinstance(m, nn.AvgPool2d) for m in dense.model.modules())  # its transitions keep theirs
    google = _encoder("torchvision:googlenet")
    assert isinstance(google.model.maxpool1, nn.Identity) and isinstance(google.model.maxpool2, nn.MaxPool2d)
    from simclr.models.backbones import small_image_stem, strip_classifier

    deep = nn.Sequential(nn.Conv2d(3, 4, 7, 2), nn.Conv2d(4, 4, 3), nn.MaxPool2d(2))  # a pool after the stem
    assert "max-pool" not in small_image_stem(deep) and isinstance(deep[2], nn.MaxPool2d)

    vgg_head = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Dropout(), nn.Linear(6, 4), nn.ReLU(),
                             nn.Dropout(), nn.Linear(4, 3))
    assert strip_classifier(vgg_head) == 4
    assert [type(m).__name__ for m in vgg_head] == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Identity",
                                                    "Identity"]


def test_bad_names_and_widths_are_one_line_errors() -> None:
    with pytest.raises(InputError, match="unknown timm model 'no_such_net'"):
        _encoder("timm:no_such_net")
    with pytest.raises(InputError, match="unknown torchvision classification model"):
        _encoder("torchvision:no_such_net")
    with pytest.raises(ValueError, match="scales simclr's own ResNets only"):
        EncoderSpec("timm:test_vit", width=0.5).validate()
    with pytest.raises(ValueError, match="needs a model name"):
        EncoderSpec("timm:").validate()


@pytest.mark.parametrize("arch", list(BACKBONES))
def test_every_norm_and_bias_is_left_out_of_decay_and_lars(arch: str) -> None:
    enc = _encoder(arch)
    decay, excluded = split_decay_groups(enc, 1e-6)
    excluded_ids = {id(p) for p in excluded["params"]}
    norms = (nn.LayerNorm, nn.GroupNorm, _BatchNorm)
    norm_params = [p for m in enc.modules() if isinstance(m, norms) or "Norm" in type(m).__name__
                   for p in m.parameters(recurse=False)]
    biases = [p for n, p in enc.named_parameters() if n.endswith(".bias")]
    assert norm_params and biases
    assert all(id(p) in excluded_ids for p in norm_params + biases)
    assert all(p.ndim >= 2 for p in decay["params"])
    assert excluded["lars_exclude"] and not decay["lars_exclude"]
    assert len(decay["params"]) + len(excluded["params"]) == len(list(enc.parameters()))


@pytest.mark.parametrize("arch", FAST)
def test_global_bn_converts_batch_norms_only(arch: str) -> None:
    enc = _encoder(arch).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        before = enc(x)
    kinds = {type(m).__name__ for m in enc.modules()}
    bns = [n for n, m in enc.named_modules() if isinstance(m, _BatchNorm)]
    others = [n for n, m in enc.named_modules() if isinstance(m, (nn.LayerNorm, nn.GroupNorm))]
    convert_global_bn(enc)
    assert [n for n, m in enc.named_modules() if isinstance(m, GlobalBatchNorm)] == bns
    assert [n for n, m in enc.named_modules() if isinstance(m, (nn.LayerNorm, nn.GroupNorm))] == others
    assert other_batch_norms(enc) == []
    if "BatchNormAct2d" in kinds:  # timm's batch norm with its activation keeps the activation
        assert any(isinstance(m, GlobalBatchNormAct) for m in enc.modules())
    with torch.no_grad():  # one process: exactly the network it was
        torch.testing.assert_close(enc(x), before)


@pytest.mark.parametrize("arch", list(BACKBONES))
def test_folding_keeps_the_outputs(arch: str) -> None:
    enc = _encoder(arch)
    enc.train()
    with torch.no_grad():  # batch-norm statistics that are not the initial ones
        for _ in range(3):
            enc(torch.rand(8, 3, 32, 32) * 2)
    enc.eval()
    folded = folded_for_inference(enc)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), enc(x), rtol=1e-4, atol=1e-4)
    left = sum(isinstance(m, _BatchNorm) for m in folded.modules())
    total = sum(isinstance(m, _BatchNorm) for m in enc.modules())
    if arch in ("timm:resnet50", "torchvision:resnet18"):
        assert total > 0 and left == 0  # every batch norm of a ResNet folded
    if arch == "timm:test_efficientnet":
        assert left == total > 0  # its batch norms carry their activation: left as they are


@pytest.mark.parametrize("arch", FAST)
def test_memory_precheck_measures_every_backbone(arch: str) -> None:
    spec = EncoderSpec(arch, cifar_stem=True, image_size=32)
    mem = step_memory(lambda: SimCLRNet(spec, HeadSpec(hidden_dim=32, out_dim=16)), 32, half=False)
    params = sum(p.numel() for p in _encoder(arch).parameters())
    assert mem.per_view > 0 and mem.fixed >= 3 * 4 * params


@pytest.mark.parametrize("arch,width", [("timm:mobilenetv3_small_050", 1024),
                                        ("torchvision:regnet_x_400mf", 400), ("torchvision:googlenet", 1024)])
def test_h_width_is_measured_and_awkward_networks_build(arch: str, width: int) -> None:
    """timm's MobileNetV3 reports num_features 960/576 but returns its head convolution's width; RegNets
    cannot be built on the meta device; GoogLeNet's auxiliary classifiers would make its training output a
    tuple."""
    enc = _encoder(arch).train()
    h = enc(torch.rand(2, 3, 32, 32))
    assert enc.num_features == width and h.shape == (2, width)
    h.sum().backward()  # trains


def test_classifiers_that_are_not_linear_are_refused_in_one_line() -> None:
    with pytest.raises(InputError, match="has no linear classifier to remove"):
        _encoder("torchvision:squeezenet1_0")


def test_vit_position_embedding_and_class_token_are_not_decayed() -> None:
    enc = _encoder("timm:test_vit")
    decay, excluded = split_decay_groups(enc, 1e-6)
    spared = {id(enc.model.pos_embed), id(enc.model.cls_token)}
    assert spared <= {id(p) for p in excluded["params"]} and not spared & {id(p) for p in decay["params"]}
