"""The searcher: an open index answering :class:`~mi_catalog.query.Query` objects.

Facet filtering, counting, ordering and the result records come from the facet table the
index store writes beside the Whoosh files, so a query without free text never imports Whoosh.
Free text is evaluated node by node (:mod:`mi_catalog.textquery`: each word, phrase or pattern
is one Whoosh query, combined with set operations), and Whoosh's BM25 scores the matches.
The index itself (building, freshness, the atomic swap) is :mod:`mi_catalog.index`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from mi_catalog.facets import FACET_TABLE, FACETS_BY_NAME
from mi_catalog.query import Hit, Query, QueryResult, parse_text

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the query path (mypy reads it as True)
if TYPE_CHECKING:
    from typing import Any

    from mi_catalog import textquery


class IndexSearcher:
    """An open index: facet filtering, counting, ordering and result records come from the facet
    table written beside the Whoosh files (:data:`mi_catalog.index.FACETS_FILE`); the Whoosh index
    itself is opened only for free text and for full entries."""

    def __init__(self, path: Path) -> None:
        from mi_catalog.index import FACETS_FILE

        self.path = path
        table = json.loads((path / FACETS_FILE).read_text(encoding="utf-8"))
        self._ids: list[str] = table["ids"]
        self._years: list[int] = table["years"]
        self._titles: list[str] = table["titles"]
        self._hits: list[dict[str, Any]] = table["hits"]
        self._terms: dict[str, dict[str, frozenset[int]]] = {
            name: {v: frozenset(docs) for v, docs in values.items()} for name, values in table["terms"].items()
        }
        self.all_docs = frozenset(range(len(self._ids)))
        self._whoosh: Any = None

    @property
    def _searcher(self) -> Any:
        if self._whoosh is None:
            from whoosh import index as whoosh_index

            self._whoosh = whoosh_index.open_dir(str(self.path)).searcher()
        return self._whoosh

    def close(self) -> None:
        if self._whoosh is not None:
            self._whoosh.close()
            self._whoosh = None

    def term_docs(self, fieldname: str) -> dict[str, frozenset[int]]:
        """Value → document numbers for one facet field."""
        return self._terms.get(fieldname, {})

    def _union(self, fieldname: str, values: Iterable[str]) -> set[int]:
        docs = self.term_docs(fieldname)
        out: set[int] = set()
        for v in values:
            out |= docs.get(v, frozenset())
        return out

    def filter_docs(self, query: Query) -> set[int]:
        """Documents passing every facet filter (OR within a facet, AND across facets)."""
        matched = set(self.all_docs)
        for name, values in query.filters.items():
            matched &= self._union(FACETS_BY_NAME[name].index_field, values)
        if query.since is not None or query.until is not None:
            lo = query.since if query.since is not None else -1
            hi = query.until if query.until is not None else 10_000
            matched &= self._union("year", [y for y in self.term_docs("year") if lo <= int(y) <= hi])
        if query.has_impl:
            matched &= self._union("has_impl", ["1"])
        return matched

    # -- free text

    def _leaf_queries(self, node: textquery.Words | textquery.Pattern) -> Any:
        from whoosh import query as wq

        from mi_catalog import textquery

        names = [node.field] if node.field else list(textquery.TEXT_FIELDS)
        if isinstance(node, textquery.Pattern):
            prefix = node.prefix
            if prefix is not None:
                return wq.Or([wq.Prefix(f, prefix) for f in names])
            return wq.Or([wq.Wildcard(f, node.pattern) for f in names])
        if len(node.tokens) == 1:
            return wq.Or([wq.Term(f, node.tokens[0]) for f in names])
        return wq.Or([wq.Phrase(f, list(node.tokens)) for f in names])

    def _eval(self, node: textquery.Node, scoring: list[Any]) -> set[int]:
        from mi_catalog import textquery

        if isinstance(node, textquery.And):
            out = self._eval(node.items[0], scoring)
            for item in node.items[1:]:
                out &= self._eval(item, scoring)
            return out
        if isinstance(node, textquery.Or):
            out = set()
            for item in node.items:
                out |= self._eval(item, scoring)
            return out
        if isinstance(node, textquery.Not):
            return set(self.all_docs) - self._eval(node.item, [])
        q = self._leaf_queries(node)
        scoring.append(q)
        return set(self._searcher.docs_for_query(q))

    def _text_match(self, text: str, within: set[int], top: int | None) -> tuple[set[int], dict[int, float]]:
        """Documents of ``within`` matching the text, and BM25 scores for the best ``top`` (all if None)."""
        tree = parse_text(text)
        if tree is None:
            return within, {}
        scoring: list[Any] = []
        matched = self._eval(tree, scoring) & within
        if top == 0 or not matched or not scoring:
            return matched, {}
        from whoosh import query as wq

        results = self._searcher.search(wq.Or(scoring), filter=matched, limit=top)
        return matched, {hit.docnum: float(hit.score) for hit in results}

    # -- counts, order, records

    def facet_counts(self, docs: set[int]) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for kind in FACET_TABLE:
            per_value = {v: len(d & docs) for v, d in self.term_docs(kind.index_field).items()}
            counts[kind.name] = kind.ordered({v: c for v, c in per_value.items() if c})
        return counts

    def _order(self, docs: Iterable[int], query: Query, scores: Mapping[int, float]) -> list[int]:
        years, titles = self._years, self._titles
        if query.sort == "title":
            return sorted(docs, key=titles.__getitem__)
        by_year = sorted(docs, key=lambda d: (-years[d], titles[d]))
        if query.sort == "relevance" and scores:
            # Scored documents first by score; the rest (beyond the limit) keep the year order.
            best = sorted(scores, key=lambda d: (-scores[d], -years[d], titles[d]))
            return best + [d for d in by_year if d not in scores]
        return by_year

    def record(self, docnum: int) -> dict[str, Any]:
        stored: dict[str, Any] = json.loads(self._searcher.stored_fields(docnum)["record"])
        return stored

    def search(self, query: Query) -> QueryResult:
        matched = self.filter_docs(query)
        scores: dict[int, float] = {}
        if query.text and matched:
            top = query.limit if query.sort == "relevance" else 0
            matched, scores = self._text_match(query.text, matched, top)
        ordered = self._order(matched, query, scores)
        shown = ordered if query.limit is None else ordered[: query.limit]
        hits = tuple(_hit(self._hits[d], scores.get(d) if query.text else None) for d in shown)
        return QueryResult(total=len(matched), facets=self.facet_counts(matched), results=hits)

    def get(self, entry_id: str) -> dict[str, Any] | None:
        """The stored record (``hit`` and the full ``entry``) of one entry, or None."""
        if entry_id not in self._ids:
            return None
        return self.record(self._ids.index(entry_id))

    def ids(self) -> list[str]:
        return sorted(self._ids)


def _hit(data: Mapping[str, Any], score: float | None) -> Hit:
    return Hit(
        id=data["id"],
        title=data["title"],
        year=data["year"],
        venue=data["venue"],
        venue_detail=data.get("venue_detail"),
        authors=tuple(data.get("authors", ())),
        summary=data.get("summary"),
        objects=tuple(data["objects"]),
        methods=tuple(data["methods"]),
        steering=tuple(data["steering"]),
        applications=tuple(data["applications"]),
        links=data["links"],
        impls=tuple(data["impls"]),
        score=score,
    )


def open_searcher(catalog_dir: Path) -> tuple[IndexSearcher, Any]:
    """The searcher over the up-to-date index of ``catalog_dir``, and the :class:`IndexInfo` it came from."""
    from mi_catalog.index import ensure_index

    info = ensure_index(catalog_dir)
    return IndexSearcher(info.path), info
