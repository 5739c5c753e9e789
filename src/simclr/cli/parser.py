"""The ``simclr`` command's arguments: one sub-parser per command; ``simclr eval``'s protocol flags are
generated from the protocols' schemas (:mod:`simclr.evaluation.options`). Parsing never imports torch."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, NoReturn

from simclr import __version__
from simclr.cli.common import SPEC_HELP, reading_options
from simclr.cli.index import index_parser
from simclr.cli.search import _duplicates_parser, _search_parser
from simclr.cli.serve import serve_parser
from simclr.evaluation.options import PROTOCOLS

STUDY_NAMES = ("augment-pairs", "color-strength", "head", "loss", "temperature", "batch-size")
"""The keys of simclr.ablation.STUDIES, named here so that parsing arguments never imports torch."""


def _pretrain_parser(sub: Any) -> None:
    p = sub.add_parser("pretrain", help="pretrain an encoder with SimCLR on unlabeled images")
    p.add_argument("--data", help=SPEC_HELP + " (required unless --resume)")
    p.add_argument("--out", required=True, type=Path, help="run folder (config, metrics, checkpoints)")
    p.add_argument("--config", help="YAML config file (see configs/); without one, --recipe auto")
    p.add_argument("--recipe", choices=("auto", "paper"),
                   help="auto (the default without --config): plan a recipe for the data, this device and "
                        "the time budget from timed trial steps; paper: the paper's settings as they are")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.base_lr=0.5 (repeatable)")
    p.add_argument("--arch", help="encoder: resnet18 ... resnet152, resnet50x2, resnet50x4, timm:NAME "
                   "(any timm model) or torchvision:NAME")
    p.add_argument("--epochs", type=float, help="passes over the data (fractions allowed)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--time-budget", type=float, metavar="MINUTES",
                   help="fit the whole schedule (warm-up + cosine) into this many minutes")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--init", help="start from this checkpoint's f and g (a run folder or file, e.g. from "
                                  "simclr import) instead of random weights; its model settings are used "
                                  "(model.init)")
    p.add_argument("--plan-only", action="store_true",
                   help="plan the recipe (--recipe auto), save it as OUT/config.yaml and stop: train it "
                        "later with --config OUT/config.yaml")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _reading_a_dataset(p: argparse.ArgumentParser) -> None:
    """The flags of the commands that read a dataset with a trained network (eval, embed)."""
    p.add_argument("--checkpoint", required=True, help="run folder (uses last.pt) or checkpoint file")
    p.add_argument("--data", required=True, help=SPEC_HELP)
    p.add_argument("--image-size", type=int, default=0, help="evaluate at this side (default: the run's)")
    p.add_argument("--holdout", type=float, default=None,
                   help="for a folder without train/ and test/: the fraction held out as its test split "
                        "(seeded, class-stratified; default: the run's data.holdout)")
    p.add_argument("--eval-crop", type=float, default=None,
                   help="the part of the shorter side the centre crop keeps: 1.0 all (CIFAR, the paper's "
                        "transfer protocol), 0.875 the reference code's ImageNet evaluation (resize 256, "
                        "crop 224); default: the run's data.eval_crop")
    p.add_argument("--in-memory", choices=("auto", "true", "false"), default=None,
                   help="decode the images into memory (true; auto: images up to 64 px) or read them from "
                        "their files batch by batch (false: for more images than memory holds; fine-tuning "
                        "then crops each full file); default: the run's data.in_memory")
    reading_options(p)


def _flag(option: dataclasses.Field[Any]) -> tuple[str, str]:
    """A protocol option's flag and the attribute argparse gives it: ``--NAME``, or ``--no-NAME`` for a bool
    that defaults to True."""
    name = ("no_" if option.default is True else "") + option.name
    return "--" + name.replace("_", "-"), name


def _add_option(p: argparse.ArgumentParser, option: dataclasses.Field[Any]) -> None:
    """The flag of a protocol option: its help, type and choices from the field's metadata, its default the
    field's (a tuple of names as the comma-separated text)."""
    flag, meta, default = _flag(option)[0], option.metadata, option.default
    if isinstance(default, bool):
        p.add_argument(flag, action="store_true", help=meta["help"])
        return
    kwargs: dict[str, Any] = {"default": ",".join(default) if isinstance(default, tuple) else default,
                              "help": meta["help"]}
    kind = meta["type"] or (type(default) if isinstance(default, (int, float)) else None)
    if kind is not None:
        kwargs["type"] = kind
    if meta["choices"]:
        kwargs["choices"] = meta["choices"]
    p.add_argument(flag, **kwargs)


def protocol_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``simclr eval PROTOCOL`` given by its flags, by the names of ``simclr.evaluate``."""
    options = {}
    for option in dataclasses.fields(PROTOCOLS[args.protocol]):
        value = getattr(args, _flag(option)[1])
        options[option.name] = not value if option.default is True else value  # --no-NAME: NAME=False
    return options


def _eval_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate a pretrained encoder on a labelled dataset")
    ev = p.add_subparsers(dest="protocol", required=True)
    for schema in PROTOCOLS.values():
        q = ev.add_parser(schema.name, help=schema.describe())
        _reading_a_dataset(q)
        q.add_argument("--json", action="store_true", help="print one JSON object")
        for option in dataclasses.fields(schema):
            _add_option(q, option)


def _export_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="write the trained network for use elsewhere (a safetensors folder "
                                      "with a model card, ONNX, torchvision or timm weights)")
    p.add_argument("--checkpoint", required=True,
                   help="run folder (uses last.pt), checkpoint file or exported folder")
    p.add_argument("--out", required=True, type=Path,
                   help="the folder (safetensors) or file (the other formats) to write")
    p.add_argument("--format", default="safetensors", choices=("safetensors", "onnx", "torchvision", "timm",
                                                               "simclr"),
                   help="safetensors: a folder of model.safetensors, config.json and a README.md model "
                        "card, for simclr.load_encoder and every command (default); onnx: f as an ONNX "
                        "graph, batch norms folded; torchvision / timm: f's state dict for that library's "
                        "model (a "
                        ".safetensors --out writes safetensors); simclr: a slim simclr checkpoint")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _import_parser(sub: Any) -> None:
    p = sub.add_parser("import", help="a ResNet's weights in torchvision's layout (e.g. the paper's released "
                                      "SimCLR, torchvision's supervised) as a checkpoint for every command")
    p.add_argument("weights", help=".pth/.pt/.safetensors file: a torchvision-style ResNet state dict "
                                   "(read without running code; fc and other parts left out), or "
                                   "torchvision:NAME (e.g. torchvision:resnet50, torchvision's supervised "
                                   "ImageNet weights, downloaded when missing)")
    p.add_argument("--out", required=True, type=Path, help="the checkpoint to write")
    p.add_argument("--image-size", type=int, default=0,
                   help="the side it is evaluated at by default (default: 32 with the CIFAR stem, else 224)")
    p.add_argument("--input-norm", choices=("none", "imagenet"), default=None,
                   help="none: pixels in [0, 1] as they are (SimCLR's weights; the default for files); "
                        "imagenet: standardised with ImageNet's mean and deviation first (torchvision's "
                        "supervised weights; the default for torchvision:NAME)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _embed_parser(sub: Any) -> None:
    p = sub.add_parser("embed", help="write h (optionally z) of a dataset to a collection folder or a .npz")
    _reading_a_dataset(p)
    p.add_argument("--split", default="all", choices=("train", "test", "all"),
                   help="which images: all (default: every image of the dataset), or its train or test split")
    p.add_argument("--out", required=True, type=Path,
                   help="a collection folder (memory-mapped, for millions of images; simclr index build and "
                        "simclr serve take it), or a .npz file (one file numpy reads: features, labels, "
                        "paths)")
    p.add_argument("--z", action="store_true", help="also store z = g(h)")
    p.add_argument("--update", action="store_true",
                   help="bring an existing --out up to date: keep its rows of images unchanged since (same "
                        "path and content, same network and settings), embed only new and changed images, "
                        "drop those no longer there")


def _ablate_parser(sub: Any) -> None:
    p = sub.add_parser("ablate",
                       help="run one of the paper's ablation studies at a small scale, with a report")
    p.add_argument("study", choices=STUDY_NAMES, help="the study (paper figure or table)")
    p.add_argument("--data", required=True, help=SPEC_HELP + " (labelled train and test splits)")
    p.add_argument("--out", required=True, type=Path,
                   help="study folder (one run per cell; rerun to continue)")
    p.add_argument("--config", help="YAML config every cell starts from (e.g. configs/cifar10_cpu.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="pretraining minutes per cell (default 2)")
    budget.add_argument("--epochs", type=float, help="pretraining epochs per cell (fractions allowed), "
                        "instead of minutes: the same work for every cell whatever else runs on the machine")
    p.add_argument("--cells", default="", help="comma-separated cell keys to run (default: all)")
    p.add_argument("--seeds", type=int, default=1,
                   help="runs per cell (seeds + 0, 1, ...): mean and std reported")
    p.add_argument("--eval-size", type=int, default=0,
                   help="image side of the evaluation (default: the view side)")
    p.add_argument("--report-dir", type=Path, help="where <study>.md and <study>.png go (default: --out)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", action="store_true", help="print one JSON object (rows and checks)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-cell lines")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line (the usage is one --help away), exit code 2 as ever."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``simclr`` command's parser."""
    parser = _Parser(prog="simclr", description="SimCLR: contrastive visual representation "
                     "learning (Chen et al., ICML 2020).")
    parser.add_argument("--version", action="version", version=f"simclr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _pretrain_parser(sub)
    _eval_parser(sub)
    _embed_parser(sub)
    _export_parser(sub)
    _import_parser(sub)
    _search_parser(sub)
    _duplicates_parser(sub)
    index_parser(sub)
    serve_parser(sub)
    _ablate_parser(sub)
    return parser
