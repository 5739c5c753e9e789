"""The ``safetensors`` format: a folder of ``model.safetensors``, ``config.json`` and a ``README.md`` model
card (see :mod:`simclr.runtime.exported` for what the files hold and how simclr reads them back)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from simclr.config import Config
from simclr.config_io import config_to_dict
from simclr.data.augment import resize_side
from simclr.errors import DISTRIBUTION, InputError
from simclr.export.card import evaluation_summary, model_card, run_evaluations
from simclr.export.recipes import STANDARDISE, plain_recipe
from simclr.files import atomic_file, check_output, json_text, umask
from simclr.models.backbones import LibraryEncoder, parse_arch
from simclr.models.simclr import SimCLRNet
from simclr.runtime.exported import (
    CARD_FILE,
    CONFIG_FILE,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    WEIGHTS_FILE,
    is_export_folder,
)


def check_folder(out: Path, source: Path) -> None:
    """Refuse, before any work, an ``--out`` the folder format cannot take: a file, a folder with other
    contents than an earlier export (which is replaced), or the export being read."""
    if out.exists() and not out.is_dir():
        check_output(out, reading=(source,))  # a run's checkpoint, the file being read: said as for any file
        raise InputError(f"--out {out} is a file: --format safetensors writes a folder (name a new one)")
    if out.is_dir():
        if source.resolve().is_relative_to(out.resolve()):
            raise InputError(f"--out {out} holds the checkpoint being read: name another folder")
        if any(out.iterdir()) and not is_export_folder(out):
            raise InputError(f"--out {out} is a folder with other files in it, not an earlier export: name a "
                             "new folder")
    folder = next((p for p in out.absolute().parents if p.exists()), None)
    if folder is not None and not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        raise InputError(f"--out {out} cannot be written: {folder} is not a writable folder")


def replace_folder(out: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` into a temporary folder beside ``out``, then put it in ``out``'s place (an earlier
    export there is removed only once the new one is complete)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for name, data in files.items():
            with atomic_file(tmp / name) as fh:
                fh.write(data)
        os.chmod(tmp, 0o777 & ~umask())
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".old"))
            os.replace(out, old / "previous")
            try:
                os.replace(tmp, out)
            except OSError:
                os.replace(old / "previous", out)  # the earlier export back in its place
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _simclr_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)  # simclr.__version__ sits above this layer: the installed metadata
    except PackageNotFoundError:  # run from a source tree
        return "unknown"


def _versions(arch: str) -> dict[str, str]:
    import torchvision

    versions = {"simclr": _simclr_version(), "torch": torch.__version__,
                "torchvision": torchvision.__version__}
    if parse_arch(arch).library == "timm":
        import timm

        versions["timm"] = timm.__version__
    return versions


def export_config(model: SimCLRNet, config: Config, state: dict[str, Any], source: Path) -> dict[str, Any]:
    """What ``config.json`` holds: the format, the network, the preprocessing, the run, its figures."""
    m, d = config.model, config.data
    library, name = parse_arch(m.arch)
    encoder = model.encoder
    size = d.image_size or 224
    done = {k: state[k] for k in ("step", "epoch") if isinstance(state.get(k), int)}
    if "imported" in state:
        done["note"] = f"weights imported by simclr import from {state['imported'].get('weights')}"
    return {
        "format": EXPORT_FORMAT, "format_version": EXPORT_VERSION,
        "tensors": {"file": WEIGHTS_FILE, "encoder.": "f (h = f(x))", "head.": "g (z = g(h))",
                    **({"encoder.model.": f"the {library} model's own state dict"} if library != "simclr"
                       else {})},
        "model": {"arch": m.arch, "library": library, "name": name, "width": m.width,
                  "small_image_option": bool(m.cifar_stem),
                  "stem_change": encoder.stem if isinstance(encoder, LibraryEncoder) else "",
                  "created_with": dict(encoder.created_with) if isinstance(encoder, LibraryEncoder) else {},
                  "input_norm": m.input_norm, "num_features": model.num_features, "image_size": size,
                  "projection_dim": model.num_features if m.head.kind == "none" else m.head.out_dim},
        "preprocessing": {"value_range": [0.0, 1.0], "channels": "RGB", "layout": "NCHW",
                          "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                          "resize_shorter_side": resize_side(size, d.eval_crop), "interpolation": "bicubic",
                          "center_crop": size, "crop_fraction": d.eval_crop,
                          "note": "f standardises its input itself (ImageNet mean and std)"
                          if m.input_norm == "imagenet" else "f takes pixels in [0, 1] as they are"},
        "training": done,
        "evaluation": evaluation_summary(run_evaluations(source, done.get("step"))),
        "source": str(source),
        "versions": _versions(m.arch),
        "simclr_config": config_to_dict(config),
    }


def write_folder(model: SimCLRNet, config: Config, state: dict[str, Any], source: Path,
                 out: Path) -> dict[str, Any]:
    """Write the folder ``out`` (replacing an earlier export there); returns the result's fields."""
    from safetensors.torch import save

    meta = export_config(model, config, state, source)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    load = f"import simclr; enc = simclr.load_encoder({str(out)!r})"
    plain = plain_recipe(model.encoder, out / WEIGHTS_FILE)
    if plain and config.model.input_norm == "imagenet":
        plain += STANDARDISE
    weights = save(tensors, metadata={"format": EXPORT_FORMAT})
    meta["tensors"]["sha256"] = hashlib.sha256(weights).hexdigest()  # read_export checks it
    files = {WEIGHTS_FILE: weights,
             CONFIG_FILE: (json_text(meta, indent=2) + "\n").encode(),
             CARD_FILE: model_card(meta, load, plain).encode()}
    replace_folder(out, files)
    return {"tensors": len(tensors), "files": sorted(files), "evaluation": meta["evaluation"], "load": load,
            "load_plain": plain}
