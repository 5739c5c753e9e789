"""Content digests of a dataset's files, remembered between runs so that unchanged files are not read again.

Keying a decoded cache by content means hashing every byte of a dataset (5 GB for Food-101) before the cache
can answer. Like git's index, a memo beside the cache keeps each file's digest together with its size,
modification and change times and inode; a file whose four are unchanged keeps its digest without being read.
The change time cannot be set by a user (copying, extracting or rewriting a file always moves it), so a file
that was replaced while keeping its size and modification time is still read again. A file modified within two
seconds of being hashed is not remembered (its times may be too coarse to show a second change). Whenever the
memo is written, the entries of files that no longer exist are dropped."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from simclr.files import atomic_write_text

RACY_NS = 2_000_000_000  # a file modified this recently is hashed but not remembered


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def _memo_path(memo_dir: Path, root: Path) -> Path:
    return memo_dir / f"{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]}.json"


def _read_memo(path: Path) -> dict[str, list]:
    try:
        memo = json.loads(path.read_text())
        return memo if isinstance(memo, dict) else {}
    except (OSError, ValueError):
        return {}


def file_digests(root: Path, paths: Sequence[str], memo_dir: Path | None = None, *,
                 progress: bool = False) -> list[str | None]:
    """The sha256 (hex) of each file ``root / p`` of ``paths``, None for a file that cannot be read.

    Args:
        root: The folder the paths are relative to.
        paths: POSIX paths relative to ``root``.
        memo_dir: Folder of the memo of earlier digests (one JSON file per root); None reads every file.
        progress: Show a progress bar over the files that have to be read.
    """
    memo_path = _memo_path(memo_dir, root) if memo_dir is not None else None
    memo = _read_memo(memo_path) if memo_path is not None else {}
    digests: list[str | None] = [None] * len(paths)
    todo: list[tuple[int, list[int] | None]] = []
    base = str(root)
    changed = False
    for i, rel in enumerate(paths):
        if memo_path is None:
            todo.append((i, None))
            continue
        try:
            ident = _identity(os.stat(os.path.join(base, rel)))
        except OSError:
            changed |= memo.pop(rel, None) is not None
            todo.append((i, None))
            continue
        entry = memo.get(rel)
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == ident:
            digests[i] = entry[1]
        else:
            todo.append((i, ident))
    for i, known in tqdm(todo, desc="hashing", unit="file", disable=not progress or len(todo) < 1000,
                         leave=False):
        rel = paths[i]
        try:
            with open(os.path.join(base, rel), "rb") as fh:
                data = fh.read()
        except OSError:
            changed |= memo.pop(rel, None) is not None
            continue
        digests[i] = hashlib.sha256(data).hexdigest()[:32]
        if known is not None and known[0] == len(data) and time.time_ns() - known[1] > RACY_NS:
            memo[rel] = [known, digests[i]]
            changed = True
    if changed and memo_path is not None:
        asked = set(paths)  # the entries of files deleted since (another split's files are kept)
        for rel in [rel for rel in memo if rel not in asked and not os.path.exists(os.path.join(base, rel))]:
            del memo[rel]
        try:
            atomic_write_text(memo_path, json.dumps(memo, separators=(",", ":")))
        except OSError:
            pass  # a read-only cache only costs the reads next time
    return digests
