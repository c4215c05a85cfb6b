"""The public Python API: ``from mi_catalog import Catalog``.

    >>> from mi_catalog import Catalog
    >>> cat = Catalog()                                   # the shipped catalog
    >>> res = cat.query(object=["head"], method=["probe"])
    >>> res.total, [h.id for h in res.results][:3]
    >>> cat.get("dola").title                             # full, validated Entry
    >>> cat.validate()                                    # [] when the catalog is valid

Queries have exactly the CLI's semantics (they share :mod:`mi_catalog.query`
and :mod:`mi_catalog.index`) and return typed results
(:class:`~mi_catalog.query.QueryResult` of :class:`~mi_catalog.query.Hit`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mi_catalog.paths import resolve_catalog_dir
from mi_catalog.query import QueryParams, QueryResult

if TYPE_CHECKING:
    from mi_catalog.index import IndexInfo
    from mi_catalog.load import Problem
    from mi_catalog.schema import Entry
    from mi_catalog.search import IndexSearcher


class Catalog:
    """A catalog folder: its validated entries, its index, and queries over it."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, recheck_seconds: float = 1.0) -> None:
        """``recheck_seconds``: how often a long-lived Catalog checks the folder for edits
        (each check stats every file; 0 checks before every query)."""
        self.path: Path = resolve_catalog_dir(path)
        self.recheck_seconds = recheck_seconds
        self._searcher: IndexSearcher | None = None
        self._searcher_hash: str | None = None
        self._checked_at = float("-inf")

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r})"

    # -- entries (YAML → validated models)

    def entries(self) -> list[Entry]:
        """Every valid entry, sorted by id. Invalid files are skipped: see :meth:`validate`."""
        from mi_catalog.load import load_catalog

        return sorted(load_catalog(self.path).entries, key=lambda e: e.id)

    def get(self, entry_id: str) -> Entry:
        """One entry by id, loaded and validated from its file."""
        from mi_catalog.load import load_entry

        path = self.path / f"{entry_id}.yaml"
        if not path.is_file():
            raise KeyError(entry_id)
        return load_entry(path)

    def validate(self) -> list[Problem]:
        from mi_catalog.validate import validate_catalog

        return validate_catalog(self.path)

    # -- index and queries

    def index(self, rebuild: bool = False) -> IndexInfo:
        from mi_catalog.index import ensure_index

        return ensure_index(self.path, rebuild=rebuild)

    def _open(self) -> IndexSearcher:
        from mi_catalog.index import ensure_index
        from mi_catalog.search import IndexSearcher

        now = time.monotonic()
        if self._searcher is not None and now - self._checked_at < self.recheck_seconds:
            return self._searcher
        self._checked_at = now
        info = ensure_index(self.path)
        if self._searcher is None or self._searcher_hash != info.content_hash:
            if self._searcher is not None:
                self._searcher.close()
            self._searcher = IndexSearcher(info.path)
            self._searcher_hash = info.content_hash
        return self._searcher

    def query(self, text: str | None = None, **params: Any) -> QueryResult:
        """Faceted search: OR within a facet, AND across facets, BM25 free text. Aliases accepted.

        ``params`` are the fields of :class:`~mi_catalog.query.QueryParams` (the CLI's flags):
        ``object``, ``method``, ``steer``, ``application``, ``venue``, ``year``, ``source`` (one
        value or a list), ``since``, ``until``, ``has_impl``, ``sort``, ``limit``. Raises
        :class:`~mi_catalog.errors.QueryError` on an unknown value or a malformed query.
        """
        return self.search(QueryParams.of(text, **params))

    def search(self, params: QueryParams) -> QueryResult:
        """Run a :class:`~mi_catalog.query.QueryParams` (what :meth:`query` builds from keywords)."""
        return self._open().search(params.resolve())

    def facets(self) -> dict[str, dict[str, int]]:
        """Counts per facet value over the whole catalog."""
        return {k: dict(v) for k, v in self.query().facets.items()}

    def close(self) -> None:
        if self._searcher is not None:
            self._searcher.close()
            self._searcher = None
