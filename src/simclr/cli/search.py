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

IMAGES_HELP = ("where the collection's folder or archive lies now, if it has moved since it was embedded (the "
               "sheet draws its images)")


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
    from simclr.retrieval.query import save_sheet, search, sheet_sources
    from simclr.tables import write_csv

    _check_result_files(args)
    result = search(args.index, args.query, args.k, _setup(args), on="z" if args.z else "h", checkpoint=args.checkpoint)
    queries = result.queries.names
    if result.queries.skipped:
        (name, why), more = result.queries.skipped[0], len(result.queries.skipped) - 1
        print(f"note: {len(result.queries.skipped)} query image(s) could not be read and were left out: {name} "
              f"({why})" + (f" and {more} more" if more else ""), file=sys.stderr)
    pictures = sheet_sources(result, args.images) if args.sheet else None  # before any file is written
    if args.out:
        write_csv(result.rows_for_csv(), args.out)
    if args.sheet:
        save_sheet(result, args.sheet, sources=pictures)
    if args.json:
        print(json_text({"index": str(args.index), "queries": len(queries), "metrics": result.metrics,
                         "skipped": [{"query": name, "reason": why} for name, why in result.queries.skipped],
                         "results": [{"query": q, "results": result.results(i)} for i, q in enumerate(queries)]}))
        return 0
    shown = queries if len(queries) <= 20 else queries[:3]
    for i, q in enumerate(shown):
        print(f"{q}:")
        for hit in result.results(i):
            print(f"  {hit['rank']:>3}  {hit['score']:.4f}  {hit['path']}")
    if len(shown) < len(queries):
        print(f"... {len(queries) - len(shown)} more queries" + ("" if args.out else " (--out FILE.csv keeps all)"))
    if result.metrics:
        m, k = result.metrics, result.metrics["k"]
        if not m["queries"]:
            print(f"no query is of a class the index has ({m['queries_of_other_classes']} labelled queries of "
                  "other classes): nothing to score")
        else:
            print(f"{m['queries']} labelled queries: precision@1 {m['precision_at_1']:.4f}, precision@{k} "
                  f"{m[f'precision_at_{k}']:.4f}, recall@{k} {m[f'recall_at_{k}']:.4f}"
                  + (f" ({m['queries_of_other_classes']} queries of classes the index does not have not scored)"
                     if m.get("queries_of_other_classes") else ""))
    for path, what in ((args.out, "results"), (args.sheet, "contact sheet")):
        if path:
            print(f"{what}: {path}")
    return 0


def run_duplicates(args: argparse.Namespace) -> int:
    import numpy as np

    from simclr.retrieval.duplicates import (
        default_threshold,
        duplicate_rows,
        find_duplicates,
        save_duplicates_sheet,
    )
    from simclr.retrieval.query import source_from_meta
    from simclr.tables import write_csv

    _check_result_files(args)
    on = "z" if args.z else "h"
    threshold = default_threshold(on) if args.threshold is None else args.threshold
    index, found = find_duplicates(args.index, threshold, args.k, on, args.device)
    groups, rows = found.groups, duplicate_rows(index, found.groups)
    pictures = source_from_meta(index.meta, args.images, paths=index.paths) if args.sheet else None  # first
    if args.out:
        write_csv(rows, args.out)
    if args.sheet:
        save_duplicates_sheet(index, groups, args.sheet, source=pictures)
    spare = sum(len(g.rows) - 1 for g in groups)
    nearest = found.nearest.numpy()
    spread = {f"q{q}": round(float(np.quantile(nearest, q / 100)), 4) for q in (50, 90, 99)} \
        if len(index.paths) > 1 else None  # one image has no nearest other
    if args.json:
        print(json_text({"index": str(args.index), "images": len(index.paths), "threshold": threshold,
                          "groups": len(groups), "duplicates": spare, "nearest_similarity": spread,
                          "rows": rows}))
        return 0
    for g, group in enumerate(groups[:10]):
        print(f"group {g + 1} ({len(group.rows)} images):")
        for r, (i, score) in enumerate(zip(group.rows, group.scores)):
            print(f"  {'keep' if r == 0 else f'{score:.4f}':>6}  {index.paths[i]}")
    if len(groups) > 10:
        print(f"... {len(groups) - 10} more groups" + ("" if args.out else " (--out FILE.csv keeps all)"))
    print(f"{len(groups)} groups of near-duplicates among {len(index.paths)} images (cosine >= {threshold:.10g}): "
          f"{spare} images could go. " + (f"Each image's similarity to its nearest other: median {spread['q50']:.4f}, "
                                          f"90th percentile {spread['q90']:.4f}, 99th {spread['q99']:.4f}"
                                          if spread else "(one image: nothing to compare it with)"))
    for path, what in ((args.out, "groups"), (args.sheet, "contact sheet")):
        if path:
            print(f"{what}: {path}")
    return 0
