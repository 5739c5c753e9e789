"""Export embeddings: h (and optionally z) of every image of a dataset split to a .npz file."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from simclr.build import decode, open_source, plan_data
from simclr.engine.runtime import pick_device, pick_precision
from simclr.evaluation.features import extract_features, model_encoder
from simclr.evaluation.run import EvalSetup, eval_config, load_model


def embed(checkpoint: str | Path, setup: EvalSetup, split: str, out: Path, with_z: bool = False) -> dict[str, int]:
    """Write ``features`` [N, F] float32, ``labels`` [N] int64 (-1 unlabeled), ``paths`` [N] (and ``z``) to ``out``.

    The file is written to a temporary name and renamed, so an existing file is never left half-written.
    """
    device = pick_device(setup.device)
    model, config = load_model(checkpoint, device)
    config = eval_config(config, setup)
    source = open_source(config, split)
    in_memory = plan_data(config, source).in_memory
    encode = model_encoder(model, device, pick_precision(config.train.precision, device),
                           config.train.channels_last, with_z=with_z)
    feats = extract_features(encode, source, config.data.image_size, in_memory, batch_size=setup.batch_size,
                             workers=setup.workers, progress=setup.progress, desc="embedding",
                             decoder=functools.partial(decode, config, progress=False))
    arrays = {"features": feats.h.numpy().astype(np.float32), "labels": feats.labels.numpy().astype(np.int64),
              "paths": np.asarray(feats.paths, dtype=str)}
    if feats.z is not None:
        arrays["z"] = feats.z.numpy().astype(np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
    return {"images": len(feats.paths), "skipped": len(feats.skipped), "dim": int(feats.h.shape[1])}
