"""`simclr serve` under a bounded load on loopback: requests per second, p50 and p99 latency and errors at 1, 8
and 32 concurrent clients, for search by catalogue item (GET /api/search?id=) and by uploaded photo
(POST /api/search), on the 50,000-image CIFAR-10 training collection.

The collection is embedded once (`simclr embed --out FOLDER`, then `simclr index build`) with the checkpoint
given (default: the 15-minute CPU benchmark's run folder), into --work. The server runs as a subprocess bound
to 127.0.0.1; the clients are asyncio tasks sharing one httpx.AsyncClient. Every level sends a fixed number of
requests and stops at a time limit, whichever comes first; traffic never leaves the loopback address.

Usage: python benchmarks/service_load.py [--checkpoint RUN] [--work /tmp/simclr-service-bench]
       [--id-requests 2000] [--upload-requests 300] [--time-limit 60]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import numpy as np
from machine import machine  # benchmarks/machine.py
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "cifar10-jpg.tar.gz"
SIMCLR = [sys.executable, "-m", "simclr"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def collection(work: Path, checkpoint: str) -> Path:
    """The CIFAR-10 train split as an indexed collection folder (made once)."""
    folder = work / "c10-train"
    if (folder / "collection.json").is_file():
        return folder
    images = work / "c10jpg"
    if not (images / "train").is_dir():
        with tarfile.open(DATA) as tar:
            tar.extractall(images, filter="data")
    subprocess.run([*SIMCLR, "embed", "--checkpoint", checkpoint, "--data", str(images), "--split", "train",
                    "--out", str(folder), "--quiet"], check=True)
    subprocess.run([*SIMCLR, "index", "build", "--embeddings", str(folder), "--quiet"], check=True)
    return folder


def query_photos(work: Path, n: int = 64) -> list[bytes]:
    """JPEG bytes of test images (not in the collection), upscaled to 128 px like a phone's thumbnail."""
    files = sorted((work / "c10jpg" / "test").rglob("*.jpg"))
    random.Random(0).shuffle(files)
    out = []
    for f in files[:n]:
        buf = io.BytesIO()
        Image.open(f).convert("RGB").resize((128, 128)).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


async def load(url: str, make_request, requests: int, clients: int, limit: float) -> dict:
    """``requests`` requests from ``clients`` concurrent tasks (or until ``limit`` seconds): latencies."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + limit
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        async def worker(seed: int) -> None:
            nonlocal sent, errors
            rng = random.Random(seed)
            while sent < requests and time.perf_counter() < deadline:
                sent += 1
                began = time.perf_counter()
                try:
                    response = await make_request(client, rng)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - began)
                errors += not ok

        began = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
        wall = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "errors": errors, "wall_s": round(wall, 2),
            "rps": round(len(latencies) / wall, 1), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="/tmp/bench-c10")
    parser.add_argument("--work", type=Path, default=Path("/tmp/simclr-service-bench"))
    parser.add_argument("--id-requests", type=int, default=2000)
    parser.add_argument("--upload-requests", type=int, default=300)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP_NUM_THREADS of the server (default: as the environment says)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    folder = collection(args.work, args.checkpoint)
    photos = query_photos(args.work)
    info = json.loads((folder / "collection.json").read_text())
    ids = np.arange(info["rows"])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {}))
    server = subprocess.Popen([*SIMCLR, "serve", "--index", str(folder), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        health = httpx.get(f"{url}/api/health").json()
        print(f"# {machine()}; load average {os.getloadavg()[0]:.2f}")
        print(f"# server: {health}")

        async def by_id(client, rng):
            return await client.get("/api/search", params={"id": int(rng.choice(ids)), "k": args.k})

        async def by_upload(client, rng):
            files = {"image": ("q.jpg", rng.choice(photos), "image/jpeg")}
            return await client.post("/api/search", params={"k": args.k}, files=files)

        rows = []
        for name, make, n in (("id", by_id, args.id_requests), ("upload", by_upload, args.upload_requests)):
            asyncio.run(load(url, make, 20, 4, args.time_limit))  # warm-up, not counted
            for clients in (1, 8, 32):
                row = {"search": name, **asyncio.run(load(url, make, n, clients, args.time_limit))}
                rows.append(row)
                print(json.dumps(row))
        print("| search by | clients | requests | errors | req/s | p50 ms | p99 ms |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['search']} | {r['clients']} | {r['requests']} | {r['errors']} | {r['rps']} | "
                  f"{r['p50_ms']} | {r['p99_ms']} |")
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
        print(f"# server exit code after SIGTERM: {code}")


if __name__ == "__main__":
    main()
