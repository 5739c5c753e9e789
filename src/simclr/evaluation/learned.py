"""A checkpoint's network loaded for evaluation, and the proof that evaluation left it untouched."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch

from simclr.build import build_model
from simclr.config import Config
from simclr.evaluation.features import Encode, model_encoder
from simclr.evaluation.setup import EvalSetup, eval_config
from simclr.models.simclr import SimCLRNet
from simclr.runtime.checkpoint import load_checkpoint, load_weights, saved_config
from simclr.runtime.device import Precision, pick_device, pick_precision


def load_model(checkpoint: str | Path, device: torch.device, *,
               channels_last: bool | None = None) -> tuple[SimCLRNet, Config]:
    """Rebuild the network saved in a checkpoint (run folder or file) and load its weights, in the
    channels-last layout where the run used it (``train.channels_last``, or ``channels_last``): its inputs are
    then channels-last too, and weights left in the default layout would be reordered at every convolution
    (1.5-2x slower on a CPU). ``checkpoint`` may also be an exported folder (``simclr export --format
    safetensors``): its config.json rebuilds the network."""
    model, config = model_from_state(load_checkpoint(checkpoint), checkpoint)
    model = model.to(device)
    if config.train.channels_last if channels_last is None else channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, config


def model_from_state(state: dict[str, Any], checkpoint: str | Path) -> tuple[SimCLRNet, Config]:
    """The network of a loaded checkpoint ``state`` (:func:`~simclr.runtime.checkpoint.load_checkpoint`)
    rebuilt from its config, its weights loaded, on the CPU."""
    config = saved_config(state, checkpoint)
    model = build_model(config)
    load_weights(model, state["model"], f"checkpoint {checkpoint}")
    return model, config


def fresh_encoder(config: Config) -> torch.nn.Module:
    """A randomly initialised f of the run's architecture in the layout :func:`load_model` gives a loaded one
    (``train.channels_last``): the networks trained from scratch beside fine-tuning train as fast as it does
    (1.22-1.26x faster than in the default layout on a CPU; ``benchmarks/inference.py``)."""
    encoder = build_model(config).encoder
    return encoder.to(memory_format=torch.channels_last) if config.train.channels_last else encoder


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
    """Copies of every parameter and buffer (batch-norm statistics included), to prove a model stayed
    frozen."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def check_frozen(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    """Raise if any weight or batch-norm statistic of ``model`` differs from ``before``."""
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    if changed:
        raise RuntimeError(f"the frozen encoder changed during evaluation: {', '.join(changed[:5])}")
