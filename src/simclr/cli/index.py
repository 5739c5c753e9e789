"""``simclr index build`` (an approximate index beside a collection folder, its recall measured) and ``simclr
index convert`` (a ``.npz`` from ``simclr embed`` as a collection folder)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from simclr.cli.common import report
from simclr.errors import InputError

INDEX_KINDS = ("auto", "exact", "hnsw", "ivfpq")
"""simclr.retrieval.ann.KINDS, named here so that parsing arguments never imports torch."""


def index_parser(sub: Any) -> None:
    p = sub.add_parser("index",
                       help="build the search index of a collection folder, or convert a .npz to one")
    ix = p.add_subparsers(dest="index_command", required=True)
    b = ix.add_parser("build", help="build (or rebuild) a collection's index: exact, HNSW or IVF-PQ (faiss), "
                                    "with its recall@10 against exact search measured on a sample")
    b.add_argument("--embeddings", required=True, type=Path,
                   help="the collection folder (simclr embed --out FOLDER, or simclr index convert)")
    b.add_argument("--kind", default="auto", choices=INDEX_KINDS,
                   help="auto (default): exact up to 200,000 images, then HNSW while its copy of the vectors "
                        "takes under 30%% of the memory, else IVF-PQ; both re-rank exactly")
    b.add_argument("--recall", type=float, default=0.95,
                   help="the recall@10 the search effort is tuned to reach (default 0.95)")
    b.add_argument("--z", action="store_true", help="index z instead of h (the collection needs z)")
    b.add_argument("--transform", default="whiten", choices=("whiten", "centre", "none"),
                   help="what the vectors go through before their cosine similarity, fitted on the "
                        "collection: whiten (default: centred, then PCA whitening with shrinkage; the best "
                        "in BENCHMARKS.md), centre (the mean subtracted), none")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    c = ix.add_parser("convert", help="a .npz from simclr embed as a collection folder")
    c.add_argument("npz", type=Path, help="the .npz file")
    c.add_argument("--out", required=True, type=Path, help="the collection folder to write (new or empty)")
    c.add_argument("--json", action="store_true", help="print one JSON object")


def run_index(args: argparse.Namespace) -> int:
    return {"build": _build, "convert": _convert}[args.index_command](args)


def _build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from simclr.retrieval.ann_build import build_index
    from simclr.retrieval.collection import Collection

    if not 0 < args.recall <= 1:
        raise InputError(f"--recall must be in (0, 1], got {args.recall}")
    collection = Collection(args.embeddings)
    bar = tqdm(total=collection.rows, desc="indexing", unit="img", disable=args.quiet, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    try:
        info = build_index(collection, args.kind, on="z" if args.z else "h", transform=args.transform,
                           target=args.recall, progress=progress)
    finally:
        bar.close()
    shown = dict(info, transform=info["transform"]["kind"])
    text = (f"built the {info['kind']} index of {info['images']} images in {info['build_s']:.1f} s "
            f"({args.embeddings}): recall@10 {info['recall_at_10']:.3f} against exact search"
            + (f" on {min(200, info['images'])} of its images" if info["kind"] != "exact" else ""))
    report(args, shown, text)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from simclr.retrieval.collect import convert_embeddings
    from simclr.retrieval.collection_write import check_collection_output

    check_collection_output(args.out, (args.npz,))
    collection = convert_embeddings(args.npz, args.out)
    info = {"collection": str(args.out), "images": len(collection), "dim": int(collection.h.shape[1])}
    report(args, info, f"wrote {len(collection)} embeddings of dim {info['dim']} to the collection "
                       f"{args.out} (index it: simclr index build --embeddings {args.out})")
    return 0
