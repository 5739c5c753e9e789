"""A decoded-dataset cache: small images decoded once into a memory-mapped uint8 file, keyed by content.

The key hashes the dataset's content (every file's bytes, or the in-memory array) together with the
decode size, so a changed dataset is decoded afresh and an unchanged one loads in a moment (files unchanged
since an earlier run are not read again: see :mod:`simclr.data.digests`). Files are
written under a temporary name and renamed when complete; a damaged or foreign cache entry is ignored
and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from simclr.data.decode import Decoded, check_fits, decode_source
from simclr.data.digests import file_digests
from simclr.data.image_source import ImageSource
from simclr.files import atomic_file, atomic_write_text

VERSION = 2  # 2: centre crops placed as torchvision's CenterCrop places them


def content_key(source: ImageSource, size: int, crop: float = 1.0, *, memo_dir: Path | None = None,
                progress: bool = False) -> str:
    """sha256 of the decode size (and centre-crop fraction), the image identifiers, labels and the digest of
    every image's bytes (or the array); file digests come from the memo in ``memo_dir`` for files unchanged
    since they were last hashed (:func:`~simclr.data.digests.file_digests`)."""
    h = hashlib.sha256(f"simclr-decoded-v{VERSION}\0{size}\0".encode())
    if crop < 1.0:  # whole-side decodes keep the keys they always had
        h.update(f"crop {crop!r}\0".encode())
    h.update("\0".join(source.paths).encode())
    h.update(np.ascontiguousarray(source.labels, dtype=np.int64).tobytes())
    if source.array is not None:
        h.update(str(source.array.shape).encode())
        h.update(np.ascontiguousarray(source.array).data)
    else:
        assert source.root is not None
        for digest in file_digests(source.root, source.paths, memo_dir, progress=progress):
            h.update(f"{digest or 'unreadable'}\0".encode())
    return h.hexdigest()[:24]


def _paths(cache_dir: Path, key: str) -> tuple[Path, Path]:
    folder = cache_dir / "decoded"
    return folder / f"{key}.u8", folder / f"{key}.json"


def _load(data_path: Path, meta_path: Path, size: int) -> Decoded | None:
    try:
        meta = json.loads(meta_path.read_text())
        n = int(meta["n"])
        if (meta.get("version") != VERSION or meta.get("size") != size
                or data_path.stat().st_size != n * 3 * size * size):
            return None
        array = np.memmap(data_path, dtype=np.uint8, mode="r", shape=(n, 3, size, size)) if n else \
            np.zeros((0, 3, size, size), np.uint8)
        images = torch.from_numpy(np.array(array))  # one sequential read into RAM
        labels = torch.tensor(meta["labels"], dtype=torch.int64)
        skipped = [(p, r) for p, r in meta["skipped"]]
        return Decoded(images, labels, list(meta["paths"]), skipped)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store(decoded: Decoded, data_path: Path, meta_path: Path, size: int) -> None:
    with atomic_file(data_path) as fh:  # data first: the metadata names a complete file only
        decoded.images.contiguous().numpy().tofile(fh)
    atomic_write_text(meta_path, json.dumps({"version": VERSION, "size": size, "n": len(decoded.images),
                                             "labels": decoded.labels.tolist(), "paths": decoded.paths,
                                             "skipped": [list(s) for s in decoded.skipped]}))


def decode_cached(source: ImageSource, size: int, cache_dir: Path | None, *, progress: bool = True,
                  workers: int = 0, crop: float = 1.0) -> Decoded:
    """``decode_source`` (with ``workers`` processes, keeping ``crop`` of the shorter side) through the cache
    in ``cache_dir`` (no cache when None or not writable). A dataset that would not fit in the memory
    available is refused first (:func:`~simclr.data.decode.check_fits`)."""
    check_fits(len(source), size, source.name)
    if cache_dir is None:
        return decode_source(source, size, progress=progress, workers=workers, crop=crop)
    key = content_key(source, size, crop, memo_dir=cache_dir / "digests", progress=progress)
    data_path, meta_path = _paths(cache_dir, key)
    hit = _load(data_path, meta_path, size)
    if hit is not None:
        return hit
    decoded = decode_source(source, size, progress=progress, workers=workers, crop=crop)
    try:
        _store(decoded, data_path, meta_path, size)
    except OSError:
        pass  # a read-only cache only costs the decode next time
    return decoded
