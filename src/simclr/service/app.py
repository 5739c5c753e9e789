"""The web application of ``simclr serve`` (FastAPI): the page, and a JSON API over a catalogue.

Every error is JSON ``{"error": "one line", "status": N}``, a failure's traceback going to the server's log
only. Each request first refreshes the catalogue (a cheap stat unless the collection changed on disk, then
the new one is swapped in). Embedding, searching and decoding run in the thread pool, never on the event loop.
Writes need ``Authorization: Bearer TOKEN``; without a token the server is read-only. A request's body is
refused past ``max_files`` files of ``max_bytes`` (by its Content-Length before anything is read, else by its
bytes as they come), each file past ``max_bytes`` bytes or ``max_pixels`` pixels (from its header, before
decoding; :mod:`simclr.service.uploads`).
"""

from __future__ import annotations

import io
import math
import secrets
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from simclr.errors import InputError
from simclr.retrieval.catalogue import Catalogue
from simclr.service.guard import HANDLERS, LOG, Guard
from simclr.service.uploads import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    check_bytes,
    check_image,
    open_image,
    read_image,
)

STATIC = Path(__file__).with_name("static")
MAX_K = 1000
SYNC_DUPLICATES = 20_000
"""Collections up to this many images get their near-duplicate groups at once; larger ones in the
background (202 until ready)."""
PAGE_HEADERS = {"Cache-Control": "no-cache", "Content-Security-Policy": (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'")}
MULTIPART = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["image"],
    "properties": {"image": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}}


class _Duplicates:
    """The near-duplicate groups of each catalogue generation (and threshold), computed in a background thread
    for large collections (``None`` while computing)."""

    def __init__(self, sync_below: int) -> None:
        self.sync_below = sync_below
        self.jobs: OrderedDict[tuple[int, float | None], Future[Any]] = OrderedDict()
        self.lock = threading.Lock()

    def groups(self, cat: Catalogue, threshold: float | None) -> Any:
        if len(cat) <= self.sync_below:
            return cat.duplicates(threshold)
        key = (cat.generation, threshold)  # not the object: every request has its own snapshot of it
        with self.lock:
            job = self.jobs.get(key)
            if job is None and any(not j.done() for j in self.jobs.values()):
                return None  # one computation at a time: asked again once it is done
            if job is None:
                job = self.jobs[key] = Future()
                while len(self.jobs) > 4:
                    self.jobs.popitem(last=False)
                threading.Thread(target=self._compute, args=(cat, threshold, key, job), daemon=True,
                                 name="simclr-duplicates").start()
        return job.result() if job.done() else None  # a failure is raised to one request; the next retries

    def _compute(self, cat: Catalogue, threshold: float | None, key: Any, job: Future[Any]) -> None:
        try:
            job.set_result(cat.duplicates(threshold))
        except Exception as exc:  # noqa: BLE001 -- logged here, raised to the request that asks next
            LOG.exception("the near-duplicate groups failed")
            with self.lock:
                self.jobs.pop(key, None)
            job.set_exception(exc)


@dataclass
class Service:
    """What the routes share: the catalogue and the server's settings (``app.state.service``)."""

    catalogue: Catalogue
    token: str | None
    max_bytes: int
    max_pixels: int
    max_files: int
    duplicates: _Duplicates
    busy: int
    limiter: list[anyio.Semaphore] = field(default_factory=list)

    def snapshot(self) -> Catalogue:
        """The catalogue, refreshed from disk if the collection changed there, pinned to that generation."""
        try:
            self.catalogue.refresh()
        except InputError as exc:  # a collection half-replaced on disk: keep answering from the last good one
            LOG.warning("the collection could not be reopened (still serving the last one): %s",
                        " ".join(str(exc).split()))
        return self.catalogue.snapshot()  # one generation for the whole request

    async def heavy(self, work: Any, *args: Any) -> Any:
        """``work(*args)`` in the thread pool, at most ``busy`` at once."""
        if not self.limiter:
            self.limiter.append(anyio.Semaphore(self.busy))
        async with self.limiter[0]:
            return await run_in_threadpool(work, *args)

    def check_token(self, request: Request) -> None:
        if self.token is None:
            raise HTTPException(403, "this server is read-only: it was started without a token (--token or "
                                     "$SIMCLR_TOKEN)")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        right = secrets.compare_digest(given.strip().encode(), self.token.encode())
        if scheme.lower() != "bearer" or not right:
            raise HTTPException(401, "missing or wrong token (Authorization: Bearer TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})

    async def uploads(self, request: Request) -> list[UploadFile]:
        """The files of the multipart field ``image``."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "multipart/form-data":
            raise HTTPException(415, f"send the images as multipart/form-data (field 'image'), not "
                                     f"{kind or 'nothing'}")
        try:
            form = await request.form(max_files=self.max_files, max_fields=100)
        except HTTPException as exc:
            if exc.status_code == 400 and "too many files" in str(exc.detail).lower():
                raise HTTPException(413, f"more than {self.max_files} files in one request") from None
            raise
        files = form.getlist("image")
        wrong = "no image: send the files in the multipart field 'image'" if not files else \
            "the field 'image' must hold files, not text" if any(isinstance(f, str) for f in files) else None
        if wrong:
            await form.close()
            raise HTTPException(422, wrong)
        return [f for f in files if isinstance(f, UploadFile)]

    def contents(self, files: list[UploadFile]) -> list[tuple[str, bytes]]:
        """Each file's name (without folders) and bytes, none larger than ``max_bytes``, every header checked
        (before anything is decoded)."""
        named = []
        for f in files:
            name = PurePosixPath((f.filename or "upload").replace("\\", "/")).name or "upload"
            check_bytes(f.size or 0, self.max_bytes, repr(name))
            data = f.file.read(self.max_bytes + 1)
            check_bytes(len(data), self.max_bytes, repr(name))
            open_image(data, name, max_bytes=self.max_bytes, max_pixels=self.max_pixels).close()
            named.append((name, data))
        return named

    def search_uploads(self, cat: Catalogue, files: list[UploadFile], k: int) -> list[list[dict[str, Any]]]:
        named = self.contents(files)
        results: list[list[dict[str, Any]]] = []
        batch: list[Image.Image] = []
        for i, (name, data) in enumerate(named):  # decoded a few megapixels at a time
            batch.append(read_image(data, name, max_bytes=self.max_bytes, max_pixels=self.max_pixels))
            if i == len(named) - 1 or sum(p.width * p.height for p in batch) >= self.max_pixels:
                results += [[_hit(cat, h) for h in row] for row in cat.search_pictures(batch, k)]
                batch = []
        return results

    def add(self, cat: Catalogue, files: list[UploadFile]) -> list[dict[str, Any]]:
        named = self.contents(files)
        for name, data in named:
            check_image(data, name, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
        return [{"id": int(hit.id), "path": hit.path} for hit in cat.add_pictures(named)]


def _service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def _snapshot(request: Request) -> Catalogue:
    return _service(request).snapshot()


Snapshot = Annotated[Catalogue, Depends(_snapshot)]
K = Annotated[int, Query(ge=1, le=MAX_K, description="results per query")]
router = APIRouter()


def _hit(cat: Catalogue, hit: Any) -> dict[str, Any]:
    label = int(hit.label)
    return {"rank": int(hit.rank), "id": int(hit.id), "path": hit.path,
            "label": label if label >= 0 else None, "class": cat.class_name(label) if label >= 0 else None,
            "score": round(float(hit.score), 6)}


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)


@router.get("/api/health")
def health(request: Request, cat: Snapshot) -> dict[str, Any]:
    return {"status": "ok", "images": len(cat), "index": cat.kind, "dim": cat.dim,
            "writable": bool(_service(request).token),
            "classes": None if cat.classes is None else list(cat.classes)}


@router.post("/api/search", openapi_extra=MULTIPART)
async def search_by_image(request: Request, cat: Snapshot, k: K = 10) -> dict[str, Any]:
    """The most similar items of each uploaded image (multipart field ``image``, one or more files)."""
    service = _service(request)
    files = await service.uploads(request)
    try:
        return {"results": await service.heavy(service.search_uploads, cat, files, k)}
    finally:
        await request.close()  # the form's files, spooled to disk when large


@router.get("/api/search")
def search_by_id(id: int, cat: Snapshot, k: K = 10) -> dict[str, Any]:
    """The most similar items of item ``id`` (itself left out)."""
    query = _hit(cat, cat.item(id))
    hits = cat.search_ids([id], k)[0]
    return {"query": {key: query[key] for key in ("id", "path", "label", "class")},
            "results": [[_hit(cat, h) for h in hits]]}


@router.get("/api/duplicates", response_model=None)
def near_duplicates(request: Request, cat: Snapshot, page: Annotated[int, Query(ge=1)] = 1,
                    per_page: Annotated[int, Query(ge=1, le=200)] = 20,
                    threshold: Annotated[float | None, Query(ge=-1.0, le=1.0)] = None,
                    id: int | None = None) -> dict[str, Any] | JSONResponse:
    """The near-duplicate groups, largest first (the first of each: the one to keep), a page at a time; or
    with ``id``, that item's near-duplicates. 202 ``{"status": "computing"}`` while a large collection's
    groups are being computed."""
    if id is not None:
        return {"id": id, "duplicates": [_hit(cat, h) for h in cat.duplicates_of(id, threshold)]}
    groups = _service(request).duplicates.groups(cat, threshold)
    if groups is None:
        return JSONResponse({"status": "computing"}, status_code=202, headers={"Retry-After": "1"})
    pages = max(1, math.ceil(len(groups) / per_page))
    page = min(page, pages)
    used = getattr(groups, "threshold", threshold)
    return {"groups": [[_hit(cat, h) for h in g] for g in groups[(page - 1) * per_page:page * per_page]],
            "page": page, "pages": pages, "groups_total": len(groups),
            "threshold": None if used is None else float(used)}


@router.get("/api/images/{id}", response_class=Response, responses={200: {"content": {"image/jpeg": {}}}})
def image(id: int, cat: Snapshot, request: Request,
          size: Annotated[int | None, Query(ge=1, le=1024)] = None) -> Response:
    """Item ``id``'s image as JPEG, its longest side at most ``size`` when given."""
    tag = f'"{cat.etag(id)}-{size or 0}"'
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=304, headers={"ETag": tag, "Cache-Control": "no-cache"})
    picture = cat.picture(id)
    if size is not None:
        picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    picture.convert("RGB").save(out, "JPEG", quality=90)
    # revalidated each time (304 while unchanged): an id may name another image once the collection is
    # embedded anew
    return Response(out.getvalue(), media_type="image/jpeg",
                    headers={"ETag": tag, "Cache-Control": "no-cache"})


@router.post("/api/items", status_code=201, openapi_extra=MULTIPART)
async def add_items(request: Request, cat: Snapshot) -> dict[str, Any]:
    """Add the uploaded images (multipart field ``image``) to the catalogue; needs the token."""
    service = _service(request)
    service.check_token(request)  # before the body is read
    files = await service.uploads(request)
    try:
        return {"items": await service.heavy(service.add, cat, files)}
    finally:
        await request.close()


@router.delete("/api/items/{id}")
def delete_item(id: int, request: Request, cat: Snapshot) -> dict[str, Any]:
    """Remove item ``id`` from the catalogue; needs the token."""
    _service(request).check_token(request)
    cat.delete(id)
    return {"deleted": id}


def create_app(catalogue: Catalogue, *, token: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS, max_files: int = 10,
               sync_duplicates: int = SYNC_DUPLICATES, busy: int = 2) -> FastAPI:
    """The application over ``catalogue`` (see the module's docstring). ``token``: the bearer token of writes
    (None: read-only); ``max_files`` files a request at most; near-duplicates computed at once up to
    ``sync_duplicates`` images, else in the background; ``busy``: requests decoding and embedding uploads at
    once at most."""
    app = FastAPI(title="simclr serve", summary="Search an embedded image collection", docs_url="/docs",
                  redoc_url=None)
    app.state.service = Service(catalogue, token, max_bytes, max_pixels, max_files,
                                _Duplicates(sync_duplicates), busy)
    app.add_middleware(Guard, limit=max_files * max_bytes + 2**20)
    for exception, handler in HANDLERS.items():
        app.add_exception_handler(exception, handler)
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
