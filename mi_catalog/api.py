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
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mi_catalog.paths import resolve_catalog_dir
from mi_catalog.query import QueryResult, build_query

if TYPE_CHECKING:
    from mi_catalog.index import IndexInfo, IndexSearcher
    from mi_catalog.load import Problem
    from mi_catalog.schema import Entry


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

        return ensure_index(self.path, rebuild=rebuild, quiet=True)

    def _open(self) -> IndexSearcher:
        from mi_catalog.index import IndexSearcher, ensure_index

        now = time.monotonic()
        if self._searcher is not None and now - self._checked_at < self.recheck_seconds:
            return self._searcher
        self._checked_at = now
        info = ensure_index(self.path, quiet=True)
        if self._searcher is None or self._searcher_hash != info.content_hash:
            if self._searcher is not None:
                self._searcher.close()
            self._searcher = IndexSearcher(info.path)
            self._searcher_hash = info.content_hash
        return self._searcher

    def query(
        self,
        text: str | None = None,
        *,
        object: Iterable[str] = (),
        method: Iterable[str] = (),
        steer: Iterable[str] = (),
        application: Iterable[str] = (),
        venue: Iterable[str] = (),
        year: Iterable[Any] = (),
        since: int | None = None,
        until: int | None = None,
        has_impl: bool = False,
        sort: str | None = None,
        limit: int | None = None,
    ) -> QueryResult:
        """Faceted search: OR within a facet, AND across facets, BM25 free text. Aliases accepted."""
        q = build_query(
            text,
            object=_as_list(object),
            method=_as_list(method),
            steer=_as_list(steer),
            application=_as_list(application),
            venue=_as_list(venue),
            year=_as_list(year),
            since=since,
            until=until,
            has_impl=has_impl,
            sort=sort,
            limit=limit,
        )
        return self._open().search(q)

    def facets(self) -> dict[str, dict[str, int]]:
        """Counts per facet value over the whole catalog."""
        return {k: dict(v) for k, v in self.query().facets.items()}

    def close(self) -> None:
        if self._searcher is not None:
            self._searcher.close()
            self._searcher = None


def _as_list(values: Iterable[Any] | str | int) -> list[Any]:
    # Accept a single value as well as a list: Catalog().query(object="head").
    if isinstance(values, (str, int)):
        return [values]
    return list(values)
