"""What a search returns: each query's hits, best first, with the queries' names, labels and retrieval scores,
as rows of a CSV file, a JSON object and rows of a contact sheet (``simclr search`` writes these; so can
Python)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from PIL import Image

from simclr.retrieval.queries import Queries
from simclr.retrieval.sheet import Pictures, SheetRow


class Hit(NamedTuple):
    """One search result: its rank (1 = most similar), the image's path in the collection, its label (-1 when
    unlabeled), the cosine similarity and its id in the collection (its row)."""

    rank: int
    path: str
    label: int
    score: float
    id: int = -1


class SearchResult(list[list[Hit]]):
    """Each query's hits, best first (a list of lists of :class:`Hit`), with ``queries`` (their names, labels
    in the index's numbering, the images that could not be read) and ``metrics``: precision@1, precision@k and
    recall@k of the labelled queries (None when nothing can be scored; see
    :func:`~simclr.retrieval.scores.search_scores`)."""

    def __init__(self, hits: list[list[Hit]], queries: Queries, metrics: dict[str, Any] | None) -> None:
        super().__init__(hits)
        self.queries = queries
        self.metrics = metrics

    @property
    def names(self) -> list[str]:
        """Each query's name: as given (image files, pictures' paths), else its image's path, or its
        number."""
        return self.queries.names

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """The query images that could not be read and were left out: (name, reason)."""
        return list(self.queries.skipped)

    def results(self, i: int) -> list[dict[str, Any]]:
        """Query ``i``'s results, best first: rank, path, label, score (rounded to 4 decimals)."""
        return [{"rank": h.rank, "path": h.path, "label": h.label, "score": round(h.score, 4)}
                for h in self[i]]

    def csv_rows(self) -> list[dict[str, Any]]:
        """Every result of every query, one row each: query, query_label, rank, path, label, score."""
        return [{"query": q, "query_label": int(self.queries.labels[i]), **hit}
                for i, q in enumerate(self.names) for hit in self.results(i)]

    def summary(self, index: str) -> dict[str, Any]:
        """The JSON object of ``simclr search --json`` (``index``: the collection's file as named)."""
        return {"index": index, "queries": len(self.names), "metrics": self.metrics,
                "skipped": [{"query": name, "reason": why} for name, why in self.queries.skipped],
                "results": [{"query": q, "results": self.results(i)} for i, q in enumerate(self.names)]}


def sheet_rows(hits: Sequence[list[Hit]], query_picture: Callable[[int], Image.Image | None],
               pictures: Pictures) -> list[SheetRow]:
    """A contact sheet's rows: each query's picture, then its hits' pictures captioned with rank and
    similarity."""
    return [(query_picture(i), [(pictures(h.path), f"{h.rank}: {round(h.score, 4):.3f}") for h in row])
            for i, row in enumerate(hits)]  # the similarity as the results show it
