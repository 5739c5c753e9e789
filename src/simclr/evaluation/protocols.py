"""The evaluation commands that train on labels: fine-tuning (1% / 10%), the augmented linear protocol and the
h-versus-z probe (transfer, which builds on these helpers: :mod:`simclr.evaluation.transfer`).

Each decodes the labelled train and test splits of ``setup.data.spec`` once (uint8, at the run's image size),
or reads them from their files batch by batch where the data is not held in memory (``data.in_memory``), and
works from the checkpoint's encoder f (fine-tuning starts from h, not from the projection head).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from simclr.data.image_source import ImageSource
from simclr.data.streamed import StreamedImages
from simclr.errors import InputError
from simclr.evaluation.batches import Images
from simclr.evaluation.finetune import (
    FinetuneSpec,
    evaluate_classifier,
    finetune,
    supervised_baseline,
)
from simclr.evaluation.learned import Learned, check_frozen, fingerprint, fresh_encoder, load_learned
from simclr.evaluation.multilabel import is_multilabel
from simclr.evaluation.probe import ProbeSpec, probe
from simclr.evaluation.setup import EvalSetup
from simclr.evaluation.splits import EvalData
from simclr.evaluation.subsets import label_subset, load_subset, save_subset


def open_eval(checkpoint: str | Path, setup: EvalSetup) -> tuple[Learned, EvalData]:
    learned = load_learned(checkpoint, setup)
    return learned, EvalData(learned.config, setup)


WHOLE_SIDE = 1.0
"""The centre crop of images a network trains on with random crops: the whole shorter side, so that the crops
draw from all of it as the paper's do from the full image (images it is scored on keep ``data.eval_crop``)."""


def draw_subset(path: Path | None, train: ImageSource, fraction: float, seed: int,
            dataset: str) -> tuple[np.ndarray, Path | None, float]:
    """Reuse the subset at ``path`` if it exists (a saved subset or a list of image names), else draw a
    class-balanced one (and save it there); with the fraction of the train split it holds. Indices are
    positions in the split's listing (``train.paths``), so a subset is drawn before anything is decoded."""
    labels = np.asarray(train.labels)
    if path is not None and path.is_file():
        indices = load_subset(path, len(labels), train.paths)
        return indices, path, round(len(indices) / len(labels), 6)  # the file's, whatever the fraction said
    try:
        indices = label_subset(labels, fraction, seed)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if path is not None:
        save_subset(path, indices, fraction=fraction, seed=seed, dataset=dataset, num_images=len(labels))
    return indices, path, fraction


def finetune_eval(checkpoint: str | Path, setup: EvalSetup, fraction: float, spec: FinetuneSpec, *,
                  subset_file: Path | None = None, baseline: bool = True) -> dict[str, Any]:
    """Fine-tune f + a linear layer on a class-balanced ``fraction`` of the train labels (random crops of the
    whole shorter side, or of the full file where the images are streamed); test top-1/top-5 on centre crops
    keeping ``data.eval_crop`` of it.

    With ``baseline`` the same training from a random initialisation runs on the same subset.
    """
    return _finetune(*open_eval(checkpoint, setup), fraction, spec, subset_file, baseline)


class _Split(NamedTuple):
    """Labelled images as :func:`finetune` and :func:`evaluate_classifier` take them: decoded (uint8 images
    and their labels) or streamed (the stream, and None: its own labels)."""

    images: Images
    labels: torch.Tensor | None
    decoded_skipped: int = 0

    def skipped(self) -> int:
        """The images that could not be read (a stream's: so far)."""
        return len(self.images.skipped) if isinstance(self.images, StreamedImages) else self.decoded_skipped

    def readable(self) -> int:
        """The images used (a stream's: all but those found unreadable so far)."""
        return len(self.images) - (self.skipped() if isinstance(self.images, StreamedImages) else 0)


def _labelled_splits(data: EvalData, rows: np.ndarray | None, device: torch.device) -> tuple[_Split, _Split]:
    """The labelled train images at ``rows`` (default all: their random crops are drawn from the whole shorter
    side, or from the full files when streamed) and the test split (centre crops keeping ``data.eval_crop``):
    decoded into memory, or read from the files batch by batch where the data is not held in memory
    (``data.in_memory``)."""
    if not data.in_memory:
        pin = device.type == "cuda"
        return _Split(data.streamed("train", rows, WHOLE_SIDE, pin), None), \
            _Split(data.streamed("test", pin_memory=pin), None)
    train = data.decoded("train", WHOLE_SIDE) if rows is None else data.labelled(rows, WHOLE_SIDE)
    test = data.decoded("test")
    if len(train.images) == 0 or len(test.images) == 0:
        raise InputError(f"no readable labelled images in {data.train.name}")
    return _Split(train.images, train.labels, len(train.skipped)), \
        _Split(test.images, test.labels, len(test.skipped))


def _score(model: torch.nn.Module, test: _Split, learned: Learned, precision: str,
           batch_size: int) -> dict[str, float]:
    scores = evaluate_classifier(model, test.images, test.labels, batch_size, learned.device, precision)
    if test.readable() == 0:
        raise InputError("no readable images in the test split")
    return scores


def _finetune(learned: Learned, data: EvalData, fraction: float, spec: FinetuneSpec, subset_file: Path | None,
              baseline: bool) -> dict[str, Any]:
    if is_multilabel(data.train.labels):
        raise InputError(f"{data.train.name} is multi-label: semi-supervised fine-tuning draws "
                         "class-balanced subsets of single labels; use eval transfer or eval linear")
    idx, subset_path, fraction = draw_subset(subset_file, data.train, fraction, spec.seed,
                                             data.config.data.spec)
    train, test = _labelled_splits(data, idx, learned.device)  # only the labelled images: 1% of ImageNet
    num_classes = len(data.train.classes)
    precision = learned.config.train.precision  # the run's (auto: bf16 on a GPU)
    spec = dataclasses.replace(spec, device=str(learned.device), precision=precision)
    encoder = copy.deepcopy(learned.model.encoder)
    dim = learned.model.num_features
    tuned = finetune(encoder, dim, num_classes, train.images, train.labels, spec,
                     progress=data.kw["progress"])
    result: dict[str, Any] = {"protocol": "finetune", "label_fraction": fraction, "epochs": spec.epochs,
                              **_score(tuned, test, learned, precision, spec.batch_size)}
    if baseline:
        def fresh() -> torch.nn.Module:
            return fresh_encoder(learned.config)

        scratch = supervised_baseline(fresh, dim, num_classes, train.images, train.labels, spec)
        base = _score(scratch, test, learned, precision, spec.batch_size)
        result.update({"baseline_top1": base["top1"], "baseline_top5": base["top5"],
                       "baseline_mean_class_top1": base["mean_class_top1"]})
    return {**result, "labelled_images": train.readable(),
            "labelled_share": round(len(idx) / len(data.train), 6),
            "test_images": test.readable(),
            "skipped": train.skipped() + test.skipped(), "streamed": not data.in_memory,
            "subset_file": str(subset_path) if subset_path else None}


def augmented_linear_eval(checkpoint: str | Path, setup: EvalSetup, epochs: int = 90) -> dict[str, Any]:
    """The reference code's linear evaluation: a linear layer on h of the frozen encoder, trained on randomly
    cropped (from the whole shorter side) and flipped images (SGD with Nesterov momentum, lr 0.1 x batch/256
    with cosine decay, no weight decay) for ``epochs``; test top-1/top-5 on the centre-cropped test split.

    Every epoch runs the encoder over the whole train split (no cached features; the images read from their
    files batch by batch, each crop drawn from the full file, where the data is not held in memory): a GPU
    protocol for large datasets. The encoder is checked to be untouched afterwards (weights and batch-norm
    statistics)."""
    learned, data = open_eval(checkpoint, setup)
    train, test = _labelled_splits(data, None, learned.device)
    before = fingerprint(learned.model)
    spec = FinetuneSpec(epochs=epochs, batch_size=setup.batch_size, lr=0.1 * setup.batch_size / 256,
                        seed=learned.config.train.seed, device=str(learned.device),
                        precision=learned.config.train.precision, frozen=True)
    classifier = finetune(learned.model.encoder, learned.model.num_features, len(data.train.classes),
                          train.images, train.labels, spec, progress=setup.progress)
    result = _score(classifier, test, learned, spec.precision, spec.batch_size)
    check_frozen(learned.model, before)
    return {"protocol": "linear", **result, "solver": "augmented", "epochs": epochs, "lr": spec.lr,
            "train_images": train.readable(), "test_images": test.readable(),
            "skipped": train.skipped() + test.skipped(), "streamed": not data.in_memory}


def probe_eval(checkpoint: str | Path, setup: EvalSetup, spec: ProbeSpec,
               transforms: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The paper's Table 3: MLPs on frozen h and on z = g(h) predict the transformation applied to the input.

    Returns ``rows`` (one per transformation, :func:`~simclr.evaluation.probe.probe`), the images used
    (``train_images``, ``test_images``), the unreadable ones left out (``skipped``) and ``streamed``."""
    learned, data = open_eval(checkpoint, setup)
    train, test, ids = _probe_splits(data)
    model = learned.model.eval()
    before = fingerprint(model)

    both = learned.encoder(with_z=True)

    def encode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, z = both(x)
        assert z is not None  # asked for
        return h, z

    kwargs = {"transforms": transforms} if transforms else {}
    rows = probe(encode, train, test, spec=spec, batch_size=setup.batch_size,
                 progress=setup.progress, ids=ids, **kwargs)
    check_frozen(model, before)
    used = [len(x) - (len(x.skipped) if isinstance(x, StreamedImages) else 0) for x in (train, test)]
    return {"rows": rows, "train_images": used[0], "test_images": used[1],
            "skipped": len(data.train) + len(data.test) - sum(used), "streamed": not data.in_memory}


def _probe_splits(data: EvalData) -> tuple[Images, Images, tuple[torch.Tensor | None, torch.Tensor | None]]:
    """The train and test splits as the probes see them: centre crops keeping ``data.eval_crop``, decoded into
    memory, or read from their files batch by batch where the data is not held in memory (``data.in_memory``);
    and the images' ids, their positions in the splits' listings (a stream's rows already are)."""
    if not data.in_memory:
        return data.streamed("train"), data.streamed("test"), (None, None)
    train, test = data.decoded("train"), data.decoded("test")
    if len(train.images) == 0 or len(test.images) == 0:
        raise InputError(f"no readable labelled images in {data.train.name}")

    def ids(source: ImageSource, paths: list[str]) -> torch.Tensor:
        position = {path: i for i, path in enumerate(source.paths)}
        return torch.tensor([position[path] for path in paths], dtype=torch.int64)

    return train.images, test.images, (ids(data.train, train.paths), ids(data.test, test.paths))
