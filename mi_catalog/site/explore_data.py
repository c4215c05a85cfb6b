"""The explore page's data file: a lean JSON the browser filters with the CLI's rules.

Facets come from :data:`mi_catalog.facets.FACET_TABLE` (values stored per paper
as indices into the facet's value list); free text is stored per field as the
paper's analyzed tokens in order (Whoosh's StandardAnalyzer over exactly the
strings the index gets), so the page re-implements the analyzer only for the
query, and the query language of :mod:`mi_catalog.textquery` (phrases, OR, NOT,
prefix*, field:) evaluates on the same tokens. Alias maps come straight from
:mod:`mi_catalog.vocab`, so the page accepts exactly the spellings the CLI accepts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mi_catalog.facets import FACET_TABLE, YEAR_RANGE, FacetKind
from mi_catalog.index_build import text_fields
from mi_catalog.query import TOKEN_MIN_LENGTH, TOKEN_PATTERN, url_keys
from mi_catalog.schema import Entry
from mi_catalog.site.text import analyzed, stop_words
from mi_catalog.textquery import OPERATORS, TEXT_FIELDS

FORMAT_VERSION = 2


def term_facet_data(kind: FacetKind, present: set[str] | None = None) -> dict[str, Any]:
    """A vocabulary or term facet: its values (only those present, for venues), groups and every accepted spelling."""
    assert kind.terms is not None
    facet = kind.terms
    return {
        "name": kind.name,
        "label": kind.label,
        "kind": kind.kind,
        "values": [
            {"id": t.id, "label": t.label, "description": t.description, "parent": t.parent}
            for t in facet.terms
            if present is None or t.id in present
        ],
        "groups": [
            {"id": g.id, "label": g.label, "description": g.description, "children": list(facet.children(g.id))}
            for g in facet.groups
        ],
        "aliases": facet.alias_map(),
    }


def year_facet_data(kind: FacetKind, entries: Sequence[Entry]) -> dict[str, Any]:
    years = sorted({e.year for e in entries}, reverse=True)
    return {
        "name": kind.name,
        "label": kind.label,
        "kind": "year",
        "values": [{"id": str(y), "label": str(y), "description": "", "parent": None} for y in years],
        "groups": [],
        "aliases": {},
        "range": list(YEAR_RANGE),
    }


def facet_data(kind: FacetKind, entries: Sequence[Entry]) -> dict[str, Any]:
    if kind.kind == "year":
        return year_facet_data(kind, entries)
    # Venues: only those with papers (a closed list of ~40); the other facets list every value.
    return term_facet_data(kind, {e.venue for e in entries} if kind.name == "venue" else None)


def explore_data(entries: Sequence[Entry]) -> dict[str, Any]:
    facets = [facet_data(k, entries) for k in FACET_TABLE]
    index = [{v["id"]: i for i, v in enumerate(f["values"])} for f in facets]

    def facet_indices(entry: Entry) -> list[list[int]]:
        raw = [k.values_of(entry) for k in FACET_TABLE]
        return [[index[k][v] for v in values if v in index[k]] for k, values in enumerate(raw)]

    def text_tokens(entry: Entry) -> list[str]:
        # Per text field, its analyzed tokens in order (phrases need the order), as the index has them.
        return [" ".join(analyzed(text)) for text in text_fields(entry).values()]

    papers = [[e.id, e.title, e.year, facet_indices(e), text_tokens(e)] for e in entries]
    keys = url_keys()  # the URL state: QueryParams' facet fields and its text, under their URL keys
    assert [k for k, field in keys.items() if field != "text"] == [f["name"] for f in facets]
    return {
        "version": FORMAT_VERSION,
        "facets": facets,
        "text": {
            "key": next(k for k, field in keys.items() if field == "text"),
            "pattern": TOKEN_PATTERN,
            "minLength": TOKEN_MIN_LENGTH,
            "stopWords": stop_words(),
            "fields": list(TEXT_FIELDS),
            "operators": list(OPERATORS),
        },
        # Each paper: [id, title, year, [value indices per facet, in `facets` order], [tokens per text field]].
        "papers": papers,
    }


def explore_json(entries: Sequence[Entry]) -> str:
    # Escape "<", ">" and "&" too: harmless in JSON, and the file stays inert even if served as HTML.
    text = json.dumps(explore_data(entries), ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
