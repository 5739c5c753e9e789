"""Evaluation commands on a pretrained checkpoint: kNN, linear, and the baseline comparison table."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from simclr.build import build_model, decode, open_source, plan_data
from simclr.config import Config
from simclr.data.decode import Decoded
from simclr.data.image_source import ImageSource
from simclr.data.named_sets import has_validation, paper_metric
from simclr.data.sources import some_names
from simclr.data.streamed import StreamedImages
from simclr.errors import InputError
from simclr.evaluation.features import Encode, Features, extract_features, model_encoder, raw_pixels
from simclr.evaluation.knn import knn_accuracy
from simclr.evaluation.linear import WEIGHT_DECAYS, linear_eval
from simclr.evaluation.multilabel import is_multilabel, multilabel_linear_eval
from simclr.models.simclr import SimCLRNet
from simclr.runtime.checkpoint import load_checkpoint, load_weights, saved_config
from simclr.runtime.device import Precision, pick_device, pick_precision


@dataclass(frozen=True)
class EvalSetup:
    """Where evaluation data comes from and where it runs."""

    data: str
    data_root: str = ""
    cache_dir: str = ""
    device: str = "auto"
    batch_size: int = 256
    workers: int = 2
    progress: bool = True
    image_size: int = 0  # 0 = the checkpoint's data.image_size
    holdout: float | None = None  # None = the checkpoint's data.holdout
    eval_crop: float | None = None  # None = the checkpoint's data.eval_crop
    in_memory: str | None = None  # auto, true, false; None = the checkpoint's data.in_memory


def load_model(checkpoint: str | Path, device: torch.device, *,
               channels_last: bool | None = None) -> tuple[SimCLRNet, Config]:
    """Rebuild the network saved in a checkpoint (run folder or file) and load its weights, in the channels-last
    layout where the run used it (``train.channels_last``, or ``channels_last``): its inputs are then channels-last
    too, and weights left in the default layout would be reordered at every convolution (1.5-2x slower on a CPU)."""
    state = load_checkpoint(checkpoint)
    config = saved_config(state, checkpoint)
    model = build_model(config)
    load_weights(model, state["model"], f"checkpoint {checkpoint}")
    model = model.to(device)
    if config.train.channels_last if channels_last is None else channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, config


def fresh_encoder(config: Config) -> torch.nn.Module:
    """A randomly initialised f of the run's architecture in the layout :func:`load_model` gives a loaded one
    (``train.channels_last``): the networks trained from scratch beside fine-tuning train as fast as it does
    (1.22-1.26x faster than in the default layout on a CPU; ``benchmarks/inference.py``)."""
    encoder = build_model(config).encoder
    return encoder.to(memory_format=torch.channels_last) if config.train.channels_last else encoder


def eval_config(config: Config, setup: EvalSetup) -> Config:
    data = dataclasses.replace(config.data, spec=setup.data, root=setup.data_root or config.data.root,
                               cache_dir=setup.cache_dir or config.data.cache_dir,
                               image_size=setup.image_size or config.data.image_size,
                               holdout=config.data.holdout if setup.holdout is None else setup.holdout,
                               eval_crop=config.data.eval_crop if setup.eval_crop is None else setup.eval_crop,
                               in_memory=config.data.in_memory if setup.in_memory is None else setup.in_memory)
    return dataclasses.replace(config, data=data)


def labelled_split(config: Config, split: str) -> ImageSource:
    source = open_source(config, split)
    if not source.classes or (source.labels < 0).any():
        raise InputError(f"evaluation needs labels: {source.name} ({split}) has unlabeled images "
                         "(use class subfolders)")
    return source


def _check_classes(train: ImageSource, test: ImageSource) -> None:
    """Refuse test images none of whose classes has a training image (train/ and test/ class folders that differ:
    every answer would be wrong); note the test images of such classes when only some are."""
    if is_multilabel(train.labels):
        return
    unseen = np.setdiff1d(np.unique(test.labels), np.unique(train.labels))
    if len(unseen) == 0:
        return
    names = some_names([test.classes[i] for i in unseen])
    count = int(np.isin(test.labels, unseen).sum())
    if count == len(test.labels):
        raise InputError(f"{test.name}: no test class has a training image (test classes {names}): the train and test "
                         "splits must share their class folders")
    print(f"note: {count} test images of {len(unseen)} class(es) with no training image ({names}) count as errors",
          file=sys.stderr)


def _note_unreadable_classes(data: EvalData, train: Features, test: Features) -> None:
    """Note the test images of classes whose every training image was unreadable (what :func:`_check_classes`
    cannot see in the listing)."""
    if is_multilabel(train.labels) or data.unreadable_noted:
        return
    data.unreadable_noted = True  # once, whatever the number of encoders compared
    listed = np.unique(data.train.labels)
    lost = np.setdiff1d(listed, train.labels.numpy())
    count = int(np.isin(test.labels.numpy(), lost).sum())
    if count:
        names = some_names([data.train.classes[i] for i in lost])
        print(f"note: {count} test images of {len(lost)} class(es) whose every training image is unreadable ({names}) "
              "count as errors", file=sys.stderr)


class EvalData:
    """The labelled train (bank) and test (query) splits, opened and decoded once for every encoder."""

    def __init__(self, config: Config, setup: EvalSetup) -> None:
        self.train, self.test = labelled_split(config, "train"), labelled_split(config, "test")
        _check_classes(self.train, self.test)
        plan = plan_data(config, self.train)  # image_size 0: the dataset's own side, as pretraining resolves it
        self.size, self.in_memory = plan.image_size, plan.in_memory
        self.config = config
        self.unreadable_noted = False
        self._decoded: dict[tuple[str, int, float], Decoded] = {}
        self.kw: dict[str, Any] = {"batch_size": setup.batch_size, "workers": setup.workers,
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
        """The whole split as uint8 ``[N, 3, S, S]`` at ``size``, centre crops keeping ``crop`` of the shorter side
        (default ``data.eval_crop``); decoded once per crop, shared with feature extraction."""
        return self._decode(self.train if split == "train" else self.test, self.size, crop)

    def labelled(self, rows: np.ndarray, crop: float | None = None) -> Decoded:
        """Only the train images at ``rows`` (positions in the split's listing) decoded, keeping ``crop`` of the
        shorter side (default ``data.eval_crop``): a labelled subset of a large split (ImageNet's 1% or 10%)
        without decoding the rest. Unreadable images are left out."""
        if len(rows) == len(self.train):
            return self.decoded("train", crop)
        return decode(self.config, self.train.subset(rows), self.size, progress=self.kw["progress"],
                      workers=self.kw["workers"], crop=self._crop(crop))

    def streamed(self, split: str, rows: np.ndarray | None = None, crop: float | None = None,
                 pin_memory: bool = False) -> StreamedImages:
        """The split (only its images at ``rows``, positions in its listing, when given) read from the files batch by
        batch, centre crops keeping ``crop`` of the shorter side (default ``data.eval_crop``): for splits too large
        to hold decoded."""
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


class FeaturePair:
    """Bank (train) and query (test) features of one encoder (h, and z when ``encode`` returns it), of centre crops
    keeping ``crop`` of the shorter side (default ``data.eval_crop``)."""

    def __init__(self, encode: Encode, data: EvalData, crop: float | None = None) -> None:
        self.num_classes, self.name = len(data.train.classes), data.train.name
        kw = data.features_kw(crop)
        self.train: Features = extract_features(encode, data.train, data.size, data.in_memory,
                                                desc="train features", **kw)
        self.test: Features = extract_features(encode, data.test, data.size, data.in_memory,
                                               desc="test features", **kw)
        _note_unreadable_classes(data, self.train, self.test)

    def _features(self, on: str) -> tuple[torch.Tensor, torch.Tensor]:
        train, test = (self.train.h, self.test.h) if on == "h" else (self.train.z, self.test.z)
        if train is None or test is None:
            raise ValueError(f"no {on} features: the encoder returned h only")
        return train, test

    def knn(self, k: int, temperature: float, on: str = "h") -> dict[str, float]:
        if is_multilabel(self.train.labels):
            raise InputError(f"kNN accuracy needs one label per image, and {self.name} is multi-label: evaluate it "
                             "with eval linear or eval transfer")
        train, test = self._features(on)
        return knn_accuracy(train, self.train.labels, test, self.test.labels, self.num_classes, k, temperature)

    def linear(self, seed: int, solver: str = "lbfgs", epochs: int = 90, on: str = "h",
               weight_decays: Sequence[float] = WEIGHT_DECAYS, metric: str = "top1",
               rows: torch.Tensor | None = None, holdout: torch.Tensor | None = None) -> dict[str, Any]:
        """Linear evaluation on ``on`` (h or z); trained on the train ``rows`` only when given; the lbfgs weight
        decay picked on the ``holdout`` rows of those when given."""
        train, test = self._features(on)
        labels = self.train.labels
        if rows is not None:
            train, labels = train[rows], labels[rows]
        if is_multilabel(labels):
            if solver != "lbfgs":
                raise InputError(f"{self.name} is multi-label: its linear evaluation has the lbfgs solver only")
            return multilabel_linear_eval(train, labels, test, self.test.labels, seed, weight_decays, holdout)
        return linear_eval(train, labels, test, self.test.labels, self.num_classes, seed, solver, epochs,
                           weight_decays, metric, holdout)


class Learned(NamedTuple):
    """A checkpoint's model and config (with the evaluation data), the device and precision it runs in."""

    model: SimCLRNet
    config: Config
    device: torch.device
    precision: Precision

    def encoder(self, model: SimCLRNet | None = None, with_z: bool = False) -> Encode:
        return model_encoder(self.model if model is None else model, self.device, self.precision,
                             self.config.train.channels_last, with_z)


def load_learned(checkpoint: str | Path, setup: EvalSetup) -> Learned:
    device = pick_device(setup.device)
    model, config = load_model(checkpoint, device)
    config = eval_config(config, setup)
    return Learned(model, config, device, pick_precision(config.train.precision, device))


def fingerprint(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of every parameter and buffer (batch-norm statistics included), to prove a model stayed frozen."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def check_frozen(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    """Raise if any weight or batch-norm statistic of ``model`` differs from ``before``."""
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    if changed:
        raise RuntimeError(f"the frozen encoder changed during evaluation: {', '.join(changed[:5])}")


def evaluate(checkpoint: str | Path, setup: EvalSetup, protocol: str, k: int = 200,
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
        held = own_validation(learned.config, setup.data, pair.train.paths) if solver == "lbfgs" else None
        result = pair.linear(learned.config.train.seed, solver, epochs, weight_decays=weight_decays,
                             metric=paper_metric(setup.data), holdout=held)
        if solver == "lbfgs":
            result["validation"] = "the dataset's validation split" if held is not None else "a random tenth"
    return {"protocol": protocol, **result, "train_images": len(pair.train.h), "test_images": len(pair.test.h),
            "skipped": len(pair.train.skipped) + len(pair.test.skipped), "streamed": not data.in_memory}


def own_validation(config: Config, spec: str, paths: Sequence[str]) -> torch.Tensor | None:
    """Positions in ``paths`` (of the train split) of the dataset's own validation split, for a named set that has
    one (the paper picks hyper-parameters on it: Aircraft, VOC2007, DTD, Flowers); else None."""
    if not has_validation(spec):
        return None
    own = set(open_source(config, "val").paths)
    held = torch.tensor([path in own for path in paths], dtype=torch.bool)
    return torch.nonzero(held).squeeze(1) if held.any() and not held.all() else None


def compare(checkpoint: str | Path, setup: EvalSetup, k: int = 200, temperature: float = 0.1,
            linear: bool = True) -> list[dict[str, Any]]:
    """kNN (and linear) accuracy of raw pixels, a random-init encoder and the learned h, on the same split."""
    learned = load_learned(checkpoint, setup)
    config = learned.config
    data = EvalData(config, setup)
    torch.manual_seed(config.train.seed)
    random_model = build_model(config).to(learned.device)
    encoders: tuple[tuple[str, Encode], ...] = (("raw pixels", raw_pixels),
                                                ("random-init encoder", learned.encoder(random_model)),
                                                ("learned h", learned.encoder()))
    rows = []
    for name, encode in encoders:
        pair = FeaturePair(encode, data)
        knn = pair.knn(k, temperature)
        lin = pair.linear(config.train.seed) if linear else {"top1": float("nan"), "top5": float("nan")}
        rows.append({"features": name, "dim": int(pair.train.h.shape[1]), "knn_top1": knn["top1"],
                     "knn_top5": knn["top5"], "linear_top1": lin["top1"], "linear_top5": lin["top5"]})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``compare`` rows (accuracies in percent)."""
    head = f"{'features':<22}{'dim':>7}{'kNN top-1':>11}{'kNN top-5':>11}{'linear top-1':>14}{'linear top-5':>14}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['features']:<22}{r['dim']:>7}{100 * r['knn_top1']:>10.2f}%{100 * r['knn_top5']:>10.2f}%"
                     f"{100 * r['linear_top1']:>13.2f}%{100 * r['linear_top5']:>13.2f}%")
    return "\n".join(lines)
