"""Search by similarity: the nearest index images of each query by cosine similarity of their embeddings.

Pure functions on tensors (:func:`nearest`, :func:`retrieval_scores`) and the reader of the ``.npz`` files that
``simclr embed`` writes (:func:`load_embeddings`, which never unpickles).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from simclr.errors import InputError
from simclr.files import atomic_file, check_output


class Embeddings(NamedTuple):
    """One embedding file: h (``features``), z or None, labels (-1 unlabeled), image paths, how it was made, and
    each image's digest (uint8 [N, 16], the first bytes of the sha256 of its file; None in files written before
    simclr kept them): what ``simclr embed --update`` compares to find the images that changed; and the names of
    the classes the labels number (None in older files)."""

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
            raise InputError(f"{self.meta.get('file', 'the embeddings')} holds no z: make it with simclr embed --z")
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
        raise InputError(f"{p} is not a readable .npz embeddings file (corrupt, truncated, or another format; "
                         "it is never unpickled)") from None
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
        raise InputError(f"{p}: digests {digests.dtype} {tuple(digests.shape)} are not {n} x {DIGEST_BYTES} bytes")
    classes = arrays.get("classes")
    labels = arrays["labels"].astype(np.int64)
    if classes is not None and (classes.ndim != 1 or (labels >= len(classes)).any()):
        raise InputError(f"{p}: its labels do not fit its {len(classes)} class names")
    meta = _meta(arrays, p)
    meta["file"] = str(p)
    return Embeddings(torch.from_numpy(feats.astype(np.float32)),
                      None if z is None else torch.from_numpy(z.astype(np.float32)),
                      labels, [str(x) for x in arrays["paths"]], meta, digests,
                      None if classes is None else tuple(str(c) for c in classes))


DIGEST_BYTES = 16
"""Bytes kept of each image's sha256 in an embeddings file."""

_META_TYPES: dict[str, tuple[type, ...]] = {"image_size": (int,), "eval_crop": (float, int), "checkpoint": (str,),
                                            "data": (str,), "split": (str,), "root": (str,), "cache_dir": (str,),
                                            "holdout": (float, int), "seed": (int,), "network": (str,),
                                            "input_norm": (str,), "precision": (str,)}


_KIND = {int: "a whole number", float: "a number", str: "a string"}


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


SIMILARITY_BLOCK = 2**26
"""Similarities held at once (256 MiB of float32): queries are taken in chunks of this over the index size."""


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit l2 norm, float32 (cosine similarity becomes a dot product)."""
    return F.normalize(x.float(), dim=1)


def nearest(index: torch.Tensor, queries: torch.Tensor, k: int, exclude: torch.Tensor | None = None,
            chunk: int | None = None, index_is_unit: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities [Q, k'] and index rows [Q, k'] of each query's k' = min(k, N) nearest rows, best first.

    ``exclude`` [Q] (optional): one index row per query that may not be returned (the query itself when the
    queries are the index), -1 for none. Works in chunks of queries (default: as many as keep the chunk's
    similarities within :data:`SIMILARITY_BLOCK`), so memory stays bounded for any collection size.
    ``index_is_unit``: the rows of ``index`` are already :func:`unit_rows` (a caller searching one collection
    many times normalises it once).
    """
    if index.shape[1] != queries.shape[1]:
        raise InputError(f"the queries have {queries.shape[1]} dimensions, the index {index.shape[1]}: "
                         "embed both with the same checkpoint (and both h, or both z)")
    kk = min(k, len(index) - (exclude is not None))
    if kk < 1:
        raise InputError("the index has too few images to return any result")
    a = index if index_is_unit else unit_rows(index)
    chunk = chunk or max(1, SIMILARITY_BLOCK // len(index))
    sims, rows = [], []
    for start in range(0, len(queries), chunk):
        q = unit_rows(queries[start:start + chunk])
        s = q @ a.T
        if exclude is not None:
            ex = exclude[start:start + chunk]
            hit = ex >= 0
            s[hit.nonzero().squeeze(1), ex[hit]] = float("-inf")
        top = s.topk(kk, dim=1)
        sims.append(top.values)
        rows.append(top.indices)
    return torch.cat(sims), torch.cat(rows)


def check_same_network(index_meta: dict[str, Any], digest: str | None, what: str) -> None:
    """InputError unless ``digest`` (a network's :func:`~simclr.retrieval.embed.weights_digest`, or the one an
    embeddings file records) is the network the index was embedded with: vectors of two networks are not
    comparable, and a search across them returns plausible-looking nonsense. Files that record no digest (older
    ones) pass."""
    made = index_meta.get("network")
    if made is None or digest is None or made == digest:
        return
    raise InputError(f"{what} is not the network {index_meta.get('file', 'the index')} was embedded with (other "
                     "weights: a run trained further, or another run): embed the collection again with it "
                     "(simclr embed ... --update), or use the checkpoint the index was made with")


def as_index_labels(query_labels: np.ndarray, query_classes: tuple[str, ...] | None,
                    index_classes: tuple[str, ...] | None) -> np.ndarray:
    """The queries' labels in the index's numbering, matched by class name (-1 for a class the index does not
    have, and for unlabeled queries); unchanged when either side's class names are not known."""
    if query_classes is None or index_classes is None or query_classes == index_classes:
        return query_labels
    at = {name: i for i, name in enumerate(index_classes)}
    table = np.asarray([at.get(name, -1) for name in query_classes] + [-1], dtype=np.int64)
    return table[np.where(query_labels >= 0, query_labels, len(query_classes))]


def retrieval_scores(index_labels: np.ndarray, query_labels: np.ndarray, rows: torch.Tensor) -> dict[str, float]:
    """Precision@1, precision@k (share of the k results in the query's class) and recall@k (at least one is).

    Only labelled queries count; every result's label is compared, an unlabeled result never matches.
    """
    labelled = query_labels >= 0
    if not labelled.any():
        raise InputError("retrieval scores need labelled queries")
    found = torch.as_tensor(index_labels)[rows[torch.as_tensor(labelled)]]
    same = found == torch.as_tensor(query_labels[labelled]).unsqueeze(1)
    k = rows.shape[1]
    return {"k": k, "queries": int(labelled.sum()), "precision_at_1": float(same[:, 0].float().mean()),
            f"precision_at_{k}": float(same.float().mean()), f"recall_at_{k}": float(same.any(1).float().mean())}
