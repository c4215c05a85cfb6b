"""The query model: what a user asks, resolved against the vocabulary.

Semantics (shared by the CLI, the Python API and the site's explore page):
OR within a facet (a repeated flag), AND across facets, free text matched with
BM25 over title, summary and authors (every word must occur). Aliases resolve
here, so an unknown value fails before any index is opened.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mi_catalog import vocab
from mi_catalog.errors import QueryError

SORTS = ("relevance", "year", "title")
TEXT_FIELDS = ("title", "summary", "authors")
# Tokenizer shared with the site: whole words, dots inside numbers/abbreviations kept ("2.1").
TOKEN_PATTERN = r"\w+(?:\.?\w+)*"
TOKEN_MIN_LENGTH = 2


def text_analyzer() -> Any:
    """The analyzer of every free-text field (and of the site's search tokens): Whoosh's
    StandardAnalyzer — lowercase, English stop words, tokens of 2+ characters — on TOKEN_PATTERN."""
    global _ANALYZER
    if _ANALYZER is None:
        from whoosh.analysis import StandardAnalyzer

        _ANALYZER = StandardAnalyzer(expression=TOKEN_PATTERN, minsize=TOKEN_MIN_LENGTH)
    return _ANALYZER


_ANALYZER: Any = None

# Facets reported with counts, in display order: the four vocabulary facets, then venue and year.
COUNT_FACETS = (*(f.name for f in vocab.FACETS), "venue", "year")


@dataclass(frozen=True)
class Query:
    """A resolved query: canonical ids only."""

    text: str = ""
    facets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # facet name → canonical ids (OR)
    venues: tuple[str, ...] = ()
    years: tuple[int, ...] = ()
    since: int | None = None
    until: int | None = None
    has_impl: bool = False
    sort: str = "relevance"
    limit: int | None = None

    @property
    def is_filter_only(self) -> bool:
        return not self.text.strip()


def _resolve_all(facet: vocab.Facet, values: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        for part in _split_commas(value):
            try:
                ids = facet.resolve(part)
            except vocab.UnknownValueError as err:
                raise QueryError(str(err)) from None
            out.extend(i for i in ids if i not in out)
    return tuple(out)


def _split_commas(value: str) -> list[str]:
    # `--object head,ffn` is accepted as shorthand for `--object head --object ffn`.
    return [p for p in (s.strip() for s in value.split(",")) if p]


def _resolve_venues(values: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        for part in _split_commas(value):
            try:
                venue = vocab.resolve_venue(part)
            except ValueError as err:
                raise QueryError(f"{err} (valid: {', '.join(vocab.VENUE_IDS)})") from None
            if venue not in out:
                out.append(venue)
    return tuple(out)


def _year(value: Any, flag: str) -> int:
    try:
        year = int(value)
    except (TypeError, ValueError):
        raise QueryError(f"{flag} takes a year like 2024, got {value!r}") from None
    if not 1900 <= year <= 2100:
        raise QueryError(f"{flag} {year} is not a plausible year")
    return year


def check_text_syntax(text: str) -> None:
    """Reject free text the parser would silently misread: unbalanced quotes or
    parentheses, unknown field prefixes, dangling boolean operators."""
    if text.count('"') % 2:
        raise QueryError(f"malformed query {text!r}: unbalanced double quote")
    depth = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            break
    if depth != 0:
        raise QueryError(f"malformed query {text!r}: unbalanced parentheses")
    for name in re.findall(r"(?<![\w\"])(\w+):(?=\S)", text):
        if name not in TEXT_FIELDS:
            raise QueryError(
                f"malformed query {text!r}: unknown field {name!r} (searchable fields: {', '.join(TEXT_FIELDS)};"
                " use --object/--method/... for facets)"
            )
    words = text.split()
    if words and (words[0] in ("AND", "OR") or words[-1] in ("AND", "OR", "NOT")):
        raise QueryError(f"malformed query {text!r}: a boolean operator needs words on both sides")


def build_query(
    text: str | None = None,
    *,
    object: Iterable[str] = (),
    method: Iterable[str] = (),
    steer: Iterable[str] = (),
    application: Iterable[str] = (),
    venue: Iterable[str] = (),
    year: Iterable[Any] = (),
    since: Any = None,
    until: Any = None,
    has_impl: bool = False,
    sort: str | None = None,
    limit: int | None = None,
) -> Query:
    """Resolve user input (aliases, strings) into a :class:`Query`; raise :class:`QueryError` on bad input."""
    text = (text or "").strip()
    if text:
        check_text_syntax(text)
    raw = {"object": object, "method": method, "steer": steer, "application": application}
    facets = {name: _resolve_all(vocab.FACETS_BY_NAME[name], values) for name, values in raw.items()}
    if sort is None:
        sort = "relevance" if text else "year"
    if sort not in SORTS:
        raise QueryError(f"unknown sort {sort!r} (valid: {', '.join(SORTS)})")
    if limit is not None and limit < 0:
        raise QueryError("--limit must be 0 or more")
    since_y = _year(since, "--since") if since is not None else None
    until_y = _year(until, "--until") if until is not None else None
    if since_y is not None and until_y is not None and since_y > until_y:
        raise QueryError(f"--since {since_y} is after --until {until_y}")
    return Query(
        text=text,
        facets={k: v for k, v in facets.items() if v},
        venues=_resolve_venues(venue),
        years=tuple(dict.fromkeys(_year(y, "--year") for y in year)),
        since=since_y,
        until=until_y,
        has_impl=has_impl,
        sort=sort,
        limit=limit,
    )


@dataclass(frozen=True)
class Hit:
    """One matching paper, as the index stores it (the stable JSON record)."""

    id: str
    title: str
    year: int
    venue: str
    venue_detail: str | None
    authors: tuple[str, ...]
    summary: str | None
    objects: tuple[str, ...]
    methods: tuple[str, ...]
    steering: tuple[str, ...]
    applications: tuple[str, ...]
    links: Mapping[str, str]
    impls: tuple[str, ...]
    score: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "year": self.year,
            "venue": self.venue,
            "venue_detail": self.venue_detail,
            "authors": list(self.authors),
            "summary": self.summary,
            "objects": list(self.objects),
            "methods": list(self.methods),
            "steering": list(self.steering),
            "applications": list(self.applications),
            "links": dict(self.links),
            "impls": list(self.impls),
        }


@dataclass(frozen=True)
class QueryResult:
    """``total`` counts all matches; ``facets`` counts over all matches; ``results`` is bounded by the limit."""

    total: int
    facets: Mapping[str, Mapping[str, int]]
    results: tuple[Hit, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "facets": {k: dict(v) for k, v in self.facets.items()},
            "results": [h.to_json() for h in self.results],
        }
