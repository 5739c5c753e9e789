"""The ``simclr`` commands but search and duplicates: each checks its flags (with the flags' names), calls the
library function a Python user calls (:mod:`simclr.api`) and prints its result. torch is imported with the
library, when a command runs: never to parse arguments."""

from __future__ import annotations

import argparse
import os
import sys

from simclr.cli import render
from simclr.cli.common import check_reading, positive, reading, report, setup
from simclr.cli.parser import protocol_options
from simclr.errors import InputError


def run_pretrain(args: argparse.Namespace) -> int:
    from simclr import api
    from simclr.config_io import data_spec
    from simclr.runtime.checkpoint import LAST

    for name in ("epochs", "batch_size", "time_budget"):
        positive("--" + name.replace("_", "-"), getattr(args, name))
    train = {k: v for k, v in (("epochs", args.epochs), ("batch_size", args.batch_size),
                               ("time_budget", args.time_budget), ("device", args.device),
                               ("seed", args.seed)) if v is not None}
    if not args.data and not args.resume and not _config_names_data(args.config, args.set):
        raise InputError("pretrain needs --data (only --resume, or a --config that names data.spec, "
                         "continues without it)")
    named = {f"train.{k}": v for k, v in train.items()}
    named.update({f"model.{k}": v for k, v in (("arch", args.arch), ("init", args.init)) if v})
    named.update({"data.spec": data_spec(args.data)} if args.data else {})
    if args.plan_only:
        return _plan_only(args, named)
    if args.resume and (args.config or args.set or args.arch or args.init or args.recipe or args.data
                        or train.keys() - {"device"}):
        print("simclr: note: --resume continues with the run's saved config; --data, --config, --recipe, "
              "--set and other options are ignored", file=sys.stderr)
    saved = args.out / "config.yaml"
    replaced = not args.resume and saved.is_file() and not (args.out / LAST).exists() \
        and not (args.config and os.path.exists(args.config) and os.path.samefile(args.config, saved))
    result = api.pretrain(None, args.out, config=args.config or None, overrides=args.set, settings=named,
                          resume=args.resume, progress=not args.quiet, recipe=args.recipe)
    if os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun, rank 0 reports
    if replaced:
        print(f"simclr: note: the config.yaml {args.out} held before (a saved plan?) was replaced by this "
              f"run's", file=sys.stderr)
    print(render.pretrain_text(result))
    return 0


def _config_names_data(config: str | None, overrides: list[str]) -> bool:
    """Whether the YAML ``config`` (with the ``--set`` overrides) sets data.spec (a saved plan does)."""
    if not config:
        return False
    from simclr.config_io import load_config

    return bool(load_config(config, overrides).data.spec)


def _plan_only(args: argparse.Namespace, named: dict[str, object]) -> int:
    """``pretrain --plan-only``: the planned config saved as OUT/config.yaml, nothing trained."""
    from simclr import api
    from simclr.config_io import save_config
    from simclr.training.loop import check_new_run, check_out_of_data

    if args.resume or args.config or args.recipe == "paper":
        raise InputError("--plan-only plans a recipe: give it without --config, --recipe paper or --resume")
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise InputError("--plan-only runs in one process: run it without torchrun")
    check_new_run(args.out)
    check_out_of_data(args.out, str(named.get("data.spec", "")))
    config = api.planned_config(None, overrides=args.set, settings=named, progress=not args.quiet)
    args.out.mkdir(parents=True, exist_ok=True)
    save_config(config, args.out / "config.yaml")
    print(f"plan saved to {args.out / 'config.yaml'}: train it with simclr pretrain --config "
          f"{args.out / 'config.yaml'} --out {args.out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from simclr import api

    check_reading(args)
    options = protocol_options(args)
    result = api.evaluate(args.checkpoint, args.data, args.protocol, **reading(args), **options)
    report(args, result, render.eval_text(args.protocol, result, args.data))
    return 0


def run_embed(args: argparse.Namespace) -> int:
    from simclr import api
    from simclr.files import check_output
    from simclr.retrieval.collection_write import check_collection_output
    from simclr.runtime.checkpoint import resolve_checkpoint

    setup(args)  # the flags' checks, in the order of simclr.embed's, before --out's (named as the flag)
    if api.is_npz(args.out):
        check_output(args.out, reading=(resolve_checkpoint(args.checkpoint),))
    else:
        check_collection_output(args.out, (resolve_checkpoint(args.checkpoint),))
    index = api.embed(args.checkpoint, args.data, split=args.split, z=args.z, out=args.out,
                      update=args.update, **reading(args))
    if index.fresh:
        print(f"note: nothing of {args.out} could be kept, {index.fresh}: every image embedded again",
              file=sys.stderr)
    print(render.embed_text(index, args.out, args.update))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from simclr import api

    info = api.export_weights(args.checkpoint, args.out, format=args.format)
    report(args, info, render.export_text(info))
    return 0


def run_import(args: argparse.Namespace) -> int:
    from simclr import api

    if args.image_size and args.image_size < 8:
        raise InputError(f"--image-size must be >= 8, got {args.image_size}")
    info = api.import_weights(args.weights, args.out, image_size=args.image_size, input_norm=args.input_norm)
    report(args, info, render.import_text(info))
    return 0


def run_ablate(args: argparse.Namespace) -> int:
    from simclr import api

    positive("--minutes", args.minutes)
    positive("--epochs", args.epochs)
    positive("--seeds", args.seeds)
    if args.eval_size and args.eval_size < 8:
        raise InputError(f"--eval-size must be >= 8, got {args.eval_size}")
    done = api.ablate(args.study, args.data, args.out, config=args.config, overrides=args.set,
                      minutes=args.minutes, epochs=args.epochs, cells=args.cells, seeds=args.seeds,
                      eval_size=args.eval_size, device=args.device, report_dir=args.report_dir,
                      progress=not args.quiet)
    report(args, render.ablate_json(done), render.ablate_text(done))
    return 0
