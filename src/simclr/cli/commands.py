"""The ``simclr`` commands but search and duplicates: each checks its flags (with the flags' names), calls the
library and prints its result. torch is imported with the library, when a command runs: never to parse
arguments."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from simclr.cli import render
from simclr.cli.common import positive, report, setup
from simclr.cli.parser import protocol_options
from simclr.errors import InputError


def run_pretrain(args: argparse.Namespace) -> int:
    from simclr.config_io import load_config
    from simclr.training.loop import pretrain

    for name in ("epochs", "batch_size", "time_budget"):
        positive("--" + name.replace("_", "-"), getattr(args, name))
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
    print(render.pretrain_text(result))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from simclr.api import evaluate_setup

    checked = setup(args)  # the flags' own checks, with the flags' names
    result = evaluate_setup(args.checkpoint, checked, args.protocol, **protocol_options(args))
    report(args, result, render.eval_text(args.protocol, result, args.data))
    return 0


def run_embed(args: argparse.Namespace) -> int:
    from simclr.retrieval.embed import embed

    info = embed(args.checkpoint, setup(args), args.split, args.out, with_z=args.z, update=args.update)
    if info["fresh"]:
        print(f"note: nothing of {args.out} could be kept, {info['fresh']}: every image embedded again",
              file=sys.stderr)
    print(render.embed_text(info, args.out, args.update))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from simclr.export import export

    info = export(args.checkpoint, args.out, args.format)
    report(args, info, render.export_text(info))
    return 0


def run_import(args: argparse.Namespace) -> int:
    from simclr.importer import import_weights

    if args.image_size and args.image_size < 8:
        raise InputError(f"--image-size must be >= 8, got {args.image_size}")
    info = import_weights(args.weights, args.out, image_size=args.image_size, input_norm=args.input_norm)
    report(args, info, render.import_text(info))
    return 0


def run_ablate(args: argparse.Namespace) -> int:
    from simclr.ablation import STUDIES, AblateOptions, run_study
    from simclr.ablation.report import write_csv, write_report

    positive("--minutes", args.minutes)
    positive("--epochs", args.epochs)
    positive("--seeds", args.seeds)
    if args.eval_size and args.eval_size < 8:
        raise InputError(f"--eval-size must be >= 8, got {args.eval_size}")
    options = AblateOptions(args.data, args.out, args.config, tuple(args.set),
                            minutes=args.minutes if args.minutes is not None else 2.0,
                            epochs=args.epochs or 0, cells=tuple(c for c in args.cells.split(",") if c),
                            seeds=args.seeds, eval_size=args.eval_size, device=args.device,
                            progress=not args.quiet)
    study = STUDIES[args.study]
    budget = f"{options.epochs} epochs" if options.epochs else f"{options.minutes:g} minutes"
    context = (f"Made with `simclr ablate {study.name} --data {args.data}"
               + (f" --config {args.config}" if args.config else "")
               + "".join(f" --set {o}" for o in args.set) + f"` ({budget} per cell).")
    report_dir, table = args.report_dir or args.out, args.out / "results.csv"

    def write(result: Any) -> tuple[Path, Path]:
        write_csv(result.rows, table)
        return write_report(result, report_dir, context)

    result = run_study(study, options, on_cell=write)
    md, png = write(result)
    report(args, render.ablate_json(result, md), render.ablate_text(result, md, png, table))
    return 0
