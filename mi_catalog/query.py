"""The query model: what a user asks, resolved against the vocabulary.

Semantics (shared by the CLI, the Python API and the site's explore page):
OR within a facet (a repeated flag), AND across facets, free text matched with
BM25 over title, summary and authors (every word must occur). Aliases resolve
here, so an unknown value fails before any index is opened.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields

from mi_catalog.errors import QueryError
from mi_catalog.facets import FACET_NAMES, FACET_TABLE, FacetKind, parse_year

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the query path (mypy reads it as True)
if TYPE_CHECKING:
    from typing import Any

    from mi_catalog import textquery

SORTS = ("relevance", "year", "title")
_TEXT_HELP = (
    "free text over title, summary and authors (every word must match): "
    '"a phrase", a OR b, NOT a, prefix*, title:word, (groups)'
)
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


@dataclass(frozen=True)
class QueryParams:
    """What a user asks, as typed: the one definition of the query parameters.

    The Python API takes these as keyword arguments, the CLI's flags are generated from
    these fields (:func:`add_query_arguments`), and the explore page keeps the facet and
    text parameters in its URL under the same names (``?object=head&q=refusal``).
    Facet fields take values in any accepted spelling (aliases, groups, comma lists);
    :meth:`resolve` turns them into a :class:`Query` of canonical ids or raises QueryError.
    """

    text: str | None = field(default=None, metadata={"url": "q", "help": _TEXT_HELP})
    object: tuple[str, ...] = field(default=(), metadata={"facet": True})
    method: tuple[str, ...] = field(default=(), metadata={"facet": True})
    steer: tuple[str, ...] = field(default=(), metadata={"facet": True})
    application: tuple[str, ...] = field(default=(), metadata={"facet": True})
    venue: tuple[str, ...] = field(default=(), metadata={"facet": True})
    year: tuple[str, ...] = field(default=(), metadata={"facet": True})
    source: tuple[str, ...] = field(default=(), metadata={"facet": True})
    since: int | str | None = field(default=None, metadata={"metavar": "Y", "help": "published in or after year Y"})
    until: int | str | None = field(default=None, metadata={"metavar": "Y", "help": "published in or before year Y"})
    has_impl: bool = field(default=False, metadata={"help": "only papers with a reference implementation"})
    sort: str | None = field(
        default=None, metadata={"choices": SORTS, "help": "default: relevance with text, else year (newest first)"}
    )
    limit: int | None = field(
        default=None, metadata={"metavar": "N", "help": "show at most N results (counts cover all matches)"}
    )

    @classmethod
    def of(cls, text: str | None = None, **kwargs: Any) -> QueryParams:
        """From keyword arguments as the API takes them: a facet takes one value or a list of them."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(f"unknown query parameter(s) {', '.join(unknown)} (valid: {', '.join(sorted(names))})")
        for name in FACET_NAMES:
            if name in kwargs:
                kwargs[name] = _as_tuple(kwargs[name])
        return cls(text=text, **kwargs)

    def resolve(self) -> Query:
        """Canonical ids for every value; QueryError (one line, with a suggestion) on bad input."""
        text = (self.text or "").strip()
        if text:
            parse_text(text)  # a malformed query fails here, before any index is opened
        filters = {}
        for kind in FACET_TABLE:
            values = _resolve_facet(kind, getattr(self, kind.name))
            if values:
                filters[kind.name] = values
        sort = self.sort if self.sort is not None else ("relevance" if text else "year")
        if sort not in SORTS:
            raise QueryError(f"unknown sort {sort!r} (valid: {', '.join(SORTS)})")
        limit = self.limit
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int):
                try:
                    limit = int(str(limit))
                except ValueError:
                    raise QueryError(f"--limit takes a whole number, got {limit!r}") from None
            if limit < 0:
                raise QueryError("--limit must be 0 or more")
        since = parse_year(self.since, "--since") if self.since is not None else None
        until = parse_year(self.until, "--until") if self.until is not None else None
        if since is not None and until is not None and since > until:
            raise QueryError(f"--since {since} is after --until {until}")
        return Query(text, filters, since, until, bool(self.has_impl), sort, limit)


def url_keys() -> dict[str, str]:
    """The explore page's URL keys → QueryParams fields: every facet under its own name, the text as ``q``."""
    keys = {f.name: f.name for f in fields(QueryParams) if f.metadata.get("facet")}
    text = next(f for f in fields(QueryParams) if f.name == "text")
    return {text.metadata["url"]: "text", **keys}


def _as_tuple(values: Any) -> tuple[str, ...]:
    # Catalog().query(object="head") and object=["head", "ffn"] alike; years may be ints.
    if values is None:
        return ()
    if isinstance(values, (str, int)):
        return (str(values),)
    return tuple(str(v) for v in values)


def _split_commas(value: str) -> list[str]:
    # `--object head,ffn` is accepted as shorthand for `--object head --object ffn`.
    return [p for p in (s.strip() for s in value.split(",")) if p]


def _resolve_facet(kind: FacetKind, values: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        for part in _split_commas(str(value)):
            out.extend(v for v in kind.resolve(part) if v not in out)
    return tuple(out)


@dataclass(frozen=True)
class Query:
    """A resolved query: canonical ids only (see :meth:`QueryParams.resolve`)."""

    text: str = ""
    filters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # facet name → canonical values (OR)
    since: int | None = None
    until: int | None = None
    has_impl: bool = False
    sort: str = "relevance"
    limit: int | None = None


def parse_text(text: str) -> textquery.Node | None:
    """The free-text query tree (see :mod:`mi_catalog.textquery`), analyzed like the index."""
    from mi_catalog import textquery  # only with free text: a facet-only query never loads the parser

    def analyze(word: str) -> list[str]:
        return [t.text for t in text_analyzer()(word)]

    return textquery.parse(text, analyze)


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
