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
from simclr.retrieval.collection import Collection, is_collection
from simclr.retrieval.collection_write import CollectionWriter, create_collection
from simclr.retrieval.embed import EmbedJob, embed_all, embed_job, embed_some, embed_source
from simclr.retrieval.embeddings import Embeddings, digest_rows, label_names, load_embeddings
from simclr.retrieval.queries import files_source


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


def _add_uploads(job: EmbedJob, setup: EvalSetup, collection: Collection, uploads: list[str]) -> Collection:
    """``collection`` with its ``uploads`` (paths in its folder) embedded by the job's network and added."""
    source = files_source([str(collection.folder / p) for p in uploads])
    feats = embed_source(job.learned.encoder(with_z=job.with_z), job.learned.config, source, setup,
                         in_memory=False, allow_empty=True)
    named = dict(zip(source.paths, uploads))  # the source's paths are relative to the uploads folder
    assert source.root is not None
    digests = [hashlib.sha256((source.root / f).read_bytes()).digest()[:16] for f in feats.paths]
    columns = {"h": feats.h.numpy(), "labels": np.full(len(feats.paths), -1, np.int64),
               "digests": digest_rows(list(digests))}
    if feats.z is not None and collection.z is not None:
        columns["z"] = feats.z.numpy()
    with CollectionWriter(collection.folder) as writer:
        writer.add(columns, [named[f] for f in feats.paths], uploaded=True)
        return writer.commit()


def embed_collection(checkpoint: str | Path, setup: EvalSetup, split: str, with_z: bool, folder: str | Path,
                     update: bool) -> Collected:
    """Embed the split into the collection ``folder``: written anew, or with ``update`` (and a collection
    there) brought up to date."""
    if not (update and is_collection(folder)):
        job = embed_job(checkpoint, setup, split, with_z, None)
        done = embed_all(job, setup, None)
        return Collected(write_collection(done.embeddings, folder), done.skipped)
    collection = Collection(folder)
    previous = as_embeddings(collection)
    job = embed_job(checkpoint, setup, split, with_z, previous)
    if job.fresh is not None:
        done = embed_all(job, setup, previous)
        uploads = collection.paths(collection.uploaded_rows().tolist())
        written = write_collection(done.embeddings, folder)
        if uploads:  # images uploaded to the collection, embedded again with the new network
            written = _add_uploads(job, setup, written, uploads)
        return Collected(written, done.skipped, 0, len(collection), job.fresh)
    live = data_rows(collection)  # images uploaded to the collection stay: they are not in its data
    assert previous.digests is not None
    before = {(p, bytes(d)): int(r) for p, d, r in zip(previous.paths, previous.digests, live)}
    take = [None if d is None else before.get((p, d)) for p, d in zip(job.source.paths, job.digests)]
    kept = {t for t in take if t is not None}
    gone = [int(r) for r in live if int(r) not in kept]
    todo = [i for i, t in enumerate(take) if t is None]
    feats = embed_some(job, setup, todo) if todo else None
    classes = label_names(job.source)
    with CollectionWriter(folder) as writer:
        if gone:
            writer.delete(gone)
        if classes != collection.classes:
            labels = np.array(collection.labels)  # the class names changed: renumber every row's label
            now = {p: lab for p, lab in zip(job.source.paths, single_labels(np.asarray(job.source.labels)))}
            rows = np.flatnonzero(collection.live)
            labels[rows] = [now.get(p, -1) for p in collection.paths()]
            writer.replace_labels(labels, classes)
        if feats is not None and len(feats.paths):
            at = {p: i for i, p in enumerate(job.source.paths)}
            columns = {"h": feats.h.numpy(), "labels": feats.single_labels(),
                       "digests": digest_rows([job.digests[at[p]] for p in feats.paths])}
            if feats.z is not None and collection.z is not None:
                columns["z"] = feats.z.numpy()
            writer.add(columns, feats.paths)
        result = writer.commit()
    if len(result) == 0:
        raise InputError(f"no readable images in {job.source.name}")
    return Collected(result, [] if feats is None else feats.skipped, len(kept), len(gone))
