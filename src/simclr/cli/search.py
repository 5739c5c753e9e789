"""``simclr search`` and ``simclr duplicates``: their parsers and commands, as they were in the one-module CLI
(kept apart, unchanged, while their search path is redesigned)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from simclr.cli.common import reading_options as _reading_options
from simclr.cli.common import setup as _setup
from simclr.errors import InputError
from simclr.files import check_output, json_text

IMAGES_HELP = ("where the collection's folder or archive lies now, if it has moved since it was embedded "
               "(the sheet draws its images)")


def _search_parser(sub: Any) -> None:
    p = sub.add_parser("search",
                       help="find the most similar images of an embedded collection (cosine similarity)")
    p.add_argument("--index", required=True, type=Path,
                   help="the collection: a folder or a .npz file from simclr embed")
    p.add_argument("--query", required=True, nargs="+",
                   help="image file(s), or one folder, archive or dataset, or one .npz file from simclr "
                        "embed (the index file itself: every image against the others)")
    p.add_argument("--k", type=int, default=5, help="results per query (default 5)")
    p.add_argument("--z", action="store_true", help="compare z = g(h) instead of h (both files need z)")
    p.add_argument("--checkpoint",
                   help="embed the queries with this run (default: the one named in the index)")
    p.add_argument("--out", type=Path, help="write every result to this CSV file")
    p.add_argument("--sheet", type=Path,
                   help="save a picture (PNG, JPEG or WebP by the suffix): each query (up to 8) beside its "
                        "results")
    p.add_argument("--images", help=IMAGES_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _reading_options(p)


DUPLICATES_THRESHOLD, DUPLICATES_Z_THRESHOLD = 0.99, 0.95
"""simclr.retrieval.duplicates.DEFAULT_THRESHOLD and DEFAULT_Z_THRESHOLD, named here so that parsing arguments
never imports torch."""


def _duplicates_parser(sub: Any) -> None:
    p = sub.add_parser("duplicates", help="group the near-duplicate images of an embedded collection")
    p.add_argument("--index", required=True, type=Path,
                   help="the collection: a folder or a .npz file from simclr embed")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"least cosine similarity of near-duplicates (default {DUPLICATES_THRESHOLD} on h, "
                        f"{DUPLICATES_Z_THRESHOLD} with --z)")
    p.add_argument("--k", type=int, default=10,
                   help="nearest neighbours of each image considered (default 10)")
    p.add_argument("--z", action="store_true", help="compare z = g(h) instead of h (the file needs z)")
    p.add_argument("--out", type=Path,
                   help="write every grouped image to this CSV file (group, rank, keep, path, label, score)")
    p.add_argument("--sheet", type=Path,
                   help="save a picture (PNG, JPEG or WebP by the suffix): the largest groups (up to 8), the "
                        "image kept beside the others")
    p.add_argument("--images", help=IMAGES_HELP)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", action="store_true", help="print one JSON object")


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
    from simclr.api import load_index
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
    from simclr.api import load_index
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


