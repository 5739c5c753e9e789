"""``simclr import``: a ResNet's weights in torchvision's layout as a simclr checkpoint, for every simclr
command.

Evaluate weights trained elsewhere with the same protocols as your own runs: the paper's released SimCLR
ResNet-50 (1x, 2x, 4x) converted to PyTorch, torchvision's supervised ImageNet ResNets (the paper's supervised
baseline of Table 8; ``torchvision:resnet50`` fetches them), or another method's backbone. A ``.safetensors``
file is read with safetensors, any other with ``torch.load(weights_only=True)``: neither runs code; the state
dict may be the file itself or sit under ``state_dict``, ``model`` or ``encoder``, with any common prefix
(``module.``, ``backbone.``, ``encoder_q.`` ...). ``simclr export --format torchvision`` (or ``timm``) of a
width-1 ResNet writes such a file.

The architecture is read from the weights: the blocks per stage and the block type give resnet18 ...
resnet152, the stem convolution's channels the width (64 x width; the paper's ResNet-50 x2 and x4 widen every
layer), and its kernel the stem (3x3: the CIFAR stem without max-pool). Weights trained on
ImageNet-standardised pixels (torchvision's supervised ResNets) need ``input_norm="imagenet"`` (``--input-norm
imagenet``): f then standardises its input itself, while SimCLR's weights take pixels in [0, 1] as they are
(the default). ``fc`` and anything outside the ResNet (a projection head, a momentum encoder) are left out.
The checkpoint's projection head g is freshly initialised (seeded): h is the imported network's, z is not a
trained projection (use h: evaluations, ``embed`` and ``search`` do)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from simclr.build import build_model
from simclr.config_io import build_config, config_to_dict
from simclr.errors import InputError, one_line
from simclr.files import check_output
from simclr.models.resnet import INPUT_NORMS
from simclr.models.torchvision_compat import TORCHVISION_ARCHS, torchvision_key
from simclr.runtime.checkpoint import load_tensors, save_checkpoint
from simclr.runtime.exported import read_safetensors

_CONTAINERS = ("state_dict", "model", "encoder", "backbone", "net")
_LAYOUTS: dict[tuple[tuple[int, ...], bool], str] = {  # (blocks per stage, bottleneck) -> arch
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
    ((3, 4, 6, 3), True): "resnet50",
    ((3, 4, 23, 3), True): "resnet101",
    ((3, 8, 36, 3), True): "resnet152",
}


TORCHVISION_PREFIX = "torchvision:"


def torchvision_weights(name: str) -> dict[str, torch.Tensor]:
    """torchvision's default ImageNet weights of ``name`` (resnet18 ... resnet152), downloaded into torch's
    cache (``$TORCH_HOME``) on first use; the paper's supervised baseline."""
    import torchvision.models

    if name not in TORCHVISION_ARCHS:
        raise InputError(f"{TORCHVISION_PREFIX}{name}: choose from "
                         f"{', '.join(TORCHVISION_PREFIX + a for a in TORCHVISION_ARCHS)}")
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return dict(weights.get_state_dict(progress=True))
    except Exception as exc:  # noqa: BLE001 - offline, HTTP, checksum: the same remedy
        raise InputError(f"cannot download torchvision's {weights} "
                         f"({type(exc).__name__}: {one_line(exc)[:200]}): "
                         f"run once online, or download {weights.url} and import the file") from None


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, never unpickling code: a ``.safetensors`` file, or a torch file read
    with ``weights_only=True`` and unwrapped from a ``state_dict``-like container.
    """
    if not path.is_file():
        raise InputError(f"weights file not found: {path}")
    state: Any = read_safetensors(path, "weights") if path.suffix == ".safetensors" \
        else load_tensors(path, "weights")
    for _ in range(3):  # e.g. {"state_dict": {...}} or {"model": {"encoder": {...}}}
        if not isinstance(state, dict) or _tensors(state):
            break
        state = next((state[k] for k in _CONTAINERS if isinstance(state.get(k), dict)), None)
    if not isinstance(state, dict) or not _tensors(state):
        raise InputError(f"{path} holds no state dict of tensors (looked under {', '.join(_CONTAINERS)})")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _tensors(state: dict[Any, Any]) -> bool:
    return any(isinstance(v, torch.Tensor) for v in state.values())


def resnet_part(state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """The ResNet's tensors under torchvision's names: the prefix in front of ``conv1.weight`` removed, ``fc``
    and everything else dropped."""
    prefixes = sorted({p for k in state if k.endswith("conv1.weight")
                       and f"{(p := k[: -len('conv1.weight')])}layer1.0.conv1.weight" in state}, key=len)
    if not prefixes:
        hint = ": it is a simclr checkpoint, which every command takes as it is" \
            if any(k.endswith("encoder.stem.0.weight") for k in state) else ""
        raise InputError(f"{name} is not a torchvision-style ResNet: "
                         f"no conv1.weight beside layer1.0.conv1.weight among its {len(state)} tensors{hint}")
    if len(prefixes) > 1:
        raise InputError(f"{name} holds several ResNets "
                         f"({', '.join(p or '(none)' for p in prefixes)} prefixes); "
                         "save the one to import on its own")
    prefix = prefixes[0]
    return {k[len(prefix):]: v for k, v in state.items()
            if k.startswith(prefix) and re.match(r"(conv1|bn1|layer[1-4])\.", k[len(prefix):])}


def infer_model(weights: dict[str, torch.Tensor], name: str) -> dict[str, Any]:
    """The ``model`` config (arch, width, cifar_stem) that the torchvision-named ``weights`` fit."""
    blocks = tuple(len({int(m.group(1)) for k in weights if (m := re.match(rf"layer{i}\.(\d+)\.", k))})
                   for i in range(1, 5))
    bottleneck = "layer1.0.conv3.weight" in weights
    arch = _LAYOUTS.get((blocks, bottleneck))
    if arch is None:
        kind = "bottleneck" if bottleneck else "basic"
        raise InputError(f"{name}: a ResNet of {'-'.join(map(str, blocks))} {kind} blocks per stage "
                         "is none of resnet18, 34, 50, 101, 152")
    stem = weights.get("conv1.weight")
    if (stem is None or stem.ndim != 4 or stem.shape[0] == 0 or stem.shape[1] != 3
            or stem.shape[-1] not in (3, 7)):
        shape = "missing" if stem is None else f"of shape {tuple(stem.shape)}"
        raise InputError(f"{name}: conv1.weight is {shape}; a ResNet's stem is [C, 3, 7, 7] (the CIFAR stem "
                         "[C, 3, 3, 3]) with C > 0")
    width = stem.shape[0] / 64
    if arch == "resnet50" and width in (2.0, 4.0):
        arch, width = f"resnet50x{int(width)}", 1.0  # the paper's wide ResNet-50s
    return {"arch": arch, "width": width, "cifar_stem": stem.shape[-1] == 3}


def import_weights(weights_path: str | Path, out: str | Path, *, image_size: int = 0,
                   input_norm: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Write a simclr checkpoint holding the ResNet of ``weights_path`` as f (see the module's docstring).

    Args:
        weights_path: A torchvision-style ResNet state dict file (``.pth``/``.pt``/``.safetensors``), or
            ``torchvision:NAME``
            (e.g. ``torchvision:resnet50``): torchvision's supervised ImageNet weights, downloaded when
            missing.
        out: The checkpoint to write (atomically).
        image_size: The side the network is evaluated at by default (0: 32 with the CIFAR stem, else 224).
        input_norm: ``none`` for weights trained on pixels in [0, 1] (SimCLR's), ``imagenet`` for weights
            trained on ImageNet-standardised input (torchvision's supervised ResNets and most supervised
            models); None: ``imagenet`` for ``torchvision:NAME``, else ``none``.
        seed: Seed of the untrained projection head.

    Returns:
        What was imported: arch, width, cifar_stem, features (h's size), tensors, ignored (tensors left out),
        out.

    Raises:
        InputError: Unreadable file, not a ResNet of a known shape, or tensors missing or of the wrong shape.
    """
    source = str(weights_path)
    from_torchvision = source.startswith(TORCHVISION_PREFIX)
    input_norm = input_norm or ("imagenet" if from_torchvision else "none")
    if input_norm not in INPUT_NORMS:
        raise InputError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {input_norm!r}")
    path = Path(source)
    check_output(out, reading=() if from_torchvision else (path,))
    state = torchvision_weights(source[len(TORCHVISION_PREFIX):]) if from_torchvision else read_weights(path)
    weights = resnet_part(state, str(path))
    model_cfg = {**infer_model(weights, str(path)), "input_norm": input_norm}
    size = image_size or (32 if model_cfg["cifar_stem"] else 224)
    config = build_config({"model": model_cfg, "data": {"image_size": size}, "train": {"seed": seed}})
    torch.manual_seed(seed)
    model = build_model(config)
    ours = model.encoder.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    for key, tensor in ours.items():
        theirs = torchvision_key(key)
        if theirs not in weights:
            if key.endswith("num_batches_tracked"):  # absent from older files; unused in evaluation
                loaded[key] = tensor
                continue
            raise InputError(f"{path}: {theirs} is missing (a {model_cfg['arch']} needs it)")
        value = weights[theirs]
        if value.shape != tensor.shape:
            raise InputError(f"{path}: {theirs} has shape {tuple(value.shape)}, a {model_cfg['arch']} "
                             f"at width {model_cfg['width']:g} needs {tuple(tensor.shape)} "
                             "(torchvision's wide_resnet widens only the bottleneck's inner convolutions "
                             "and is not supported)")
        loaded[key] = value.to(tensor.dtype)
    model.encoder.load_state_dict(loaded)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint({"config": config_to_dict(config), "model": model.state_dict(),
                     "imported": {"weights": str(path), "head": "untrained"}}, target)
    used = {torchvision_key(k) for k in ours}
    return {"out": str(target), "weights": str(path), **model_cfg, "image_size": size,
            "features": model.num_features, "tensors": len(used & weights.keys()),
            "ignored": len(state) - len(used & weights.keys())}
