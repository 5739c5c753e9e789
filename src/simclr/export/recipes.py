"""f as a torchvision or timm model's state dict, and the Python line that loads it there.

simclr's ResNets at width 1 are torchvision's (and timm's: the same names) under other names
(:mod:`simclr.models.torchvision_compat`); a ``torchvision:NAME`` or ``timm:NAME`` backbone is its library's
own model, whose state dict is written as it is. Where simclr changed the library's network (its classifier
removed, the small-image option's stem), the printed recipe makes the same changes before loading, so that
``load_state_dict`` is strict and the model computes h.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from simclr.errors import InputError
from simclr.files import atomic_file
from simclr.models.backbones import LibraryEncoder, parse_arch
from simclr.models.resnet import ResNetEncoder
from simclr.models.torchvision_compat import TORCHVISION_ARCHS, torchvision_state_dict
from simclr.runtime.checkpoint import atomic_save

LIBRARY_FORMATS = ("torchvision", "timm")
ANY_NETWORK = "safetensors or onnx"
"""The formats that hold any network, named when another cannot."""
CIFAR_STEM = ("m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)", "m.maxpool = torch.nn.Identity()")
STANDARDISE = ("  # feed it torchvision.transforms.Normalize((0.485, 0.456, 0.406), "
               "(0.229, 0.224, 0.225)) of pixels in [0, 1]")


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """``state`` written atomically: a safetensors file when ``path`` ends in ``.safetensors``, else torch's
    format (read with ``torch.load(weights_only=True)``)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import save

        data = save({k: v.detach().cpu().contiguous().clone() for k, v in state.items()})
        with atomic_file(path) as fh:
            fh.write(data)
    else:
        atomic_save(state, path)


def read_call(path: Path) -> tuple[str, str]:
    """The import and the expression that read ``path`` as :func:`save_weights` wrote it."""
    if path.suffix == ".safetensors":
        return "import safetensors.torch; ", f"safetensors.torch.load_file({str(path)!r})"
    return "", f"torch.load({str(path)!r}, weights_only=True)"


def _expr(name: str) -> str:
    """Python for the submodule ``name`` of ``m``: ``classifier.3`` -> ``m.classifier[3]``."""
    parts = name.split(".")
    if not all(p.isidentifier() or p.isdigit() for p in parts):
        return f"m.get_submodule({name!r})"
    return "m" + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts)


def _conv(conv: nn.Conv2d) -> str:
    def one(v: tuple[int, ...] | str) -> str:
        return str(v[0]) if isinstance(v, tuple) and len(set(v)) == 1 else repr(v)

    extra = "".join(f", {k}={getattr(conv, k)}" for k in ("groups",) if getattr(conv, k) != 1)
    return (f"torch.nn.Conv2d({conv.in_channels}, {conv.out_channels}, {one(conv.kernel_size)}, "
            f"{one(conv.stride)}, {one(conv.padding)}{extra}, bias={conv.bias is not None})")


def _replacement(mine: nn.Module, theirs: nn.Module, name: str) -> str | None:
    """The constructor that turns ``theirs`` (the library's module) into ``mine`` (simclr's), or None."""
    if type(mine) is type(theirs) and not isinstance(mine, nn.Conv2d):
        return None
    if isinstance(mine, nn.Identity):
        return "torch.nn.Identity()"
    if type(mine) is nn.Conv2d and isinstance(theirs, nn.Conv2d):
        same = all(getattr(mine, k) == getattr(theirs, k) for k in
                   ("in_channels", "out_channels", "kernel_size", "stride", "padding", "groups"))
        return None if same and (mine.bias is None) == (theirs.bias is None) else _conv(mine)
    raise ValueError(f"{name} is a {type(mine).__name__} where the library builds a {type(theirs).__name__}")


def patches(trained: nn.Module, fresh: nn.Module) -> list[str]:
    """The assignments that make ``fresh`` (built as the recipe builds it) the shape of ``trained``."""
    lines: list[str] = []
    theirs = dict(fresh.named_modules())
    replaced: list[str] = []
    for name, mine in trained.named_modules():
        if not name or any(name.startswith(r + ".") for r in replaced):
            continue
        if name not in theirs:
            raise ValueError(f"{name} is not in the library's model")
        new = _replacement(mine, theirs[name], name)
        if new is not None:
            lines.append(f"{_expr(name)} = {new}")
            replaced.append(name)
    return lines


def _kwargs(created_with: dict[str, Any]) -> str:
    return "".join(f", {k}={v!r}" for k, v in created_with.items())


def _library_recipe(encoder: LibraryEncoder, path: Path, read: tuple[str, str] | None = None) -> str:
    """The recipe of a ``timm:NAME`` / ``torchvision:NAME`` backbone's own state dict in ``path`` (or the
    state dict that the import and expression ``read`` give)."""
    library, name = parse_arch(encoder.arch)
    kw = _kwargs(encoder.created_with)
    with torch.device("meta"):
        if library == "timm":
            import timm

            fresh = timm.create_model(name, num_classes=0, **encoder.created_with)
            make = f"import timm, torch; m = timm.create_model({name!r}, num_classes=0{kw})"
        elif encoder.created_with:  # a vision transformer built for the run's image side
            from torchvision.models.vision_transformer import VisionTransformer

            fresh = VisionTransformer(**encoder.created_with)
            make = (f"import torch, torchvision; "
                    f"m = torchvision.models.vision_transformer.VisionTransformer({kw[2:]})")
        else:
            import torchvision.models as tvm

            fresh = tvm.get_model(name, weights=None)
            make = f"import torch, torchvision; m = torchvision.models.get_model({name!r}, weights=None)"
    changes = patches(encoder.model, fresh)
    imports, expr = read or read_call(path)
    if library == "timm" and not changes and read is None:  # timm reads the file (safetensors or weights)
        return (f"import timm; m = timm.create_model({name!r}, pretrained=True, "
                f"pretrained_cfg_overlay=dict(file={str(path)!r}), num_classes=0{kw}).eval()")
    return f"{imports}{make}; " + "".join(f"{c}; " for c in changes) + f"m.load_state_dict({expr}); m.eval()"


def _resnet_recipe(encoder: ResNetEncoder, fmt: str, path: Path) -> str:
    """The recipe of simclr's ResNet (width 1) as torchvision's or timm's ResNet."""
    arch, stem = encoder.spec.arch, encoder.spec.cifar_stem
    imports, read = read_call(path)
    changes = "".join(f"{c}; " for c in CIFAR_STEM) if stem else ""
    if fmt == "timm":
        if not stem:
            return (f"import timm; m = timm.create_model({arch!r}, pretrained=True, "
                    f"pretrained_cfg_overlay=dict(file={str(path)!r}), num_classes=0).eval()")
        make = f"import timm, torch; m = timm.create_model({arch!r}, num_classes=0)"
    else:
        make = f"import torch, torchvision; m = torchvision.models.{arch}(); m.fc = torch.nn.Identity()"
    return f"{imports}{make}; {changes}m.load_state_dict({read}); m.eval()"


_TORCHVISION_NAMES = (r"re.sub(r'^stages\.(\d+)', lambda g: f'layer{int(g[1]) + 1}', k[8:])"
                      ".replace('stem.0.', 'conv1.', 1).replace('stem.1.', 'bn1.', 1)")


def plain_recipe(encoder: nn.Module, weights: Path) -> str | None:
    """Python that loads f from an exported folder's ``model.safetensors`` (``weights``) into the torchvision
    or timm model it is, without simclr; None for simclr's own networks (other widths, wide ResNet-50s)."""
    load = f"safetensors.torch.load_file({str(weights)!r}).items()"
    if isinstance(encoder, LibraryEncoder):
        read = ("import safetensors.torch; ",
                f"{{k[len('encoder.model.'):]: v for k, v in {load} if k.startswith('encoder.model.')}}")
        try:
            return _library_recipe(encoder, weights, read)
        except ValueError:
            return None
    if not isinstance(encoder, ResNetEncoder) or encoder.spec.width != 1.0 \
            or encoder.spec.arch not in TORCHVISION_ARCHS:
        return None
    stem = "".join(f"{c}; " for c in CIFAR_STEM) if encoder.spec.cifar_stem else ""
    return ("import re, safetensors.torch, torch, torchvision; "
            f"m = torchvision.models.{encoder.spec.arch}(); "
            f"m.fc = torch.nn.Identity(); {stem}"
            f"m.load_state_dict({{{_TORCHVISION_NAMES}: v for k, v in {load} if k.startswith('encoder.')}}); "
            "m.eval()")


def library_export(encoder: nn.Module, arch: str, fmt: str, path: Path) -> dict[str, Any]:
    """Write f's state dict as ``fmt`` (``torchvision`` or ``timm``) has it to ``path``; returns the tensors
    written and the ``load`` recipe. InputError when ``fmt`` cannot represent f (naming those that can)."""
    library = parse_arch(arch).library
    if isinstance(encoder, ResNetEncoder):
        try:
            state = torchvision_state_dict(encoder)
        except ValueError as exc:
            raise InputError(f"{exc}; --format {fmt} cannot hold it: use --format {ANY_NETWORK}") from None
        recipe = _resnet_recipe(encoder, fmt, path)
    elif isinstance(encoder, LibraryEncoder) and library == fmt:
        state = encoder.model.state_dict()
        try:
            recipe = _library_recipe(encoder, path)
        except ValueError as exc:
            raise InputError(f"--format {fmt}: {arch} was changed in a way no recipe repeats ({exc}); use "
                             f"--format {ANY_NETWORK}") from None
    else:
        raise InputError(f"--format {fmt} holds {fmt}'s networks and simclr's width-1 ResNets, not {arch}: "
                         f"use --format {library + ', ' if library in LIBRARY_FORMATS else ''}{ANY_NETWORK}")
    save_weights(state, path)
    if encoder.normalize:
        recipe += STANDARDISE  # f standardised its input itself; the library's model does not
    return {"tensors": len(state), "load": recipe}
