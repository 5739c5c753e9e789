"""The labelled train (bank) and test (query) splits of an evaluation, opened and decoded once for every
encoder evaluated on them."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from simclr.build import decode, open_source, plan_data
from simclr.config import Config
from simclr.data.decode import Decoded
from simclr.data.image_source import ImageSource
from simclr.data.sources import some_names
from simclr.data.streamed import StreamedImages
from simclr.errors import InputError
from simclr.evaluation.features import Features
from simclr.evaluation.multilabel import is_multilabel
from simclr.evaluation.setup import EvalSetup


def labelled_split(config: Config, split: str) -> ImageSource:
    source = open_source(config, split)
    if not source.classes or (source.labels < 0).any():
        raise InputError(f"evaluation needs labels: {source.name} ({split}) has unlabeled images "
                         "(use class subfolders)")
    return source


def _check_classes(train: ImageSource, test: ImageSource) -> None:
    """Refuse test images none of whose classes has a training image (train/ and test/ class folders that
    differ: every answer would be wrong); note the test images of such classes when only some are."""
    if is_multilabel(train.labels):
        return
    unseen = np.setdiff1d(np.unique(test.labels), np.unique(train.labels))
    if len(unseen) == 0:
        return
    names = some_names([test.classes[i] for i in unseen])
    count = int(np.isin(test.labels, unseen).sum())
    if count == len(test.labels):
        raise InputError(f"{test.name}: no test class has a training image (test classes {names}): the train "
                         "and test splits must share their class folders")
    print(f"note: {count} test images of {len(unseen)} class(es) with no training image ({names}) count as "
          "errors", file=sys.stderr)


class EvalData:
    """The labelled train (bank) and test (query) splits, opened and decoded once for every encoder."""

    def __init__(self, config: Config, setup: EvalSetup) -> None:
        self.train, self.test = labelled_split(config, "train"), labelled_split(config, "test")
        _check_classes(self.train, self.test)
        plan = plan_data(config, self.train)  # image_size 0: the dataset's own side, as pretraining has it
        self.size, self.in_memory = plan.image_size, plan.in_memory
        self.config = config
        self.unreadable_noted = False
        self._decoded: dict[tuple[str, int, float], Decoded] = {}
        self.kw: dict[str, Any] = {"batch_size": setup.batch_size, "workers": setup.data.workers,
                                   "progress": setup.progress, "decoder": self._decode,
                                   "crop": config.data.eval_crop}

    def _crop(self, crop: float | None) -> float:
        return self.config.data.eval_crop if crop is None else crop

    def _decode(self, source: ImageSource, size: int, crop: float | None = None) -> Decoded:
        crop = self._crop(crop)
        key = ("train" if source is self.train else "test", size, crop)
        if key not in self._decoded:
            self._decoded[key] = decode(self.config, source, size, progress=False, workers=self.kw["workers"],
                                        crop=crop)
        return self._decoded[key]

    def decoded(self, split: str, crop: float | None = None) -> Decoded:
        """The whole split as uint8 ``[N, 3, S, S]`` at ``size``, centre crops keeping ``crop`` of the shorter
        side (default ``data.eval_crop``); decoded once per crop, shared with feature extraction."""
        return self._decode(self.train if split == "train" else self.test, self.size, crop)

    def labelled(self, rows: np.ndarray, crop: float | None = None) -> Decoded:
        """Only the train images at ``rows`` (positions in the split's listing) decoded, keeping ``crop`` of
        the shorter side (default ``data.eval_crop``): a labelled subset of a large split (ImageNet's 1% or
        10%) without decoding the rest. Unreadable images are left out."""
        if len(rows) == len(self.train):
            return self.decoded("train", crop)
        return decode(self.config, self.train.subset(rows), self.size, progress=self.kw["progress"],
                      workers=self.kw["workers"], crop=self._crop(crop))

    def streamed(self, split: str, rows: np.ndarray | None = None, crop: float | None = None,
                 pin_memory: bool = False) -> StreamedImages:
        """The split (only its images at ``rows``, positions in its listing, when given) read from the files
        batch by batch, centre crops keeping ``crop`` of the shorter side (default ``data.eval_crop``): for
        splits too large to hold decoded."""
        source = self.train if split == "train" else self.test
        if rows is not None and len(rows) < len(source):
            source = source.subset(rows)
        return StreamedImages(source, self.size, self._crop(crop), self.kw["workers"], pin_memory)

    def features_kw(self, crop: float | None = None) -> dict[str, Any]:
        """The keyword arguments of :func:`extract_features` for this data, with centre crops keeping ``crop``
        (default ``data.eval_crop``)."""
        if self._crop(crop) == self.config.data.eval_crop:
            return self.kw
        return {**self.kw, "crop": crop, "decoder": lambda source, size: self._decode(source, size, crop)}

    def note_unreadable(self, train: Features, test: Features) -> None:
        """Note the test images of classes whose every training image was unreadable (what the listing did not
        show), once whatever the number of encoders compared; ``train`` and ``test``: an encoder's
        features."""
        if is_multilabel(train.labels) or self.unreadable_noted:
            return
        self.unreadable_noted = True
        lost = np.setdiff1d(np.unique(self.train.labels), train.labels.numpy())
        count = int(np.isin(test.labels.numpy(), lost).sum())
        if count:
            names = some_names([self.train.classes[i] for i in lost])
            print(f"note: {count} test images of {len(lost)} class(es) whose every training image is "
                  f"unreadable ({names}) count as errors", file=sys.stderr)
