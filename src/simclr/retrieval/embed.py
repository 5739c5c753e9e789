"""Export embeddings: h (and optionally z) of every image of a dataset split to a .npz file, or bring an
earlier file up to date (only new and changed images embedded, those gone dropped)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from simclr.build import cache_folder, decode, open_source, plan_data
from simclr.config import Config
from simclr.data.digests import file_digests
from simclr.data.image_source import ImageSource
from simclr.data.sources import some_names
from simclr.encoder import Encoder
from simclr.errors import InputError, UpdateRefused
from simclr.evaluation.features import Encode, Features, extract_features, model_encoder, single_labels
from simclr.evaluation.learned import Learned, load_learned
from simclr.evaluation.setup import EvalSetup, eval_config
from simclr.retrieval.embeddings import (
    DIGEST_BYTES,
    Embeddings,
    digest_rows,
    label_names,
)
from simclr.runtime.checkpoint import resolve_checkpoint, weights_digest

MADE_KEYS = ("network", "image_size", "eval_crop", "input_norm", "precision", "z")
"""What an embedding depends on besides its image (``meta``): rows of an earlier file are reused only where
all of these match."""


class Embedded(NamedTuple):
    """The embeddings of a split, the images that could not be read (path, reason), and for an update how many
    rows of the earlier file were kept (``reused``) and left out (``dropped``: images gone or changed), or why
    none could be kept (``fresh``)."""

    embeddings: Embeddings
    skipped: list[tuple[str, str]]
    reused: int = 0
    dropped: int = 0
    fresh: str | None = None


def embed_source(encode: Encode, config: Config, source: ImageSource, setup: EvalSetup,
                 in_memory: bool | None = None, allow_empty: bool = False) -> Features:
    """Features of every readable image of ``source`` at the config's image side (unreadable ones skipped)."""
    if in_memory is None:
        in_memory = plan_data(config, source).in_memory
    crop = config.data.eval_crop
    return extract_features(encode, source, config.data.image_size, in_memory, batch_size=setup.batch_size,
                            workers=setup.data.workers, progress=setup.progress, desc="embedding",
                            decoder=functools.partial(decode, config, progress=False, crop=crop), crop=crop,
                            allow_empty=allow_empty)


def embed_images(encoder: Encoder, source: ImageSource, setup: EvalSetup, with_z: bool = False,
                 in_memory: bool | None = None) -> Features:
    """Features of every readable image of ``source`` by ``encoder``'s network, read as :func:`embed_source`
    reads a dataset.

    Args:
        encoder: The network, and how it prepares images (image side, centre crop).
        source: The images.
        setup: How they are read: batch size, workers, progress, cache folder, in memory or not.
        with_z: Also z.
        in_memory: Decode them all into memory first (None: as the data plan decides).

    Returns:
        h (and z) of the readable images; the unreadable ones skipped and listed.
    """
    sized = setup.with_data(image_size=encoder.image_size, eval_crop=encoder.eval_crop)
    config = eval_config(encoder.config, sized)
    channels_last = config.train.channels_last
    encode = model_encoder(encoder.model, encoder.device, encoder.precision, channels_last, with_z)
    return embed_source(encode, config, source, setup, in_memory)


def image_digests(source: ImageSource, memo_dir: Path | None, progress: bool = False) -> list[bytes | None]:
    """The first :data:`DIGEST_BYTES` of the sha256 of each image's file (None: it cannot be read; unchanged
    files not read again where ``memo_dir`` remembers them) or, for images held in memory, of its pixels."""
    if source.array is not None:
        return [hashlib.sha256(np.ascontiguousarray(a).data).digest()[:DIGEST_BYTES] for a in source.array]
    assert source.root is not None
    return [None if d is None else bytes.fromhex(d)[:DIGEST_BYTES]
            for d in file_digests(source.root, source.paths, memo_dir, progress=progress)]


def embed_split(checkpoint: str | Path, setup: EvalSetup, split: str, with_z: bool = False,
                previous: Embeddings | None = None) -> Embedded:
    """h (and z) of every readable image of a dataset split, with the ``meta`` that says how they were made
    (the checkpoint, its weights' digest, the dataset and split, the image side, crop and precision, so that
    queries can be embedded the same way and the images shown) and each image's digest.

    With ``previous`` (an earlier file's embeddings) the rows of the images whose path and content are
    unchanged are taken from it when they were made the same way (:data:`MADE_KEYS`); only the others are
    embedded. The result is in the split's order with its current labels, as a fresh embedding would be.
    """
    job = embed_job(checkpoint, setup, split, with_z, previous)
    if previous is None or job.fresh is not None:
        return embed_all(job, setup, previous)
    return _update(job.learned, job.source, setup, with_z, previous, job.digests, job.meta)


class EmbedJob(NamedTuple):
    """What embedding a split takes: the network, the images, the ``meta`` the result records, each image's
    digest, and for an update, why none of the earlier rows can be kept (None: they can)."""

    learned: Learned
    source: ImageSource
    meta: dict[str, Any]
    digests: list[bytes | None]
    with_z: bool
    fresh: str | None


def embed_job(checkpoint: str | Path, setup: EvalSetup, split: str, with_z: bool,
              previous: Embeddings | None) -> EmbedJob:
    """The network, images, meta and digests of :func:`embed_split`, ``previous`` checked to be an earlier
    embedding of the same split."""
    learned = load_learned(checkpoint, setup)
    config = learned.config
    source = open_source(config, split)
    d = config.data
    spec = str(Path(d.spec).resolve()) if Path(d.spec).exists() else d.spec  # usable from any folder
    meta: dict[str, Any] = {
        "checkpoint": str(resolve_checkpoint(checkpoint).resolve()), "data": spec, "split": split,
        "root": d.root,
        "cache_dir": d.cache_dir, "holdout": d.holdout, "seed": config.train.seed, "image_size": d.image_size,
        "eval_crop": d.eval_crop, "z": with_z, "network": weights_digest(learned.model),
        "input_norm": config.model.input_norm,
        "precision": str(learned.precision.dtype or torch.float32).removeprefix("torch.")}
    if previous is not None:
        _check_same_collection(previous, meta)
        _check_same_layout(previous, source)
    cache = cache_folder(config)
    memo = cache / "digests" if cache else None  # beside decode_cached's
    digests = image_digests(source, memo, setup.progress)
    fresh = None if previous is None else _not_reusable(previous, meta)
    return EmbedJob(learned, source, meta, digests, with_z, fresh)


def embed_all(job: EmbedJob, setup: EvalSetup, previous: Embeddings | None) -> Embedded:
    """Every readable image of the job's split embedded."""
    feats = embed_source(job.learned.encoder(with_z=job.with_z), job.learned.config, job.source, setup)
    rows = {p: i for i, p in enumerate(job.source.paths)}
    kept = digest_rows([job.digests[rows[p]] for p in feats.paths])
    emb = Embeddings(feats.h, feats.z, feats.single_labels(), feats.paths, job.meta, kept,
                     label_names(job.source))
    return Embedded(emb, feats.skipped, 0, 0 if previous is None else len(previous.paths), job.fresh)


def embed_some(job: EmbedJob, setup: EvalSetup, todo: list[int]) -> Features:
    """The readable images among ``todo`` (positions in the job's split) embedded, without a decoded-dataset
    cache entry for a few images."""
    learned = job.learned
    config = learned.config
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, decode_cache=False))
    in_memory = plan_data(learned.config, job.source).in_memory
    return embed_source(learned.encoder(with_z=job.with_z), config, job.source.subset(todo), setup, in_memory,
                        allow_empty=True)


def _check_same_collection(previous: Embeddings, meta: dict[str, Any]) -> None:
    """InputError unless ``previous`` was embedded from the same dataset and split: an update with another
    would replace the collection (its rows dropped) rather than bring it up to date."""
    made = {k: previous.meta.get(k) for k in ("data", "split")}
    if all(made[k] is None or made[k] == meta[k] for k in made):
        return
    file = previous.meta.get("file", "the embeddings file")
    raise UpdateRefused(f"{file} holds {made['data']} ({made['split']}), not {meta['data']} "
                        f"({meta['split']}): --update takes the --data and --split it was made with (without "
                        "--update the file is replaced)")


def _check_same_layout(previous: Embeddings, source: ImageSource) -> None:
    """InputError if a flat (unlabeled) folder has gained class subfolders since ``previous`` was embedded, or
    lost them: the update would drop every image outside them (or relabel all), where a new subfolder was
    likely meant as more images of the collection."""
    labels = np.asarray(source.labels)
    was_flat = len(previous.paths) > 0 and bool((previous.labels == -1).all())
    is_flat = labels.ndim == 2 or bool((labels == -1).all())
    file = previous.meta.get("file", "the embeddings file")
    before, now = _split_folders(previous.paths), _split_folders(source.paths)
    if previous.paths and source.paths and before != now:
        raise UpdateRefused(f"{file} was embedded from {source.name} read as {before}, which now reads as "
                            f"{now} (a train/, test/ or val/ folder came or went): without --update the file "
                            "is replaced")
    if was_flat == is_flat or not len(previous.paths):
        return
    if was_flat:
        raise UpdateRefused(f"{file} was embedded from {source.name} without classes, which now has class "
                            f"subfolders ({some_names(source.classes)}): read as classes, only their "
                            f"{len(source.paths)} image(s) would be kept of {len(previous.paths)}; without "
                            "--update the file is replaced")
    raise UpdateRefused(f"{file} was embedded from {source.name} with classes, which now has none (a flat "
                        "folder): without --update the file is replaced")


def _split_folders(paths: list[str] | tuple[str, ...]) -> str:
    """The split folders a collection's paths lie in ("train/ and test/", "test/"), or "the folder itself"."""
    found = sorted({p.split("/", 1)[0] + "/" for p in paths if p.startswith(("train/", "test/", "val/"))})
    return " and ".join(found) if found and all("/" in p for p in paths) else "the folder itself"


def _not_reusable(previous: Embeddings, meta: dict[str, Any]) -> str | None:
    """Why none of ``previous``'s rows can be kept (None: they can)."""
    if previous.digests is None:
        return "it holds no image digests (written by an earlier simclr)"
    differ = [k for k in MADE_KEYS if previous.meta.get(k) != meta[k]]
    if differ:
        return "it was made with other settings (" + ", ".join(_MADE_NAMES[k] for k in differ) + ")"
    return None


_MADE_NAMES = {"network": "the network's weights", "image_size": "image side", "eval_crop": "centre crop",
               "input_norm": "input normalisation", "precision": "precision", "z": "z stored or not"}


def _update(learned: Learned, source: ImageSource, setup: EvalSetup, with_z: bool, previous: Embeddings,
            digests: list[bytes | None], meta: dict[str, Any]) -> Embedded:
    assert previous.digests is not None
    before = {(p, bytes(d)): i for i, (p, d) in enumerate(zip(previous.paths, previous.digests))}
    take = [None if d is None else before.get((p, d)) for p, d in zip(source.paths, digests)]
    todo = [i for i, t in enumerate(take) if t is None]
    h_old, z_old = previous.features, previous.z if with_z else None
    h_new = torch.zeros(0, h_old.shape[1])
    z_new = None if z_old is None else torch.zeros(0, z_old.shape[1])
    new: dict[str, int] = {}
    skipped: list[tuple[str, str]] = []
    if todo:
        feats = embed_some(EmbedJob(learned, source, meta, digests, with_z, None), setup, todo)
        if len(feats.paths):
            h_new, z_new = feats.h, feats.z
        new = {p: i for i, p in enumerate(feats.paths)}
        skipped = feats.skipped
    order: list[tuple[int, int]] = []  # (0: earlier file, 1: new; row) of each readable image, listing order
    kept: list[int] = []
    for i, (path, t) in enumerate(zip(source.paths, take)):
        if t is not None:
            order.append((0, t))
        elif path in new:
            order.append((1, new[path]))
        else:
            continue
        kept.append(i)
    if not kept:
        raise InputError(f"no readable images in {source.name}")
    h = torch.cat([h_old, h_new])
    z = None if z_old is None or z_new is None else torch.cat([z_old, z_new])
    at = torch.tensor([row + (len(h_old) if which else 0) for which, row in order], dtype=torch.int64)
    labels = single_labels(np.asarray(source.labels)[kept])
    emb = Embeddings(h[at], None if z is None else z[at], labels, [source.paths[i] for i in kept], meta,
                     digest_rows([digests[i] for i in kept]), label_names(source))
    reused = sum(1 for t in take if t is not None)
    return Embedded(emb, skipped, reused, len(previous.paths) - reused)
