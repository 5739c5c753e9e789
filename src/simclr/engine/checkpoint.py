"""Checkpoints: written atomically, read with ``weights_only=True`` (loading never executes code)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from simclr.errors import InputError, one_line
from simclr.files import atomic_file

FORMAT = "simclr-checkpoint-v1"
LAST = "last.pt"


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` via a temporary file and an atomic rename (a crash never leaves half a file)."""
    with atomic_file(path) as fh:
        torch.save(obj, fh)


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state``, tagged as a simclr checkpoint, to ``path`` atomically."""
    atomic_save({"format": FORMAT, **state}, path)


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder means its ``last.pt``; a file is taken as is."""
    p = Path(path)
    if p.is_dir():
        p = p / LAST
        if not p.is_file():
            raise InputError(f"no checkpoint in run folder {path} (expected {LAST})")
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
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: any parse failure means "not readable"
        if isinstance(exc, pickle.UnpicklingError) and "Unsupported global" in str(exc):
            why = ("it holds Python objects besides tensors, which simclr never loads (loading them could run code "
                   "from the file)")
        else:
            why = "not a complete PyTorch file (corrupt, truncated, or another format)"
        raise InputError(f"cannot read {what} {path}: {why}") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a simclr checkpoint safely; anything unreadable or foreign is an ``InputError``."""
    p = resolve_checkpoint(path)
    state = load_tensors(p, "checkpoint", map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"{p} is not a simclr checkpoint")
    return state


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
