"""Optional kNN monitor during pretraining: weighted kNN top-1 of h on the labelled test split."""

from __future__ import annotations

import functools
import sys

import torch

from simclr.build import decode, open_source
from simclr.config import Config
from simclr.engine.runtime import Precision
from simclr.errors import InputError
from simclr.evaluation.features import extract_features, model_encoder
from simclr.evaluation.knn import knn_accuracy
from simclr.models.simclr import SimCLRNet


class KnnMonitor:
    """Callable on the model: ``{"knn_top1", "knn_top5"}``, or None when the data has no labelled test split."""

    def __init__(self, config: Config, device: torch.device, precision: Precision) -> None:
        self.config, self.device, self.precision = config, device, precision
        try:
            self.bank = open_source(config, "train")
            self.test = open_source(config, "test")
        except InputError as exc:
            print(f"kNN monitor off: {exc}", file=sys.stderr)
            self.bank = self.test = None  # type: ignore[assignment]
            return
        if (self.bank.labels < 0).any() or (self.test.labels < 0).any() or not self.bank.classes:
            print("kNN monitor off: the dataset is unlabeled", file=sys.stderr)
            self.bank = self.test = None  # type: ignore[assignment]

    def __call__(self, model: SimCLRNet) -> dict[str, float] | None:
        if self.bank is None:
            return None
        d, tr = self.config.data, self.config.train
        encode = model_encoder(model, self.device, self.precision, tr.channels_last)
        in_memory = d.in_memory == "true"
        decoder = functools.partial(decode, self.config, progress=False)
        bank = extract_features(encode, self.bank, d.image_size, in_memory, progress=False, decoder=decoder)
        test = extract_features(encode, self.test, d.image_size, in_memory, progress=False, decoder=decoder)
        acc = knn_accuracy(bank.h, bank.labels, test.h, test.labels, len(self.bank.classes), tr.knn_k,
                           tr.knn_temperature)
        return {"knn_top1": acc["top1"], "knn_top5": acc["top5"]}
