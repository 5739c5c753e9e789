"""Checkpoints carry a digest of their contents: a byte flipped inside a tensor, which unpickling does not
notice, makes the checkpoint refused by every reader (eval, resume); older checkpoints without one still
load."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from simclr.cli import main
from simclr.errors import InputError
from simclr.runtime.checkpoint import DIGEST, atomic_save, load_checkpoint, state_digest


def _flip_a_tensor_byte(path: Path) -> None:
    """Flip one byte in the middle of the largest tensor's stored bytes (the zip's CRC is not checked)."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.file_size // 2] ^= 0x40
    path.write_bytes(bytes(raw))


def test_a_flipped_byte_is_refused_by_every_reader(tmp_path: Path, make_checkpoint, capsys) -> None:
    ckpt = make_checkpoint(tmp_path / "c.pt")
    state = load_checkpoint(ckpt)
    assert state[DIGEST] == state_digest({k: v for k, v in state.items() if k != DIGEST})
    _flip_a_tensor_byte(ckpt)
    with pytest.raises(InputError, match="is damaged: its contents do not match the digest"):
        load_checkpoint(ckpt)
    capsys.readouterr()
    assert main(["eval", "knn", "--checkpoint", str(ckpt), "--data", "digits", "--device", "cpu"]) == 2
    assert "do not match the digest" in capsys.readouterr().err


def test_the_digest_covers_every_tensor_and_value() -> None:
    state = {"model": {"w": torch.ones(3), "b": torch.zeros(2, dtype=torch.bfloat16)}, "step": 4,
             "optimizer": {"state": {0: {"momentum": torch.ones(2)}}, "param_groups": [{"lr": 0.1}]}}
    base = state_digest(state)
    assert state_digest({**state}) == base  # deterministic, whatever the dict order
    changes = [{"model": {"w": torch.tensor([1.0, 1.0, 1.0 + 2**-20]), "b": state["model"]["b"]}},
               {"model": {"w": torch.ones(3, 1), "b": state["model"]["b"]}},
               {"step": 5},
               {"optimizer": {"state": {0: {"momentum": torch.ones(2)}}, "param_groups": [{"lr": 0.2}]}}]
    for change in changes:
        assert state_digest({**state, **change}) != base, change


def test_a_checkpoint_without_a_digest_still_loads(tmp_path: Path, make_checkpoint) -> None:
    state = load_checkpoint(make_checkpoint(tmp_path / "c.pt"))
    del state[DIGEST]
    atomic_save(state, tmp_path / "old.pt")  # as simclr wrote checkpoints before the digest
    assert load_checkpoint(tmp_path / "old.pt")["model"].keys() == state["model"].keys()
