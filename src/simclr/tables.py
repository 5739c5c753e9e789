"""Rows of dicts written as a CSV file: the ablation results and the search results."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from simclr.files import atomic_write_text


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """One line per row, a column for every field of any row, in first-seen order (written atomically)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_columns(rows) or ["cell"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())
