"""Export embeddings: h (and optionally z) of every image of a dataset split to a .npz file."""

from __future__ import annotations

import functools
from pathlib import Path

from simclr.build import decode, open_source, plan_data
from simclr.config import Config
from simclr.data.sources import ImageSource
from simclr.engine.checkpoint import resolve_checkpoint
from simclr.evaluation.features import Encode, Features, extract_features
from simclr.evaluation.run import EvalSetup, load_learned
from simclr.files import check_output
from simclr.retrieval.search import Embeddings, save_embeddings


def embed_source(encode: Encode, config: Config, source: ImageSource, setup: EvalSetup,
                 in_memory: bool | None = None) -> Features:
    """Features of every readable image of ``source`` at the config's image side (unreadable ones skipped)."""
    if in_memory is None:
        in_memory = plan_data(config, source).in_memory
    crop = config.data.eval_crop
    return extract_features(encode, source, config.data.image_size, in_memory, batch_size=setup.batch_size,
                            workers=setup.workers, progress=setup.progress, desc="embedding",
                            decoder=functools.partial(decode, config, progress=False, crop=crop), crop=crop)


def embed_split(checkpoint: str | Path, setup: EvalSetup, split: str,
                with_z: bool = False) -> tuple[Embeddings, list[tuple[str, str]]]:
    """h (and z) of every readable image of a dataset split, with the ``meta`` that says how they were made
    (the checkpoint, the dataset and split, and the image side, so that queries can be embedded the same way and
    the images shown); and the unreadable images skipped (path, reason)."""
    learned = load_learned(checkpoint, setup)
    encode, config = learned.encoder(with_z=with_z), learned.config
    source = open_source(config, split)
    feats = embed_source(encode, config, source, setup)
    d = config.data
    spec = str(Path(d.spec).resolve()) if Path(d.spec).exists() else d.spec  # usable from any folder
    meta = {"checkpoint": str(resolve_checkpoint(checkpoint).resolve()), "data": spec, "split": split,
            "root": d.root, "cache_dir": d.cache_dir, "holdout": d.holdout, "seed": config.train.seed,
            "image_size": d.image_size, "eval_crop": d.eval_crop, "z": feats.z is not None}
    return Embeddings(feats.h, feats.z, feats.single_labels(), feats.paths, meta), feats.skipped


def embed(checkpoint: str | Path, setup: EvalSetup, split: str, out: Path, with_z: bool = False) -> dict[str, int]:
    """Write ``features`` [N, F] float32, ``labels`` [N] int64 (-1 unlabeled), ``paths`` [N] (and ``z``) and
    ``meta`` (see :func:`embed_split`) to ``out`` (atomically: an existing file is never left half-written; a folder,
    the checkpoint or another run's checkpoint is refused before any work)."""
    check_output(out, reading=(resolve_checkpoint(checkpoint),))
    emb, skipped = embed_split(checkpoint, setup, split, with_z)
    save_embeddings(emb, out)
    return {"images": len(emb.paths), "skipped": len(skipped), "dim": int(emb.features.shape[1])}
