"""Optional kNN monitor during pretraining: weighted kNN top-1 of h on the labelled test split."""

from __future__ import annotations

import sys

import torch

from simclr.build import decode, open_source
from simclr.config import Config
from simclr.data.decode import Decoded
from simclr.data.sources import ImageSource
from simclr.engine.runtime import Precision
from simclr.errors import InputError
from simclr.evaluation.features import extract_features, model_encoder
from simclr.evaluation.knn import knn_accuracy
from simclr.models.simclr import SimCLRNet


class KnnMonitor:
    """Callable on the model: ``{"knn_top1", "knn_top5"}``, or None when the data has no labelled test split."""

    def __init__(self, config: Config, device: torch.device, precision: Precision) -> None:
        self.config, self.device, self.precision = config, device, precision
        self._decoded: dict[str, Decoded] = {}
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

    def _decode(self, source: ImageSource, size: int) -> Decoded:
        """Decode each split once per run (the monitor runs every few epochs on the same images)."""
        key = "bank" if source is self.bank else "test"
        if key not in self._decoded:
            self._decoded[key] = decode(self.config, source, size, progress=False)
        return self._decoded[key]

    def __call__(self, model: SimCLRNet) -> dict[str, float] | None:
        if self.bank is None:
            return None
        d, tr = self.config.data, self.config.train
        encode = model_encoder(model, self.device, self.precision, tr.channels_last)
        in_memory = d.in_memory == "true"
        bank = extract_features(encode, self.bank, d.image_size, in_memory, progress=False, decoder=self._decode)
        test = extract_features(encode, self.test, d.image_size, in_memory, progress=False, decoder=self._decode)
        acc = knn_accuracy(bank.h, bank.labels, test.h, test.labels, len(self.bank.classes), tr.knn_k,
                           tr.knn_temperature)
        return {"knn_top1": acc["top1"], "knn_top5": acc["top5"]}
