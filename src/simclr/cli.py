"""The ``simclr`` command: parses arguments, builds a config, calls one library function.

Bad input (missing files, corrupt data, unknown config keys, out-of-range values) ends with one line on
stderr and exit code 2; an interrupted pretraining run saves its checkpoint and exits with 130 (Ctrl-C) or 143
(SIGTERM).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from simclr import __version__
from simclr.errors import InputError
from simclr.files import check_output, json_text
from simclr.interrupts import Terminated, terminate_as_interrupt

SPEC_HELP = ("cifar10, cifar100, digits, a transfer dataset (food101, sun397, cars, aircraft, dtd, pets, caltech101, "
             "flowers102, voc2007, stl10, stl10-unlabeled), an image folder, or a .tar/.tar.gz/.zip archive of one")

IMAGES_HELP = ("where the collection's folder or archive lies now, if it has moved since it was embedded (the "
               "sheet draws its images)")


def _pretrain_parser(sub: Any) -> None:
    p = sub.add_parser("pretrain", help="pretrain an encoder with SimCLR on unlabeled images")
    p.add_argument("--data", help=SPEC_HELP + " (required unless --resume)")
    p.add_argument("--out", required=True, type=Path, help="run folder (config, metrics, checkpoints)")
    p.add_argument("--config", help="YAML config file (see configs/)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.base_lr=0.5 (repeatable)")
    p.add_argument("--arch", help="encoder: resnet18 ... resnet152, resnet50x2, resnet50x4")
    p.add_argument("--epochs", type=float, help="passes over the data (fractions allowed)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--time-budget", type=float, metavar="MINUTES",
                   help="fit the whole schedule (warm-up + cosine) into this many minutes")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--init", help="start from this checkpoint's f and g (a run folder or file, e.g. from simclr "
                                  "import) instead of random weights; its model settings are used (model.init)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _reading_options(p: argparse.ArgumentParser) -> None:
    """Where datasets are found, and how images are read and run through a trained network."""
    p.add_argument("--data-root", default="", help="folder holding the named datasets (cifar-10-batches-py, food-101, ...)")
    p.add_argument("--cache-dir", default="", help="where archives are extracted")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _common_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="run folder (uses last.pt) or checkpoint file")
    p.add_argument("--data", required=True, help=SPEC_HELP)
    p.add_argument("--image-size", type=int, default=0, help="evaluate at this side (default: the run's)")
    p.add_argument("--holdout", type=float, default=None,
                   help="for a folder without train/ and test/: the fraction held out as its test split (seeded, "
                        "class-stratified; default: the run's data.holdout)")
    p.add_argument("--eval-crop", type=float, default=None,
                   help="the part of the shorter side the centre crop keeps: 1.0 all (CIFAR, the paper's transfer "
                        "protocol), 0.875 the reference code's ImageNet evaluation (resize 256, crop 224); "
                        "default: the run's data.eval_crop")
    p.add_argument("--in-memory", choices=("auto", "true", "false"), default=None,
                   help="decode the images into memory (true; auto: images up to 64 px) or read them from their "
                        "files batch by batch (false: for more images than memory holds; fine-tuning then crops each "
                        "full file); default: the run's data.in_memory")
    _reading_options(p)


def _eval_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="evaluate a pretrained encoder on a labelled dataset")
    ev = p.add_subparsers(dest="protocol", required=True)
    for name, text in (("knn", "weighted kNN on frozen h (k=200, T=0.1, cosine)"),
                       ("linear", "linear classifier on frozen h"),
                       ("compare", "kNN and linear: raw pixels vs random-init encoder vs learned h"),
                       ("finetune", "fine-tune f on a class-balanced fraction of the labels (vs from scratch)"),
                       ("transfer", "linear evaluation and fine-tuning on another labelled dataset"),
                       ("probe", "MLPs on frozen h and z predict the transformation of the input (Table 3)")):
        q = ev.add_parser(name, help=text)
        _common_eval(q)
        q.add_argument("--json", action="store_true", help="print one JSON object")
        if name == "compare":
            q.add_argument("--no-linear", action="store_true", help="kNN only (the linear fits take longer)")
        if name == "linear":
            q.add_argument("--solver", choices=("lbfgs", "sgd", "augmented"), default="lbfgs",
                           help="lbfgs: full-batch fit on cached h, weight decay chosen on held-out data (default); "
                                "sgd: the paper's SGD + Nesterov with cosine decay on cached h; augmented: the "
                                "reference code's protocol, the same SGD on h of randomly cropped and flipped "
                                "images, the encoder run every epoch (for a GPU)")
            q.add_argument("--epochs", type=int, default=None,
                           help="epochs of the sgd and augmented solvers (default 90; lbfgs fits to convergence)")
        if name in ("linear", "transfer"):
            q.add_argument("--weight-decays", default="default",
                           help="the lbfgs fit's weight-decay grid, picked on a held-out tenth of the train split: "
                                "default (1e-6,1e-4,1e-2), paper (45 log-spaced values from 1e-6 to 1e5, the "
                                "paper's for transfer), or comma-separated values")
        if name in ("knn", "compare"):
            q.add_argument("--k", type=int, default=200, help="neighbours that vote (default 200)")
            q.add_argument("--temperature", type=float, default=0.1,
                           help="each vote weighs exp(cosine similarity / temperature) (default 0.1)")
        if name in ("finetune", "transfer"):
            q.add_argument("--label-fraction", type=float, default=0.1 if name == "finetune" else 1.0,
                           help="fraction of the train labels, class-balanced (paper: 0.01 and 0.1)")
            q.add_argument("--subset-file", type=Path, help="the labelled subset: reused if the file exists "
                           "(saved by an earlier run, or a text file naming one train image per line, like the "
                           "paper's ImageNet 1percent.txt), else the drawn subset is saved there")
            if name == "finetune":
                q.add_argument("--epochs", type=int, default=None,
                               help="default: the paper's, 60 at 1%% of the labels or fewer, else 30")
            else:
                q.add_argument("--epochs", type=int, default=30)
                q.add_argument("--steps", type=int, default=0,
                               help="fine-tuning updates instead of --epochs (the paper's: 20000 at batch 256); "
                                    "training from scratch runs twice as long either way")
                q.add_argument("--finetune-grid", default="none",
                               help="search fine-tuning's and training from scratch's learning rate and weight decay "
                                    "on held-out training images (the dataset's own validation split where it has "
                                    "one, else a tenth of each class), by the dataset's metric, then train "
                                    "again on all of them: none (--lr, no weight decay), paper (Appendix B.8: 7 x 8 "
                                    "cells each, for a GPU) or LRS/WDS, e.g. 0.01,0.1/0,1e-5")
            q.add_argument("--lr", type=float, default=None if name == "finetune" else 0.1,
                           help="peak learning rate (default: the paper's 0.05 x batch/256, Appendix B.5)"
                           if name == "finetune" else "peak learning rate without --finetune-grid (default 0.1)")
            q.add_argument("--seed", type=int, default=0)
            if name == "finetune":
                q.add_argument("--no-baseline", action="store_true", help="skip the supervised-from-scratch run")
        if name == "probe":
            q.add_argument("--epochs", type=int, default=20, help="MLP epochs")
            q.add_argument("--transforms", default="rotation,color_vs_gray,noise,sobel",
                           help="comma-separated transformations to predict, some of: rotation, color_vs_gray, "
                                "noise, sobel (default: all four)")


def _export_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="write the trained network for use elsewhere (torchvision ResNet weights)")
    p.add_argument("--checkpoint", required=True, help="run folder (uses last.pt) or checkpoint file")
    p.add_argument("--out", required=True, type=Path, help="file to write")
    p.add_argument("--format", default="torchvision", choices=("torchvision", "simclr"),
                   help="torchvision: f's weights under torchvision's ResNet names (default); simclr: config and "
                        "weights of f and g without the training state, for every simclr command")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _import_parser(sub: Any) -> None:
    p = sub.add_parser("import", help="a ResNet's weights in torchvision's layout (e.g. the paper's released "
                                      "SimCLR, torchvision's supervised) as a checkpoint for every command")
    p.add_argument("weights", help=".pth/.pt file: a torchvision-style ResNet state dict (read without running code; "
                                    "fc and other parts left out), or torchvision:NAME (e.g. torchvision:resnet50, "
                                    "torchvision's supervised ImageNet weights, downloaded when missing)")
    p.add_argument("--out", required=True, type=Path, help="the checkpoint to write")
    p.add_argument("--image-size", type=int, default=0,
                   help="the side it is evaluated at by default (default: 32 with the CIFAR stem, else 224)")
    p.add_argument("--input-norm", choices=("none", "imagenet"), default=None,
                   help="none: pixels in [0, 1] as they are (SimCLR's weights; the default for files); imagenet: "
                        "standardised with ImageNet's mean and deviation first (torchvision's supervised weights; "
                        "the default for torchvision:NAME)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _embed_parser(sub: Any) -> None:
    p = sub.add_parser("embed", help="write h (optionally z) of a dataset to .npz")
    _common_eval(p)
    p.add_argument("--split", default="all", choices=("train", "test", "all"),
                   help="which images: all (default: every image of the dataset), or its train or test split")
    p.add_argument("--out", required=True, type=Path, help="output .npz file")
    p.add_argument("--z", action="store_true", help="also store z = g(h)")
    p.add_argument("--update", action="store_true",
                   help="bring an existing --out up to date: keep its rows of images unchanged since (same path "
                        "and content, same network and settings), embed only new and changed images, drop those "
                        "no longer there")


def _search_parser(sub: Any) -> None:
    p = sub.add_parser("search", help="find the most similar images of an embedded collection (cosine similarity)")
    p.add_argument("--index", required=True, type=Path, help="the collection: a .npz file from simclr embed")
    p.add_argument("--query", required=True, nargs="+",
                   help="image file(s), or one folder, archive or dataset, or one .npz file from simclr embed "
                        "(the index file itself: every image against the others)")
    p.add_argument("--k", type=int, default=5, help="results per query (default 5)")
    p.add_argument("--z", action="store_true", help="compare z = g(h) instead of h (both files need z)")
    p.add_argument("--checkpoint", help="embed the queries with this run (default: the one named in the index)")
    p.add_argument("--out", type=Path, help="write every result to this CSV file")
    p.add_argument("--sheet", type=Path, help="save a picture (PNG, JPEG or WebP by the suffix): each query (up to 8) beside its results")
    p.add_argument("--images", help=IMAGES_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _reading_options(p)


DUPLICATES_THRESHOLD, DUPLICATES_Z_THRESHOLD = 0.99, 0.95
"""simclr.retrieval.duplicates.DEFAULT_THRESHOLD and DEFAULT_Z_THRESHOLD, named here so that parsing arguments never
imports torch."""

STUDY_NAMES = ("augment-pairs", "color-strength", "head", "loss", "temperature", "batch-size")
"""The keys of simclr.ablation.STUDIES, named here so that parsing arguments never imports torch."""


def _duplicates_parser(sub: Any) -> None:
    p = sub.add_parser("duplicates", help="group the near-duplicate images of an embedded collection")
    p.add_argument("--index", required=True, type=Path, help="the collection: a .npz file from simclr embed")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"least cosine similarity of near-duplicates (default {DUPLICATES_THRESHOLD} on h, "
                        f"{DUPLICATES_Z_THRESHOLD} with --z)")
    p.add_argument("--k", type=int, default=10, help="nearest neighbours of each image considered (default 10)")
    p.add_argument("--z", action="store_true", help="compare z = g(h) instead of h (the file needs z)")
    p.add_argument("--out", type=Path, help="write every grouped image to this CSV file (group, rank, keep, path, "
                                            "label, score)")
    p.add_argument("--sheet", type=Path, help="save a picture (PNG, JPEG or WebP by the suffix): the largest groups "
                                              "(up to 8), the image kept beside the others")
    p.add_argument("--images", help=IMAGES_HELP)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _ablate_parser(sub: Any) -> None:
    p = sub.add_parser("ablate", help="run one of the paper's ablation studies at a small scale, with a report")
    p.add_argument("study", choices=STUDY_NAMES, help="the study (paper figure or table)")
    p.add_argument("--data", required=True, help=SPEC_HELP + " (labelled train and test splits)")
    p.add_argument("--out", required=True, type=Path, help="study folder (one run per cell; rerun to continue)")
    p.add_argument("--config", help="YAML config every cell starts from (e.g. configs/cifar10_cpu.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="pretraining minutes per cell (default 2)")
    budget.add_argument("--epochs", type=float, help="pretraining epochs per cell (fractions allowed), instead of "
                        "minutes: the same work for every cell whatever else runs on the machine")
    p.add_argument("--cells", default="", help="comma-separated cell keys to run (default: all)")
    p.add_argument("--seeds", type=int, default=1, help="runs per cell (seeds + 0, 1, ...): mean and std reported")
    p.add_argument("--eval-size", type=int, default=0, help="image side of the evaluation (default: the view side)")
    p.add_argument("--report-dir", type=Path, help="where <study>.md and <study>.png go (default: --out)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", action="store_true", help="print one JSON object (rows and checks)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-cell lines")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line (the usage is one --help away), exit code 2 as ever."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
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
    _ablate_parser(sub)
    return parser


def _report(args: argparse.Namespace, obj: Any, text: str) -> None:
    """One JSON object with --json, else the human-readable text."""
    print(json_text(obj) if args.json else text)


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise InputError(f"{name} must be > 0, got {value}")


def run_pretrain(args: argparse.Namespace) -> int:
    from simclr.config_io import load_config
    from simclr.training.loop import pretrain

    for name in ("epochs", "batch_size", "time_budget"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    train = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size),
                               ("time_budget", args.time_budget), ("device", args.device),
                               ("seed", args.seed)) if v is not None}
    if not args.data and not args.resume:
        raise InputError("pretrain needs --data (only --resume continues without it)")
    extra: dict[str, Any] = {"data": {"spec": args.data}, "train": train} if args.data else {"train": train}
    if args.arch or args.init:
        extra["model"] = {k: v for k, v in (("arch", args.arch), ("init", args.init)) if v}
    config = load_config(args.config, args.set, extra)
    if args.resume and (args.config or args.set or args.arch or args.init or train.keys() - {"device"}):
        print("simclr: note: --resume continues with the run's saved config; --config, --set and other "
              "options are ignored", file=sys.stderr)
    result = pretrain(config, args.out, resume=args.resume, progress=not args.quiet)
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun, rank 0 reports
    loss = "" if math.isnan(result.loss) else f", last loss {result.loss:.4f}"  # nan: nothing left to run
    print(f"done: {result.step}/{result.total_steps} steps, {round(result.passes, 2):g} epochs{loss}; run folder "
          f"{result.run_dir}")
    return 0


def _setup(args: argparse.Namespace) -> Any:
    from simclr.api import eval_setup

    _positive("--batch-size", args.batch_size)
    image_size = getattr(args, "image_size", 0)  # search has no --image-size (the index's checkpoint decides)
    if image_size and image_size < 8:
        raise InputError(f"--image-size must be >= 8, got {image_size}")
    return eval_setup(getattr(args, "data", ""), image_size, args.device, args.batch_size, args.workers, not args.quiet,
                      args.data_root, args.cache_dir, getattr(args, "holdout", None),
                      getattr(args, "eval_crop", None), getattr(args, "in_memory", None))


def run_eval(args: argparse.Namespace) -> int:
    from simclr.api import EVAL_OPTIONS, evaluate_setup

    setup = _setup(args)  # the flags' own checks, with the flags' names
    negated = {"linear": "no_linear", "baseline": "no_baseline"}  # simclr.evaluate's option -> its --no-* flag
    options = {name: not getattr(args, negated[name]) if name in negated else getattr(args, name)
               for name in EVAL_OPTIONS[args.protocol]}
    result = evaluate_setup(args.checkpoint, setup, args.protocol, **options)
    _report(args, result, _eval_text(args.protocol, result, args.data))
    return 0


def _eval_text(protocol: str, result: dict[str, Any], data: str) -> str:
    """What ``simclr eval`` prints without --json."""
    from simclr.evaluation.probe import format_probe
    from simclr.evaluation.run import format_table

    if protocol == "compare":
        return format_table(result["rows"])
    if protocol == "probe":
        return format_probe(result["rows"])
    if protocol == "finetune":
        asked, share = result["label_fraction"], result["labelled_share"]
        text = (f"finetune ({result['labelled_images']} labelled images, {100 * share:.3g}% of the train split"
                + (f"; {100 * asked:g}% asked, at least one per class" if share > 1.5 * asked else "")
                + f", {result['epochs']} epochs): "
                f"top-1 {100 * result['top1']:.2f}%  top-5 {100 * result['top5']:.2f}%")
        if "baseline_top1" in result:
            text += f"; from scratch: top-1 {100 * result['baseline_top1']:.2f}%"
        return text
    if protocol == "transfer":
        metric = result["paper_metric"]
        what = {"mean_class_top1": "mean per-class top-1 (the paper's metric for it)",
                "map11": "11-point mAP (the paper's metric for it)"}.get(metric, "top-1")
        text = (f"transfer to {data}, {what}: linear {100 * result[f'linear_{metric}']:.2f}%, fine-tuned "
                f"{100 * result[f'finetune_{metric}']:.2f}%, from scratch {100 * result[f'scratch_{metric}']:.2f}%")
        if "finetune_grid" in result:
            text += "; picked on held-out images: " + ", ".join(
                f"{title} lr {result[f'{name}_lr']:g} weight decay {result[f'{name}_weight_decay']:g}"
                for name, title in (("finetune", "fine-tuning"), ("scratch", "from scratch")))
        return text
    scores = f"11-point mAP {100 * result['map11']:.2f}%" if "map11" in result else \
        f"top-1 {100 * result['top1']:.2f}%  top-5 {100 * result['top5']:.2f}%"
    return f"{protocol}: {scores}  ({result['train_images']} train / {result['test_images']} test images)"


def run_export(args: argparse.Namespace) -> int:
    from simclr.export import export

    info = export(args.checkpoint, args.out, args.format)
    _report(args, info, f"wrote {info['arch']} ({info['features']}-dimensional h, {info['tensors']} tensors) to "
                        f"{info['out']} in the {info['format']} format; load it with:\n  {info['load']}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from simclr.importer import import_weights

    if args.image_size and args.image_size < 8:
        raise InputError(f"--image-size must be >= 8, got {args.image_size}")
    info = import_weights(args.weights, args.out, image_size=args.image_size, input_norm=args.input_norm)
    stem = "CIFAR stem" if info["cifar_stem"] else "ImageNet stem"
    stem += ", ImageNet input standardisation" if info["input_norm"] == "imagenet" else ""
    width = f" width {info['width']:g}," if info["width"] != 1 else ""
    _report(args, info, f"imported {info['arch']} ({stem},{width} {info['features']}-dimensional h, "
                        f"{info['tensors']} tensors; {info['ignored']} others left out) to {info['out']}; its "
                        "projection head is untrained, so use h, e.g.:\n"
                        f"  simclr eval linear --checkpoint {info['out']} --data DATA")
    return 0


def run_embed(args: argparse.Namespace) -> int:
    from simclr.retrieval.embed import embed

    info = embed(args.checkpoint, _setup(args), args.split, args.out, with_z=args.z, update=args.update)
    skipped = f" ({info['skipped']} unreadable images skipped)" if info["skipped"] else ""
    if info["fresh"]:
        print(f"note: nothing of {args.out} could be kept, {info['fresh']}: every image embedded again",
              file=sys.stderr)
    if args.update and info["updated"] and not info["fresh"]:
        print(f"updated {args.out}: {info['images']} embeddings of dim {info['dim']}; {info['reused']} unchanged "
              f"kept, {info['embedded']} new or changed embedded, {info['dropped']} gone or changed dropped"
              + skipped)
    else:
        print(f"wrote {info['images']} embeddings of dim {info['dim']} to {args.out}" + skipped)
    return 0


def _check_result_files(args: argparse.Namespace) -> None:
    """--out and --sheet of search and duplicates, refused before the work rather than after it."""
    from simclr.retrieval.sheet import sheet_format

    for flag, path in (("--out", args.out), ("--sheet", args.sheet)):
        if path:
            check_output(path, flag, (args.index,))
    if args.out and args.sheet and Path(args.out).absolute() == Path(args.sheet).absolute():
        raise InputError(f"--out and --sheet both name {args.out}: name two files")
    if args.sheet:
        sheet_format(args.sheet, "--sheet")
    if args.images and not args.sheet:
        raise InputError("--images says where the collection's images are now, for --sheet: give --sheet too")


def run_search(args: argparse.Namespace) -> int:
    from simclr.retrieval.index import load_index
    from simclr.tables import write_csv

    _check_result_files(args)
    setup = _setup(args)
    if args.k < 1:
        raise InputError(f"--k must be >= 1, got {args.k}")
    index = load_index(args.index, choose_checkpoint="give --checkpoint")
    found = index.search(args.query, args.k, z=args.z, device=args.device, checkpoint=args.checkpoint,
                         setup=setup)
    if found.skipped:
        (name, why), more = found.skipped[0], len(found.skipped) - 1
        print(f"note: {len(found.skipped)} query image(s) could not be read and were left out: {name} "
              f"({why})" + (f" and {more} more" if more else ""), file=sys.stderr)
    if args.sheet:  # first: a collection no longer there fails before any file is written
        index.sheet(args.query, found, args.sheet, images=args.images, most=8)
    if args.out:
        write_csv(found.csv_rows(), args.out)
    if args.json:
        print(json_text(found.summary(str(args.index))))
        return 0
    queries = found.names
    shown = queries if len(queries) <= 20 else queries[:3]
    for i, q in enumerate(shown):
        print(f"{q}:")
        for hit in found.results(i):
            print(f"  {hit['rank']:>3}  {hit['score']:.4f}  {hit['path']}")
    if len(shown) < len(queries):
        print(f"... {len(queries) - len(shown)} more queries"
              + ("" if args.out else " (--out FILE.csv keeps all)"))
    if found.metrics:
        m, k = found.metrics, found.metrics["k"]
        if not m["queries"]:
            print(f"no query is of a class the index has ({m['queries_of_other_classes']} labelled queries "
                  "of other classes): nothing to score")
        else:
            print(f"{m['queries']} labelled queries: precision@1 {m['precision_at_1']:.4f}, precision@{k} "
                  f"{m[f'precision_at_{k}']:.4f}, recall@{k} {m[f'recall_at_{k}']:.4f}"
                  + (f" ({m['queries_of_other_classes']} queries of classes the index does not have not "
                     "scored)" if m.get("queries_of_other_classes") else ""))
    for path, what in ((args.out, "results"), (args.sheet, "contact sheet")):
        if path:
            print(f"{what}: {path}")
    return 0


def run_duplicates(args: argparse.Namespace) -> int:
    from simclr.retrieval.index import load_index
    from simclr.tables import write_csv

    _check_result_files(args)
    index = load_index(args.index)
    groups = index.duplicates(args.threshold, k=args.k, z=args.z, device=args.device)
    if args.sheet:  # first: a collection no longer there fails before any file is written
        index.duplicates_sheet(groups, args.sheet, images=args.images)
    if args.out:
        write_csv(groups.rows(), args.out)
    summary = groups.summary(str(args.index))
    if args.json:
        print(json_text(summary))
        return 0
    for g, group in enumerate(groups[:10]):
        print(f"group {g + 1} ({len(group)} images):")
        for hit in group:
            print(f"  {'keep' if hit.rank == 1 else f'{hit.score:.4f}':>6}  {hit.path}")
    if len(groups) > 10:
        print(f"... {len(groups) - 10} more groups" + ("" if args.out else " (--out FILE.csv keeps all)"))
    spread = summary["nearest_similarity"]
    print(f"{len(groups)} groups of near-duplicates among {len(index)} images "
          f"(cosine >= {groups.threshold:.10g}): {summary['duplicates']} images could go. "
          + (f"Each image's similarity to its nearest other: median {spread['q50']:.4f}, "
             f"90th percentile {spread['q90']:.4f}, 99th {spread['q99']:.4f}"
             if spread else "(one image: nothing to compare it with)"))
    for path, what in ((args.out, "groups"), (args.sheet, "contact sheet")):
        if path:
            print(f"{what}: {path}")
    return 0


def run_ablate(args: argparse.Namespace) -> int:
    from simclr.ablation import STUDIES, AblateOptions, run_study
    from simclr.ablation.report import write_csv, write_report

    _positive("--minutes", args.minutes)
    _positive("--epochs", args.epochs)
    _positive("--seeds", args.seeds)
    if args.eval_size and args.eval_size < 8:
        raise InputError(f"--eval-size must be >= 8, got {args.eval_size}")
    options = AblateOptions(args.data, args.out, args.config, tuple(args.set),
                            minutes=args.minutes if args.minutes is not None else 2.0, epochs=args.epochs or 0,
                            cells=tuple(c for c in args.cells.split(",") if c), seeds=args.seeds, eval_size=args.eval_size,
                            device=args.device, progress=not args.quiet)
    study = STUDIES[args.study]
    budget = f"{options.epochs} epochs" if options.epochs else f"{options.minutes:g} minutes"
    context = (f"Made with `simclr ablate {study.name} --data {args.data}"
               + (f" --config {args.config}" if args.config else "")
               + "".join(f" --set {o}" for o in args.set) + f"` ({budget} per cell).")
    report_dir = args.report_dir or args.out

    def report(result: Any) -> tuple[Path, Path]:
        write_csv(result.rows, args.out / "results.csv")
        return write_report(result, report_dir, context)

    result = run_study(study, options, on_cell=report)
    md, png = report(result)
    if args.json:
        print(json_text({"study": study.name, "rows": result.rows, "missing": result.missing,
                          "checks": [{**c._asdict(), "verdict": c.verdict} for c in result.checks],
                          "report": str(md)}))
    else:
        for c in result.checks:
            print(f"{c.verdict}: {c.claim} ({c.detail})" + (f"; {c.caveat}" if c.caveat else ""))
        print(f"{len(result.rows)}/{len(study.cells)} cells done; report {md}, plot {png}, table "
              f"{args.out / 'results.csv'}")
    return 0


def _how_to_continue(args: argparse.Namespace) -> str:
    """What an interrupted command leaves to continue from: pretrain's last.pt (none when the interruption came
    before training began), ablate's finished cells."""
    if args.command == "ablate":
        return " (finished cells are kept, the one under way saved last.pt once training: rerun the same command)"
    if args.command != "pretrain":
        return ""
    if (Path(args.out) / "last.pt").is_file():
        return f" (continue from last.pt with: simclr pretrain --out {args.out} --resume)"
    return " (before training began: nothing saved; run the command again)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"pretrain": run_pretrain, "eval": run_eval, "embed": run_embed, "export": run_export,
                "import": run_import, "search": run_search, "duplicates": run_duplicates,
                "ablate": run_ablate}
    try:
        with terminate_as_interrupt():
            return handlers[args.command](args)
    except InputError as exc:
        print(f"simclr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"simclr: {how}{_how_to_continue(args)}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, Terminated) else 130
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        print(f"simclr: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except RuntimeError as exc:
        if type(exc).__name__ != "OutOfMemoryError":  # torch.OutOfMemoryError, without importing torch here
            raise
        print(f"simclr: error: {_out_of_memory(args, str(exc))}", file=sys.stderr)
        return 1


def _out_of_memory(args: argparse.Namespace, message: str) -> str:
    """One line for a device that ran out of memory: what torch said (its first two sentences) and what to lower."""
    said = ". ".join(message.split(". ")[:2]).rstrip(".")
    if args.command in ("pretrain", "ablate"):
        advice = "lower --batch-size, or set train.grad_cache_chunk (gradient caching: the same gradients, a chunk of " \
                 "views in memory at a time)"
    else:
        advice = "lower --batch-size"
    return f"{said}: {advice}"


if __name__ == "__main__":
    raise SystemExit(main())
