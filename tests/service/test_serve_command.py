"""The ``simclr serve`` command: its refusals (one line, exit code 2), and a real server in a subprocess that
answers and exits 0 on SIGTERM or Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from simclr.cli import main
from simclr.cli.serve import is_loopback

from .conftest import TOKEN


def _refused(capsys, argv: list[str], *words: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("simclr: error: "), err
    for word in words:
        assert word in err, err


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
def test_a_host_beyond_this_machine_needs_a_token(collection, capsys, monkeypatch, host):
    monkeypatch.delenv("SIMCLR_TOKEN", raising=False)
    _refused(capsys, ["serve", "--index", str(collection), "--host", host], "--token", "127.0.0.1")


def test_loopback_hosts():
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "localhost.example.com", "128.0.0.1", ""):
        assert not is_loopback(host), host


def test_bad_settings_and_indexes(collection, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SIMCLR_TOKEN", raising=False)
    _refused(capsys, ["serve", "--index", str(tmp_path / "missing")], "missing")
    (tmp_path / "file.npz").write_bytes(b"x")
    _refused(capsys, ["serve", "--index", str(tmp_path / "file.npz")], "simclr index convert")
    index = ["serve", "--index", str(collection)]
    for size in ("0", "inf", "nan"):
        _refused(capsys, [*index, "--max-upload-mb", size], "--max-upload-mb")
    _refused(capsys, [*index, "--max-pixels", "-1"], "--max-pixels")
    _refused(capsys, [*index, "--port", "70000"], "--port")
    _refused(capsys, [*index, "--token", "two words"], "token")


def _start(collection, *extra: str, env: dict[str, str] | None = None):
    """``python -m simclr serve`` on a free port: the process and its base URL (from the line it prints)."""
    command = [sys.executable, "-m", "simclr", "serve", "--index", str(collection), "--port", "0", *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    line = process.stdout.readline()  # printed once the port is bound
    found = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if not found:
        process.kill()
        pytest.fail(f"no URL in {line!r}: {process.communicate()[1][-2000:]}")
    return process, found.group(0)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_and_stops_cleanly(collection, stop):
    process, url = _start(collection, env={"SIMCLR_TOKEN": TOKEN})
    try:
        health = httpx.get(url + "api/health", timeout=30).json()
        assert health["status"] == "ok" and health["images"] == 202 and health["writable"] is True
        refused = httpx.post(url + "api/items", timeout=30, files={"image": ("a.jpg", b"x")})
        assert refused.status_code == 401  # the token of $SIMCLR_TOKEN
        started = time.monotonic()
        process.send_signal(stop)
        err = process.communicate(timeout=60)[1]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert time.monotonic() - started < 30
    assert "Traceback" not in err and "simclr: interrupted" not in err and "simclr: terminated" not in err
    assert "GET /api/health 200 " in err and "POST /api/items 401 " in err  # one log line a request
    assert "Finished server process" in err


def test_without_fastapi_or_uvicorn(collection, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else
                        find_spec(name, *a))
    _refused(capsys, ["serve", "--index", str(collection)],
             "simclr serve needs the 'serve' extra: pip install 'simclr-kit[serve]'")
