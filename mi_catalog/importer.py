"""`mi-catalog import-awesome`: the survey's Markdown paper list → catalog entries.

The upstream list (a Markdown table per application section) has tag typos,
venue typos, Markdown-escaped links, rows listed twice, and rows that share a
title or a link while being different papers. This module parses it,
normalises each row against the vocabulary, groups rows that are the same
paper, and writes one entry per paper that is not in the catalog yet —
recording every correction in the entry's ``notes`` and every upstream row
verbatim in ``provenance.upstream_rows``.

Idempotent: a row already recorded in an entry's provenance, or matching an
entry by arXiv id, link or normalised title, is skipped; existing files are
never rewritten, so fields a person edited are never overwritten.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mi_catalog import vocab
from mi_catalog.fsutil import atomic_write_text
from mi_catalog.identity import arxiv_id_from_url, canonical_link, link_key, normalize_title
from mi_catalog.load import EntryFileError, dump_entry_yaml, load_entry
from mi_catalog.paths import catalog_files
from mi_catalog.schema import Entry, Links, Provenance, Tags, UpstreamRow

SOURCE: Literal["awesome-actionable-mi-survey"] = "awesome-actionable-mi-survey"
NO_TAG = {"-", "", "—", "n/a"}
_ACL_ID = re.compile(r"(?:aclanthology\.org/|10\.18653/v1/)(\d{4})\.([a-z-]+?)(?:-main|-long|-short|-1)?\.(\d+)", re.I)

# ACL Anthology volume → (venue id, venue_detail) where the upstream venue column is wrong or too coarse.
_ACL_VOLUMES: dict[str, tuple[str, str | None]] = {
    "findings-acl": ("Findings of ACL", None),
    "findings-emnlp": ("Findings of EMNLP", None),
    "findings-naacl": ("Findings of NAACL", None),
    "findings-ijcnlp": ("Findings of IJCNLP-AACL", None),
    "lrec": ("LREC-COLING", None),
    "paclic": ("PACLIC", None),
    "blackboxnlp": ("Workshop", "BlackboxNLP Workshop on Analyzing and Interpreting Neural Networks for NLP"),
    "sigtyp": ("Workshop", "SIGTYP Workshop on Research in Computational Linguistic Typology and Multilingual NLP"),
    "insights": ("Workshop", "Workshop on Insights from Negative Results in NLP"),
}


@dataclass(frozen=True)
class Row:
    """One parsed upstream table row."""

    section: str  # application id of the section it sits under
    cells: UpstreamRow


@dataclass
class ImportReport:
    added: list[tuple[str, str]] = field(default_factory=list)  # (entry id, title)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (title, reason)
    rows: int = 0


# ---------------------------------------------------------------- parsing


def _split_cells(line: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", line.strip())
    return [p.strip() for p in parts[1:-1]]


def _link_target(cell: str) -> str:
    m = re.search(r"\]\((.*?)\)\s*$", cell)
    return (m.group(1) if m else cell).strip()


def parse_awesome(text: str) -> list[Row]:
    """Rows of every paper table, each tagged with the application section it sits under."""
    rows: list[Row] = []
    section: str | None = None
    for line in text.splitlines():
        heading = re.match(r"^####\s+(.+?)\s*$", line)
        if heading:
            section = vocab.APPLICATION.resolve(heading.group(1))[0]
            continue
        if not line.startswith("| **"):
            continue
        cells = _split_cells(line)
        if len(cells) != 7:
            raise ValueError(f"table row with {len(cells)} cells (expected 7): {line[:80]}")
        if section is None:
            raise ValueError(f"table row before any '####' section heading: {line[:80]}")
        title, obj, method, steer, venue, year, link = cells
        rows.append(
            Row(
                section,
                UpstreamRow(
                    section=section,
                    title=title.strip("*").strip(),
                    object=obj,
                    method=method,
                    steer=steer,
                    venue=venue,
                    year=year,
                    link=_link_target(link),
                ),
            )
        )
    return rows


# ---------------------------------------------------------------- normalisation


def _resolve_tag(facet: vocab.Facet, raw: str, notes: list[str]) -> list[str]:
    """One upstream tag cell → canonical ids, fixing typos and recording the fix."""
    if raw.strip().lower() in NO_TAG:
        return []
    try:
        return list(facet.resolve(raw))
    except vocab.UnknownValueError:
        labels = {t.label: t.id for t in facet.terms}
        close = difflib.get_close_matches(raw, list(labels), n=1, cutoff=0.8)
        if not close:
            raise
        notes.append(f"Upstream {facet.label.lower()} {raw!r} is a typo for {close[0]!r}.")
        return [labels[close[0]]]


def _objects(raw: str, methods: list[str], notes: list[str]) -> list[str]:
    # "MHA & FFN" means the paper works on both heads and FFN blocks; when it was
    # found by circuit discovery the object *is* a circuit of them, so tag that too.
    if "&" in raw:
        ids: list[str] = []
        for part in raw.split("&"):
            ids.extend(i for i in _resolve_tag(vocab.OBJECT, part.strip(), notes) if i not in ids)
        if "circuit-discovery" in methods:
            ids.append("circuit")
        return ids
    return _resolve_tag(vocab.OBJECT, raw, notes)


def _venue(raw: str, link: str, notes: list[str]) -> tuple[str, str | None]:
    venue = vocab.resolve_venue(raw)
    if venue != raw:
        notes.append(f"Upstream venue {raw!r} corrected to {venue!r}.")
    m = _ACL_ID.search(link.replace("\\_", "_"))
    if m:
        volume = m.group(2).lower()
        for prefix, (fixed, detail) in _ACL_VOLUMES.items():
            if not volume.startswith(prefix):
                continue
            if fixed != venue:
                notes.append(
                    f"Venue {venue!r} corrected to {fixed!r}"
                    + (f" ({detail})" if detail else "")
                    + f": the ACL Anthology id {m.group(1)}.{m.group(2)} says so."
                )
            return fixed, detail
    return venue, None


def _title(raw: str, notes: list[str]) -> str:
    title = " ".join(raw.replace("\\", "").split())
    fixed = re.sub(r":(?=[A-Za-z])", ": ", title)
    if fixed != title:
        notes.append(f"Missing space after a colon in the upstream title fixed ({raw!r}).")
    return fixed


@dataclass
class Candidate:
    """One paper assembled from one or more upstream rows."""

    rows: list[Row]
    title: str
    year: int
    venue: str
    venue_detail: str | None
    link: str
    arxiv: str | None
    tags: dict[str, list[str]]
    notes: list[str]

    @property
    def title_key(self) -> str:
        return normalize_title(self.title)

    @property
    def link_key(self) -> str:
        return link_key(self.link)


def _candidate(row: Row) -> Candidate:
    cells = row.cells
    notes: list[str] = []
    methods = _resolve_tag(vocab.METHOD, cells.method, notes)
    steering = _resolve_tag(vocab.STEER, cells.steer, notes)
    objects = _objects(cells.object, methods, notes)
    venue, detail = _venue(cells.venue, cells.link, notes)
    link = canonical_link(cells.link)
    if link != cells.link:
        notes.append(f"Link normalised from {cells.link!r}.")
    return Candidate(
        rows=[row],
        title=_title(cells.title, notes),
        year=int(cells.year),
        venue=venue,
        venue_detail=detail,
        link=link,
        arxiv=arxiv_id_from_url(cells.link),
        tags={"objects": objects, "methods": methods, "steering": steering, "applications": [row.section]},
        notes=notes,
    )


def _similar_titles(a: str, b: str) -> bool:
    return a == b or difflib.SequenceMatcher(None, a, b).ratio() >= 0.85


def _same_paper(a: Candidate, b: Candidate) -> bool:
    """Same paper: an identifier (arXiv id or link) agrees and the titles agree (or nearly: typos upstream)."""
    ids_agree = (a.arxiv is not None and a.arxiv == b.arxiv) or a.link_key == b.link_key
    return ids_agree and _similar_titles(a.title_key, b.title_key)


class _Keys:
    """Candidates by exact key (arXiv id, link key), so matching never compares every pair:
    only records sharing an identifier are compared by title (exact key first, then difflib)."""

    def __init__(self) -> None:
        self.items: list[Candidate] = []
        self._by: dict[tuple[str, str], list[int]] = {}

    def add(self, cand: Candidate) -> None:
        self.items.append(cand)
        for key in self._keys(cand):
            self._by.setdefault(key, []).append(len(self.items) - 1)

    @staticmethod
    def _keys(cand: Candidate) -> list[tuple[str, str]]:
        return [("link", cand.link_key)] + ([("arxiv", cand.arxiv)] if cand.arxiv else [])

    def match(self, cand: Candidate) -> int | None:
        """Position of the first (earliest added) record that is the same paper as ``cand``."""
        near = sorted({i for key in self._keys(cand) for i in self._by.get(key, ())})
        exact = [i for i in near if self.items[i].title_key == cand.title_key]
        if exact:
            return exact[0]
        return next((i for i in near if _same_paper(self.items[i], cand)), None)


def _merge(into: Candidate, other: Candidate) -> None:
    into.rows.extend(other.rows)
    for key, values in other.tags.items():
        into.tags[key].extend(v for v in values if v not in into.tags[key])
    for note in other.notes:
        if note not in into.notes:
            into.notes.append(note)
    if (other.venue, other.year) != (into.venue, into.year):
        into.notes.append(
            f"Rows disagree on venue/year ({into.venue} {into.year} vs {other.venue} {other.year}); kept the first."
        )


def group_rows(rows: Iterable[Row]) -> list[Candidate]:
    """One candidate per paper; duplicated rows are merged keeping every tag."""
    keys = _Keys()
    for row in rows:
        cand = _candidate(row)
        twin = keys.match(cand)
        if twin is None:
            keys.add(cand)
        else:
            _merge(keys.items[twin], cand)
    groups = keys.items
    for g in groups:
        if len(g.rows) > 1:
            sections = ", ".join(r.section for r in g.rows)
            g.notes.insert(
                0,
                f"Listed {len(g.rows)} times upstream (sections: {sections}); merged into one entry keeping every tag.",
            )
    _flag_shared(groups)
    return groups


def _flag_shared(groups: list[Candidate]) -> None:
    """Different papers that share a title or a link upstream: record it on each, for a curator to check."""
    by_title: dict[str, list[int]] = {}
    by_link: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_title.setdefault(g.title_key, []).append(i)
        by_link.setdefault(g.link_key, []).append(i)
    for i, a in enumerate(groups):
        for j in sorted(set(by_title[a.title_key]) | set(by_link[a.link_key])):
            b = groups[j]
            if j == i:
                continue
            if a.title_key == b.title_key:
                a.notes.append(
                    f"Another upstream row has the same title but points at a different paper ({b.link}); kept separate."
                )
            else:
                a.notes.append(f"Upstream link is also used for {b.title!r}: one of the two links is wrong.")


# ---------------------------------------------------------------- ids


_STOP = {"a", "an", "the", "of", "in", "on", "for", "to", "and", "via", "by", "with", "is", "are", "from", "at", "as"}


def slugify(title: str) -> str:
    """Readable id: a paper's short name before the colon ("DoLa: ..." → dola), else its first words."""

    def words(text: str) -> list[str]:
        return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()

    head, sep, _ = title.partition(":")
    if sep and 1 <= len(words(head)) <= 3:
        return "-".join(words(head))
    chosen: list[str] = []
    for word in words(head if sep else title):
        if len("-".join([*chosen, word])) > 60 or len(chosen) == 8:
            break
        chosen.append(word)
    while len(chosen) > 2 and chosen[-1] in _STOP:
        chosen.pop()
    return "-".join(chosen)


def _unique_id(base: str, year: int, taken: set[str]) -> str:
    for candidate in (base, f"{base}-{year}", *(f"{base}-{year}-{n}" for n in range(2, 100))):
        if candidate not in taken:
            return candidate
    raise RuntimeError(f"no free id for {base}")


# ---------------------------------------------------------------- matching the catalog


class _Existing:
    """The catalog's entries, indexed by their upstream rows and by identifier."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], Entry] = {}
        self.keys = _Keys()
        self.entries: list[Entry] = []

    def add(self, entry: Entry) -> None:
        for r in entry.provenance.upstream_rows:
            self.rows.setdefault((r.title, r.link), entry)
        self.entries.append(entry)
        self.keys.add(
            Candidate([], entry.title, entry.year, entry.venue, None, entry.links.paper, entry.links.arxiv, {}, [])
        )

    def match(self, cand: Candidate) -> Entry | None:
        for r in cand.rows:
            found = self.rows.get((r.cells.title, r.cells.link))
            if found is not None:
                return found
        i = self.keys.match(cand)
        return None if i is None else self.entries[i]


def _to_entry(cand: Candidate, entry_id: str) -> Entry:
    return Entry(
        id=entry_id,
        title=cand.title,
        year=cand.year,
        venue=cand.venue,
        venue_detail=cand.venue_detail,
        links=Links(paper=cand.link, arxiv=cand.arxiv),
        tags=Tags(**cand.tags),
        provenance=Provenance(
            source=SOURCE,
            sections=list(dict.fromkeys(r.section for r in cand.rows)),
            upstream_rows=[r.cells for r in cand.rows],
        ),
        notes=cand.notes,
    )


def import_awesome(markdown_path: Path, catalog_dir: Path, *, dry_run: bool = False) -> ImportReport:
    """Create an entry file for every paper of the list that the catalog does not have yet."""
    text = markdown_path.read_text(encoding="utf-8")
    rows = parse_awesome(text)
    report = ImportReport(rows=len(rows))
    catalog_dir.mkdir(parents=True, exist_ok=True)
    existing = _Existing()
    taken: set[str] = set()
    for path in catalog_files(catalog_dir):
        taken.add(path.stem)
        try:
            existing.add(load_entry(path))
        except EntryFileError as err:
            # Never guess about a broken file: it is reported, and its id stays reserved.
            report.skipped.append((path.name, f"existing file is invalid, not matched against: {err.problems[0]}"))
    for cand in group_rows(rows):
        match = existing.match(cand)
        if match is not None:
            report.skipped.append((cand.title, f"already in the catalog as {match.id}"))
            continue
        entry = _to_entry(cand, _unique_id(slugify(cand.title), cand.year, taken))
        taken.add(entry.id)
        existing.add(entry)
        if not dry_run:
            atomic_write_text(catalog_dir / f"{entry.id}.yaml", dump_entry_yaml(entry))
        report.added.append((entry.id, entry.title))
    return report
