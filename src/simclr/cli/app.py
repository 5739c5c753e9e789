"""``simclr``'s entry point: parse the arguments, run the command, and end every failure the user can act on
with one line on stderr and its exit code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from simclr.cli import commands, index, search, serve
from simclr.cli.parser import build_parser
from simclr.errors import InputError
from simclr.interrupts import Terminated, terminate_as_interrupt


def _command(name: str) -> Callable[[argparse.Namespace], int]:
    return {"pretrain": commands.run_pretrain, "eval": commands.run_eval, "embed": commands.run_embed,
            "export": commands.run_export, "import": commands.run_import, "search": search.run_search,
            "duplicates": search.run_duplicates, "index": index.run_index, "serve": serve.run_serve,
            "ablate": commands.run_ablate}[name]


def main(argv: list[str] | None = None) -> int:
    """Run ``simclr`` with ``argv`` (default: the command line); returns the exit code: 0, 2 for bad input
    (one line on stderr), 130 (143) when interrupted by Ctrl-C (SIGTERM), 1 when a device ran out of
    memory."""
    args = build_parser().parse_args(argv)
    try:
        with terminate_as_interrupt():
            return _command(args.command)(args)
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


def _how_to_continue(args: argparse.Namespace) -> str:
    """What an interrupted command leaves to continue from: pretrain's last.pt (none when the interruption
    came before training began), ablate's finished cells."""
    if args.command == "ablate":
        return (" (finished cells are kept, the one under way saved last.pt once training: rerun the same "
                "command)")
    if args.command != "pretrain":
        return ""
    if (Path(args.out) / "last.pt").is_file():
        return f" (continue from last.pt with: simclr pretrain --out {args.out} --resume)"
    return " (before training began: nothing saved; run the command again)"


def _out_of_memory(args: argparse.Namespace, message: str) -> str:
    """One line for a device that ran out of memory: what torch said (its first two sentences) and what to
    lower."""
    said = ". ".join(message.split(". ")[:2]).rstrip(".")
    if args.command in ("pretrain", "ablate"):
        advice = ("lower --batch-size, or set train.grad_cache_chunk (gradient caching: the same gradients, "
                  "a chunk of views in memory at a time)")
    else:
        advice = "lower --batch-size"
    return f"{said}: {advice}"
