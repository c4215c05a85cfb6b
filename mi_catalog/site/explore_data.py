"""The explore page's data file: a lean JSON the browser filters with the CLI's rules.

Facet values are stored per paper as indices into the facet's value list; free
text is stored as the paper's distinct analyzed tokens (Whoosh's
StandardAnalyzer over title, summary and authors), so the page never has to
re-implement the analyzer for documents, only for the query. Alias maps come
straight from :mod:`mi_catalog.vocab`, so the page accepts exactly the
spellings the CLI accepts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mi_catalog import vocab
from mi_catalog.schema import Entry
from mi_catalog.site.text import TOKEN_MIN_LENGTH, TOKEN_PATTERN, search_tokens, stop_words

FORMAT_VERSION = 1
TEXT_FIELDS = ("title", "summary", "authors")  # the fields `mi-catalog query` searches


def venue_alias_map() -> dict[str, str]:
    """Normalized spelling → canonical venue id, as :func:`vocab.resolve_venue` reads it."""
    out: dict[str, str] = {}
    for venue in vocab.VENUES:
        for key in (venue.id, *venue.aliases):
            out[vocab.normalize_key(key)] = venue.id
    return out


def vocab_facet_data(facet: vocab.Facet) -> dict[str, Any]:
    return {
        "name": facet.name,
        "label": facet.label,
        "values": [{"id": t.id, "label": t.label, "description": t.description, "parent": t.parent}
                   for t in facet.terms],
        "groups": [{"id": g.id, "label": g.label, "description": g.description,
                    "children": list(facet.children(g.id))} for g in facet.groups],
        "aliases": facet.alias_map(),
        "match": "alias",
    }


def venue_facet_data(entries: Sequence[Entry]) -> dict[str, Any]:
    present = {e.venue for e in entries}
    return {
        "name": "venue",
        "label": "Venue",
        "values": [{"id": v.id, "label": v.id, "description": v.label, "parent": None}
                   for v in vocab.VENUES if v.id in present],
        "groups": [],
        "aliases": venue_alias_map(),
        "match": "alias",
    }


def year_facet_data(entries: Sequence[Entry]) -> dict[str, Any]:
    years = sorted({e.year for e in entries}, reverse=True)
    return {
        "name": "year",
        "label": "Year",
        "values": [{"id": str(y), "label": str(y), "description": "", "parent": None} for y in years],
        "groups": [],
        "aliases": {},
        "match": "exact",
    }


def entry_text(entry: Entry) -> list[str]:
    return [entry.title, entry.summary or "", *entry.authors]


def explore_data(entries: Sequence[Entry]) -> dict[str, Any]:
    facets = [*(vocab_facet_data(f) for f in vocab.FACETS), venue_facet_data(entries), year_facet_data(entries)]
    index = [{v["id"]: i for i, v in enumerate(f["values"])} for f in facets]

    def facet_indices(entry: Entry) -> list[list[int]]:
        raw: list[list[str]] = [entry.facet_values(f) for f in vocab.FACETS]
        raw += [[entry.venue], [str(entry.year)]]
        return [[index[k][v] for v in values if v in index[k]] for k, values in enumerate(raw)]

    papers = [
        [e.id, e.title, e.year, facet_indices(e), " ".join(search_tokens(entry_text(e)))] for e in entries
    ]
    return {
        "version": FORMAT_VERSION,
        "facets": facets,
        "text": {"pattern": TOKEN_PATTERN, "minLength": TOKEN_MIN_LENGTH, "stopWords": stop_words(),
                 "fields": list(TEXT_FIELDS)},
        # Each paper: [id, title, year, [indices per facet, in `facets` order], "space separated tokens"].
        "papers": papers,
    }


def explore_json(entries: Sequence[Entry]) -> str:
    # Escape "<", ">" and "&" too: harmless in JSON, and the file stays inert even if served as HTML.
    text = json.dumps(explore_data(entries), ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
