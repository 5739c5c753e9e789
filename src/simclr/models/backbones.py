"""Encoders f from other libraries: ``timm:NAME`` (any timm model) and ``torchvision:NAME`` (any torchvision
classification model), beside simclr's own ResNets (the paper says f "can be other networks", Section 2.1).

h is the library model's pooled features with its classifier removed (timm: ``num_classes=0``,
``num_features`` wide; torchvision: the last linear layer replaced by an identity, its input width). The
small-image option (``cifar_stem``, on by default for images <= 64 px) adapts the network to 32-64 px inputs
as the paper's CIFAR stem does for ResNets (Appendix B.9): a vision transformer is built for the run's image
side with patches of side/8 (an 8 x 8 grid of tokens) and position embeddings interpolated for other sides; a
convolutional network has its first strided convolution replaced by a 3x3 stride-1 one and its stem's max-pool
removed."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from simclr.errors import InputError, missing_extra

LIBRARIES = ("timm", "torchvision")
SMALL_GRID = 8
"""The small-image option gives a vision transformer patches of side/8: an 8 x 8 grid of tokens."""


class ArchName(NamedTuple):
    """``library`` (``simclr``, ``timm`` or ``torchvision``) and the model's ``name`` in it."""

    library: str
    name: str


def parse_arch(arch: str) -> ArchName:
    """``timm:NAME`` -> (timm, NAME); ``torchvision:NAME`` -> (torchvision, NAME); else (simclr, arch)."""
    library, sep, name = arch.partition(":")
    if sep and library in LIBRARIES:
        return ArchName(library, name.strip())
    return ArchName("simclr", arch)


def is_library_arch(arch: str) -> bool:
    """Whether ``arch`` names a timm or torchvision model."""
    return parse_arch(arch).library != "simclr"


def small_patch(image_size: int) -> int:
    """The patch side of the small-image option for a vision transformer on ``image_size`` images."""
    return max(2, image_size // SMALL_GRID)


def _import_timm() -> Any:
    try:
        import timm
    except ImportError:
        raise missing_extra("model.arch timm:NAME", "timm") from None
    return timm


def _accepts(model: nn.Module, name: str) -> bool:
    return name in inspect.signature(type(model).__init__).parameters


def _create(make: Callable[..., nn.Module], what: str, **kwargs: Any) -> nn.Module:
    """``make(**kwargs)``, its errors (a size the model cannot take, say) as one line."""
    try:
        return make(**kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot build {what} with {kwargs or 'its defaults'}: {detail}") from None


def _probe(make: Callable[[], nn.Module]) -> nn.Module:
    """The network ``make`` builds, on the meta device when it can be built there (no weights allocated), else
    as it is (RegNets compute their widths with tensors)."""
    with warnings.catch_warnings():  # (torchvision's notes on default initialisations: not ours to show)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            with torch.device("meta"):
                return make()
        except (NotImplementedError, RuntimeError):
            return make()


def feature_width(model: nn.Module, image_size: int, what: str) -> int:
    """The width of what ``model`` returns for one image of ``image_size`` (one forward pass in eval mode, on
    the model's device; on the meta device it computes shapes only)."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    mode = model.training
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(1, 3, image_size, image_size, device=device))
    except (RuntimeError, ValueError, AssertionError, TypeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{what} cannot take {image_size}x{image_size} images: {detail}") from None
    finally:
        model.train(mode)
    return int(torch.flatten(out, 1).shape[1])


def _timm_model(name: str, small: bool, image_size: int) -> tuple[nn.Module, dict[str, Any]]:
    """A timm model without classifier, and the keyword arguments it was created with (besides
    ``num_classes=0``)."""
    timm = _import_timm()
    if not timm.is_model(name):
        raise InputError(f"unknown timm model {name!r}: timm.list_models('*{name[:6]}*') lists similar names")
    probe = _probe(lambda: timm.create_model(name, num_classes=0))
    kwargs: dict[str, Any] = {}
    if hasattr(probe, "patch_embed") and _accepts(probe, "img_size"):
        kwargs["img_size"] = image_size
        if small and _accepts(probe, "patch_size"):
            kwargs["patch_size"] = small_patch(image_size)
        if _accepts(probe, "dynamic_img_size"):  # views and evaluation images of other sides
            kwargs["dynamic_img_size"] = True
    model = _create(timm.create_model, f"timm:{name}", model_name=name, num_classes=0, **kwargs)
    return model, kwargs


def _torchvision_model(name: str, small: bool, image_size: int) -> tuple[nn.Module, dict[str, Any]]:
    """A torchvision model with random weights, and the keyword arguments it was created with."""
    import torchvision.models as tvm
    from torchvision.models.vision_transformer import VisionTransformer

    if name not in tvm.list_models(module=tvm):
        raise InputError(f"unknown torchvision classification model {name!r}: "
                         "torchvision.models.list_models(torchvision.models) lists them")
    probe = _probe(lambda: tvm.get_model(name, weights=None))
    if not isinstance(probe, VisionTransformer):
        # Inception-style networks: no auxiliary classifiers (their training output would be a tuple)
        extra = {k: v for k, v in (("aux_logits", False), ("init_weights", True)) if _accepts(probe, k)}
        return _create(tvm.get_model, f"torchvision:{name}", name=name, weights=None, **extra), extra
    layer = probe.encoder.layers[0].self_attention
    kwargs = {"image_size": image_size,
              "patch_size": small_patch(image_size) if small else probe.patch_size,
              "num_layers": len(probe.encoder.layers), "num_heads": layer.num_heads,
              "hidden_dim": probe.hidden_dim, "mlp_dim": probe.mlp_dim}
    return _create(VisionTransformer, f"torchvision:{name}", **kwargs), kwargs


def strip_classifier(model: nn.Module) -> int:
    """Replace the last linear layer of ``model`` (a classification model's classifier) and the dropouts just
    before it by identities (VGG's hidden layers keep theirs); returns the width of the features that reached
    it. A network whose classifier is not a linear layer (SqueezeNet's convolution) is refused."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError(f"{type(model).__name__} has no linear classifier to remove")
    name, last = linears[-1]
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    parent._modules[child] = nn.Identity()
    if isinstance(parent, nn.Sequential):
        keys = list(parent._modules)
        for key in reversed(keys[: keys.index(child)]):  # the dropouts that fed the classifier
            if not isinstance(parent._modules[key], nn.Dropout):
                break
            parent._modules[key] = nn.Identity()
    return last.in_features


def small_image_stem(model: nn.Module) -> str:
    """Adapt a convolutional network to 32-64 px images as the paper's CIFAR stem: its first convolution,
    when strided, becomes 3x3 stride 1 (padding 1, freshly initialised), and then the stem's max-pool becomes
    an identity: the model's ``maxpool`` (ResNets), else a max-pool between the first and the second
    convolution (DenseNet's ``pool0``, GoogLeNet's ``maxpool1``; a pool deeper in the network is kept).
    Returns what was changed, for the run's notes."""
    first = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    if first is None:
        return "no convolution found: unchanged"
    name, conv = first
    changed = []
    if conv.stride != (1, 1):
        parent_name, _, child = name.rpartition(".")
        new = nn.Conv2d(conv.in_channels, conv.out_channels, 3, 1, 1, bias=conv.bias is not None)
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
        model.get_submodule(parent_name)._modules[child] = new
        changed.append(f"{name}: {conv.kernel_size[0]}x{conv.kernel_size[1]} stride {conv.stride[0]} -> 3x3 "
                       "stride 1")
        pool = "maxpool" if isinstance(getattr(model, "maxpool", None), nn.MaxPool2d) else _stem_pool(model)
        if pool is not None:
            pool_parent, _, pool_child = pool.rpartition(".")
            model.get_submodule(pool_parent)._modules[pool_child] = nn.Identity()
            changed.append(f"{pool} (max-pool) removed")
    return "; ".join(changed) or "unchanged (its stem is not strided)"


def _stem_pool(model: nn.Module) -> str | None:
    """The name of a max-pool registered between the first and the second convolution of ``model``."""
    convs = 0
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            convs += 1
            if convs == 2:
                return None
        elif isinstance(m, nn.MaxPool2d) and convs == 1:
            return name
    return None


class LibraryEncoder(nn.Module):
    """f from timm or torchvision: ``model`` (the library's network, classifier removed) after an optional
    ImageNet standardisation of the input (``input_norm: imagenet``).

    Input: images [B, 3, H, W] in [0, 1]. Output: h [B, num_features].

    Attributes:
        model: the library's network; its state dict is the library's own (under ``model.``).
        num_features: the width of h.
        created_with: keyword arguments the library's constructor was given (the small-image option's image
            and patch sizes), which loading its weights elsewhere needs too.
        stem: what the small-image option changed in a convolutional stem ("" when not applied).
    """

    def __init__(self, arch: str, small: bool, image_size: int, input_norm: str,
                 mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        library, name = parse_arch(arch)
        build = _timm_model if library == "timm" else _torchvision_model
        self.model, self.created_with = build(name, small, image_size)
        if library == "torchvision":
            strip_classifier(self.model)
        self.stem = ""
        if small and "patch_size" not in self.created_with:
            self.stem = small_image_stem(self.model)
        # measured, not read: timm's num_features is not the pooled width of every model (MobileNetV3's 960
        # against 1280 after its head convolution)
        self.num_features = feature_width(self.model, image_size, arch)
        self.arch = arch
        self.normalize = input_norm == "imagenet"
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = self.created_with.get("image_size")
        if side is not None and tuple(x.shape[-2:]) != (side, side):  # torchvision's ViT: its side only
            raise InputError(f"{self.arch} takes {side}x{side} images only (the side it was built for), got "
                             f"{x.shape[-2]}x{x.shape[-1]}: evaluate at that side (--image-size {side}), or "
                             "train a timm ViT, which takes any side")
        if self.normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return torch.flatten(self.model(x), 1)
