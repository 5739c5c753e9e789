"""Retrieval with h: plain cosine vs centring vs PCA whitening of the collection (issue 21).

The cosine similarities of h (after a ReLU and a global average pool) crowd at 0.97-0.99 (docs/search). This
measures whether transforming h before the cosine, with statistics fitted on the collection only, retrieves
better: the collection is a dataset's train split, the queries its test split, and a retrieved image is right
when it has the query's label.

Datasets (each embedded with the same ``--checkpoint``; the embeddings are cached in ``--work``):

- ``cifar10``: the CIFAR-10 archive ``--data`` (50,000 train / 10,000 test JPEGs), at the run's image side.
- ``mnist``: the 10,000 MNIST digits of ``--extras`` (``mnist10k-npm/mnist10k.npz``) written as RGB PNGs in
  class folders, split 9,000 train / 1,000 test by a seeded permutation: an out-of-domain collection for a
  CIFAR-10 network (it stands in for tiny-imagenet, which is not available offline).
- ``cifar10-64``: CIFAR-10 again, embedded at 64 x 64 (``image_size=64``: each image upscaled), a shift of scale.

Methods (cosine similarity after each map ``x -> (x - mean) @ projection``; see the fit_* functions):
plain; centred (the collection's mean of h); centred unit h (h normalised, then centred); PCA (centred, rotated
to the principal axes, the top d kept, not scaled); whitened (also divided by sqrt(eigenvalue + eps), eps
relative to the largest eigenvalue), with all components or the top d.

Prints the machine, the exact command, a table per dataset (precision@10, @100, mAP@100, the paired difference
from plain with its 95% interval, and the spread of similarities), and writes everything to ``--out-json``.

Usage: python benchmarks/retrieval_centring.py --checkpoint /tmp/bench-c10
           [--data ../shared/data/cifar10-jpg.tar.gz] [--extras ../shared/data/small-extras.tar.gz]
           [--datasets cifar10,mnist,cifar10-64] [--work /tmp/simclr-retrieval] [--out-json results.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from machine import machine  # benchmarks/machine.py
from PIL import Image

import simclr

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
EPS = (1e-3, 1e-2, 1e-1, 1.0)
DIMS = (None, 64, 32)
KS = (10, 100)


# --- the transforms: fitted on the collection only, then applied to the collection and the queries alike ---

def fit_centre(x: np.ndarray) -> np.ndarray:
    """The collection's mean vector (float64, shape [F]); centring is ``apply(x, mean)``."""
    return np.asarray(x, np.float64).mean(axis=0)


def _eigen(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean of ``x`` and the eigenvalues (descending) and eigenvectors (columns) of its covariance
    (divided by N), in float64."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    values, vectors = np.linalg.eigh(centred.T @ centred / len(x))
    order = np.argsort(values)[::-1]
    return mean, np.clip(values[order], 0.0, None), vectors[:, order]


def fit_pca(x: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA without scaling: ``(mean, projection)`` with ``projection`` [F, dims] the covariance's top ``dims``
    eigenvectors (columns, by descending eigenvalue)."""
    mean, _, vectors = _eigen(x)
    return mean, vectors[:, :dims]


def fit_whitening(x: np.ndarray, eps: float, dims: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """PCA whitening fitted on the collection ``x`` [N, F]: ``(mean, projection)``, ``projection`` [F, d].

    C = (x - mean)^T (x - mean) / N, with eigenvalues l_1 >= ... >= l_F and unit eigenvectors v_i; ``eps`` is
    relative to the largest eigenvalue (the shrinkage added is ``eps * l_1``). Column i of ``projection`` is
    ``v_i / sqrt(l_i + eps * l_1)`` for the top ``dims`` components (None: all F). The whitened vectors are
    ``apply(x, mean, projection)``; a small eps gives every direction unit variance, a large one tends to
    plain centring (up to a common scale) as eps grows."""
    mean, values, vectors = _eigen(x)
    keep = len(values) if dims is None else dims
    scale = 1.0 / np.sqrt(values[:keep] + eps * values[0])
    return mean, vectors[:, :keep] * scale


def apply(x: np.ndarray | torch.Tensor, mean: np.ndarray | None = None,
          projection: np.ndarray | None = None) -> torch.Tensor:
    """``(x - mean) @ projection`` (either left out: no centring, no projection) as float32 rows, each then
    normalised to unit length: the vectors whose dot products are the cosine similarities searched."""
    out = torch.as_tensor(np.asarray(x, np.float64))
    if mean is not None:
        out = out - torch.as_tensor(mean)
    if projection is not None:
        out = out @ torch.as_tensor(projection)
    return torch.nn.functional.normalize(out.float(), dim=1)


@dataclass
class Method:
    name: str
    fit: object  # collection h -> (mean, projection) or None (plain)
    unit_first: bool = False  # normalise h before fitting and applying


def methods() -> list[Method]:
    """Every method measured, in the table's order."""
    rows = [Method("plain cosine", lambda x: (None, None)),
            Method("centred", lambda x: (fit_centre(x), None)),
            Method("centred unit h", lambda x: (fit_centre(x), None), unit_first=True)]
    rows += [Method(f"PCA {d} (centred, not scaled)", lambda x, d=d: fit_pca(x, d)) for d in DIMS if d]
    rows += [Method(f"whitened eps {eps:g}, {'all' if d is None else d} dims",
                    lambda x, eps=eps, d=d: fit_whitening(x, eps, d)) for d in DIMS for eps in EPS]
    return rows


# --- measuring ---

def scores(queries: torch.Tensor, q_labels: np.ndarray, collection: torch.Tensor, c_labels: np.ndarray,
           chunk: int = 1000) -> dict[str, np.ndarray]:
    """Per query: precision@k for k in KS, average precision at 100 (sum over ranks i <= 100 of precision@i at
    the relevant ranks, over min(100, relevant images in the collection)), and the similarity of its nearest,
    its 100th and a random collection image (the spread)."""
    kmax = max(KS)
    c_lab = torch.as_tensor(c_labels.astype(np.int64))
    q_lab = torch.as_tensor(q_labels.astype(np.int64))
    relevant = torch.bincount(c_lab, minlength=int(max(c_lab.max(), q_lab.max())) + 1)[q_lab].clamp(max=kmax)
    gen = torch.Generator().manual_seed(0)
    ranks = torch.arange(1, kmax + 1, dtype=torch.float64)
    out: dict[str, list[torch.Tensor]] = {k: [] for k in
                                          [f"p@{k}" for k in KS] + ["ap@100", "nn_sim", "k100_sim", "rand_sim"]}
    for start in range(0, len(queries), chunk):
        sims = queries[start:start + chunk] @ collection.T
        top_sims, top = sims.topk(kmax, dim=1)
        hit = (c_lab[top] == q_lab[start:start + chunk, None]).double()
        for k in KS:
            out[f"p@{k}"].append(hit[:, :k].mean(1))
        out["ap@100"].append((hit.cumsum(1) / ranks * hit).sum(1) / relevant[start:start + chunk])
        out["nn_sim"].append(top_sims[:, 0].double())
        out["k100_sim"].append(top_sims[:, kmax - 1].double())
        pick = torch.randint(len(collection), (len(sims),), generator=gen)
        out["rand_sim"].append(sims[torch.arange(len(sims)), pick].double())
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def measure(train: dict, test: dict) -> list[dict]:
    """Every method fitted on ``train`` (the collection) and scored with ``test``'s queries."""
    rows, plain = [], None
    for m in methods():
        c, q = train["h"], test["h"]
        if m.unit_first:
            c, q = apply(c).numpy(), apply(q).numpy()
        t0 = time.perf_counter()
        mean, projection = m.fit(c)
        per_query = scores(apply(q, mean, projection), test["labels"], apply(c, mean, projection),
                           train["labels"])
        plain = per_query if plain is None else plain
        row = {"method": m.name, "seconds": time.perf_counter() - t0,
               "dims": int(projection.shape[1]) if projection is not None else int(c.shape[1])}
        for key, values in per_query.items():
            row[key] = float(np.mean(values)) if key.startswith(("p@", "ap")) else float(np.median(values))
        for k in KS:  # the paired difference from plain cosine, with a normal 95% interval
            diff = per_query[f"p@{k}"] - plain[f"p@{k}"]
            row[f"d_p@{k}"] = float(diff.mean())
            row[f"ci_p@{k}"] = float(1.96 * diff.std(ddof=1) / np.sqrt(len(diff)))
        rows.append(row)
    return rows


SMALL = (200, 1000, 5000)  # collection sizes of the small-collection check
SMALL_METHODS = ("plain cosine", "centred", "whitened eps 0.01, all dims", "whitened eps 0.1, all dims",
                 "whitened eps 1, all dims")


def small_collections(train: dict, test: dict, seeds: int = 3) -> list[dict]:
    """The same queries against smaller collections (a seeded subset of the train split, the transforms fitted
    on that subset): whether whitening's gain holds when the covariance is estimated from few images.
    Precision@10 per method, the mean over ``seeds`` subsets, with the paired difference from plain."""
    chosen = [m for m in methods() if m.name in SMALL_METHODS]
    rows = []
    for size in SMALL:
        if size >= len(train["h"]):
            continue
        per_method: dict[str, list[np.ndarray]] = {m.name: [] for m in chosen}
        for seed in range(seeds):
            pick = np.random.default_rng(seed).choice(len(train["h"]), size, replace=False)
            c, c_labels = train["h"][pick], train["labels"][pick]
            for m in chosen:
                mean, projection = m.fit(c)
                per_method[m.name].append(scores(apply(test["h"], mean, projection), test["labels"],
                                                 apply(c, mean, projection), c_labels)["p@10"])
        plain = np.concatenate(per_method["plain cosine"])
        for m in chosen:
            values = np.concatenate(per_method[m.name])
            diff = values - plain
            rows.append({"collection": size, "method": m.name, "p@10": float(values.mean()),
                         "d_p@10": float(diff.mean()),
                         "ci_p@10": float(1.96 * diff.std(ddof=1) / np.sqrt(len(diff)))})
    return rows


def small_table(rows: list[dict], seeds: int = 3) -> str:
    lines = [(f"Smaller collections (a seeded subset of the train split, transforms fitted on it; the mean of "
             f"{seeds} subsets): precision@10 and the paired difference from plain cosine."), "",
             "| collection | " + " | ".join(SMALL_METHODS) + " |", "|---" * (len(SMALL_METHODS) + 1) + "|"]
    for size in sorted({r["collection"] for r in rows}):
        cells = [next(r for r in rows if r["collection"] == size and r["method"] == m) for m in SMALL_METHODS]
        lines.append(f"| {size:,} | " + " | ".join(
            f"{100 * r['p@10']:.2f}%" + ("" if r["method"] == "plain cosine" else
                                           f" ({100 * r['d_p@10']:+.2f} ± {100 * r['ci_p@10']:.2f})")
            for r in cells) + " |")
    return "\n".join(lines)


# --- the data ---

def extract_cifar(archive: Path, folder: Path) -> Path:
    """CIFAR-10's JPEG archive extracted once into ``folder`` (train/<class>, test/<class>)."""
    if not (folder / "test").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
    return folder


def write_mnist(extras: Path, folder: Path, test: int = 1000, seed: int = 0) -> Path:
    """MNIST's 10,000 digits as RGB PNGs in ``folder/{train,test}/<digit>/``, ``test`` of them (a seeded
    permutation) in test/; written once."""
    if (folder / "test").is_dir():
        return folder
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(extras) as tar:
        tar.extract("./mnist10k-npm/mnist10k.npz", tmp, filter="data")
        with np.load(Path(tmp) / "mnist10k-npm" / "mnist10k.npz") as f:
            images, labels = f["images"], f["labels"]
    in_test = np.zeros(len(images), bool)
    in_test[np.random.default_rng(seed).permutation(len(images))[:test]] = True
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = folder / ("test" if in_test[i] else "train") / str(int(label)) / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, "L").convert("RGB").save(path)
    return folder


def embedded(checkpoint: str, folder: Path, split: str, image_size: int, cache: Path) -> dict:
    """h and labels of one split, from the cache in ``cache`` when the checkpoint file is the same."""
    ckpt = Path(checkpoint)
    ckpt = ckpt / "last.pt" if ckpt.is_dir() else ckpt
    stat = ckpt.stat()
    key = hashlib.sha1(f"{ckpt.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{folder.resolve()}|{image_size}"
                       .encode()).hexdigest()[:12]
    path = cache / f"h-{folder.name}-{split}-{image_size}-{key}.npz"
    if path.exists():
        with np.load(path) as f:
            return {"h": f["h"], "labels": f["labels"], "seconds": float(f["seconds"]),
                    "precision": str(f["precision"])}
    t0 = time.perf_counter()
    index = simclr.embed(checkpoint, folder, split=split, image_size=image_size, progress=False)
    out = {"h": index.h.numpy().astype(np.float32), "labels": np.asarray(index.labels),
           "seconds": time.perf_counter() - t0, "precision": index.meta.get("precision", "")}
    np.savez(path, **out)
    return out


def describe(train: dict) -> dict:
    """Why the similarities crowd: the share of the mean in the collection's squared norms, the share of
    variance on the first principal component, and the dead (constant) features."""
    h = train["h"].astype(np.float64)
    mean = h.mean(0)
    _, values, _ = _eigen(h)
    return {"mean_share": float(mean @ mean / (h * h).sum(1).mean()),
            "pc1_share": float(values[0] / values.sum()), "dead_features": int((h.std(0) == 0).sum()),
            "features": int(h.shape[1])}


def table(name: str, sizes: str, info: dict, rows: list[dict]) -> str:
    lines = [f"### {name}: {sizes}", "",
             (f"The collection's mean is {100 * info['mean_share']:.1f}% of its mean squared norm; the first "
             f"principal component holds {100 * info['pc1_share']:.1f}% of the variance; "
             f"{info['dead_features']} of {info['features']} features are constant."), "",
             ("| method | dims | precision@10 | vs plain | precision@100 | vs plain | mAP@100 "
             "| nearest sim (median) | 100th sim | random pair sim |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['dims']} | {100 * r['p@10']:.2f}% | "
                     f"{100 * r['d_p@10']:+.2f} ± {100 * r['ci_p@10']:.2f} | {100 * r['p@100']:.2f}% | "
                     f"{100 * r['d_p@100']:+.2f} ± {100 * r['ci_p@100']:.2f} | {100 * r['ap@100']:.2f}% | "
                     f"{r['nn_sim']:.3f} | {r['k100_sim']:.3f} | {r['rand_sim']:.3f} |")
    return "\n".join(lines)


DATASETS = {  # name -> (folder maker, image side: 0 is the run's)
    "cifar10": ("cifar", 0),
    "mnist": ("mnist", 0),
    "cifar10-64": ("cifar", 64),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a run folder or checkpoint file")
    p.add_argument("--data", type=Path, default=SHARED / "cifar10-jpg.tar.gz", help="CIFAR-10's JPEG archive")
    p.add_argument("--extras", type=Path, default=SHARED / "small-extras.tar.gz", help="holds mnist10k.npz")
    p.add_argument("--datasets", default="cifar10,mnist,cifar10-64", help=f"from {', '.join(DATASETS)}")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "simclr-retrieval",
                   help="extracted images and cached embeddings")
    p.add_argument("--out-json", type=Path, default=None)
    args = p.parse_args()
    names = [n for n in args.datasets.split(",") if n]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        p.error(f"unknown dataset(s) {unknown}: choose from {', '.join(DATASETS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    command = shlex.join(["python", "benchmarks/retrieval_centring.py", *sys.argv[1:]])
    print(f"machine: {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"command: {command}\n")
    report: dict = {"machine": machine(), "command": command, "checkpoint": args.checkpoint, "datasets": {}}
    for name in names:
        kind, side = DATASETS[name]
        folder = (extract_cifar(args.data, args.work / "cifar10-jpg") if kind == "cifar"
                  else write_mnist(args.extras, args.work / "mnist10k-rgb"))
        train, test = (embedded(args.checkpoint, folder, s, side, args.work) for s in ("train", "test"))
        info = describe(train)
        rows = measure(train, test)
        sizes = (f"{len(train['h']):,} collection (train) images, {len(test['h']):,} queries (test), "
                 f"{'the run' + chr(39) + 's side' if not side else f'{side} x {side}'}; embedding "
                 f"{train['seconds'] + test['seconds']:.0f} s ({train['precision']})")
        small = small_collections(train, test)
        print(table(name, sizes, info, rows) + "\n\n" + small_table(small) + "\n", flush=True)
        report["datasets"][name] = {"sizes": sizes, "collection": len(train["h"]), "queries": len(test["h"]),
                                    "image_size": side, **info, "rows": rows, "small_collections": small}
    if args.out_json:
        args.out_json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.out_json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
