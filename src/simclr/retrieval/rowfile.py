"""Append-only ``.npy`` files: the columns of a collection (vectors, labels, digests), read memory-mapped and
grown by writing rows at the end, never rewriting the rows already there.

Each file is an ordinary ``.npy`` (``np.load`` reads it, except in the moment between a writer cutting off
rows an interrupted writer left and rewriting the header) whose header is padded to :data:`HEADER` bytes, so
that the header can be rewritten in place when rows are added. The number of rows that count is kept by the
caller (the collection's manifest): rows written past it by an interrupted writer are ignored by readers and
cut off by the next writer (:func:`append`).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from simclr.errors import InputError

HEADER = 128
"""Bytes of every row file's header (magic, version, length, the header dict padded with spaces)."""

_MAGIC = b"\x93NUMPY\x01\x00"


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    body = text.encode("latin1")
    pad = HEADER - len(_MAGIC) - 2 - len(body) - 1
    if pad < 0:
        raise ValueError(f"shape {shape} does not fit a {HEADER}-byte .npy header")
    return _MAGIC + struct.pack("<H", HEADER - len(_MAGIC) - 2) + body + b" " * pad + b"\n"


def create(path: str | Path, dtype: np.dtype | type, width: int | None) -> None:
    """An empty row file: rows of ``width`` values (``None``: one value a row, a 1-D array)."""
    shape = (0,) if width is None else (0, width)
    with open(path, "wb") as fh:
        fh.write(_header(np.dtype(dtype), shape))


def _row_bytes(dtype: np.dtype, width: int | None) -> int:
    return dtype.itemsize * (width or 1)


def append(path: str | Path, rows: np.ndarray, count: int) -> int:
    """Write ``rows`` after the first ``count`` rows of the file (cutting off whatever an interrupted writer
    left past them), durably; returns the new number of rows. The caller commits it (its manifest)."""
    dtype, width, _ = _describe(path)
    rows = np.ascontiguousarray(rows, dtype=dtype)
    if rows.shape[1:] != ((width,) if width else ()):
        raise ValueError(f"{path}: rows {rows.shape} do not match the file's width {width}")
    with open(path, "r+b") as fh:
        fh.truncate(HEADER + count * _row_bytes(dtype, width))
        fh.seek(0, os.SEEK_END)
        fh.write(rows.tobytes())
        total = count + len(rows)
        fh.seek(0)
        fh.write(_header(dtype, (total,) if width is None else (total, width)))
        fh.flush()
        os.fsync(fh.fileno())
    return total


def _describe(path: str | Path) -> tuple[np.dtype, int | None, int]:
    """The file's dtype, row width (None for 1-D) and the rows its header says it holds."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version != (1, 0) or fh.tell() != len(_MAGIC):
                raise ValueError("not a version 1.0 header")
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)  # literal_eval: no code runs
            if fh.tell() != HEADER or fortran or dtype.hasobject or len(shape) not in (1, 2):
                raise ValueError("not a row file")
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable row file of a simclr collection ({exc})") from None
    return dtype, (shape[1] if len(shape) == 2 else None), shape[0]


def read(path: str | Path, count: int, dtype: np.dtype | type, width: int | None) -> np.ndarray:
    """The first ``count`` rows, memory-mapped read-only (nothing is copied into memory until used);
    InputError if the file is missing, of another type or width, or shorter than ``count``."""
    if not Path(path).is_file():
        raise InputError(f"{path} is missing: the collection is incomplete")
    found, found_width, rows = _describe(path)
    if found != np.dtype(dtype) or found_width != width or rows < count:
        raise InputError(f"{path} holds {rows} rows of {found} x {found_width}, not at least {count} of "
                         f"{np.dtype(dtype)} x {width}: the collection is damaged")
    if Path(path).stat().st_size < HEADER + count * _row_bytes(found, width):
        raise InputError(f"{path} is truncated: the collection is damaged")
    shape = (count,) if width is None else (count, width)
    if count == 0:
        return np.zeros(shape, found)
    return np.memmap(path, dtype=found, mode="r", offset=HEADER, shape=shape)
