"""Reading an exported model folder (``simclr export --format safetensors``) as a checkpoint.

The folder holds ``model.safetensors`` (the network's tensors: f under ``encoder.``, g under ``head.``, the
state dict of :class:`~simclr.models.simclr.SimCLRNet`), ``config.json`` (what rebuilds the network and how
images are prepared for it; :data:`EXPORT_FORMAT`) and a ``README.md`` model card. Reading it never executes
code: the tensors are safetensors, the rest JSON. Writing it is :mod:`simclr.export`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch

from simclr.errors import InputError, one_line

EXPORT_FORMAT = "simclr-export"
EXPORT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"


def is_export_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding an exported model's ``model.safetensors`` and ``config.json``."""
    p = Path(path)
    return p.is_dir() and (p / WEIGHTS_FILE).is_file() and (p / CONFIG_FILE).is_file()


def read_safetensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file on the CPU; anything unreadable is one ``InputError`` line."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: any parse failure means "not readable"
        raise InputError(f"cannot read {what} {path}: not a complete safetensors file "
                         f"({one_line(exc)[:160]})") from None


def read_export_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of an exported folder, its format and preprocessing checked."""
    path = folder / CONFIG_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path}: {one_line(exc)}") from None
    if not isinstance(raw, dict) or raw.get("format") != EXPORT_FORMAT:
        raise InputError(f"{path} is not a simclr export's config.json (no \"format\": \"{EXPORT_FORMAT}\")")
    if raw.get("format_version") != EXPORT_VERSION:
        raise InputError(f"{path}: format_version {raw.get('format_version')!r} is not one this simclr reads "
                         f"({EXPORT_VERSION}); upgrade simclr")
    pre, config = raw.get("preprocessing"), raw.get("simclr_config")
    if not isinstance(pre, dict) or not isinstance(config, dict) or not isinstance(config.get("data"), dict):
        raise InputError(f"{path} is damaged: it needs the mappings preprocessing and simclr_config")
    if pre.get("mean") != [0.0, 0.0, 0.0] or pre.get("std") != [1.0, 1.0, 1.0] \
            or pre.get("value_range") != [0.0, 1.0]:
        raise InputError(f"{path}: simclr feeds its networks pixels in [0, 1] as they are (mean 0, std 1); "
                         "this preprocessing was edited to something else")
    size, crop = pre.get("center_crop"), pre.get("crop_fraction")
    if not isinstance(size, int) or size < 8 or not isinstance(crop, (int, float)) \
            or not (math.isfinite(crop) and 0.0 < crop <= 1.0):
        raise InputError(f"{path} is damaged: preprocessing needs center_crop (a side >= 8) and "
                         "crop_fraction (in (0, 1])")
    config = copy.deepcopy(config)
    config["data"].update(image_size=size, eval_crop=float(crop))  # the preprocessing written is the one used
    return {**raw, "simclr_config": config}


def read_export(path: Path) -> dict[str, Any]:
    """An exported folder (or its ``model.safetensors``) as a checkpoint's ``config`` and ``model``, with
    ``exported`` (its ``config.json``) and the ``step`` and ``epoch`` it records."""
    folder = path if path.is_dir() else path.parent
    raw = read_export_config(folder)
    expected = raw["tensors"].get("sha256") if isinstance(raw.get("tensors"), dict) else None
    if expected is not None:  # (exports from before the digest have none)
        try:
            actual = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
        except OSError as exc:
            raise InputError(f"cannot read {folder / WEIGHTS_FILE}: {one_line(exc)}") from None
        if actual != expected:
            raise InputError(f"{folder / WEIGHTS_FILE} is damaged: its bytes do not match the sha256 in "
                             f"{CONFIG_FILE} (changed on disk or in transit); export it again")
    tensors = read_safetensors(folder / WEIGHTS_FILE, "exported model")
    done: dict[str, Any] = raw["training"] if isinstance(raw.get("training"), dict) else {}
    extra = {k: done[k] for k in ("step", "epoch") if isinstance(done.get(k), int)}
    return {"config": raw["simclr_config"], "model": tensors, "exported": raw, **extra}
