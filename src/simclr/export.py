"""Export a trained network for use elsewhere: f as a torchvision ResNet state dict, or a slim simclr file.

- ``torchvision``: f's weights and batch-norm statistics under torchvision's names, a plain
  ``{name: tensor}`` dict (``torch.load(F, weights_only=True)`` reads it); no ``fc``.
- ``simclr``: the config and the weights of f and g, without the optimiser, data-order and random state of
  a run's checkpoint; every simclr command (eval, embed, search, ``simclr.load_encoder``) takes it as a
  checkpoint, ``pretrain --resume`` does not.

Files are written to a temporary name and renamed, so an existing file is never left half-written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from simclr.config_io import config_to_dict
from simclr.errors import InputError
from simclr.evaluation.learned import load_model
from simclr.files import check_output
from simclr.models.torchvision_compat import torchvision_state_dict
from simclr.runtime.checkpoint import atomic_save, resolve_checkpoint, save_checkpoint

FORMATS = ("torchvision", "simclr")


def torchvision_recipe(arch: str, cifar_stem: bool, path: Path) -> str:
    """Python that builds the torchvision model and loads an exported file into it."""
    stem = ("m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False); m.maxpool = torch.nn.Identity(); "
            if cifar_stem else "")
    return (f"m = torchvision.models.{arch}(); {stem}m.fc = torch.nn.Identity(); "
            f"m.load_state_dict(torch.load({str(path)!r}, weights_only=True))")


def export(checkpoint: str | Path, out: Path, fmt: str = "torchvision") -> dict[str, Any]:
    """Write ``checkpoint``'s network to ``out`` in ``fmt``; returns what was written (and how to load it)."""
    if fmt not in FORMATS:
        raise InputError(f"--format: choose from {', '.join(FORMATS)}, got {fmt!r}")
    check_output(out, reading=(resolve_checkpoint(checkpoint),))
    model, config = load_model(checkpoint, torch.device("cpu"), channels_last=False)  # plain tensors written
    m = config.model
    info = {"format": fmt, "out": str(out), "arch": m.arch, "cifar_stem": bool(m.cifar_stem),
            "features": model.num_features}
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "torchvision":
        try:
            state = torchvision_state_dict(model.encoder)
        except ValueError as exc:
            raise InputError(f"{exc}; use --format simclr") from None
        atomic_save(state, out)
        load = torchvision_recipe(m.arch, bool(m.cifar_stem), out)
        if m.input_norm == "imagenet":  # f standardised its input itself; torchvision's model does not
            load += ("  # feed it torchvision.transforms.Normalize((0.485, 0.456, 0.406), "
                     "(0.229, 0.224, 0.225)) of pixels in [0, 1]")
        return {**info, "tensors": len(state), "input_norm": m.input_norm, "load": load}
    state = model.state_dict()
    save_checkpoint({"config": config_to_dict(config), "model": state}, out)  # no optimizer: not resumable
    return {**info, "tensors": len(state), "load": f"simclr.load_encoder({str(out)!r})"}
