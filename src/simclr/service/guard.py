"""The HTTP layer of ``simclr serve`` under its routes: every error as JSON ``{"error": "one line",
"status": N}`` (FastAPI's and Starlette's own included), one log line a request, the request body's size
limit, and a 500 ``internal error`` for anything that escapes, its traceback to the server's log only."""

from __future__ import annotations

import logging
import time
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from simclr.errors import InputError
from simclr.retrieval.catalogue import UnknownItem
from simclr.service.uploads import UploadError

LOG = logging.getLogger("simclr.serve")


def _line(text: str) -> str:
    return " ".join(text.split())[:500]


def error(status: int, message: str, headers: Any = None) -> JSONResponse:
    """The JSON answer of every error."""
    return JSONResponse({"error": _line(message) or HTTPStatus(status).phrase.lower(), "status": status},
                        status_code=status, headers=headers)


class Guard:
    """The outermost layer: one log line per request (method, path, status, ms), the body's size limit, and a
    500 ``internal error`` for anything that escapes (the traceback to the log only)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status, seen = time.perf_counter(), [0], [0]
        too_large = f"the request is larger than {self.limit:,} bytes"

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
            await send(message)

        async def counting() -> Message:
            message = await receive()
            seen[0] += len(message.get("body", b""))
            if seen[0] > self.limit:
                raise HTTPException(413, too_large)
            return message

        try:
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and not length.isdigit():
                await error(400, "bad Content-Length")(scope, receive, sending)
            elif length is not None and int(length) > self.limit:  # refused before reading the body
                await error(413, too_large)(scope, receive, sending)
            else:
                await self.app(scope, counting, sending)
        except ClientDisconnect:  # the client went away mid-request: nobody to answer
            status[0] = status[0] or 499
        except Exception:
            LOG.exception("%s %s failed", scope["method"], scope["path"])
            if not status[0]:
                await error(500, "internal error")(scope, receive, sending)
        finally:
            LOG.info("%s %s %d %.1f ms", scope["method"], scope["path"], status[0] or 500,
                     (time.perf_counter() - started) * 1000)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = str(exc.detail)
    if message == HTTPStatus(exc.status_code).phrase:  # Starlette's own: say what was not found or allowed
        message = {404: f"not found: {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code,
                                                                                      message.lower())
    return error(exc.status_code, message, exc.headers)


async def invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', 'invalid')}"
             for e in exc.errors()]
    return error(422, "; ".join(parts) or "invalid request")


async def refused(request: Request, exc: Exception) -> JSONResponse:
    status = exc.status if isinstance(exc, UploadError) else 404 if isinstance(exc, UnknownItem) else 422
    return error(status, str(exc))


HANDLERS: dict[Any, Any] = {HTTPException: http_error, RequestValidationError: invalid, InputError: refused}
"""The exception handlers of the application: each exception as its JSON error."""
