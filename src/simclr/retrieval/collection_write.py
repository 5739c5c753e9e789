"""Writing a collection folder (:mod:`~simclr.retrieval.collection`): a new one, or a new generation of one
(images added, images deleted, its index replaced), one writer at a time, committed atomically by its
manifest."""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simclr.errors import InputError
from simclr.files import atomic_write_text, json_text
from simclr.retrieval import rowfile
from simclr.retrieval.collection import (
    COLUMNS,
    DIGEST_BYTES,
    FORMAT,
    MANIFEST,
    VERSION,
    Collection,
    connect,
    is_collection,
    read_manifest,
)

LOCK = ".lock"
_GENERATED = re.compile(r"(h|z|labels|digests|transform)-\d+\.npy|items-\d+\.sqlite(-journal)?"
                        r"|index-\d+\.faiss")
_SCHEMA = ("CREATE TABLE items (row INTEGER PRIMARY KEY, path TEXT NOT NULL, uploaded INTEGER NOT NULL)",
           "CREATE INDEX items_path ON items(path)",
           "CREATE TABLE deleted (row INTEGER PRIMARY KEY, generation INTEGER NOT NULL)")


class CollectionWriter:
    """The writer of a collection folder: ``with CollectionWriter(folder) as w: w.add(...); w.commit()``.

    Entering takes the folder's lock (waiting for another writer to finish) and cleans up what an interrupted
    writer left; nothing a reader sees changes until :meth:`commit`.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._lock: int | None = None
        self.manifest: dict[str, Any] = {}
        self.rows = 0
        self._deleted: list[int] = []
        self._index: dict[str, Any] = {}
        self._files: dict[str, Any] = {}

    def __enter__(self) -> CollectionWriter:  # noqa: PYI034 - Python 3.10 has no typing.Self
        self._lock = _lock(self.folder)
        try:
            self.manifest = read_manifest(self.folder)
            self.rows = self.manifest["rows"]
            self._index = self.manifest.get("index") or {}  # the index readers may be opening now
            self._files = dict(self.manifest["files"])  # and the files
            _recover(self.folder, self.manifest)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None

    @property
    def generation(self) -> int:
        return int(self.manifest["generation"])

    def _file(self, name: str) -> Path:
        return self.folder / self.manifest["files"][name]

    def add(self, columns: dict[str, np.ndarray], paths: Sequence[str], uploaded: bool = False) -> np.ndarray:
        """Append images: ``columns`` h, labels, digests (and z when the collection holds z), one row per
        path. Returns their ids (rows)."""
        n = len(paths)
        files = self.manifest["files"]
        if set(columns) != {k for k in COLUMNS if files.get(k)}:
            raise InputError(f"{self.folder}: adding {sorted(columns)}, the collection holds "
                             f"{sorted(k for k in COLUMNS if files.get(k))}")
        for name, values in columns.items():
            if len(values) != n:
                raise ValueError(f"{name}: {len(values)} rows for {n} paths")
            rowfile.append(self._file(name), values, self.rows)
        start = self.rows
        with connect(self._file("items"), write=True) as con:
            con.executemany("INSERT INTO items (row, path, uploaded) VALUES (?, ?, ?)",
                            [(start + i, str(p), int(uploaded)) for i, p in enumerate(paths)])
        self.rows += n
        return np.arange(start, start + n)

    def delete(self, rows: Sequence[int]) -> None:
        """Mark ``rows`` deleted (from the next generation on)."""
        rows = [int(r) for r in rows]
        with connect(self._file("items"), write=True) as con:
            con.executemany("INSERT OR IGNORE INTO deleted (row, generation) VALUES (?, ?)",
                            [(r, self.generation + 1) for r in rows])
        self._deleted += rows

    def replace_labels(self, labels: np.ndarray, classes: Sequence[str] | None) -> None:
        """Every row's label anew (the class names changed), in a new labels file; call before :meth:`add`."""
        if len(labels) != self.rows:
            raise ValueError(f"{len(labels)} labels for {self.rows} rows")
        name = f"labels-{self.generation + 1}.npy"
        rowfile.create(self.folder / name, np.int64, None)
        rowfile.append(self.folder / name, np.asarray(labels[:self.rows], np.int64), 0)
        self.manifest["files"]["labels"] = name
        self.manifest["classes"] = None if classes is None else list(classes)

    def set_index(self, info: dict[str, Any] | None) -> None:
        """Name the collection's index (None: none) from the next generation on; ``info["file"]`` is a file in
        the folder, written before."""
        self.manifest["index"] = info

    def commit(self) -> Collection:
        """Make the changes visible: the manifest of the next generation, replaced atomically, once every file
        it names is checked to hold its rows. Returns it."""
        self.manifest.update(generation=self.generation + 1, rows=self.rows)
        self.manifest["previous_files"] = _named(self._files, self._index)
        _check_files(self.folder, self.manifest)
        _write_manifest(self.folder, self.manifest)
        _remove_unnamed(self.folder, self.manifest)
        return Collection(self.folder)


def _named(files: dict[str, Any], index: dict[str, Any] | None) -> list[str]:
    """The files a manifest names: its row files and items table, its index and the index's transform."""
    index = index or {}
    named = [*files.values(), index.get("file"), (index.get("transform") or {}).get("file")]
    return [f for f in named if f]


def _check_files(folder: Path, manifest: dict[str, Any]) -> None:
    """InputError unless every row file of ``manifest`` holds its rows (checked before it is committed)."""
    rows, files = manifest["rows"], manifest["files"]
    for name, (dtype, width_key) in COLUMNS.items():
        if files.get(name):
            width = DIGEST_BYTES if width_key == "digests" else (None if width_key is None
                                                                 else manifest["width"][width_key])
            rowfile.read(folder / files[name], rows, dtype, width)


def _lock(folder: Path) -> int:
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    atomic_write_text(folder / MANIFEST, json_text(manifest, indent=1) + "\n")


def _recover(folder: Path, manifest: dict[str, Any]) -> None:
    """Undo what a writer interrupted before its commit left: rows past the manifest's, deletions of a later
    generation."""
    rows, files = manifest["rows"], manifest["files"]
    for name in COLUMNS:
        if files.get(name):
            with open(folder / files[name], "r+b") as fh:
                dtype, width_key = COLUMNS[name]
                width = DIGEST_BYTES if width_key == "digests" else manifest["width"].get(width_key or "", 1)
                fh.truncate(rowfile.HEADER + rows * np.dtype(dtype).itemsize * (width or 1))
    with connect(folder / files["items"], write=True) as con:
        con.execute("DELETE FROM items WHERE row >= ?", (rows,))
        con.execute("DELETE FROM deleted WHERE generation > ?", (manifest["generation"],))


def _remove_unnamed(folder: Path, manifest: dict[str, Any]) -> None:
    """Remove the files of generations before the previous one (a reader may still be opening those of the
    previous one), and temporary files left by interrupted writes."""
    keep = set(_named(manifest["files"], manifest.get("index"))) | set(manifest.get("previous_files", []))
    for path in folder.iterdir():
        name = path.name
        if (_GENERATED.fullmatch(name) and name not in keep and name.removesuffix("-journal") not in keep) \
                or (name.startswith(".") and name.endswith(".tmp")):
            path.unlink(missing_ok=True)


def _empty(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but what a first write of a collection, interrupted before its
    manifest, leaves (its lock, row files, items table, temporary files)."""
    return all(p.name == LOCK or _GENERATED.fullmatch(p.name) or (p.name.startswith(".") and
               p.name.endswith(".tmp")) for p in folder.iterdir())


def check_collection_output(out: str | Path, reading: tuple[str | Path, ...] = (),
                            flag: str = "--out") -> Path:
    """Refuse, before any work, a collection folder that cannot be written: a file, a folder holding
    anything but a collection, a folder being read, or one in a folder that is not writable."""
    path, out = Path(out), f"{flag} {out}".strip()  # the folder as the message names it
    for source in reading:
        read = Path(source).resolve()
        if Path(source).exists() and path.resolve() == read:
            raise InputError(f"{out} is the file being read: name another file")
        if Path(source).exists() and path.resolve() in read.parents:
            raise InputError(f"{out} holds what is being read: name another folder")
    if path.exists() and not path.is_dir():
        raise InputError(f"{out} is a file: a collection is a folder (name a .npz file for the single-file "
                         "form)")
    if path.is_dir() and not _empty(path) and not is_collection(path):
        raise InputError(f"{out} is a folder that is not a simclr collection: name a new or empty folder")
    folder = next((p for p in path.absolute().parents if p.exists()), None) if not path.exists() else path
    if folder is not None and not (folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)):
        raise InputError(f"{out} cannot be written: {folder} is not a writable folder")
    return path


def create_collection(folder: str | Path, columns: dict[str, np.ndarray], paths: Sequence[str],
                      meta: dict[str, Any], classes: Sequence[str] | None,
                      uploaded: Sequence[bool] | None = None) -> Collection:
    """Write ``folder`` as a new collection of these images (h, labels and digests, z optional), or replace
    the collection in it (a new generation of every file; readers of the old one are not disturbed). A folder
    that holds anything but a collection is refused."""
    folder = check_collection_output(folder, flag="")
    folder.mkdir(parents=True, exist_ok=True)
    fd = _lock(folder)
    try:
        old = read_manifest(folder) if is_collection(folder) else None
        generation = 1 if old is None else old["generation"] + 1
        width = {"h": int(columns["h"].shape[1]),
                 "z": int(columns["z"].shape[1]) if columns.get("z") is not None else None}
        files: dict[str, str | None] = {}
        for name, (dtype, width_key) in COLUMNS.items():
            values = columns.get(name)
            if values is None:
                files[name] = None
                continue
            file = files[name] = f"{name}-{generation}.npy"
            w = DIGEST_BYTES if width_key == "digests" else (None if width_key is None else width[width_key])
            rowfile.create(folder / file, dtype, w)
            rowfile.append(folder / file, values, 0)
        db_name = files["items"] = f"items-{generation}.sqlite"
        db = folder / db_name
        db.unlink(missing_ok=True)
        with connect(db, write=True) as con:
            for statement in _SCHEMA:
                con.execute(statement)
            marks = uploaded or [False] * len(paths)
            con.executemany("INSERT INTO items (row, path, uploaded) VALUES (?, ?, ?)",
                            [(i, str(p), int(u)) for i, (p, u) in enumerate(zip(paths, marks))])
        meta = {k: v for k, v in meta.items() if k != "file"}
        manifest = {"format": FORMAT, "version": VERSION, "generation": generation, "rows": len(paths),
                    "files": files, "width": width, "meta": meta,
                    "classes": None if classes is None else list(classes), "index": None,
                    "previous_files": [] if old is None else _named(old["files"], old.get("index"))}
        _write_manifest(folder, manifest)
        _remove_unnamed(folder, manifest)
    finally:
        os.close(fd)
    return Collection(folder)
