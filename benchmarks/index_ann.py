"""Search index at scale: exact, HNSW and IVF-PQ over collections of 1M and 10M vectors (issue 21).

For each collection (the real CIFAR-10 h, and synthetic ones of N in {1M, 10M} by D in {128, 512}) and each kind
of index, one fresh process (``--config N D KIND``) builds the index with ``build_index`` (the product's build:
the transform, faiss, tuning of the search effort to recall@10 >= 0.95 on a sample of the collection), then opens it
with ``open_searcher`` as a server would and measures, through ``Searcher.search`` (the product's search path:
prepare, ANN candidates, exact re-rank from the memory-mapped vectors):

- build seconds (and how many of them went to tuning, and to the exact searches tuning does), the index file's
  size, the process's peak resident memory during the build and, reset, during the searches (VmHWM, which counts
  the pages of the memory-mapped vectors it touched; the peak of its anonymous memory is given beside);
- recall@10 of 200 held-out queries (vectors drawn like the collection's but not in it) against exact search
  (the blocked exact searcher, computed once when the collection is written);
- the latency of one query (200 single-query calls, after 5 warm-up calls): p50 and p99, with the vectors' file
  as the page cache holds it after the build ("warm"), again with torch and faiss limited to one thread (on a
  busy 2-core machine a second thread woken for one query's parallel region can wait milliseconds for a core),
  and for the ANN kinds once more after evicting that file from the page cache (``posix_fadvise(DONTNEED)`` once
  no mapping holds it: "cold", every re-ranked row a read from disk), and again cold with the mapping advised
  ``MADV_RANDOM`` (no read-around: a fault reads its own page, not the 128 KiB or more about it);
- for the ANN kinds, a sweep of the search effort (recall of the held-out queries, p50 on one thread), since the
  build tunes on images of the collection itself; the cold latencies are on one thread too;
- queries per second in batches of 256 (1,024 held-out queries).

Vectors are compared as the product compares them: through the transform ``build_index`` fits by default (PCA
whitening with shrinkage, as this is written; recorded with each result), so the exact truth is
``open_searcher`` of the collection before it has an index, which fits the same transform.

Exact search is measured under a time budget (``--budget`` seconds a measurement) at 10M, where one query reads
the whole file. Results are appended, one JSON line a measurement, to ``ROOT/results.jsonl``.

Data. The real collection is CIFAR-10 (train 50,000 + test 10,000) embedded with a checkpoint (h: 128 dims for
ResNet-18 x0.25); 1,024 images drawn with a seed are held out as the queries, the other 58,976 form the collection.
The synthetic collections are a stand-in for real large collections, fitted to those real h:

- k-means (faiss, 1,024 centres, seed 0) of the 60,000 real h; each centre keeps its real members' residuals
  r = h - centre and their per-dimension standard deviation s_k;
- a synthetic 128-d vector picks a cluster k with the real clusters' frequencies, two random real members i, j
  of it, and is ``relu(centre_k + 0.85 r_i + 0.4 r_j + 0.35 s_k * g)``, g standard normal (the weights' squares
  sum to 1, so each dimension's spread about its centre is about the real one's, and no two synthetic vectors
  are copies). The weights were chosen so that, at the real collection's size, a query's 1st and 10th nearest
  neighbours are about as similar as in the real h (``--profile`` prints both);
- a 512-d vector lifts the same 128-d one: ``relu(P x + 0.1 t e)``, P a fixed Gaussian 512 x 128 matrix
  (entries N(0, 1/128), seed 1), t the standard deviation of P x over the real h, e standard normal;
- chunk c of a collection draws from ``default_rng([seed, c])`` (seed 0 for the collection, 1 for its queries),
  so every collection is reproducible and its queries are never in it. The label of a row is its cluster.

Usage (everything under ROOT, default /tmp/ann-bench; each step skips what is done)::

    python benchmarks/index_ann.py --all                  # every step below, in order, each in a subprocess
    python benchmarks/index_ann.py --data real            # embed CIFAR-10 (--checkpoint, --images)
    python benchmarks/index_ann.py --data 1000000 128     # write a synthetic collection, queries, exact truth
    python benchmarks/index_ann.py --config 1000000 128 ivfpq
    python benchmarks/index_ann.py --neighbours 1000000 128 hnsw   # all-against-all k=10 through the index
    python benchmarks/index_ann.py --table                # the tables of BENCHMARKS.md from results.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import mmap
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from machine import machine  # benchmarks/machine.py

ROOT = Path("/tmp/ann-bench")
CHUNK = 1 << 18
QUERIES = 1024
RECALL_QUERIES = 200
SINGLE = 200
WARMUP = 5
BATCH = 256
CLUSTERS = 1024
MIX = (0.85, 0.4, 0.35)
"""A synthetic vector's residual: these weights of two real residuals of its cluster and of Gaussian noise."""
HELD_OUT = QUERIES


# ---------------------------------------------------------------- measuring memory and the page cache
def _status(key: str) -> int:
    """A value of /proc/self/status in bytes (VmHWM, VmRSS, RssAnon...)."""
    m = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(m.group(1)) * 1024 if m else 0


def reset_peak() -> None:
    """Reset VmHWM to the current resident size (Linux: clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")


class AnonPeak:
    """The peak of the process's anonymous resident memory (RssAnon), sampled every 0.2 s in a thread."""

    def __init__(self) -> None:
        self.peak = _status("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, _status("RssAnon"))

    def __enter__(self) -> AnonPeak:  # noqa: PYI034 - Python 3.10 has no typing.Self
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status("RssAnon"))


def evict(path: Path) -> None:
    """Drop ``path``'s pages from the page cache (only this file's)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cached_share(path: Path) -> float | None:
    """The share of ``path``'s bytes in the page cache (util-linux fincore), or None."""
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES,SIZE", str(path)],
                             capture_output=True, text=True, check=True).stdout.split()
        return round(int(out[0]) / max(1, int(out[1])), 3)
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return None


def record(row: dict[str, Any]) -> None:
    row = {"at": datetime.datetime.now().isoformat(timespec="seconds"), "load": os.getloadavg(), **row}
    ROOT.mkdir(parents=True, exist_ok=True)
    with open(ROOT / "results.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def folder_of(n: str, d: int) -> Path:
    return ROOT / ("real" if n == "real" else f"syn-{int(n)}x{d}")


# ---------------------------------------------------------------- data
def make_real(checkpoint: str, images: str, seed: int = 0) -> None:
    from simclr.api import embed
    from simclr.retrieval.collection_write import create_collection

    folder = folder_of("real", 128)
    if (folder / "truth.npy").is_file():
        return
    if (folder / "queries.npy").is_file():  # embedded, its truth not written
        write_truth(folder, np.load(folder / "queries.npy"))
        return
    began = time.perf_counter()
    idx = embed(checkpoint, images, split="all", progress=False)
    embed_s = time.perf_counter() - began
    h = idx.h.numpy().astype(np.float32)
    np.save(ROOT / "real_h.npy", h)
    labels = np.asarray(idx.labels, np.int64)
    rng = np.random.default_rng(seed)
    held = np.zeros(len(h), bool)
    held[rng.choice(len(h), HELD_OUT, replace=False)] = True
    keep = np.flatnonzero(~held)
    paths = [idx.paths[i] for i in keep]
    create_collection(folder, {"h": h[keep], "labels": labels[keep],
                               "digests": np.zeros((len(keep), 16), np.uint8)}, paths,
                      {"network": f"{checkpoint} (real CIFAR-10)"}, None)
    queries = h[held]
    np.save(folder / "queries.npy", queries)
    write_truth(folder, queries)
    record({"step": "data", "n": "real", "d": h.shape[1], "rows": len(keep), "embed_s": round(embed_s, 1)})


def fit_model() -> dict[str, np.ndarray]:
    """The synthetic generator's parameters, fitted to the real h (see the module's docstring)."""
    path = ROOT / "model.npz"
    if path.is_file():
        return dict(np.load(path))
    import faiss

    h = np.load(ROOT / "real_h.npy").astype(np.float32)
    km = faiss.Kmeans(h.shape[1], CLUSTERS, niter=25, seed=0)
    km.train(h)
    _, assign = km.index.search(h, 1)
    assign = assign[:, 0]
    centres = km.centroids.astype(np.float32)
    resid = h - centres[assign]
    counts = np.bincount(assign, minlength=CLUSTERS)
    spread = np.stack([resid[assign == k].std(0) if counts[k] > 1 else np.zeros(h.shape[1], np.float32)
                       for k in range(CLUSTERS)]).astype(np.float32)
    order = np.argsort(assign, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    proj = np.random.default_rng(1).normal(0, 1 / np.sqrt(h.shape[1]), (512, h.shape[1])).astype(np.float32)
    lifted_std = float((h @ proj.T).std())
    model = {"centres": centres, "resid": resid.astype(np.float32), "spread": spread, "counts": counts,
             "order": order, "starts": starts, "proj": proj, "lifted_std": np.float32(lifted_std)}
    np.savez(path, **model)
    return model


def generate(model: dict[str, np.ndarray], rows: int, d: int, seed: int, chunk: int) -> tuple[np.ndarray,
                                                                                                np.ndarray]:
    """Chunk ``chunk`` of synthetic vectors [rows, d] and their clusters (the generator of the docstring)."""
    rng = np.random.default_rng([seed, chunk])
    counts = model["counts"]
    k = rng.choice(len(counts), rows, p=counts / counts.sum())
    i = model["order"][model["starts"][k] + (rng.random(rows) * counts[k]).astype(np.int64)]
    j = model["order"][model["starts"][k] + (rng.random(rows) * counts[k]).astype(np.int64)]
    g = rng.standard_normal((rows, model["centres"].shape[1]), np.float32)
    a, b, c = (np.float32(w) for w in MIX)
    x = model["centres"][k] + a * model["resid"][i] + b * model["resid"][j] + c * model["spread"][k] * g
    np.maximum(x, 0, out=x)
    if d == 512:
        e = rng.standard_normal((rows, 512), np.float32)
        x = x @ model["proj"].T + np.float32(0.1) * model["lifted_std"] * e
        np.maximum(x, 0, out=x)
    elif d != x.shape[1]:
        raise SystemExit(f"synthetic data has 128 or 512 dimensions, not {d}")
    return x.astype(np.float32), k.astype(np.int64)


def write_truth(folder: Path, queries: np.ndarray) -> None:
    """The exact 10 nearest rows of the first RECALL_QUERIES queries: ``open_searcher`` of the collection before
    it has an index (the blocked exact searcher, through the transform the index build fits by default)."""
    from simclr.retrieval.ann_build import open_searcher
    from simclr.retrieval.collection import Collection

    coll = Collection(folder)
    began = time.perf_counter()
    exact = open_searcher(coll)
    assert exact.index is None and coll.index_info is None
    fit_s = time.perf_counter() - began
    _, rows = exact.search(queries[:RECALL_QUERIES], 10)
    np.save(folder / "truth.npy", rows.numpy())
    record({"step": "truth", "n": coll.rows, "d": coll.h.shape[1], "transform": exact.transform.kind,
            "fit_transform_s": round(fit_s, 1), "exact_200_s": round(time.perf_counter() - began - fit_s, 1)})


def make_synthetic(n: int, d: int) -> None:
    from simclr.retrieval.collection import read_manifest
    from simclr.retrieval.collection_write import CollectionWriter, create_collection

    folder = folder_of(str(n), d)
    if (folder / "truth.npy").is_file():
        return
    model = fit_model()
    began = time.perf_counter()
    create_collection(folder, {"h": np.zeros((0, d), np.float32), "labels": np.zeros(0, np.int64),
                               "digests": np.zeros((0, 16), np.uint8)}, [],
                      {"network": f"synthetic {n} x {d} (benchmarks/index_ann.py)"}, None)
    with CollectionWriter(folder) as w:
        for c, start in enumerate(range(0, n, CHUNK)):
            rows = min(CHUNK, n - start)
            x, k = generate(model, rows, d, 0, c)
            digests = np.frombuffer(np.random.default_rng([2, c]).bytes(rows * 16), np.uint8).reshape(rows, 16)
            w.add({"h": x, "labels": k, "digests": digests}, [f"s/{start + r:08d}" for r in range(rows)])
        w.commit()
    write_s = time.perf_counter() - began
    queries = generate(model, QUERIES, d, 1, 0)[0]
    np.save(folder / "queries.npy", queries)
    h_file = folder / read_manifest(folder)["files"]["h"]
    record({"step": "data", "n": n, "d": d, "write_s": round(write_s, 1), "h_gb": round(h_file.stat().st_size / 1e9, 2)})
    write_truth(folder, queries)


def similarity_profile() -> None:
    """How alike the synthetic data is to the real: the mean cosine similarity of a query's 1st and 10th nearest
    neighbour (through the default transform, fitted on each), real 60k vs synthetic 60k (128-d and lifted
    512-d), exact search; and the share of zeros."""
    import torch

    from simclr.retrieval.ann import fit_transform, prepare

    real = np.load(ROOT / "real_h.npy")
    real = real[np.random.default_rng(5).permutation(len(real))]  # its file is in class order
    model = fit_model()
    for name, x in (("real 128", real), ("synthetic 128", generate(model, len(real), 128, 7, 0)[0]),
                    ("synthetic 512", generate(model, len(real), 512, 7, 0)[0])):
        for kind in ("whiten", "centre"):
            t = fit_transform(x[200:], np.ones(len(x) - 200, bool), kind)
            base, q = prepare(x[200:], t), prepare(x[:200], t)
            s = torch.topk(q @ base.T, 10, dim=1).values
            record({"step": "profile", "data": name, "transform": kind, "nn1_cos": round(float(s[:, 0].mean()), 4),
                    "nn10_cos": round(float(s[:, 9].mean()), 4), "zeros": round(float((x == 0).mean()), 3)})


# ---------------------------------------------------------------- one configuration
def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "n": len(a)}


def single_latency(searcher: Any, queries: np.ndarray, budget: float, warmup: int = WARMUP,
                   least: int = 5) -> dict[str, float]:
    for q in queries[:warmup]:
        searcher.search(q[None], 10)
    ms: list[float] = []
    began = time.perf_counter()
    for q in queries[:SINGLE]:
        t = time.perf_counter()
        searcher.search(q[None], 10)
        ms.append((time.perf_counter() - t) * 1e3)
        if time.perf_counter() - began > budget and len(ms) >= least:
            break
    return percentiles(ms)


def batched_qps(searcher: Any, queries: np.ndarray, budget: float) -> dict[str, float]:
    done, began = 0, time.perf_counter()
    for start in range(0, len(queries), BATCH):
        searcher.search(queries[start:start + BATCH], 10)
        done += len(queries[start:start + BATCH])
        if time.perf_counter() - began > budget:
            break
    return {"qps": round(done / (time.perf_counter() - began), 1), "batched_queries": done}


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(t.tolist()) & set(f.tolist()) - {-1}) for t, f in zip(truth, found))
    return round(hits / max(1, int((truth >= 0).sum())), 4)


def timed_build(coll: Any, kind: str) -> tuple[dict[str, Any], dict[str, float]]:
    """build_index, timing its parts by wrapping (not changing) the functions it calls: fitting the transform (a
    pass over the vectors), the tuning, the exact searches the tuning does, the commit; the rest is reading the
    training sample and faiss's training and adding."""
    from simclr.retrieval import ann_build
    from simclr.retrieval.ann import Searcher

    spent: dict[str, Any] = {"tune_steps": 0}
    parts = {"transform_s": (ann_build, "fit_transform"), "tune_s": (ann_build, "_tune"),
             "exact_in_tune_s": (Searcher, "_exact"), "commit_s": (ann_build, "_commit")}
    originals = {key: getattr(owner, name) for key, (owner, name) in parts.items()}
    recall_at_10 = ann_build.recall_at_10

    def timed(key: str, fn: Any) -> Any:
        def wrapper(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - t
        return wrapper

    def counted(*a: Any, **kw: Any) -> float:
        spent["tune_steps"] += 1
        return recall_at_10(*a, **kw)

    for key, (owner, name) in parts.items():
        setattr(owner, name, timed(key, originals[key]))
    ann_build.recall_at_10 = counted
    try:
        began = time.perf_counter()
        info = ann_build.build_index(coll, kind)
        spent["build_s"] = time.perf_counter() - began
    finally:
        for key, (owner, name) in parts.items():
            setattr(owner, name, originals[key])
        ann_build.recall_at_10 = recall_at_10
    return info, {k: round(v, 1) if isinstance(v, float) else v for k, v in spent.items()}


def sweep(searcher: Any, queries: np.ndarray, truth: np.ndarray) -> list[dict[str, Any]]:
    """Recall@10 of the held-out queries and p50 of 50 single queries at other search efforts than the tuned
    one (HNSW efSearch; IVF-PQ nprobe at the tuned number re-ranked per result and at 10 and 25): the curve
    the tuning chose its point from, measured on queries that are not in the collection."""
    tuned = (searcher.param, searcher.rerank)
    points = []
    grid = ([(ef, tuned[1]) for ef in (16, 32, 64, 128, 256)] if searcher.kind == "hnsw" else
            [(nprobe, rr) for rr in sorted({tuned[1], 10, 25}) for nprobe in (4, 8, 16, 32, 64, 128, 256)])
    for param, rerank in grid:
        searcher.param, searcher.rerank = param, rerank
        found = searcher.search(queries[:RECALL_QUERIES], 10)[1].numpy()
        lat = single_latency(searcher, queries[:50], 30.0)
        points.append({"param": param, "rerank": rerank, "recall_at_10": recall(found, truth), **lat})
    searcher.param, searcher.rerank = tuned
    return points


def bare_exact(searcher: Any, queries: np.ndarray) -> dict[str, float]:
    """The floor of exact search: the prepared vectors held in memory, one matrix product and one top-k a
    query (no blocks, no deleted rows), p50/p99 of 50 single queries."""
    import torch

    from simclr.retrieval.ann import BLOCK, prepare

    x = torch.cat([prepare(searcher.vectors[lo:lo + BLOCK], searcher.transform)
                   for lo in range(0, len(searcher.vectors), BLOCK)])
    q = prepare(queries[:55], searcher.transform)
    ms = []
    for i in range(len(q)):
        t = time.perf_counter()
        torch.topk(q[i:i + 1] @ x.T, 10, dim=1)
        ms.append((time.perf_counter() - t) * 1e3)
    return percentiles(ms[WARMUP:])


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Searches on one thread: torch's, and faiss's OpenMP (``faiss_module`` wrapped to set one thread; since
    fb314c0 the searcher itself puts faiss on one thread for up to 16 queries, after this). On this VM a parallel
    region of one small query can wait for the second core (in steps of about 8-16 ms); one thread never waits."""
    import torch

    from simclr.retrieval import ann

    threads, original = torch.get_num_threads(), ann.faiss_module

    def single() -> Any:
        faiss = original()
        faiss.omp_set_num_threads(1)
        return faiss

    torch.set_num_threads(1)
    ann.faiss_module = single
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        ann.faiss_module = original
        original()


def run_config(n: str, d: int, kind: str, budget: float) -> None:
    import gc

    import faiss

    from simclr.retrieval.ann_build import open_searcher
    from simclr.retrieval.collection import Collection

    faiss.omp_set_num_threads(len(os.sched_getaffinity(0)))
    folder = folder_of(n, d)
    queries = np.load(folder / "queries.npy")
    truth = np.load(folder / "truth.npy")
    coll = Collection(folder)
    h_file = folder / coll.manifest["files"]["h"]
    row: dict[str, Any] = {"step": "config", "n": n if n == "real" else int(n), "d": d, "kind": kind,
                           "rows": coll.rows, "machine": machine(), "faiss": faiss.__version__}
    reset_peak()
    with AnonPeak() as anon:
        info, spent = timed_build(coll, kind)
    row.update(spent, build_peak_rss_gb=round(_status("VmHWM") / 2**30, 2),
               build_peak_anon_gb=round(anon.peak / 2**30, 2),
               tuned={k: info.get(k) for k in ("param", "rerank", "recall_at_10", "params", "transform")})
    row["index_mb"] = round((folder / info["file"]).stat().st_size / 2**20, 1) if info.get("file") else 0.0
    record({**row, "phase": "built"})

    del coll
    gc.collect()
    reset_peak()
    with AnonPeak() as anon:
        began = time.perf_counter()
        searcher = open_searcher(Collection(folder))
        row["open_s"] = round(time.perf_counter() - began, 2)
        row["cached_before"] = cached_share(h_file)
        row["recall_at_10"] = recall(searcher.search(queries[:RECALL_QUERIES], 10)[1].numpy(), truth)
        slow = kind == "exact" and coll_rows(folder) > 2_000_000  # a query reads (and whitens) every vector
        row["warm"] = single_latency(searcher, queries, budget, warmup=1 if slow else WARMUP, least=3 if slow else 5)
        row.update(batched_qps(searcher, queries, budget))
        if not slow:
            with one_thread():
                row["warm_1thread"] = single_latency(searcher, queries, budget)
    row.update(search_peak_rss_gb=round(_status("VmHWM") / 2**30, 2), search_peak_anon_gb=round(anon.peak / 2**30, 2))
    record({**row, "phase": "searched"})
    if kind != "exact":
        with one_thread():
            row["sweep"] = sweep(searcher, queries, truth)
        record({**row, "phase": "swept"})
        del searcher
        for name, advice in (("cold", None), ("cold_random", "MADV_RANDOM")):
            gc.collect()  # the vectors' file unmapped, so that its pages can leave the page cache
            evict(h_file)
            row[f"{name}_cached_evicted"] = cached_share(h_file)
            searcher = open_searcher(Collection(folder))
            if advice:  # no read-around on a page fault: a re-ranked row reads its own pages only
                searcher.vectors._mmap.madvise(getattr(mmap, advice))
            began = time.perf_counter()
            with one_thread():
                row[name] = single_latency(searcher, queries, budget, warmup=0)
            row[f"{name}_wall_s"] = round(time.perf_counter() - began, 1)
            row[f"{name}_cached_after"] = cached_share(h_file)
            del searcher
        record({**row, "phase": "cold"})
    elif coll_rows(folder) <= 2_000_000:
        row["bare_exact"] = bare_exact(searcher, queries)
        record({**row, "phase": "bare"})


def coll_rows(folder: Path) -> int:
    return int(json.loads((folder / "collection.json").read_text())["rows"])


def run_neighbours(n: str, d: int, kind: str, sample: int = 200) -> None:
    """All-against-all k=10 near neighbours through the collection's index (built by the last --config of
    ``kind``), its recall on a sample of rows, and the exact cost extrapolated from a few batches."""
    import torch

    from simclr.retrieval.ann import Searcher
    from simclr.retrieval.ann_build import build_index, open_searcher
    from simclr.retrieval.collection import Collection

    folder = folder_of(n, d)
    coll = Collection(folder)
    if (coll.index_info or {}).get("kind") != kind:
        build_index(coll, kind)
        coll = Collection(folder)
    searcher = open_searcher(coll)
    reset_peak()
    with AnonPeak() as anon:
        began = time.perf_counter()
        live, _, rows = searcher.neighbours(10)
        all_s = time.perf_counter() - began
    peak = _status("VmHWM")
    exact = Searcher(coll, "h", None, {"kind": "exact", "rows": 0}, searcher.transform)
    pick = np.sort(np.random.default_rng(3).choice(len(live), sample, replace=False))
    truth = exact.search(coll.h[live[pick]], 10, exclude=live[pick])[1].numpy()
    got = rows[torch.as_tensor(pick)].numpy()
    batches, t = 2, time.perf_counter()
    for b in range(batches):
        part = live[b * 4096:(b + 1) * 4096]
        exact.search(coll.h[part], 10, exclude=part)
    per_row = (time.perf_counter() - t) / (batches * 4096)
    record({"step": "neighbours", "n": int(n), "d": d, "kind": kind, "rows": len(live), "all_s": round(all_s, 1),
            "recall_at_10_sample": recall(got, truth), "exact_extrapolated_s": round(per_row * len(live), 1),
            "peak_rss_gb": round(peak / 2**30, 2), "peak_anon_gb": round(anon.peak / 2**30, 2), "machine": machine()})


# ---------------------------------------------------------------- driving and tables
def done() -> list[dict[str, Any]]:
    path = ROOT / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _child(args: list[str]) -> None:
    cmd = [sys.executable, __file__, "--root", str(ROOT), *args]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=False)


def run_all(budget: float) -> None:
    def have(n: Any, d: int, kind: str) -> bool:
        return any(r.get("step") == "config" and r.get("phase") == "searched" and str(r["n"]) == str(n)
                   and r["d"] == d and r["kind"] == kind for r in done())

    _child(["--data", "real"])
    _child(["--profile"])
    plan = [("real", 128), (1_000_000, 128), (1_000_000, 512), (10_000_000, 128), (10_000_000, 512)]
    for n, d in plan:
        _child(["--data", str(n), str(d)])
        for kind in ("exact", "ivfpq", "hnsw"):
            if have(n, d, kind):
                continue
            if kind == "hnsw" and n == 10_000_000:
                if d == 512:
                    record({"step": "skip", "n": n, "d": d, "kind": kind, "why": "not run: memory (HNSW's copy "
                            "of every vector, about 22 GB, beside 20 GB of memory-mapped vectors on 24 GiB)"})
                    continue
                one = [r for r in done() if r.get("phase") == "built" and r["n"] == 1_000_000 and r["d"] == d
                       and r["kind"] == "hnsw"]
                estimate = 10 * 1.15 * one[-1]["build_s"] if one else float("inf")  # ~log N more per insertion
                if estimate > 40 * 60:
                    record({"step": "skip", "n": n, "d": d, "kind": kind, "estimate_build_s": round(estimate),
                            "why": "not run: the build would exceed 40 minutes on 2 cores"})
                    continue
            _child(["--config", str(n), str(d), kind, "--budget", str(budget)])
        if (n, d) == (1_000_000, 128):
            for kind in ("hnsw", "ivfpq"):
                _child(["--neighbours", str(n), str(d), kind])


def _ms(m: dict[str, Any] | None) -> str:
    return "-" if not m else f"{m['p50_ms']:,.2f} / {m['p99_ms']:,.2f}" + (f" (n={m['n']})" if m["n"] < 200 else "")


def _times(x: float) -> str:
    return f"{x:,.0f}x" if x >= 10 else f"{x:.1f}x"


def _effort(kind: str, param: Any, rerank: Any) -> str:
    return "-" if kind == "exact" else (f"ef {param}" if kind == "hnsw" else f"nprobe {param}, rerank {rerank}")


def table() -> None:
    """The tables of BENCHMARKS.md, from the last run of each configuration in results.jsonl: one a collection,
    then the ANN kinds' cold latencies and held-out sweeps."""
    rows = [r for r in done() if r.get("step") == "config" and r.get("phase") in ("searched", "swept", "cold", "bare")]
    skips = [r for r in done() if r.get("step") == "skip"]
    seen: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in rows:
        seen.setdefault((str(r["n"]), r["d"]), {})[r["kind"]] = r  # the last record of the last run wins
    for (n, d), kinds in seen.items():
        exact = kinds.get("exact")
        print(f"\n**{'CIFAR-10 h' if n == 'real' else f'{int(n):,}'} x {d}** "
              f"({next(iter(kinds.values()))['rows']:,} vectors)\n")
        print("| | build s (tuning) | index MB | peak RSS GB: build / search (anonymous) | effort tuned (recall on "
              "its sample) | recall@10, held-out | p50 / p99 ms | p50 / p99 ms, one thread | QPS, batches of 256 | "
              "speed-up vs exact, p50 (one thread) | load |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for kind in ("exact", "hnsw", "ivfpq"):
            r = kinds.get(kind)
            if r is None:
                why = next((s["why"] for s in skips if str(s["n"]) == n and s["d"] == d and s["kind"] == kind), "")
                if why:
                    print(f"| {kind} | {why} |" + " |" * 9)
                continue
            w, w1, t = r["warm"], r.get("warm_1thread"), r["tuned"]
            speed = "-"
            if exact and kind != "exact":
                speed = _times(exact["warm"]["p50_ms"] / w["p50_ms"])
                if w1 and exact.get("warm_1thread"):
                    speed += f" ({_times(exact['warm_1thread']['p50_ms'] / w1['p50_ms'])})"
            tuned = "-" if kind == "exact" else f"{_effort(kind, t['param'], t['rerank'])} ({t['recall_at_10']:.3f})"
            print(f"| {kind} | {r['build_s']:,.0f} ({r.get('tune_s', 0):,.0f}) | {r['index_mb']:,.0f} | "
                  f"{r['build_peak_rss_gb']:.1f} / {r['search_peak_rss_gb']:.1f} ({r['search_peak_anon_gb']:.1f}) | "
                  f"{tuned} | {r['recall_at_10']:.3f} | {_ms(w)} | {_ms(w1)} | {r['qps']:,.0f} | {speed} | "
                  f"{r['load'][0]:.1f} |")
        if exact and exact.get("bare_exact"):
            print(f"\nExact search's floor here (one matrix product and top-k over the vectors prepared in memory): "
                  f"p50 {exact['bare_exact']['p50_ms']:.1f} ms a query.")
    print("\n| collection | kind | cold p50 / p99 ms (200 queries' wall s; file read back) | cold with MADV_RANDOM |")
    print("|---|---|---|---|")
    for (n, d), kinds in seen.items():
        for kind, r in kinds.items():
            if "cold" in r:
                cells = [f"{_ms(r[c])} ({r.get(f'{c}_wall_s')} s; {r.get(f'{c}_cached_after') or 0:.0%})" if c in r
                         else "-" for c in ("cold", "cold_random")]
                print(f"| {n} x {d} | {kind} | {cells[0]} | {cells[1]} |")
    print("\n| collection | kind | held-out recall@10 / p50 ms (one thread) at each effort |")
    print("|---|---|---|")
    for (n, d), kinds in seen.items():
        for kind, r in kinds.items():
            if r.get("sweep"):
                pts = "; ".join(f"{_effort(kind, p['param'], p['rerank'])}: {p['recall_at_10']:.3f} / {p['p50_ms']:.2f}"
                                for p in r["sweep"])
                print(f"| {n} x {d} | {kind} | {pts} |")
    for r in done():
        if r.get("step") in ("neighbours", "profile", "data", "truth", "skip"):
            print(json.dumps(r))


def main() -> None:
    global ROOT
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=str(ROOT))
    p.add_argument("--checkpoint", default="/tmp/bench-c10")
    p.add_argument("--images", default="/tmp/c10jpg")
    p.add_argument("--budget", type=float, default=120.0, help="seconds at most a latency or QPS measurement")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--all", action="store_true")
    g.add_argument("--data", nargs="+", metavar="N [D]")
    g.add_argument("--profile", action="store_true")
    g.add_argument("--config", nargs=3, metavar=("N", "D", "KIND"))
    g.add_argument("--neighbours", nargs=3, metavar=("N", "D", "KIND"))
    g.add_argument("--table", action="store_true")
    a = p.parse_args()
    ROOT = Path(a.root)
    if a.all:
        run_all(a.budget)
    elif a.data:
        make_real(a.checkpoint, a.images) if a.data[0] == "real" else make_synthetic(int(a.data[0]), int(a.data[1]))
    elif a.profile:
        similarity_profile()
    elif a.config:
        run_config(a.config[0], int(a.config[1]), a.config[2], a.budget)
    elif a.neighbours:
        run_neighbours(a.neighbours[0], int(a.neighbours[1]), a.neighbours[2])
    else:
        table()


if __name__ == "__main__":
    main()
