"""The embeddings file that ``simclr embed`` writes and ``simclr search`` reads: a ``.npz`` of h (and z),
labels, image paths, image digests, class names and ``meta`` (how it was made), read without ever unpickling
(:func:`load_embeddings`) and written atomically (:func:`save_embeddings`).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from simclr.data.image_source import ImageSource
from simclr.errors import InputError
from simclr.files import atomic_file, check_output


class Embeddings(NamedTuple):
    """One embedding file: h (``features``), z or None, labels (-1 unlabeled), image paths, how it was made,
    and each image's digest (uint8 [N, 16], the first bytes of the sha256 of its file; None in files written
    before simclr kept them): what ``simclr embed --update`` compares to find the images that changed; and the
    names of the classes the labels number (None in older files)."""

    features: torch.Tensor
    z: torch.Tensor | None
    labels: np.ndarray
    paths: list[str]
    meta: dict[str, Any]
    digests: np.ndarray | None = None
    classes: tuple[str, ...] | None = None  # the class names, label = position (None: not recorded)

    def vectors(self, on: str) -> torch.Tensor:
        """h (``on="h"``) or z; z must have been stored (``simclr embed --z``)."""
        if on == "h":
            return self.features
        if self.z is None:
            file = self.meta.get("file", "the embeddings")
            raise InputError(f"{file} holds no z: make it with simclr embed --z")
        return self.z


def load_embeddings(path: str | Path) -> Embeddings:
    """Read a ``simclr embed`` file; a missing, corrupt or inconsistent one is an :class:`InputError`."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p} is a folder, not an embeddings file: name a .npz file written by simclr embed")
    if not p.is_file():
        raise InputError(f"embeddings file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except PermissionError as exc:
        raise InputError(f"cannot read {p}: {' '.join(str(exc).split())}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        raise InputError(f"{p} is not a readable .npz embeddings file (corrupt, truncated, or another "
                         "format; it is never unpickled)") from None
    missing = [k for k in ("features", "labels", "paths") if k not in arrays]
    if missing:
        raise InputError(f"{p} is not a simclr embed file: no {', '.join(missing)}")
    feats = arrays["features"]
    n = len(arrays["paths"])
    if n == 0:
        raise InputError(f"{p} holds no images")
    if feats.ndim != 2 or len(feats) != n or len(arrays["labels"]) != n:
        raise InputError(f"{p}: features {tuple(feats.shape)}, {len(arrays['labels'])} labels and {n} paths "
                         "do not match")
    z = arrays.get("z")
    if z is not None and (z.ndim != 2 or len(z) != n):
        raise InputError(f"{p}: z {tuple(z.shape)} does not match {n} images")
    for name, values in (("features", feats), ("z", z)):
        if values is not None and not (np.issubdtype(values.dtype, np.number) and np.isfinite(values).all()):
            raise InputError(f"{p}: its {name} are not all finite numbers")
    digests = arrays.get("digests")
    if digests is not None and (digests.dtype != np.uint8 or digests.shape != (n, DIGEST_BYTES)):
        shape = tuple(digests.shape)
        raise InputError(f"{p}: digests {digests.dtype} {shape} are not {n} x {DIGEST_BYTES} bytes")
    classes = arrays.get("classes")
    labels = arrays["labels"].astype(np.int64)
    if classes is not None and (classes.ndim != 1 or (labels >= len(classes)).any()):
        raise InputError(f"{p}: its labels do not fit its {len(classes)} class names")
    meta = _meta(arrays, p)
    _check_widths(meta, feats, z, p)
    meta["file"] = str(p)
    return Embeddings(torch.from_numpy(feats.astype(np.float32)),
                      None if z is None else torch.from_numpy(z.astype(np.float32)),
                      labels, [str(x) for x in arrays["paths"]], meta, digests,
                      None if classes is None else tuple(str(c) for c in classes))


DIGEST_BYTES = 16
"""Bytes kept of each image's sha256 in an embeddings file."""

_META_TYPES: dict[str, tuple[type, ...]] = {
    "image_size": (int,), "eval_crop": (float, int), "checkpoint": (str,), "data": (str,), "split": (str,),
    "root": (str,), "cache_dir": (str,), "holdout": (float, int), "seed": (int,), "network": (str,),
    "input_norm": (str,), "precision": (str,), "width": (int,), "z_width": (int,)}


_KIND = {int: "a whole number", float: "a number", str: "a string"}


def _check_widths(meta: dict[str, Any], features: np.ndarray, z: np.ndarray | None, p: Path) -> None:
    """The vectors' widths against those the meta recorded when the file was written (files from before issue
    24 record none)."""
    for key, what, values in (("width", "features", features), ("z_width", "z", z)):
        if values is not None and meta.get(key, values.shape[1]) != values.shape[1]:
            raise InputError(f"{p}: its {what} are {values.shape[1]} wide, its meta entry says {meta[key]}: "
                             "the file was altered")


def _meta(arrays: dict[str, np.ndarray], p: Path) -> dict[str, Any]:
    """The file's ``meta`` entry (a JSON object), its known keys of the right types."""
    if "meta" not in arrays:
        return {}
    try:
        meta = json.loads(str(arrays["meta"]))
    except json.JSONDecodeError:
        raise InputError(f"{p}: unreadable meta entry") from None
    if not isinstance(meta, dict):
        raise InputError(f"{p}: its meta entry is not a JSON object")
    for key, types in _META_TYPES.items():
        value = meta.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise InputError(f"{p}: its meta entry {key} is {value!r}, not {_KIND[types[0]]}")
    return meta


def save_embeddings(emb: Embeddings, out: str | Path) -> None:
    """Write ``emb`` as :func:`load_embeddings` reads it (the ``simclr embed`` format), atomically."""
    check_output(out, "the embeddings file", (emb.meta["checkpoint"],) if "checkpoint" in emb.meta else ())
    meta = {k: v for k, v in emb.meta.items() if k != "file"}  # where it was read from is not part of it
    meta["width"] = int(emb.features.shape[1])
    if emb.z is not None:
        meta["z_width"] = int(emb.z.shape[1])
    arrays: dict[str, np.ndarray] = {
        "features": emb.features.numpy().astype(np.float32), "labels": np.asarray(emb.labels, np.int64),
        "paths": np.asarray(emb.paths, dtype=str), "meta": np.asarray(json.dumps(meta))}
    if emb.z is not None:
        arrays["z"] = emb.z.numpy().astype(np.float32)
    if emb.classes is not None:
        arrays["classes"] = np.asarray(emb.classes, dtype=str).reshape(-1)
    if emb.digests is not None:
        arrays["digests"] = np.asarray(emb.digests, np.uint8).reshape(len(emb.paths), DIGEST_BYTES)
    with atomic_file(out) as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub reads **arrays as allow_pickle


def check_same_network(index_meta: dict[str, Any], digest: str | None, what: str) -> None:
    """InputError unless ``digest`` (a network's :func:`~simclr.runtime.checkpoint.weights_digest`, or the one
    an embeddings file records) is the network the index was embedded with: vectors of two networks are not
    comparable, and a search across them returns plausible-looking nonsense. Files that record no digest
    (older ones) pass."""
    made = index_meta.get("network")
    if made is None or digest is None or made == digest:
        return
    file = index_meta.get("file", "the index")
    raise InputError(f"{what} is not the network {file} was embedded with (other "
                     "weights: a run trained further, or another run): embed the collection again with it "
                     "(simclr embed ... --update), or use the checkpoint the index was made with")


def digest_rows(digests: list[bytes | None]) -> np.ndarray:
    """The ``digests`` entry: uint8 [N, DIGEST_BYTES]; zeros for an image whose file could not be read when it
    was hashed."""
    joined = b"".join(d or bytes(DIGEST_BYTES) for d in digests)
    return np.frombuffer(joined, np.uint8).reshape(-1, DIGEST_BYTES)


def label_names(source: ImageSource) -> tuple[str, ...] | None:
    """The ``classes`` entry, the names the labels number: the split's classes (none for a multi-label
    dataset, whose images are all labelled -1)."""
    return None if np.asarray(source.labels).ndim == 2 else tuple(source.classes)
