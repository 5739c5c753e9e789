"""The paper's transfer protocol (Appendix B.8): a pretrained encoder on another labelled dataset, by linear
evaluation on frozen h, fine-tuning from the pretrained f, and the same network trained from random
initialisation."""

from __future__ import annotations

import copy
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from simclr.data.named_sets import paper_metric
from simclr.data.streamed import StreamedImages
from simclr.errors import InputError
from simclr.evaluation.batches import Images
from simclr.evaluation.finetune import (
    FinetuneSpec,
    evaluate_classifier,
    finetune,
    seeded_init,
    transfer_bn_momentum,
)
from simclr.evaluation.frozen import FeaturePair, own_validation
from simclr.evaluation.learned import check_frozen, fingerprint, fresh_encoder
from simclr.evaluation.linear import WEIGHT_DECAYS, rows_besides
from simclr.evaluation.multilabel import is_multilabel
from simclr.evaluation.protocols import WHOLE_SIDE, draw_subset, open_eval
from simclr.evaluation.selection import Grid, holdout_split, select
from simclr.evaluation.setup import EvalSetup
from simclr.evaluation.splits import EvalData


class _Pool:
    """Labelled images the transferred networks train on or are scored on, taken by rows: uint8 on the device
    (moved there once: every cell of a grid trains on part of them), or read from their files
    (:class:`StreamedImages`)."""

    def __init__(self, images: Images, labels: torch.Tensor, device: torch.device) -> None:
        self.images = images.to(device) if isinstance(images, torch.Tensor) else images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: torch.Tensor | None = None) -> tuple[Images, torch.Tensor]:
        """The images at ``rows`` (default all) and their labels."""
        if rows is None:
            return self.images, self.labels
        if isinstance(self.images, StreamedImages):
            return self.images.subset(rows), self.labels[rows]
        return self.images[rows.to(self.images.device)], self.labels[rows]


class _Classifiers:
    """Trains a network and a linear layer on (some of) one labelled pool of images, and scores it: the two
    fine-tuned networks of transfer (from the pretrained f, from random initialisation)."""

    def __init__(self, pool: _Pool, num_classes: int, dim: int, device: torch.device, precision: str,
                 batch_size: int, progress: bool) -> None:
        self.pool, self.num_classes, self.dim, self.batch_size = pool, num_classes, dim, batch_size
        self.device, self.precision, self.progress = device, precision, progress

    def fit(self, make: Callable[[], torch.nn.Module], spec: FinetuneSpec,
            rows: torch.Tensor | None = None) -> torch.nn.Module:
        """``make()`` fine-tuned on ``rows`` (default all), with the paper's batch-norm momentum for
        transfer."""
        x, y = self.pool.take(rows)
        spec = dataclasses.replace(spec, bn_momentum=transfer_bn_momentum(len(y), spec.batch_size))
        return finetune(make(), self.dim, self.num_classes, x, y, spec, progress=self.progress)

    def score(self, model: torch.nn.Module, images: Images, labels: torch.Tensor) -> dict[str, float]:
        return evaluate_classifier(model, images, labels, self.batch_size, self.device, self.precision)

    def search(self, name: str, make: Callable[[], torch.nn.Module], grid: Grid, base: FinetuneSpec,
               metric: str, val_rows: torch.Tensor) -> tuple[FinetuneSpec, list[dict[str, Any]]]:
        """The best cell of ``grid`` by ``metric`` on the images ``val_rows``, each cell trained on the
        others; and the rows of every cell."""
        fit_rows = rows_besides(val_rows, len(self.pool))
        held = self.pool.take(val_rows)
        total = len(grid.cells())
        done = 0

        def score(spec: FinetuneSpec) -> float:
            return self.score(self.fit(make, spec, fit_rows), *held)[metric]

        def show(row: dict[str, Any]) -> None:
            nonlocal done
            done += 1
            if self.progress:
                tqdm.write(f"{name} grid {done}/{total}: lr {row['lr']:.3g}, "
                           f"weight decay {row['weight_decay']:.3g}: "
                           f"validation {100 * row['val']:.2f}%", file=sys.stderr)

        return select(grid, base, score, on_cell=show)


def _validation(data: EvalData, spec: str, labelled: list[str], labels: torch.Tensor,
                seed: int) -> tuple[torch.Tensor | None, str]:
    """The labelled images that pick transfer's hyper-parameters (positions in ``labelled``) and what they
    are: the dataset's own validation split where it has one (as the paper), else a seeded tenth of each
    class; None where no class has enough images to spare one (the linear fit then holds out a random
    tenth)."""
    own = own_validation(data.config, spec, labelled)
    if own is not None:
        return own, "the dataset's validation split"
    try:
        return torch.from_numpy(holdout_split(labels.numpy(), 0.1, seed)[1]), "a tenth of each class"
    except ValueError:
        return None, "a random tenth"


def _labelled(data: EvalData, subset_file: Path | None, fraction: float,
              seed: int) -> tuple[np.ndarray, float]:
    """The train split's labelled images (positions) and their share: a class-balanced ``fraction`` drawn by
    ``seed`` or the subset in ``subset_file``; all of a multi-label dataset (which takes neither)."""
    if is_multilabel(data.train.labels):
        if fraction < 1 or subset_file is not None:
            raise InputError(f"{data.train.name} is multi-label: transfer uses all its labels "
                             "(no --label-fraction or --subset-file)")
        return np.arange(len(data.train)), fraction
    chosen, _, fraction = draw_subset(subset_file, data.train, fraction, seed, data.config.data.spec)
    return chosen, fraction


def transfer_eval(checkpoint: str | Path, setup: EvalSetup, spec: FinetuneSpec, *, fraction: float = 1.0,
                  solver: str = "lbfgs", weight_decays: Sequence[float] = WEIGHT_DECAYS,
                  grids: tuple[Grid, Grid] | None = None, subset_file: Path | None = None) -> dict[str, Any]:
    """A pretrained encoder on another labelled dataset (the paper's Appendix B.8): linear evaluation on
    frozen h, fine-tuning from the pretrained f, and the same network trained from random initialisation for
    twice as long.

    The splits are decoded once for all three (or, where the data is not held in memory, ``data.in_memory``,
    read from their files batch by batch: features once, the networks' images every epoch), and all three
    learn from the same labelled images (a class-balanced ``fraction`` of the train split drawn by
    ``spec.seed``, or the subset in ``subset_file``, saved there when the file does not exist;
    ``labelled_images``). Each accuracy is given as top-1, top-5 and mean per-class top-1 (multi-label
    VOC2007: the 11-point mAP); ``paper_metric`` names the one the paper reports for this dataset (its Table
    8). Hyper-parameters are chosen by it on held-out labelled images (``validation``: the dataset's own
    validation split where it has one, as the paper, else a seeded tenth of each class): the linear fit's
    weight decay among ``weight_decays``, and with ``grids`` (fine-tuning's, training from scratch's; see
    :mod:`simclr.evaluation.selection`) the learning rate and weight decay of the other two, which are then
    trained again on all the labelled images. Both fine-tuned networks use the paper's batch-norm momentum for
    transfer (:func:`transfer_bn_momentum`). Images are prepared as the paper's: the linear evaluation sees
    the whole shorter side (unless ``setup`` gives an ``eval_crop``), the fine-tuned networks train on random
    crops of the whole shorter side and are tested on centre crops keeping ``data.eval_crop`` of it (0.875:
    the paper's 224 of 256; the held-out images of a grid search are scored as they were decoded for
    training)."""
    learned, data = open_eval(checkpoint, setup)
    metric = paper_metric(setup.data.spec)
    before = fingerprint(learned.model)
    multilabel = is_multilabel(data.train.labels)
    reused = subset_file is not None and subset_file.is_file()
    chosen, fraction = _labelled(data, subset_file, fraction, spec.seed)
    crop = setup.chosen("eval_crop")
    pair = FeaturePair(learned.encoder(), data, WHOLE_SIDE if crop is None else crop)
    check_frozen(learned.model, before)
    # the linear classifier learns from the same labelled images
    readable = {path: i for i, path in enumerate(pair.train.paths)}
    chosen = np.asarray([i for i in chosen if data.train.paths[i] in readable], dtype=np.int64)
    if len(chosen) == 0:
        raise InputError(f"none of the labelled images of {data.train.name} could be read")
    labelled = [data.train.paths[i] for i in chosen]
    if not multilabel and reused:  # a subset file's share of the images that could be read
        fraction = round(len(chosen) / len(pair.train.h), 6)
    labels = torch.as_tensor(np.asarray(data.train.labels)[chosen], dtype=torch.int64)
    val_rows, validation = _validation(data, setup.data.spec, labelled, labels, spec.seed)
    if grids is not None and val_rows is None:  # before the linear fit and the trainings
        raise InputError(f"too few labelled images ({len(chosen)}) to hold out a validation part for the "
                         "hyper-parameter search")
    rows = torch.tensor([readable[path] for path in labelled], dtype=torch.int64)  # in this order
    linear = pair.linear(learned.config.train.seed, solver, weight_decays=weight_decays, metric=metric,
                         rows=rows, holdout=val_rows)
    device, precision = learned.device, learned.config.train.precision
    pool, test = _transfer_pools(data, chosen, labels, device)
    nets = _Classifiers(pool, len(data.train.classes), learned.model.num_features, device, precision,
                        setup.batch_size, setup.progress)
    base = dataclasses.replace(spec, device=str(device), precision=precision)
    # paper: 40,000 vs 20,000
    longer = dataclasses.replace(base, epochs=2 * base.epochs, steps=2 * base.steps)

    def pretrained() -> torch.nn.Module:
        return copy.deepcopy(learned.model.encoder)

    def scratch() -> torch.nn.Module:
        return seeded_init(lambda: fresh_encoder(learned.config), spec.seed)

    keys = ("map11",) if multilabel else ("top1", "top5", "mean_class_top1")
    result: dict[str, Any] = {"protocol": "transfer", "data": setup.data.spec, "paper_metric": metric,
                              **{f"linear_{key}": linear[key] for key in keys}}
    for name, make, cell, grid in (("finetune", pretrained, base, grids[0] if grids else None),
                                   ("scratch", scratch, longer, grids[1] if grids else None)):
        if grid is not None and val_rows is not None:
            cell, result[f"{name}_grid"] = nets.search(name, make, grid, cell, metric, val_rows)
        scores = nets.score(nets.fit(make, cell), *test.take())
        result.update({f"{name}_{key}": scores[key] for key in keys})
        result.update({f"{name}_lr": cell.lr, f"{name}_weight_decay": cell.weight_decay * cell.lr})
    return {**result, "label_fraction": fraction, "subset_file": str(subset_file) if subset_file else None,
            "train_images": len(pair.train.h), "labelled_images": len(chosen),
            "test_images": len(pair.test.h),
            "validation": validation, "validation_images": len(val_rows) if val_rows is not None else None,
            "epochs": None if spec.steps else spec.epochs, "steps": spec.steps or None,
            "linear_weight_decay": linear.get("weight_decay"), "streamed": not data.in_memory,
            "skipped": len(pair.train.skipped) + len(pair.test.skipped)}


def _transfer_pools(data: EvalData, chosen: np.ndarray, labels: torch.Tensor,
                    device: torch.device) -> tuple[_Pool, _Pool]:
    """The labelled train images at ``chosen`` (readable ones, positions in the split's listing; the networks'
    random crops draw from the whole shorter side, or from the full files when streamed) and the test split
    (centre crops keeping ``data.eval_crop``), decoded into memory or streamed as :func:`_labelled_splits`."""
    if not data.in_memory:
        pin = device.type == "cuda"
        test = data.streamed("test", pin_memory=pin)
        return _Pool(data.streamed("train", chosen, WHOLE_SIDE, pin), labels, device), \
            _Pool(test, test.labels, device)
    decoded, scored = data.decoded("train", WHOLE_SIDE), data.decoded("test")
    position = {path: i for i, path in enumerate(decoded.paths)}
    idx = torch.tensor([position[data.train.paths[i]] for i in chosen], dtype=torch.int64)
    return _Pool(decoded.images[idx], labels, device), _Pool(scored.images, scored.labels, device)
