"""Export a trained network for use elsewhere (``simclr export``), in any architecture and width.

Formats (``--format``):

- ``safetensors`` (the default): a folder of ``model.safetensors`` (the state dict of simclr's network: f
  under ``encoder.``, g under ``head.``), ``config.json`` (the format and its version, the network's settings,
  the preprocessing, the run's config and figures) and a ``README.md`` model card. Every simclr command that
  takes a checkpoint, and ``simclr.load_encoder``, takes the folder; nothing in it is code.
- ``onnx``: f as an ONNX graph (images [B, 3, S, S] in [0, 1] -> h [B, F]; batch norms folded; dynamic batch
  axis) for ONNX Runtime and other engines (:mod:`simclr.export.onnx_format`).
- ``torchvision``: f's state dict as torchvision's model has it: simclr's ResNets at width 1 under
  torchvision's ResNet names, a ``torchvision:NAME`` backbone's own state dict.
- ``timm``: a ``timm:NAME`` backbone's own state dict, or simclr's width-1 ResNets as timm's ResNets (the same
  names as torchvision's).
- ``simclr``: a slim simclr checkpoint: the config and the weights of f and g, without the optimiser,
  data-order and random state of a run's checkpoint; every simclr command takes it, ``pretrain --resume``
  does not.

The ``torchvision`` and ``timm`` files are safetensors when ``--out`` ends in ``.safetensors``, else torch's
format (``torch.load(F, weights_only=True)`` reads them); the result's ``load`` is the one line that loads
each (:mod:`simclr.export.recipes`). A format that cannot hold the network is refused, naming those that can.
Every file is written to a temporary name and renamed (the folder as a whole), so an existing export is never
left half-written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from simclr.config_io import config_to_dict
from simclr.errors import InputError
from simclr.evaluation.learned import model_from_state
from simclr.export.folder import check_folder, write_folder
from simclr.export.onnx_format import write_onnx
from simclr.export.recipes import LIBRARY_FORMATS, library_export
from simclr.files import check_output
from simclr.runtime.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint

FORMATS = ("safetensors", "onnx", "torchvision", "timm", "simclr")
FILE_SUFFIXES = (".pt", ".pth", ".onnx", ".safetensors", ".bin", ".ckpt")
DEFAULT_FORMAT = "safetensors"


def export(checkpoint: str | Path, out: Path, fmt: str = DEFAULT_FORMAT) -> dict[str, Any]:
    """Write ``checkpoint``'s network to ``out`` in ``fmt``; returns what was written and how to load it
    (``load``: one line of Python)."""
    if fmt not in FORMATS:
        raise InputError(f"--format: choose from {', '.join(FORMATS)}, got {fmt!r}")
    source = resolve_checkpoint(checkpoint)
    if fmt == "safetensors":
        check_folder(out, source)  # (an existing file: said as for any output, a run's checkpoint above all)
        if Path(out).suffix.lower() in FILE_SUFFIXES:  # a script written for the earlier default (a file)
            raise InputError(f"--out {out} names a file, and the safetensors format writes a folder: name a "
                             "folder, or pass --format onnx, torchvision, timm or simclr for a file")
    else:
        check_output(out, reading=(source,))
    state = load_checkpoint(checkpoint)
    model, config = model_from_state(state, checkpoint)  # on the CPU, plain layout: plain tensors written
    model.eval()
    m = config.model
    info = {"format": fmt, "out": str(out), "arch": m.arch, "width": m.width,
            "cifar_stem": bool(m.cifar_stem), "input_norm": m.input_norm, "features": model.num_features,
            "image_size": config.data.image_size or 224}
    if fmt == "safetensors":
        return {**info, **write_folder(model, config, state, source, out)}
    if fmt in LIBRARY_FORMATS:
        return {**info, **library_export(model.encoder, m.arch, fmt, out)}
    if fmt == "onnx":
        metadata = {"simclr_model": json.dumps(config_to_dict(config)["model"]),
                    "preprocessing": "RGB in [0, 1]; shorter side resized (bicubic) then centre-cropped to "
                                     f"{info['image_size']}; no mean/std", "output": "h"}
        return {**info, **write_onnx(model.encoder, config.data.image_size or 224, out, metadata)}
    out.parent.mkdir(parents=True, exist_ok=True)
    weights = model.state_dict()
    save_checkpoint({"config": config_to_dict(config), "model": weights}, out)  # no optimizer: not resumable
    load = f"import simclr; enc = simclr.load_encoder({str(out)!r})"
    return {**info, "tensors": len(weights), "load": load}


__all__ = ["DEFAULT_FORMAT", "FORMATS", "export"]
