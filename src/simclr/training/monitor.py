"""Optional kNN monitor during pretraining: weighted kNN top-1 of h on the labelled test split."""

from __future__ import annotations

import sys

import torch

from simclr.config import Config
from simclr.data.named_sets import labelled_spec
from simclr.errors import InputError
from simclr.evaluation.features import model_encoder
from simclr.evaluation.frozen import FeaturePair
from simclr.evaluation.multilabel import is_multilabel
from simclr.evaluation.setup import EvalSetup, eval_config
from simclr.evaluation.splits import EvalData
from simclr.models.simclr import SimCLRNet
from simclr.runtime.device import Precision


class KnnMonitor:
    """Callable on the model: ``{"knn_top1", "knn_top5"}``, or None when the data has no labelled test split.

    The splits are opened and decoded once per run (:class:`EvalData`); each call only extracts features.
    """

    def __init__(self, config: Config, device: torch.device, precision: Precision) -> None:
        self.config, self.device, self.precision = config, device, precision
        self.data: EvalData | None
        try:
            setup = EvalSetup.of(labelled_spec(config.data.spec), workers=config.data.workers, progress=False)
            self.data = EvalData(eval_config(config, setup), setup)
            if is_multilabel(self.data.train.labels):
                raise InputError(f"{self.data.train.name} is multi-label (kNN accuracy needs one label "
                                 "per image)")
        except InputError as exc:
            print(f"kNN monitor off: {exc}", file=sys.stderr)
            self.data = None

    def __call__(self, model: SimCLRNet) -> dict[str, float] | None:
        if self.data is None:
            return None
        tr = self.config.train
        encode = model_encoder(model, self.device, self.precision, tr.channels_last)
        acc = FeaturePair(encode, self.data).knn(tr.knn_k, tr.knn_temperature)
        return {"knn_top1": acc["top1"], "knn_top5": acc["top5"]}
