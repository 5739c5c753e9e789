"""Evaluation on frozen features: h (and z) of the labelled splits extracted once, then a weighted kNN or a
linear classifier (``simclr eval knn`` and ``simclr eval linear`` with the lbfgs and sgd solvers)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from simclr.build import open_source
from simclr.config import Config
from simclr.data.named_sets import has_validation, paper_metric
from simclr.errors import InputError
from simclr.evaluation.features import Encode, Features, extract_features
from simclr.evaluation.knn import knn_accuracy
from simclr.evaluation.learned import check_frozen, fingerprint, load_learned
from simclr.evaluation.linear import WEIGHT_DECAYS, linear_eval
from simclr.evaluation.multilabel import is_multilabel, multilabel_linear_eval
from simclr.evaluation.setup import EvalSetup
from simclr.evaluation.splits import EvalData


class FeaturePair:
    """Bank (train) and query (test) features of one encoder (h, and z when ``encode`` returns it), of centre
    crops keeping ``crop`` of the shorter side (default ``data.eval_crop``); ``label`` names the encoder in
    the progress bars (e.g. ``raw pixels``)."""

    def __init__(self, encode: Encode, data: EvalData, crop: float | None = None, label: str = "") -> None:
        self.num_classes, self.name = len(data.train.classes), data.train.name
        kw = data.features_kw(crop)
        self.progress: bool = kw["progress"]
        self.label = f"{label}: " if label else ""
        self.train: Features = extract_features(encode, data.train, data.size, data.in_memory,
                                                desc=f"{self.label}train features", **kw)
        self.test: Features = extract_features(encode, data.test, data.size, data.in_memory,
                                               desc=f"{self.label}test features", **kw)
        data.note_unreadable(self.train, self.test)

    def _features(self, on: str) -> tuple[torch.Tensor, torch.Tensor]:
        train, test = (self.train.h, self.test.h) if on == "h" else (self.train.z, self.test.z)
        if train is None or test is None:
            raise ValueError(f"no {on} features: the encoder returned h only")
        return train, test

    def knn(self, k: int, temperature: float, on: str = "h") -> dict[str, float]:
        if is_multilabel(self.train.labels):
            raise InputError(f"kNN accuracy needs one label per image, and {self.name} is multi-label: "
                             "evaluate it with eval linear or eval transfer")
        train, test = self._features(on)
        return knn_accuracy(train, self.train.labels, test, self.test.labels, self.num_classes, k,
                            temperature)

    def linear(self, seed: int, solver: str = "lbfgs", epochs: int = 90, on: str = "h",
               weight_decays: Sequence[float] = WEIGHT_DECAYS, metric: str = "top1",
               rows: torch.Tensor | None = None, holdout: torch.Tensor | None = None) -> dict[str, Any]:
        """Linear evaluation on ``on`` (h or z); trained on the train ``rows`` only when given; the lbfgs
        weight decay picked on the ``holdout`` rows of those when given."""
        train, test = self._features(on)
        labels = self.train.labels
        if rows is not None:
            train, labels = train[rows], labels[rows]
        if is_multilabel(labels):
            if solver != "lbfgs":
                raise InputError(f"{self.name} is multi-label: its linear evaluation has the lbfgs solver "
                                 "only")
            return multilabel_linear_eval(train, labels, test, self.test.labels, seed, weight_decays, holdout)
        return linear_eval(train, labels, test, self.test.labels, self.num_classes, seed, solver, epochs,
                           weight_decays, metric, holdout, self.progress, f"{self.label}linear fits")


def frozen_eval(checkpoint: str | Path, setup: EvalSetup, protocol: str, k: int = 200,
             temperature: float = 0.1, solver: str = "lbfgs", epochs: int = 90,
             weight_decays: Sequence[float] = WEIGHT_DECAYS) -> dict[str, Any]:
    """``protocol`` ``knn`` or ``linear`` on frozen h; returns top1/top5 as fractions plus context. The lbfgs
    linear fit picks its weight decay by the dataset's metric on its own validation split where it has one
    (:func:`own_validation`), else on a random tenth of the train split.

    The encoder is checked to be untouched afterwards (weights and batch-norm statistics).
    """
    learned = load_learned(checkpoint, setup)
    before = fingerprint(learned.model)
    data = EvalData(learned.config, setup)
    pair = FeaturePair(learned.encoder(), data)
    check_frozen(learned.model, before)
    result: dict[str, Any]
    if protocol == "knn":
        result = pair.knn(k, temperature)
    else:
        spec = setup.data.spec
        held = own_validation(learned.config, spec, pair.train.paths) if solver == "lbfgs" else None
        result = pair.linear(learned.config.train.seed, solver, epochs, weight_decays=weight_decays,
                             metric=paper_metric(setup.data.spec), holdout=held)
        if solver == "lbfgs":
            result["validation"] = "the dataset's validation split" if held is not None else "a random tenth"
    return {"protocol": protocol, **result, "train_images": len(pair.train.h),
            "test_images": len(pair.test.h),
            "skipped": len(pair.train.skipped) + len(pair.test.skipped), "streamed": not data.in_memory}


def own_validation(config: Config, spec: str, paths: Sequence[str]) -> torch.Tensor | None:
    """Positions in ``paths`` (of the train split) of the dataset's own validation split, for a named set that
    has one (the paper picks hyper-parameters on it: Aircraft, VOC2007, DTD, Flowers); else None."""
    if not has_validation(spec):
        return None
    own = set(open_source(config, "val").paths)
    held = torch.tensor([path in own for path in paths], dtype=torch.bool)
    return torch.nonzero(held).squeeze(1) if held.any() and not held.all() else None
