"""The facets of a query, as one table: what each one is called, where its values come from,
how a typed value resolves, and in which order its counts are shown.

Three kinds: ``vocabulary`` (a :class:`mi_catalog.vocab.Facet` over the entry's tags; aliases,
groups), ``term`` (a closed list that is not a tag: venue, source) and ``year`` (any plausible
year). The query model, the index, the CLI's flags, the formats and the site's explore page all
read this table; nothing else names a facet. Plain Python: the query path imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mi_catalog import vocab
from mi_catalog.errors import QueryError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the query path (mypy reads it as True)
if TYPE_CHECKING:
    from typing import Any, Literal

    Kind = Literal["vocabulary", "term", "year"]

YEAR_RANGE = (1900, 2100)


@dataclass(frozen=True)
class FacetKind:
    name: str  # the CLI flag (--venue), the URL key on the site, the key in JSON "facets"
    label: str
    kind: Kind
    help: str
    of_entry: Callable[[Any], list[str]]  # its values for a validated entry (mi_catalog.schema.Entry)
    order: str  # how counts are shown: "terms" (the list's own order), "newest" or "count"
    terms: vocab.Facet | None = None  # the values of a vocabulary or term facet

    @property
    def index_field(self) -> str:
        """The index field (and the entry field for vocabulary facets: ``objects``)."""
        return self.terms.field if self.terms is not None else self.name

    def resolve(self, raw: str) -> tuple[str, ...]:
        """Canonical values for one typed value (aliases, groups, words and prefixes); QueryError if unknown."""
        if self.terms is None:
            return (str(parse_year(raw, f"--{self.name}")),)
        try:
            return self.terms.resolve(raw, loose=True)
        except vocab.UnknownValueError as err:
            raise QueryError(str(err)) from None

    def values_of(self, entry: Any) -> list[str]:
        """This facet's values for a validated entry."""
        return self.of_entry(entry)

    def ordered(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Counts in display order."""
        if self.order == "newest":
            return dict(sorted(counts.items(), reverse=True))
        if self.order == "terms":
            assert self.terms is not None
            return {v: counts[v] for v in self.terms.ids if v in counts}
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def parse_year(value: Any, flag: str) -> int:
    try:
        year = int(str(value).strip())
    except (TypeError, ValueError):
        raise QueryError(f"{flag} takes a year like 2024, got {value!r}") from None
    if not YEAR_RANGE[0] <= year <= YEAR_RANGE[1]:
        raise QueryError(f"{flag} {year} is not a plausible year")
    return year


def _vocab_help(facet: vocab.Facet) -> str:
    groups = f"; or a group: {', '.join(g.id for g in facet.groups)}" if facet.groups else ""
    return f"{facet.label} (repeat or comma-separate for OR): {', '.join(facet.ids)}{groups}; aliases accepted"


def _tags(field: str) -> Callable[[Any], list[str]]:
    return lambda entry: list(getattr(entry.tags, field))


FACET_TABLE: tuple[FacetKind, ...] = (
    *(FacetKind(f.name, f.label, "vocabulary", _vocab_help(f), _tags(f.field), "terms", f) for f in vocab.FACETS),
    FacetKind(
        "venue",
        "Venue",
        "term",
        "venue (repeat or comma-separate for OR), e.g. ICLR, arXiv",
        lambda entry: [entry.venue],
        "count",
        vocab.VENUE,
    ),
    FacetKind(
        "year",
        "Year",
        "year",
        "publication year (repeat or comma-separate for OR), e.g. 2024,2025",
        lambda entry: [str(entry.year)],
        "newest",
    ),
    FacetKind(
        "source",
        "Source",
        "term",
        "survey (the survey's paper list) or foundational (papers mi-catalog added)",
        lambda entry: [vocab.source_of(entry.provenance.source)],
        "terms",
        vocab.SOURCE,
    ),
)
FACETS_BY_NAME: dict[str, FacetKind] = {f.name: f for f in FACET_TABLE}
FACET_NAMES: tuple[str, ...] = tuple(FACETS_BY_NAME)
