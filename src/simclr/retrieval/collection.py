"""A collection folder: the scalable form of what ``simclr embed`` writes, for collections of millions of
images.

::

    COLLECTION/
      collection.json       the manifest: generation, rows, file names, meta (how it was made), classes, index
      h-G.npy               h [rows, D] float32, an append-only .npy (:mod:`~simclr.retrieval.rowfile`)
      z-G.npy               z [rows, Dz] (only when embedded with --z)
      labels-G.npy          int64 [rows] (-1 unlabeled)
      digests-G.npy         uint8 [rows, 16]: the first bytes of each image's sha256
      items-G.sqlite        items(row, path, uploaded) and deleted(row, generation)
      index-G.faiss         the approximate index (simclr index build), if any
      uploads/              images added through simclr serve (POST /api/items)

Vectors are memory-mapped, never copied into memory whole. A row is an image's id for good: adding images
appends rows, removing one marks its row deleted, and nothing else is rewritten. The manifest is the commit
point: it is replaced atomically, and readers see the rows, deletions and files of one generation (what a
writer left past it, interrupted, is ignored by readers and cleaned up by the next writer). One writer at a
time holds the folder's lock (:class:`CollectionWriter`).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simclr.errors import InputError
from simclr.retrieval import rowfile

MANIFEST = "collection.json"
FORMAT = "simclr-collection"
VERSION = 1
DIGEST_BYTES = 16
COLUMNS: dict[str, tuple[type, str | None]] = {
    "h": (np.float32, "h"), "z": (np.float32, "z"), "labels": (np.int64, None),
    "digests": (np.uint8, "digests")}
"""Each row file: its dtype, and which width of the manifest its rows have (None: one value a row)."""


def is_collection(path: str | Path) -> bool:
    """Whether ``path`` is a collection folder (it holds a manifest)."""
    return (Path(path) / MANIFEST).is_file()


def read_manifest(folder: Path) -> dict[str, Any]:
    """The folder's manifest, checked; InputError if missing, unreadable or of another format."""
    path = folder / MANIFEST
    if folder.is_file():
        raise InputError(f"{folder} is a file, not a collection folder: convert a .npz from simclr embed "
                         f"with simclr index convert {folder} --out FOLDER")
    if not path.is_file():
        what = "a folder" if folder.is_dir() else "not found"
        raise InputError(f"{folder} is {what}, not a simclr collection (no {MANIFEST}): make one with simclr "
                         "embed --out FOLDER, or convert a .npz with simclr index convert")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path} is not the manifest of a simclr collection")
    if manifest.get("version") != VERSION:
        raise InputError(f"{path} is version {manifest.get('version')!r} of the collection format; this "
                         f"simclr reads version {VERSION}")
    for key, kind in (("generation", int), ("rows", int), ("files", dict), ("width", dict), ("meta", dict)):
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise InputError(f"{path}: its {key!r} is missing or of the wrong type")
    index = manifest.get("index")
    if index is not None and not (isinstance(index, dict) and isinstance(index.get("kind"), str)
                                  and isinstance(index.get("transform"), (dict, type(None)))):
        raise InputError(f"{path}: its index entry is not an index of simclr index build")
    transform = (index or {}).get("transform") or {}
    named = {**manifest["files"], "index": (index or {}).get("file"), "transform": transform.get("file")}
    for name, file in named.items():
        if file is not None and (not isinstance(file, str) or "/" in file or file.startswith(".")):
            raise InputError(f"{path}: file {name!r} is not a plain name in the folder")
    return manifest


@contextlib.contextmanager
def connect(db: Path, write: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection to a collection's items table (read-only unless ``write``), committed when the block
    ends without an exception, and closed."""
    if not write and not db.is_file():
        raise InputError(f"{db} is missing: the collection is incomplete")
    con = sqlite3.connect(db, timeout=60) if write else sqlite3.connect(f"file:{db}?mode=ro", uri=True,
                                                                        timeout=60)
    try:
        with con:
            yield con
    finally:
        con.close()


class Collection:
    """One committed generation of a collection folder, read-only (see the module's docstring).

    ``rows`` counts every row ever added (ids run 0..rows-1); ``len()`` counts the images not deleted.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        m = self.manifest
        self.generation: int = m["generation"]
        self.rows: int = m["rows"]
        self.meta: dict[str, Any] = dict(m["meta"], file=str(self.folder))
        classes = m.get("classes")
        self.classes: tuple[str, ...] | None = None if classes is None else tuple(str(c) for c in classes)
        self.index_info: dict[str, Any] | None = m.get("index")
        self.columns: dict[str, np.ndarray] = {}
        for name, (dtype, width_key) in COLUMNS.items():
            file = m["files"].get(name)
            if file is None:
                if name in ("h", "labels"):
                    raise InputError(f"{self.folder / MANIFEST}: no {name} file")
                continue
            width = None if width_key is None else (DIGEST_BYTES if width_key == "digests"
                                                    else m["width"].get(width_key))
            if width_key is not None and not isinstance(width, int):
                raise InputError(f"{self.folder / MANIFEST}: no width for {name}")
            self.columns[name] = rowfile.read(self.folder / file, self.rows, dtype, width)
        self.db = self.folder / str(m["files"].get("items"))
        with connect(self.db) as con:
            try:
                deleted = [r for (r,) in con.execute(
                    "SELECT row FROM deleted WHERE generation <= ? AND row < ? ORDER BY row",
                    (self.generation, self.rows))]
            except sqlite3.DatabaseError as exc:
                raise InputError(f"{self.db} is not a readable items table: {exc}") from None
        self.deleted = np.asarray(deleted, np.int64)
        self.live = np.ones(self.rows, bool)
        self.live[self.deleted] = False

    def __len__(self) -> int:
        return self.rows - len(self.deleted)

    def __repr__(self) -> str:
        return f"Collection({self.folder}, {len(self)} images, generation {self.generation})"

    @property
    def h(self) -> np.ndarray:
        return self.columns["h"]

    @property
    def z(self) -> np.ndarray | None:
        return self.columns.get("z")

    @property
    def labels(self) -> np.ndarray:
        return self.columns["labels"]

    @property
    def digests(self) -> np.ndarray | None:
        return self.columns.get("digests")

    def vectors(self, on: str) -> np.ndarray:
        """h (``on="h"``) or z [rows, D], memory-mapped; z must have been stored (``simclr embed --z``)."""
        if on == "z" and self.z is None:
            raise InputError(f"{self.folder} holds no z: make it with simclr embed --z")
        return self.h if on == "h" else self.columns["z"]

    def live_rows(self) -> np.ndarray:
        """The rows of the images not deleted, in order."""
        return np.flatnonzero(self.live)

    def has(self, row: Any) -> bool:
        """Whether ``row`` is the id of an image of the collection (not deleted)."""
        return bool(isinstance(row, (int, np.integer)) and 0 <= row < self.rows and self.live[row])

    def items(self, rows: Sequence[int]) -> list[tuple[str, bool]]:
        """(path, uploaded) of each row: the path in the data the collection was embedded from, or for an
        image uploaded to it, in its ``uploads/`` folder."""
        wanted = [int(r) for r in rows]
        if not wanted:
            return []
        found: dict[int, tuple[str, bool]] = {}
        with connect(self.db) as con:
            for start in range(0, len(wanted), 900):  # sqlite's limit on bound parameters
                part = wanted[start:start + 900]
                marks = ",".join("?" * len(part))
                for row, path, uploaded in con.execute(
                        f"SELECT row, path, uploaded FROM items WHERE row IN ({marks})", part):
                    found[row] = (path, bool(uploaded))
        missing = [r for r in wanted if r not in found]
        if missing:
            raise InputError(f"{self.db}: no item for row(s) {missing[:5]}: the collection is damaged")
        return [found[r] for r in wanted]

    def paths(self, rows: Sequence[int] | None = None) -> list[str]:
        """The paths of ``rows`` (default: every image not deleted, in row order)."""
        if rows is not None:
            return [p for p, _ in self.items(rows)]
        with connect(self.db) as con:
            found = dict(con.execute("SELECT row, path FROM items WHERE row < ?", (self.rows,)))
        return [found[int(r)] for r in self.live_rows()]

    def uploaded_rows(self) -> np.ndarray:
        """The rows of the live images that were uploaded to the collection (not embedded from its data)."""
        with connect(self.db) as con:
            rows = [r for (r,) in con.execute("SELECT row FROM items WHERE uploaded = 1 AND row < ?",
                                              (self.rows,))]
        rows_array = np.asarray(rows, np.int64)
        return rows_array[self.live[rows_array]] if len(rows_array) else rows_array

    def upload_file(self, path: str) -> Path:
        """Where an uploaded image of ``path`` (``uploads/NAME``) lies."""
        return self.folder / path
