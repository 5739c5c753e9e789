"""Contact sheets of search results and near-duplicate groups: one row per query (or group), its picture then
its results' pictures with captions, drawn from the collection an embeddings file was made from."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from simclr.data.image_source import ImageSource
from simclr.data.images import CorruptImageError
from simclr.data.sources import load_source
from simclr.errors import InputError
from simclr.files import atomic_file

SHEET_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}

SheetRow = tuple[Image.Image | None, list[tuple[Image.Image | None, str]]]
"""A query's picture (None: drawn as an empty frame) and its results' pictures with their captions."""

Pictures = Callable[[str], Image.Image | None]
"""A collection's image by its path (None: not there, or no longer readable)."""


def sheet_format(out: str | Path, what: str = "contact sheet") -> str:
    """The image format a contact sheet is written in, from the suffix of ``out`` (InputError naming ``what``,
    e.g. the command's option, when unknown)."""
    fmt = SHEET_FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise InputError(f"{what} {out}: name a {', '.join(SHEET_FORMATS)} file")
    return fmt


def draw_sheet(rows: list[SheetRow], out: str | Path, cell: int = 96, first: str = "query") -> None:
    """Draw ``rows`` (each picture resized to ``cell`` x ``cell``, captioned below; the first of each row
    captioned ``first``) and write ``out`` atomically in the format its suffix names."""
    fmt = sheet_format(out)
    k = max((len(hits) for _, hits in rows), default=0)
    label_h = 14
    size = ((k + 1) * (cell + 4) + 4, max(1, len(rows)) * (cell + label_h + 6) + 4)
    sheet = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(sheet)

    def paste(img: Image.Image | None, col: int, row: int, text: str) -> None:
        x, y = 4 + col * (cell + 4), 4 + row * (cell + label_h + 6)
        if img is not None:
            sheet.paste(img.convert("RGB").resize((cell, cell), Image.Resampling.BICUBIC), (x, y))
        else:
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), outline="gray")
        draw.text((x + 2, y + cell + 1), text, fill="black")

    for i, (query, hits) in enumerate(rows):
        paste(query, 0, i, first)
        for r, (img, caption) in enumerate(hits):
            paste(img, r + 1, i, caption)
    with atomic_file(out) as fh:
        sheet.save(fh, format=fmt)


def source_from_meta(meta: dict[str, Any], images: str | Path | None = None, *,
                     paths: list[str] | None = None, movable: bool = True) -> ImageSource:
    """The images an embeddings file was made from (for showing results); needs the file's ``meta``.
    ``images``: where they lie now, if the folder or archive has moved since (the same layout); ``paths``, the
    file's, are checked to be there. ``movable``: the message for a moved collection suggests ``--images``."""
    file = meta.get("file", "the embeddings file")
    if "data" not in meta:
        raise InputError(f"{file} does not say which images it holds (made by an older simclr embed): "
                         "embed again to show images")
    data = str(images) if images is not None else meta["data"]
    if images is None and Path(data).is_absolute() and not Path(data).exists():
        where = ("--images (images= in Python) says where they are now" if movable else
                 "embed them again where they are now")
        raise InputError(f"the images of {file} are no longer at {data}, where pictures of them are drawn "
                         f"from: {where}")
    source = load_source(data, meta.get("split", "train"),
                         data_root=Path(meta["root"]) if meta.get("root") else None,
                         cache_dir=Path(meta["cache_dir"]) if meta.get("cache_dir") else None,
                         holdout=float(meta.get("holdout", 0.0)), seed=int(meta.get("seed", 0)))
    if images is not None and paths and not set(paths[:1000]) & set(source.paths):
        raise InputError(f"{images} holds none of the images of {file} (e.g. {paths[0]}): give the folder or "
                         "archive it was embedded from, wherever it lies now")
    return source


def picture_loader(source: ImageSource) -> Pictures:
    """Load an image of ``source`` by its path, for a contact sheet: None (drawn as an empty frame) when the
    path is not in ``source`` or its file can no longer be decoded."""
    at = {p: i for i, p in enumerate(source.paths)}

    def load(path: str) -> Image.Image | None:
        try:
            return source.load(at[path]) if path in at else None
        except CorruptImageError:
            return None

    return load
