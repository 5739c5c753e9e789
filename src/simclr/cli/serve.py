"""``simclr serve``: the web page and JSON API of an embedded collection (:mod:`simclr.service`), through
uvicorn. fastapi and uvicorn (the 'serve' extra) are imported only when the command runs, so ``simclr --help``
stays fast and works without them."""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import logging
import os
import sys
from pathlib import Path
from typing import Any

from simclr.errors import InputError, missing_extra
from simclr.interrupts import terminate_as_interrupt

TOKEN_VARIABLE = "SIMCLR_TOKEN"
EXTRA = "serve"
"""The extra that installs fastapi, uvicorn and python-multipart."""


def serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="a web page and JSON API to search an embedded collection (and manage "
                                     "it with a token)")
    p.add_argument("--index", required=True, type=Path,
                   help="the collection: a folder from simclr embed --out FOLDER")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default 127.0.0.1: this machine only; any other needs "
                        "--token)")
    p.add_argument("--port", type=int, default=8000, help="the port (default 8000; 0: any free one)")
    p.add_argument("--token",
                   help=f"the bearer token that adding and deleting images need (default: ${TOKEN_VARIABLE}, "
                        "which other users cannot see in the process list); without one the catalogue is "
                        "read-only")
    p.add_argument("--max-upload-mb", type=float, default=20.0,
                   help="largest image file accepted, in MiB (default 20)")
    p.add_argument("--max-pixels", type=int, default=40_000_000,
                   help="most pixels of an image accepted, read from its header before decoding (default "
                        "40000000)")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only: localhost, 127.0.0.0/8 or ::1."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _settings(args: argparse.Namespace) -> tuple[str | None, int, int]:
    """The token, the largest upload in bytes and the most pixels, checked."""
    token = args.token if args.token is not None else os.environ.get(TOKEN_VARIABLE) or None
    if token is not None and (not token or not token.isascii() or not token.isprintable() or " " in token):
        raise InputError("the token must be printable ASCII without spaces" + (", and not empty" if not token
                                                                                else ""))
    if token is None and not is_loopback(args.host):
        raise InputError(f"--host {args.host} reaches beyond this machine: give --token (or "
                         f"${TOKEN_VARIABLE}), or listen on 127.0.0.1")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be 0..65535, got {args.port}")
    if not 0 < args.max_upload_mb < 2**20:  # nan and inf refused too
        raise InputError(f"--max-upload-mb must be > 0 and < {2**20}, got {args.max_upload_mb}")
    if args.max_pixels < 1:
        raise InputError(f"--max-pixels must be >= 1, got {args.max_pixels}")
    return token, int(args.max_upload_mb * 2**20), args.max_pixels


def _url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def _log_to_stderr() -> None:
    """The service's log lines (one a request) on stderr, as uvicorn's own."""
    log = logging.getLogger("simclr.serve")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def run_serve(args: argparse.Namespace) -> int:
    token, max_bytes, max_pixels = _settings(args)
    found = importlib.util.find_spec
    if not (found("fastapi") and found("uvicorn") and (found("python_multipart") or found("multipart"))):
        raise missing_extra("simclr serve", EXTRA)
    import uvicorn

    from simclr.retrieval.catalogue import open_catalogue
    from simclr.service.app import create_app

    try:
        catalogue = open_catalogue(args.index)
    except OSError as exc:
        raise InputError(f"cannot open {args.index}: {exc.strerror or exc}") from None
    app = create_app(catalogue, token=token, max_bytes=max_bytes, max_pixels=max_pixels)
    _log_to_stderr()
    what = (f"{len(catalogue):,} images, {catalogue.kind} index; "
            + ("writable with the token" if token else "read-only"))

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:  # the port as bound (--port 0 picks one)
                port = next((s.getsockname()[1] for srv in self.servers for s in srv.sockets), args.port)
                print(f"simclr serve: {_url(args.host, port)} ({what}); Ctrl-C stops it", flush=True)

    server = Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="info", access_log=False))
    stopped = False
    with terminate_as_interrupt():
        try:
            server.run()
        except KeyboardInterrupt:  # uvicorn shuts down gracefully on Ctrl-C and SIGTERM, then raises the
            stopped = True         # signal again: here, a KeyboardInterrupt (Terminated for SIGTERM)
    if not server.started and not stopped:
        raise InputError(f"the server did not start on {args.host}:{args.port} (see the lines above)")
    return 0
