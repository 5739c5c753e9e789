"""Checkpoints: written atomically, read with ``weights_only=True`` (loading never executes code)."""

from __future__ import annotations

import copy
import hashlib
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from simclr.config import Config
from simclr.config_io import config_from_dict
from simclr.errors import InputError, one_line
from simclr.files import atomic_file
from simclr.runtime.exported import WEIGHTS_FILE, is_export_folder, read_export

FORMAT = "simclr-checkpoint-v1"
LAST = "last.pt"


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` via a temporary file and an atomic rename (a crash never leaves half a file)."""
    with atomic_file(path) as fh:
        torch.save(obj, fh)


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state``, tagged as a simclr checkpoint with the :func:`state_digest` of its contents, to
    ``path`` atomically."""
    state = {"format": FORMAT, **{k: v for k, v in state.items() if k not in ("format", DIGEST)}}
    atomic_save({**state, DIGEST: state_digest(state)}, path)


DIGEST = "digest"
"""The checkpoint entry holding :func:`state_digest` of the rest (checkpoints from before it have none)."""


def hash_tensor(h: Any, name: str, tensor: torch.Tensor) -> None:
    """Feed ``tensor``'s name, dtype, shape and bytes to the hash ``h``."""
    t = tensor.detach().cpu().contiguous()
    h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().data)


def state_digest(state: Any) -> str:
    """sha256 (hex) of everything in a checkpoint's ``state``: every tensor's bytes, dtype and shape and every
    other value, with the keys that lead to each, in a fixed order. A byte flipped inside a tensor (which
    unpickling would not notice) changes it."""
    h = hashlib.sha256()

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for key in sorted(value, key=repr):
                walk(value[key], f"{path}/{key!r}")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(item, f"{path}/{i}")
        elif isinstance(value, torch.Tensor):
            hash_tensor(h, path, value)
        else:
            h.update(f"{path}\0{value!r}\0".encode())

    walk(state, "")
    return h.hexdigest()


def check_digest(state: dict[str, Any], path: Path) -> None:
    """InputError unless ``state`` matches the digest it was saved with (none recorded: accepted)."""
    saved = state.get(DIGEST)
    if saved is None:
        return
    if saved != state_digest({k: v for k, v in state.items() if k != DIGEST}):
        raise InputError(f"checkpoint {path} is damaged: its contents do not match the digest they were "
                         "saved with (bytes changed on disk or in transit); use another copy")


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder means its ``last.pt``, an exported folder (``simclr export --format safetensors``) its
    ``model.safetensors``; a file is taken as is."""
    p = Path(path)
    if p.is_dir():
        if is_export_folder(p) and not (p / LAST).is_file():
            return p / WEIGHTS_FILE
        p = p / LAST
        if not p.is_file():
            raise InputError(f"no checkpoint in run folder {path} (expected {LAST}, or {WEIGHTS_FILE} and "
                             "config.json in an exported folder)")
    elif not p.is_file():
        raise InputError(f"checkpoint not found: {path}")
    return p


def load_tensors(path: Path, what: str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True`` (never runs code from the file); anything unreadable is an
    ``InputError`` "cannot read {what} {path}: ..."."""
    try:
        path.open("rb").close()
    except OSError as exc:  # the file itself (permissions, a folder): any later failure is its content's
        raise InputError(f"cannot read {what} {path}: {one_line(exc)}") from None
    try:
        # torch's warnings about a foreign file: the error below says it in one line
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: any parse failure means "not readable"
        if isinstance(exc, pickle.UnpicklingError) and "unsupported global" in str(exc).lower():
            why = ("it holds Python objects besides tensors, which simclr never loads (loading them could "
                   "run code from the file)")
        else:
            why = "not a complete PyTorch file (corrupt, truncated, or another format)"
        raise InputError(f"cannot read {what} {path}: {why}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a simclr checkpoint safely; anything unreadable or foreign is an ``InputError``, as is one without
    its ``config`` (a mapping) and ``model`` (names to tensors). An exported folder (or its
    ``model.safetensors``) reads as a checkpoint of its config and weights, with ``exported`` (its
    config.json) beside them (:func:`~simclr.runtime.exported.read_export`)."""
    p = resolve_checkpoint(path)
    if p.name == WEIGHTS_FILE and is_export_folder(p.parent):
        exported = read_export(p)
        exported["model"] = {k: v.to(map_location) for k, v in exported["model"].items()}
        return {"format": FORMAT, **exported}
    state = load_tensors(p, "checkpoint", map_location)
    if isinstance(state, dict) and state.get("format") == FORMAT:
        check_digest(state, p)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        hint = " (ResNet weights in torchvision's layout? simclr import makes a checkpoint of them)" \
            if isinstance(state, dict) and state \
            and all(isinstance(v, torch.Tensor) for v in state.values()) else ""
        raise InputError(f"{p} is not a simclr checkpoint{hint}")
    config, model = state.get("config"), state.get("model")
    if not isinstance(config, dict):
        raise InputError(f"checkpoint {p} is damaged: {_kind('config', config, 'a mapping')}")
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in model.items()):
        raise InputError(f"checkpoint {p} is damaged: {_kind('model', model, 'named tensors')}")
    return state


def _kind(name: str, value: Any, expected: str) -> str:
    return f"it has no {name}" if value is None else f"its {name} is a {type(value).__name__}, not {expected}"


LEGACY = {("model", "head", "out_bn"): False, ("loss", "scale"): 1.0}
"""Settings added since checkpoints were first written, with the value that gives what a checkpoint without
them was trained with: the head's output batch norm, the loss's scale for the gradient."""


def _with_legacy(raw: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``raw`` with the :data:`LEGACY` value of each setting it lacks (where it has the section)."""
    raw = copy.deepcopy(raw)
    for keys, value in LEGACY.items():
        section: Any = raw
        for key in keys[:-1]:
            section = section.get(key)
            if not isinstance(section, dict):
                break
        else:
            section.setdefault(keys[-1], value)
    return raw


def saved_config(state: dict[str, Any], path: str | Path) -> Config:
    """The config a checkpoint was saved with (settings it predates take :data:`LEGACY`'s values); a bad one
    is one ``InputError`` line naming the checkpoint."""
    try:
        return config_from_dict(_with_legacy(state["config"]))
    except InputError as exc:
        raise InputError(f"checkpoint {path} is damaged: {exc}") from None


def non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors holding a NaN or an infinity."""
    return [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def load_weights(module: torch.nn.Module, weights: dict[str, torch.Tensor], what: str) -> None:
    """``module.load_state_dict(weights)``; weights that do not fit are one ``InputError`` line naming the
    first missing, unexpected or misshapen one, "{what} does not match its own config: ...", and non-finite
    weights (a diverged run's) are refused too."""
    mine = module.state_dict()
    missing = [k for k in mine if k not in weights]
    extra = [k for k in weights if k not in mine]
    shapes = [k for k in mine if k in weights and weights[k].shape != mine[k].shape]
    problems = [f"{len(missing)} weights missing (e.g. {missing[0]})" if missing else "",
                f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else "",
                f"{len(shapes)} of another shape (e.g. {shapes[0]}: {tuple(weights[shapes[0]].shape)} "
                f"where the network has {tuple(mine[shapes[0]].shape)})" if shapes else ""]
    if any(problems):
        raise InputError(f"{what} does not match its own config: {'; '.join(p for p in problems if p)}")
    bad = non_finite(weights)
    if bad:
        raise InputError(f"{what} holds non-finite weights (NaN or infinity in {len(bad)} tensors, e.g. "
                         f"{bad[0]}): its run diverged; use an earlier checkpoint (epoch_NNNN.pt) or retrain "
                         "with a lower learning rate")
    try:
        module.load_state_dict(weights)
    except RuntimeError as exc:
        raise InputError(f"{what} does not match its own config: {one_line(exc)}") from None


def rng_state(device: torch.device) -> dict[str, Any]:
    """The global torch RNG state (and the device's, on CUDA), for a checkpoint."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 (hex, 32 digits) of every parameter and buffer of ``model``: names, types, shapes and values."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        hash_tensor(h, name, tensor)
    return h.hexdigest()[:32]
