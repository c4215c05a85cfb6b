"""`mi-catalog stats`: how complete and how checked the catalog is.

One library function, :func:`compute_stats`, turns entries into a :class:`CatalogStats`; the CLI
(``mi-catalog stats``) and the site's home page both render that same object, so the figures shown
anywhere come from one place. Reads YAML through :mod:`mi_catalog.load` only (no index, no torch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mi_catalog import vocab
from mi_catalog.load import load_catalog
from mi_catalog.schema import Entry

SURVEY_SOURCE = "awesome-actionable-mi-survey"
FOUNDATIONAL_SOURCE = "mi-catalog"


@dataclass(frozen=True)
class Coverage:
    """How many of ``total`` entries have a property."""

    key: str  # stable id for scripts (JSON)
    label: str  # for people (table, site)
    count: int
    total: int

    @property
    def percent(self) -> float:
        return round(100.0 * self.count / self.total, 1) if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "count": self.count, "total": self.total, "percent": self.percent}


@dataclass(frozen=True)
class CatalogStats:
    total: int
    survey: int  # entries from the survey's list
    foundational: int  # entries added by this project (provenance source mi-catalog)
    fields: tuple[Coverage, ...]  # coverage of each entry field
    review: tuple[Coverage, ...]  # how far entries were checked against the papers
    invalid_files: int = 0  # files that failed validation and are not counted

    def field(self, key: str) -> Coverage:
        for c in (*self.fields, *self.review):
            if c.key == key:
                return c
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "survey": self.survey,
            "foundational": self.foundational,
            "invalid_files": self.invalid_files,
            "fields": [c.to_dict() for c in self.fields],
            "review": [c.to_dict() for c in self.review],
        }


def _has_tags(field: str) -> Callable[[Entry], bool]:
    return lambda e: bool(getattr(e.tags, field))


# (key, label, predicate) — the order is the order shown.
_FIELD_CHECKS: tuple[tuple[str, str, Callable[[Entry], bool]], ...] = (
    ("arxiv", "arXiv id", lambda e: e.links.arxiv is not None),
    ("authors", "authors", lambda e: bool(e.authors)),
    ("summary", "summary", lambda e: bool(e.summary)),
    ("code", "code link", lambda e: e.links.code is not None),
    ("published_venue", "venue other than arXiv", lambda e: e.venue != "arXiv"),
    *((f"tags.{f.field}", f"{f.label.lower()} tag", _has_tags(f.field)) for f in vocab.FACETS),
    ("impls", "reference implementation", lambda e: bool(e.impls)),
    ("notes", "notes (corrections recorded)", lambda e: bool(e.notes)),
)

_REVIEW_CHECKS: tuple[tuple[str, str, Callable[[Entry], bool]], ...] = (
    ("review.tags_reviewed", "tags reviewed against the paper", lambda e: e.review.tags == "reviewed"),
    ("review.tags_upstream", "tags upstream-only (unchecked)", lambda e: e.review.tags == "upstream"),
    (
        "review.metadata_checked",
        "metadata checked (title, authors, venue, year, ids)",
        lambda e: e.review.metadata == "checked",
    ),
    ("review.sources", "review sources recorded", lambda e: bool(e.review.sources)),
)


def compute_stats(entries: Sequence[Entry], *, invalid_files: int = 0) -> CatalogStats:
    """Coverage of every field and of the review over ``entries``."""
    total = len(entries)

    def cover(checks: tuple[tuple[str, str, Callable[[Entry], bool]], ...]) -> tuple[Coverage, ...]:
        return tuple(Coverage(key, label, sum(1 for e in entries if pred(e)), total) for key, label, pred in checks)

    return CatalogStats(
        total=total,
        survey=sum(1 for e in entries if e.provenance.source == SURVEY_SOURCE),
        foundational=sum(1 for e in entries if e.provenance.source == FOUNDATIONAL_SOURCE),
        fields=cover(_FIELD_CHECKS),
        review=cover(_REVIEW_CHECKS),
        invalid_files=invalid_files,
    )


def catalog_stats(catalog_dir: Path) -> CatalogStats:
    """Load a catalog folder (invalid files are counted, not included) and compute its stats."""
    loaded = load_catalog(catalog_dir)
    return compute_stats(loaded.entries, invalid_files=len({p.file for p in loaded.problems}))


def headline(stats: CatalogStats) -> str:
    text = f"{stats.total} entries: {stats.survey} from the survey, {stats.foundational} foundational"
    if stats.invalid_files:
        text += f" ({stats.invalid_files} invalid file(s) not counted; run `mi-catalog validate`)"
    return text


def _rows(coverages: Sequence[Coverage]) -> list[tuple[str, str, str]]:
    return [(c.label, f"{c.count}/{c.total}", f"{c.percent:.1f}%") for c in coverages]


def format_table(stats: CatalogStats) -> str:
    """Plain-text table for the terminal."""
    lines = [headline(stats), ""]
    sections = (("field coverage", stats.fields), ("review", stats.review))
    width = max(len(label) for _, coverages in sections for label, _, _ in _rows(coverages))
    for title, coverages in sections:
        rows = _rows(coverages)
        lines.append(f"{title:<{width}}  {'count':>9}  {'percent':>7}")
        lines += [f"{label:<{width}}  {count:>9}  {pct:>7}" for label, count, pct in rows]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def format_markdown(stats: CatalogStats) -> str:
    """Markdown tables for the site (labels are plain ASCII text; no escaping needed)."""
    out = [f"{headline(stats)}.", ""]
    for title, coverages in (("Field", stats.fields), ("Review", stats.review)):
        out += [f"| {title} | Entries | Percent |", "|---|---:|---:|"]
        out += [f"| {label} | {count} | {pct} |" for label, count, pct in _rows(coverages)]
        out.append("")
    return "\n".join(out)
