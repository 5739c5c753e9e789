"""Writing files so that a crash or Ctrl-C never leaves half of one: a temporary file beside the target,
renamed over it only once it is complete. What was there before stays until then."""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from simclr.errors import InputError

RUN_CHECKPOINT = re.compile(r"last\.pt|epoch_\d+\.pt")
"""The names of a run's checkpoints (beside its config.yaml)."""
RUN_FILES = re.compile(r"last\.pt|epoch_\d+\.pt|config\.yaml|metrics\.jsonl|skipped\.txt|views\.png")
"""The files of a run folder (one with a config.yaml) that an output must not replace."""


@contextmanager
def atomic_file(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success it is synced and renamed to ``path``.

    On an exception (KeyboardInterrupt included) the temporary file is removed and ``path`` is left as it was.
    The parent folder is created when missing. The file gets the permissions of the one it replaces, else
    those a new file gets under the process's umask (not the owner-only ones of a temporary file)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file writes whole files: mode 'w' or 'wb', got {mode!r}")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:  # name the user's file, not the temporary one
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, mode, encoding="utf-8" if mode == "w" else None) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _permissions(path))
        try:
            os.replace(tmp, path)
        except OSError as exc:  # e.g. a folder of that name: say so of the user's path, not the temporary one
            raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        # a full disk, a quota or a file-size limit while writing (torch.save reports it as a RuntimeError
        # whose context is the OSError): one line naming the user's file, which is left as it was
        cause = exc.__context__ if isinstance(exc, RuntimeError) else exc
        if isinstance(cause, OSError):
            raise InputError(f"cannot write {path}: {cause.strerror or cause}") from None
        raise


def _permissions(path: Path) -> int:
    """The permission bits of ``path`` if it exists, else of a new file under the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~umask()


def umask() -> int:
    """The process's umask (the permission bits new files and folders do not get)."""
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def json_text(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of ``value`` with every NaN or infinite float written as null: standard JSON, which
    ``json.dumps`` alone is not (it writes NaN, which JSON.parse, jq and most readers refuse)."""
    def finite(v: Any) -> Any:
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(x) for x in v]
        return v

    return json.dumps(finite(value), allow_nan=False, **kwargs)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_file(path, "w") as fh:
        fh.write(text)


def check_output(out: str | Path, flag: str = "--out", reading: tuple[str | Path, ...] = ()) -> Path:
    """Refuse, before any work, an output path that would fail or destroy something: a folder, a file being
    read (``reading``), or a run's checkpoint (``last.pt``, ``epoch_N.pt`` beside a ``config.yaml``). Returns
    the path."""
    path = Path(out)
    if path.is_dir():
        raise InputError(f"{flag} {out} is a folder: name a file")
    if path.exists():
        for source in reading:
            if Path(source).exists() and path.resolve() == Path(source).resolve():
                raise InputError(f"{flag} {out} is the file being read: name another file")
        if RUN_FILES.fullmatch(path.name) and (path.parent / "config.yaml").is_file():
            what = "checkpoint" if RUN_CHECKPOINT.fullmatch(path.name) else "own file"
            raise InputError(f"{flag} {out} is a run's {what}: name another file")
    folder = next((p for p in path.absolute().parents if p.exists()), None)
    if folder is not None and not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        raise InputError(f"{flag} {out} cannot be written: {folder} is not a writable folder")
    return path


LOCK = ".lock"
"""The lock file of a folder one process writes at a time (a run folder)."""
_TEMPORARY = re.compile(r"\..+\.[A-Za-z0-9_]+\.tmp")
"""The names :func:`atomic_file` gives its temporary files (``.NAME.RANDOM.tmp``)."""


def lock_folder(folder: Path, what: str) -> int | None:
    """Hold ``folder/.lock`` exclusively for this process (``flock``, not waiting); the lock is released when
    the returned descriptor is closed or the process ends, however it ends (kill -9 included). The file holds
    the holder's PID, which a refusal names. None when the folder's filesystem has no locks (some network file
    systems): nothing is held.

    Raises:
        InputError: another process holds the lock ("FOLDER is in use by WHAT (PID N) ...").
    """
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise InputError(f"{folder} is in use by another {what} (PID {holder}): wait for it to end, or "
                         "choose another --out") from None
    except OSError:  # ENOLCK, EOPNOTSUPP: no locks on this filesystem
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class FolderLock:
    """:func:`lock_folder` taken by :meth:`acquire` (once the folder exists) and given back by :meth:`release`
    (safe to call when never acquired), so the caller that opened it also closes it on every path."""

    def __init__(self, folder: Path, what: str) -> None:
        self.folder, self.what = folder, what
        self._fd: int | None = None
        self.tried = False
        self.unsupported = False

    def acquire(self) -> None:
        if self.tried:
            return
        self._fd = lock_folder(self.folder, self.what)
        self.tried, self.unsupported = True, self._fd is None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)  # (forked data-loading workers share the descriptor)
            os.close(self._fd)
            self._fd = None
        self.tried = False


def remove_temporaries(folder: Path) -> list[str]:
    """Remove the temporary files that writers killed mid-write left in ``folder`` (not its subfolders); only
    while holding the folder's lock (:func:`lock_folder`), so no live writer's file is taken. Returns their
    names."""
    gone = sorted(p.name for p in folder.iterdir() if p.is_file() and _TEMPORARY.fullmatch(p.name))
    for name in gone:
        (folder / name).unlink(missing_ok=True)
    return gone

