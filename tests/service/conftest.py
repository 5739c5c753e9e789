"""Fixtures of the ``simclr serve`` tests: a small real collection (the test split of the 700-image CIFAR
subset, 200 images, plus two exact copies of one so that a near-duplicate group exists) embedded with an
untrained checkpoint, clients of the application over it, and a live server for the browser tests."""

from __future__ import annotations

import io
import shutil
import socket
import struct
import tarfile
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="session")
def service_data(tmp_path_factory, mini_archive) -> Path:
    """The CIFAR subset as a folder, with test/airplane/copy1.jpg and copy2.jpg copies of its first image."""
    root = tmp_path_factory.mktemp("service-data")
    with tarfile.open(mini_archive) as tar:
        tar.extractall(root, filter="data")
    first = min((root / "test" / "airplane").glob("*.jpg"))
    for i in (1, 2):
        shutil.copy(first, first.with_name(f"copy{i}.jpg"))
    return root


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, make_checkpoint) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("service-run") / "untrained.pt")


def embed_collection(checkpoint: Path, data: Path, out: Path, split: str = "test") -> Path:
    """A collection folder of ``data``'s ``split`` at ``out`` (replacing what is there, as the library's
    collect.embed_collection can: ``simclr embed`` asks for --update)."""
    from simclr.evaluation.setup import eval_setup
    from simclr.retrieval.collect import embed_collection as embed_into

    setup = eval_setup(data, image_size=0, device="auto", batch_size=256, workers=0, progress=False)
    embed_into(checkpoint, setup, split, False, out, update=False)
    return out


@pytest.fixture(scope="session")
def collection(tmp_path_factory, checkpoint, service_data) -> Path:
    """The collection folder of the test split (202 images): read-only, shared by the session."""
    return embed_collection(checkpoint, service_data, tmp_path_factory.mktemp("service") / "collection")


@pytest.fixture
def collection_copy(collection, tmp_path) -> Path:
    """A copy of the collection, for a test that changes it."""
    return Path(shutil.copytree(collection, tmp_path / "collection", ignore=shutil.ignore_patterns(".lock")))


@pytest.fixture(scope="session")
def catalogue(collection):
    from simclr.retrieval.catalogue import open_catalogue

    return open_catalogue(collection)


def make_client(catalogue, **settings):
    """A TestClient of the application over ``catalogue`` (its errors answered as a browser sees them)."""
    from fastapi.testclient import TestClient

    from simclr.service.app import create_app

    return TestClient(create_app(catalogue, **settings), raise_server_exceptions=False)


@pytest.fixture(scope="session")
def client(catalogue):
    """A read-only client (no token), uploads up to 1 MiB and 1 megapixel."""
    with make_client(catalogue, max_bytes=2**20, max_pixels=1_000_000, max_files=4) as c:
        yield c


@pytest.fixture
def writable(collection_copy):
    """A client of a copy of the collection, writable with TOKEN."""
    from simclr.retrieval.catalogue import open_catalogue

    with make_client(open_catalogue(collection_copy), token=TOKEN) as c:
        yield c


@pytest.fixture(scope="session")
def query_image(service_data) -> Path:
    """A real photo of the collection (a cat)."""
    return sorted((service_data / "test" / "cat").glob("*.jpg"))[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def live_server(catalogue) -> Iterator[str]:
    """The application served by uvicorn in a thread on a free port of 127.0.0.1: its base URL."""
    import uvicorn

    from simclr.service.app import create_app

    server = uvicorn.Server(uvicorn.Config(create_app(catalogue, token=TOKEN), host="127.0.0.1",
                                           port=free_port(), log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True, name="live-server")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the live server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.config.port}"
    server.should_exit = True
    thread.join(10)


def jpeg(size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG", quality=90)
    return out.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit black PNG of ``width`` x ``height``: a few KB that decode to width * height pixels (made
    row by row, never held whole)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), b"\0" * (1 + (width + 7) // 8)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
