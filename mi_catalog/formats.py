"""Render query results and entries: table, json, csv, bibtex, yaml, ids.

Pure functions from records (plain dicts, as the index stores them) to text;
shared by the CLI and the site (BibTeX). No pydantic, no YAML parsing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence

from mi_catalog import vocab
from mi_catalog.query import QueryResult

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the query path (mypy reads it as True)
if TYPE_CHECKING:
    from typing import Any

FORMATS = ("table", "json", "csv", "bibtex", "yaml", "ids")
CSV_COLUMNS = (
    "id",
    "title",
    "year",
    "venue",
    "objects",
    "methods",
    "steering",
    "applications",
    "paper",
    "arxiv",
    "impls",
)


def render_result(result: QueryResult, fmt: str) -> str:
    records = [h.to_json() for h in result.results]
    if fmt == "json":
        return json.dumps(result.to_json(), indent=2, ensure_ascii=False)
    if fmt == "table":
        counts = render_facet_counts(result.facets)
        return render_table(records, result.total) + (f"\n\n{counts}" if counts else "")
    return render_records(records, fmt)


def render_records(records: Sequence[Mapping[str, Any]], fmt: str) -> str:
    if fmt == "ids":
        return "\n".join(r["id"] for r in records)
    if fmt == "csv":
        return render_csv(records)
    if fmt == "bibtex":
        return "\n\n".join(bibtex(r) for r in records)
    if fmt == "yaml":
        return render_yaml(list(records))
    raise ValueError(f"unknown format {fmt!r}")


def render_csv(records: Sequence[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        links = r.get("links", {})
        writer.writerow(
            [
                r["id"],
                r["title"],
                r["year"],
                r["venue"],
                ";".join(r["objects"]),
                ";".join(r["methods"]),
                ";".join(r["steering"]),
                ";".join(r["applications"]),
                links.get("paper", ""),
                links.get("arxiv", ""),
                ";".join(r["impls"]),
            ]
        )
    return buffer.getvalue().rstrip("\n")


def render_yaml(data: Any) -> str:
    # PyYAML is a core dependency; dumping is safe and only happens for --format yaml.
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100).rstrip("\n")


TABLE_HEADER = ("id", "year", "venue", "object", "method", "steer", "title")
_GAP = "  "


def terminal_width() -> int:
    """``$COLUMNS``, else the terminal's width, else 120 (output piped to a file)."""
    import shutil  # here, not at the top: the query path's start-up stays light

    return shutil.get_terminal_size((120, 24)).columns


def render_table(records: Sequence[Mapping[str, Any]], total: int, width: int | None = None) -> str:
    """Results that fit ``width`` columns: a table whose titles and tag lists wrap when it fits,
    else one block per paper. Ids are never cut (``show`` takes them as printed)."""
    width = width or terminal_width()
    shown = f"{len(records)} of {total}" if len(records) < total else f"{total}"
    footer = f"{shown} paper{'s' if total != 1 else ''}"
    if not records:
        return footer
    rows = [
        (r["id"], str(r["year"]), r["venue"], r["objects"], r["methods"], r["steering"], r["title"]) for r in records
    ]
    table = _fit_table(rows, width)
    return "\n".join([*(table if table is not None else _blocks(rows, width)), "", footer])


def _cell_words(cell: Any) -> list[str]:
    # Tag lists wrap between values, other text between words.
    if isinstance(cell, (list, tuple)):
        return [f"{v}," for v in cell[:-1]] + list(cell[-1:]) if cell else ["-"]
    return str(cell).split() or ["-"]


def _wrap(words: list[str], width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return [*lines, current] if current else lines or [""]


def _fit_table(rows: list[tuple[Any, ...]], width: int) -> list[str] | None:
    cells = [[_cell_words(c) for c in row] for row in rows]
    n = len(TABLE_HEADER)
    natural = [max([len(TABLE_HEADER[i])] + [len(" ".join(r[i])) for r in cells]) for i in range(n)]
    # Narrowest a column may get: ids and years never wrap; the rest wrap down to their longest word.
    floor = [natural[0], natural[1]] + [
        max([len(TABLE_HEADER[i])] + [len(w) for r in cells for w in r[i]]) for i in range(2, n)
    ]
    floor[-1] = max(floor[-1], min(natural[-1], 20))
    budget = width - len(_GAP) * (n - 1)
    if sum(floor) > budget:
        return None
    widths = list(floor)
    # Spare room: the title up to 50 characters, then the venue and tag columns up to their
    # natural width (so they need not wrap), then the rest of the title.
    widths[-1] = min(max(floor[-1], min(natural[-1], 50)), floor[-1] + budget - sum(floor))
    for i in (2, 3, 4, 5, 6):
        widths[i] = min(natural[i], widths[i] + budget - sum(widths))
    out = [_line(TABLE_HEADER, widths), _line(["-" * w for w in widths], widths)]
    for row in cells:
        wrapped = [_wrap(words, w) for words, w in zip(row, widths, strict=True)]
        for k in range(max(len(c) for c in wrapped)):
            out.append(_line([c[k] if k < len(c) else "" for c in wrapped], widths))
    return out


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return _GAP.join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def _blocks(rows: list[tuple[Any, ...]], width: int) -> list[str]:
    """Too narrow for the table: the id with year and venue, then the wrapped title and tags, indented."""
    out: list[str] = []
    inner = max(20, width - 4)
    for entry_id, year, venue, objects, methods, steering, title in rows:
        head = f"{entry_id}  {year}  {venue}"
        out.append(head if len(head) <= width else entry_id)
        if len(head) > width:
            out.extend("    " + line for line in _wrap(f"{year} {venue}".split(), inner))
        out.extend("    " + line for line in _wrap(title.split(), inner))
        words: list[str] = []
        for name, values in (("object", objects), ("method", methods), ("steer", steering)):
            parts = _cell_words(values)
            words += [f"{name}: {parts[0]}", *parts[1:]]
            words[-1] += ";"
        words[-1] = words[-1].rstrip(";")
        out.extend("    " + line for line in _wrap(words, inner))
    return out


def render_facet_counts(facets: Mapping[str, Mapping[str, int]], width: int | None = None) -> str:
    """Datasette-style facet counts for the current result set, wrapped to the width ("" when no results)."""
    width = width or terminal_width()
    lines: list[str] = []
    for name, counts in facets.items():
        if not counts:
            continue
        shown = list(counts.items())[:12]
        parts = [f"{v} ({c})" for v, c in shown]
        if len(counts) > len(shown):
            parts.append(f"… +{len(counts) - len(shown)}")
        label = f"  {name + ':':13}"
        current = label
        for part in parts:
            if current.strip() != label.strip() and len(current) + 2 + len(part) > width:
                lines.append(current.rstrip())
                current = " " * len(label)
            current += part + "  "
        lines.append(current.rstrip())
    return "\n".join(["facets:", *lines]) if lines else ""


def render_vocab_counts(counts: Mapping[str, Mapping[str, int]]) -> str:
    """`mi-catalog facets`: every value of a closed list with its label and count (zeros included),
    then the venues and years that occur, one block per facet of the facet table."""
    from mi_catalog.facets import FACET_TABLE

    lines: list[str] = []
    for kind in FACET_TABLE:
        have = counts.get(kind.name, {})
        if kind.terms is not None and kind.name != "venue":
            lines.append(f"{kind.name} — {kind.terms.label}")
            for term in kind.terms.terms:
                group = f"{term.parent}/" if term.parent else ""
                lines.append(f"  {group + term.id:34} {have.get(term.id, 0):4}  {term.label}")
        else:
            lines.append(kind.name)
            lines.extend(f"  {v:34} {c:4}" for v, c in have.items())
        lines.append("")
    return "\n".join(lines).rstrip()


# ---------------------------------------------------------------- BibTeX


_BIB_TYPES = {
    "conference": "inproceedings",
    "findings": "inproceedings",
    "workshop": "inproceedings",
    "journal": "article",
}
_BIB_ESCAPES = {ord(c): "\\" + c for c in "&%$#_{}"} | {
    ord("~"): r"\textasciitilde{}",
    ord("^"): r"\^{}",
    ord("\\"): r"\textbackslash{}",
}


def _bib_escape(text: str) -> str:
    """Any string as a balanced, literal BibTeX value (TeX specials escaped, one line)."""
    return " ".join(text.split()).translate(_BIB_ESCAPES)


def bibtex(record: Mapping[str, Any]) -> str:
    """A BibTeX entry for a record; the key is the entry id (stable and unique in the catalog)."""
    venue = record["venue"]
    kind = vocab.venue_kind(venue)
    entry_type = _BIB_TYPES.get(kind, "misc")
    links = record.get("links", {})
    fields: list[tuple[str, str]] = [("title", "{" + _bib_escape(record["title"]) + "}")]
    if record.get("authors"):
        fields.append(("author", " and ".join(_bib_escape(a) for a in record["authors"])))
    label = record.get("venue_detail") or next(v.label for v in vocab.VENUES if v.id == venue)
    if entry_type == "inproceedings":
        fields.append(("booktitle", _bib_escape(label)))
    elif entry_type == "article":
        fields.append(("journal", _bib_escape(label)))
    elif kind == "blog":
        fields.append(("howpublished", _bib_escape(label)))
    fields.append(("year", str(record["year"])))
    if links.get("arxiv"):
        fields += [("eprint", links["arxiv"]), ("archiveprefix", "arXiv")]
    fields.append(("url", _bib_escape(links.get("paper", ""))))
    body = ",\n".join(f"  {k} = {{{v}}}" for k, v in fields)
    return f"@{entry_type}{{{record['id']},\n{body}\n}}"


# ---------------------------------------------------------------- docs


VOCAB_BEGIN = "<!-- vocab:begin (generated by `python -m mi_catalog.formats`; do not edit) -->"
VOCAB_END = "<!-- vocab:end -->"


def vocab_markdown() -> str:
    """The vocabulary as Markdown tables, for the README (kept in sync by a test)."""
    out: list[str] = []
    for facet in vocab.FACETS:
        out += [
            f"**`--{facet.name}`** — {facet.description}",
            "",
            "| id | label | aliases | description |",
            "|---|---|---|---|",
        ]
        for term in facet.terms:
            term_id = f"{term.parent} / `{term.id}`" if term.parent else f"`{term.id}`"
            aliases = ", ".join(term.aliases)
            out.append(f"| {term_id} | {term.label} | {aliases} | {term.description} |")
        out.append("")
    return "\n".join(out).rstrip()


def update_readme_vocab(readme_text: str) -> str:
    start, end = readme_text.index(VOCAB_BEGIN), readme_text.index(VOCAB_END)
    return readme_text[: start + len(VOCAB_BEGIN)] + "\n" + vocab_markdown() + "\n" + readme_text[end:]


if __name__ == "__main__":  # regenerate the README's vocabulary block
    from pathlib import Path

    readme = Path(__file__).resolve().parent.parent / "README.md"
    readme.write_text(update_readme_vocab(readme.read_text(encoding="utf-8")), encoding="utf-8")
