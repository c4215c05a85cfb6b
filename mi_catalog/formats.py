"""Render query results and entries: table, json, csv, bibtex, yaml, ids.

Pure functions from records (plain dicts, as the index stores them) to text;
shared by the CLI and the site (BibTeX). No pydantic, no YAML parsing.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

from mi_catalog import vocab
from mi_catalog.query import QueryResult

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
        return render_table(records, result.total) + "\n\n" + render_facet_counts(result.facets)
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
    if fmt == "json":
        return json.dumps(list(records), indent=2, ensure_ascii=False)
    if fmt == "table":
        return render_table(records, len(records))
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


def _short(values: Sequence[str]) -> str:
    return ", ".join(values) if values else "-"


def render_table(records: Sequence[Mapping[str, Any]], total: int) -> str:
    width = shutil.get_terminal_size((140, 24)).columns
    header = ("id", "year", "venue", "object", "method", "steer", "title")
    rows = [
        (
            r["id"],
            str(r["year"]),
            r["venue"],
            _short(r["objects"]),
            _short(r["methods"]),
            _short(r["steering"]),
            r["title"],
        )
        for r in records
    ]
    caps = (38, 4, 18, 30, 30, 26, 200)
    widths = [min(cap, max([len(h)] + [len(row[i]) for row in rows])) for i, (h, cap) in enumerate(zip(header, caps, strict=True))]
    fixed = sum(widths[:-1]) + 2 * (len(widths) - 1)
    widths[-1] = max(20, min(widths[-1], width - fixed))

    def line(cells: Sequence[str]) -> str:
        return "  ".join(_clip(c, w).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out.extend(line(row) for row in rows)
    shown = f"{len(records)} of {total}" if len(records) < total else f"{total}"
    out.append(f"\n{shown} paper{'s' if total != 1 else ''}")
    return "\n".join(out)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def render_facet_counts(facets: Mapping[str, Mapping[str, int]]) -> str:
    """Datasette-style facet counts for the current result set, one line per facet."""
    lines = ["facets:"]
    for name, counts in facets.items():
        if not counts:
            continue
        shown = list(counts.items())[:12]
        more = f" … +{len(counts) - len(shown)}" if len(counts) > len(shown) else ""
        lines.append(f"  {name + ':':13}" + "  ".join(f"{v} ({c})" for v, c in shown) + more)
    return "\n".join(lines)


def render_vocab_counts(counts: Mapping[str, Mapping[str, int]]) -> str:
    """`mi-catalog facets`: every vocabulary value with its label and count, zeros included."""
    lines: list[str] = []
    for facet in vocab.FACETS:
        lines.append(f"{facet.name} — {facet.label}")
        for term in facet.terms:
            group = f"{term.parent}/" if term.parent else ""
            lines.append(f"  {group + term.id:34} {counts[facet.name].get(term.id, 0):4}  {term.label}")
        lines.append("")
    for name in ("venue", "year"):
        lines.append(name)
        lines.extend(f"  {v:34} {c:4}" for v, c in counts.get(name, {}).items())
        lines.append("")
    return "\n".join(lines).rstrip()


# ---------------------------------------------------------------- BibTeX


_BIB_TYPES = {"conference": "inproceedings", "findings": "inproceedings", "workshop": "inproceedings", "journal": "article"}
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
