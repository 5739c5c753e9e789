"""``simclr embed --out FOLDER``: a dataset split embedded into a collection folder
(:mod:`~simclr.retrieval.collection`), or a collection brought up to date (``--update``) by adding the new
and changed images and marking those gone deleted, without rewriting anything else; and ``.npz`` embeddings
converted to a collection (``simclr index convert``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from simclr.errors import InputError
from simclr.evaluation.features import single_labels
from simclr.evaluation.setup import EvalSetup
from simclr.files import atomic_file
from simclr.retrieval.collection import Collection, is_collection
from simclr.retrieval.collection_write import CollectionWriter, create_collection
from simclr.retrieval.embed import EmbedJob, embed_all, embed_job, embed_some, embed_source
from simclr.retrieval.embeddings import Embeddings, digest_rows, label_names, load_embeddings
from simclr.retrieval.queries import files_source

UPLOADS = "uploads"
"""The folder of a collection that holds the images added to it (``simclr serve``'s POST /api/items)."""
_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


class Collected(NamedTuple):
    """The collection written or updated, the images that could not be read, and for an update how many
    images were kept (``reused``), dropped (gone or changed), or why none could be kept (``fresh``)."""

    collection: Collection
    skipped: list[tuple[str, str]]
    reused: int = 0
    dropped: int = 0
    fresh: str | None = None


def columns_of(emb: Embeddings) -> dict[str, np.ndarray]:
    """The row files' values of in-memory embeddings."""
    n = len(emb.paths)
    columns: dict[str, np.ndarray] = {
        "h": emb.features.numpy().astype(np.float32), "labels": np.asarray(emb.labels, np.int64),
        "digests": np.zeros((n, 16), np.uint8) if emb.digests is None else np.asarray(emb.digests)}
    if emb.z is not None:
        columns["z"] = emb.z.numpy().astype(np.float32)
    return columns


def write_collection(emb: Embeddings, folder: str | Path) -> Collection:
    """``emb`` as a new collection in ``folder`` (or replacing the collection there)."""
    return create_collection(folder, columns_of(emb), emb.paths, emb.meta, emb.classes)


def convert_embeddings(npz: str | Path, folder: str | Path) -> Collection:
    """A ``simclr embed`` ``.npz`` file as a collection folder (``simclr index convert``)."""
    if is_collection(folder):
        raise InputError(f"{folder} is a collection already: name a new folder")
    return write_collection(load_embeddings(npz), folder)


def data_rows(collection: Collection) -> np.ndarray:
    """The live rows embedded from the collection's data (not uploaded to it): what an update compares."""
    return np.setdiff1d(collection.live_rows(), collection.uploaded_rows())


def as_embeddings(collection: Collection) -> Embeddings:
    """The images of a collection embedded from its data, without their vectors (paths, labels, digests,
    meta, classes): what an update compares with the images of the split now."""
    rows = data_rows(collection)
    digests = collection.digests
    return Embeddings(torch.zeros(0, collection.h.shape[1]), None, np.asarray(collection.labels[rows]),
                      collection.paths(rows.tolist()), collection.meta,
                      None if digests is None else np.asarray(digests[rows]), collection.classes)


def _uploads(job: EmbedJob, setup: EvalSetup, collection: Collection) -> tuple[Embeddings | None,
                                                                                 list[tuple[str, str]]]:
    """The images uploaded to ``collection`` (files in its folder) embedded by the job's network, and those
    that could not be read (path, reason)."""
    uploads = collection.paths(collection.uploaded_rows().tolist())
    if not uploads:
        return None, []
    source = files_source([str(collection.folder / p) for p in uploads])
    feats = embed_source(job.learned.encoder(with_z=job.with_z), job.learned.config, source, setup,
                         in_memory=False, allow_empty=True)
    named = dict(zip(source.paths, uploads))  # the source's paths are relative to the uploads folder
    assert source.root is not None
    digests = [hashlib.sha256((source.root / f).read_bytes()).digest()[:16] for f in feats.paths]
    emb = Embeddings(feats.h, feats.z, np.full(len(feats.paths), -1, np.int64),
                     [named[f] for f in feats.paths], job.meta, digest_rows(list(digests)), None)
    return emb, [(named[f], why) for f, why in feats.skipped]


def _afresh(job: EmbedJob, setup: EvalSetup, collection: Collection) -> Collected:
    """The collection written anew by the job's network (its data, and the images uploaded to it), in one
    generation."""
    done = embed_all(job, setup, as_embeddings(collection))
    uploads, unread = _uploads(job, setup, collection)
    emb = done.embeddings
    uploaded = [False] * len(emb.paths)
    if uploads is not None and len(uploads.paths):
        z = None if emb.z is None or uploads.z is None else torch.cat([emb.z, uploads.z])
        assert emb.digests is not None and uploads.digests is not None
        emb = emb._replace(features=torch.cat([emb.features, uploads.features]), z=z,
                           labels=np.concatenate([emb.labels, uploads.labels]),
                           paths=emb.paths + uploads.paths,
                           digests=np.concatenate([emb.digests, uploads.digests]))
        uploaded += [True] * len(uploads.paths)
    written = create_collection(collection.folder, columns_of(emb), emb.paths, emb.meta, emb.classes,
                                uploaded)
    return Collected(written, done.skipped + unread, 0, len(collection), job.fresh)


def embed_collection(checkpoint: str | Path, setup: EvalSetup, split: str, with_z: bool, folder: str | Path,
                     update: bool) -> Collected:
    """Embed the split into the collection ``folder``: written anew, or with ``update`` (and a collection
    there) brought up to date. The embedding is done before the collection is locked; what changed in it
    meanwhile (images uploaded or deleted by a server) is taken into account when the changes are made."""
    if not (update and is_collection(folder)):
        job = embed_job(checkpoint, setup, split, with_z, None)
        done = embed_all(job, setup, None)
        return Collected(write_collection(done.embeddings, folder), done.skipped)
    collection = Collection(folder)
    job = embed_job(checkpoint, setup, split, with_z, as_embeddings(collection))
    if job.fresh is not None:
        return _afresh(job, setup, collection)
    known = _keys(collection)
    keys = list(zip(job.source.paths, job.digests))
    todo = [i for i, key in enumerate(keys) if key[1] is None or key not in known]
    feats = embed_some(job, setup, todo) if todo else None
    with CollectionWriter(folder) as writer:
        now = Collection(folder)  # the generation this writer changes: what others did meanwhile included
        known = _keys(now)
        kept = {known[key] for key in keys if key in known}
        gone = [int(r) for r in data_rows(now) if int(r) not in kept]
        if gone:
            writer.delete(gone)
        classes = label_names(job.source)
        if classes != now.classes:  # the class names changed: every row's label renumbered
            labels = dict(zip(job.source.paths, single_labels(np.asarray(job.source.labels))))
            renumbered = np.full(now.rows, -1, np.int64)
            rows = now.live_rows()
            renumbered[rows] = [labels.get(p, -1) for p in now.paths(rows.tolist())]
            writer.replace_labels(renumbered, classes)
        added = 0
        if feats is not None and len(feats.paths):
            at = {p: i for i, p in enumerate(job.source.paths)}
            new = [i for i, p in enumerate(feats.paths) if (p, job.digests[at[p]]) not in known]
            columns = {"h": feats.h.numpy()[new], "labels": feats.single_labels()[new],
                       "digests": digest_rows([job.digests[at[feats.paths[i]]] for i in new])}
            if feats.z is not None and now.z is not None:
                columns["z"] = feats.z.numpy()[new]
            writer.add(columns, [feats.paths[i] for i in new])
            added = len(new)
        result = writer.commit()
    if len(result) == 0:
        raise InputError(f"no readable images in {job.source.name}")
    return Collected(result, [] if feats is None else feats.skipped, len(result) - added, len(gone))


def _keys(collection: Collection) -> dict[tuple[str, bytes], int]:
    """(path, digest) -> row of the images of a collection embedded from its data."""
    rows = data_rows(collection)
    digests = collection.digests
    if digests is None:
        return {}
    return {(p, bytes(d)): int(r) for p, d, r in zip(collection.paths(rows.tolist()), digests[rows], rows)}


def add_uploads(folder: Path, files: list[tuple[str, bytes]], h: np.ndarray,
                z: np.ndarray | None) -> np.ndarray:
    """Store image files (name, bytes) in the collection's ``uploads/`` (named by their content) and add them
    with their vectors, in one generation; returns their rows."""
    (folder / UPLOADS).mkdir(exist_ok=True)
    paths, digests = [], []
    for name, data in files:
        digest = hashlib.sha256(data).digest()
        suffix = Path(name).suffix.lower() if Path(name).suffix.lower() in _SUFFIXES else ".img"
        path = f"{UPLOADS}/{digest.hex()[:32]}{suffix}"
        with atomic_file(folder / path) as fh:
            fh.write(data)
        paths.append(path)
        digests.append(digest[:16])
    columns = {"h": h, "labels": np.full(len(files), -1, np.int64), "digests": digest_rows(list(digests))}
    if z is not None:
        columns["z"] = z
    with CollectionWriter(folder) as writer:
        rows = writer.add(columns, paths, uploaded=True)
        writer.commit()
    return rows


def delete_rows(folder: Path, rows: list[int]) -> None:
    """Mark ``rows`` deleted (one generation), and remove the files of uploaded images no image names any
    more."""
    with CollectionWriter(folder) as writer:
        writer.delete(rows)
        after = writer.commit()
    named = set(after.paths())
    for path, uploaded in after.items(rows):
        if uploaded and path not in named:
            (folder / path).unlink(missing_ok=True)
