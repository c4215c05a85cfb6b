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
from urllib.parse import parse_qs, urlsplit

from mi_catalog import vocab
from mi_catalog.fsutil import atomic_write_text
from mi_catalog.load import EntryFileError, dump_entry_yaml, load_entry
from mi_catalog.paths import catalog_files
from mi_catalog.schema import Entry, Links, Provenance, Tags, UpstreamRow

SOURCE: Literal["awesome-actionable-mi-survey"] = "awesome-actionable-mi-survey"
NO_TAG = {"-", "", "—", "n/a"}
_ARXIV_IN_URL = re.compile(r"arxiv\.org/(?:abs|pdf)/(\d{4}\.\d{4,5})(?:v\d+)?", re.I)
_ARXIV_DOI = re.compile(r"10\.48550/arxiv\.(\d{4}\.\d{4,5})", re.I)
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


def normalize_title(title: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", title.lower()).split())


def arxiv_id_from_url(url: str) -> str | None:
    m = _ARXIV_IN_URL.search(url) or _ARXIV_DOI.search(url)
    return m.group(1) if m else None


def canonical_link(url: str) -> str:
    """The link as the catalog stores it: unescaped, https, arXiv and OpenReview pages not PDFs."""
    url = url.replace("\\_", "_").strip()
    arxiv = arxiv_id_from_url(url)
    if arxiv:
        return f"https://arxiv.org/abs/{arxiv}"
    parts = urlsplit(url)
    if parts.netloc.endswith("openreview.net") and parts.path in ("/pdf", "/forum"):
        ident = parse_qs(parts.query).get("id", [""])[0]
        if ident:
            return f"https://openreview.net/forum?id={ident}"
    if url.startswith("http://"):
        url = "https://" + url[len("http://") :]
    return url


def link_key(url: str) -> str:
    """Matching key for a link: host without www, path without trailing slash, the OpenReview id."""
    parts = urlsplit(canonical_link(url))
    host = parts.netloc.lower().removeprefix("www.")
    key = f"{host}{parts.path.rstrip('/')}".lower().removesuffix(".pdf")
    return f"{key}?{parts.query}" if host == "openreview.net" else key


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
    if a == b:
        return True
    # real_quick_ratio and quick_ratio are cheap upper bounds of ratio: same answer, far fewer full comparisons.
    m = difflib.SequenceMatcher(None, a, b)
    return m.real_quick_ratio() >= 0.85 and m.quick_ratio() >= 0.85 and m.ratio() >= 0.85


def _same_paper(a: Candidate, b: Candidate) -> bool:
    """Same paper: an identifier agrees and the titles agree, or the titles agree and no identifier conflicts."""
    titles = _similar_titles(a.title_key, b.title_key)
    if not titles:
        return False
    ids_agree = (a.arxiv is not None and a.arxiv == b.arxiv) or link_key(a.link) == link_key(b.link)
    ids_conflict = (a.arxiv and b.arxiv and a.arxiv != b.arxiv) or link_key(a.link) != link_key(b.link)
    return ids_agree or not ids_conflict


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
    groups: list[Candidate] = []
    for row in rows:
        cand = _candidate(row)
        twin = next((g for g in groups if _same_paper(g, cand)), None)
        if twin is None:
            groups.append(cand)
        else:
            _merge(twin, cand)
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
    for a in groups:
        for b in groups:
            if a is b:
                continue
            if a.title_key == b.title_key:
                a.notes.append(
                    f"Another upstream row has the same title but points at a different paper ({b.link}); kept separate."
                )
            elif link_key(a.link) == link_key(b.link):
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


def _existing_match(cand: Candidate, entries: list[Entry]) -> Entry | None:
    recorded = {(r.cells.title, r.cells.link) for r in cand.rows}
    for entry in entries:
        if any((r.title, r.link) in recorded for r in entry.provenance.upstream_rows):
            return entry
    for entry in entries:
        other = Candidate([], entry.title, entry.year, entry.venue, None, entry.links.paper, entry.links.arxiv, {}, [])
        if _same_paper(cand, other):
            return entry
    return None


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
    existing: list[Entry] = []
    taken: set[str] = set()
    for path in catalog_files(catalog_dir):
        taken.add(path.stem)
        try:
            existing.append(load_entry(path))
        except EntryFileError as err:
            # Never guess about a broken file: it is reported, and its id stays reserved.
            report.skipped.append((path.name, f"existing file is invalid, not matched against: {err.problems[0]}"))
    for cand in group_rows(rows):
        match = _existing_match(cand, existing)
        if match is not None:
            report.skipped.append((cand.title, f"already in the catalog as {match.id}"))
            continue
        entry = _to_entry(cand, _unique_id(slugify(cand.title), cand.year, taken))
        taken.add(entry.id)
        existing.append(entry)
        if not dry_run:
            atomic_write_text(catalog_dir / f"{entry.id}.yaml", dump_entry_yaml(entry))
        report.added.append((entry.id, entry.title))
    return report
