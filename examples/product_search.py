"""Product image search with simclr, from Python: learn an encoder from a folder of unlabeled catalogue photos,
embed the catalogue once, then find the catalogue items most like each query photo.

    python examples/product_search.py --catalogue ~/catalogue --query new1.jpg new2.jpg --out runs/shop

Rerunning continues an interrupted training run (Ctrl-C saves it) and reuses a finished one (another --out
trains a new one). The embedded catalogue is saved as OUT/catalogue.npz, which `simclr search --index` also reads;
a rerun embeds only the catalogue photos that are new or changed since.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import simclr
from simclr.data.images import open_rgb
from simclr.errors import InputError, UpdateRefused


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--catalogue", required=True, help="folder (or archive) of catalogue photos, any layout")
    p.add_argument("--query", nargs="+", required=True, help="photos to find similar catalogue items for")
    p.add_argument("--out", type=Path, default=Path("runs/shop"), help="where the run and the index go")
    p.add_argument("--k", type=int, default=5, help="results per query")
    p.add_argument("--epochs", type=float, default=100)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--image-size", type=int, default=96, help="side the photos are trained and embedded at")
    p.add_argument("--width", type=float, default=1.0, help="ResNet-18 width multiplier")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = p.parse_args(argv)

    run_dir = args.out / "run"
    try:
        for query in args.query:  # before any training or embedding, not after
            if not Path(query).is_file():
                raise InputError(f"query image not found: {query}")
            open_rgb(query)  # an unreadable one: CorruptImageError, an InputError naming it
        if (run_dir / "last.pt").is_file():
            run = simclr.pretrain(None, run_dir, resume=True)  # continues, or returns at once when finished
        else:
            run = simclr.pretrain(args.catalogue, run_dir, settings={
                "model.arch": "resnet18", "model.width": args.width, "data.image_size": args.image_size,
                "train.epochs": args.epochs, "train.batch_size": args.batch_size, "train.device": args.device})
        catalogue = args.out / "catalogue.npz"
        try:  # only the photos new or changed since the last run are embedded
            index = simclr.embed(run.run_dir, args.catalogue, device=args.device, out=catalogue, update=True)
        except UpdateRefused as exc:  # made from other photos, or another layout of them: embed them all again
            print(f"product_search: note: {exc}; embedding the whole catalogue again", file=sys.stderr)
            index = simclr.embed(run.run_dir, args.catalogue, device=args.device, out=catalogue)
        print(f"{len(index)} catalogue images embedded ({len(index.skipped)} unreadable skipped): "
              f"{catalogue}")
        for query, hits in zip(args.query, index.search(args.query, k=args.k, device=args.device)):
            print(f"{query}:")
            for hit in hits:
                print(f"  {hit.rank:>3}  {hit.score:.4f}  {hit.path}")
    except InputError as exc:
        print(f"product_search: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("product_search: interrupted (the same command continues where it stopped)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
