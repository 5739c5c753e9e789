"""Contact sheets of search results: one row per query, the query's picture then its results with captions."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from simclr.errors import InputError
from simclr.files import atomic_file

SHEET_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}

SheetRow = tuple[Image.Image | None, list[tuple[Image.Image | None, str]]]
"""A query's picture (None: drawn as an empty frame) and its results' pictures with their captions."""


def sheet_format(out: str | Path, what: str = "contact sheet") -> str:
    """The image format a contact sheet is written in, from the suffix of ``out`` (InputError naming ``what``, e.g.
    the command's option, when unknown)."""
    fmt = SHEET_FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise InputError(f"{what} {out}: name a {', '.join(SHEET_FORMATS)} file")
    return fmt


def draw_sheet(rows: list[SheetRow], out: str | Path, cell: int = 96, first: str = "query") -> None:
    """Draw ``rows`` (each picture resized to ``cell`` x ``cell``, captioned below; the first of each row captioned
    ``first``) and write ``out`` atomically in the format its suffix names."""
    fmt = sheet_format(out)
    k = max((len(hits) for _, hits in rows), default=0)
    label_h = 14
    sheet = Image.new("RGB", ((k + 1) * (cell + 4) + 4, max(1, len(rows)) * (cell + label_h + 6) + 4), "white")
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
