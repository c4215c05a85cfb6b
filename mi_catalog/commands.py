"""Catalog-side commands: query, show, facets, validate, stats, index, import-awesome.

Each handler calls one library function and formats its result. Exit codes:
0 ok, 1 validation problems, 2 bad input (unknown value, malformed query,
missing file). Module-level imports stay light: no pydantic, no whoosh here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mi_catalog import vocab
from mi_catalog.errors import CliError
from mi_catalog.facets import FACETS_BY_NAME
from mi_catalog.formats import FORMATS
from mi_catalog.paths import resolve_catalog_dir
from mi_catalog.query import QueryParams

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the query path (mypy reads it as True)
if TYPE_CHECKING:
    from typing import Any


def _catalog_dir(args: argparse.Namespace) -> Path:
    path = resolve_catalog_dir(args.catalog)
    if not path.is_dir():
        raise CliError(f"catalog folder not found: {path} (check --catalog or $MI_CATALOG_DIR)")
    return path


def _emit(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")


# ---------------------------------------------------------------- query


def _open_searcher(args: argparse.Namespace) -> Any:
    """The searcher for the command's catalog; invalid files left out of a fresh build are a warning."""
    from mi_catalog.search import open_searcher

    searcher, info = open_searcher(_catalog_dir(args))
    _warn_invalid(info)
    return searcher


def _warn_invalid(info: Any) -> None:
    if info.rebuilt and info.invalid_files:
        shown = ", ".join(info.invalid_files[:3]) + (", ..." if len(info.invalid_files) > 3 else "")
        print(
            f"mi-catalog: warning: {len(info.invalid_files)} invalid catalog file(s) left out of the index"
            f" ({shown}); run `mi-catalog validate`",
            file=sys.stderr,
        )


def cmd_query(args: argparse.Namespace) -> int:
    from mi_catalog.formats import render_result

    query = params_from_args(args).resolve()  # bad input fails before the index is opened
    _emit(render_result(_open_searcher(args).search(query), args.format))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from mi_catalog.formats import bibtex, render_yaml

    searcher = _open_searcher(args)
    record = searcher.get(args.id)
    if record is None:
        import difflib

        close = difflib.get_close_matches(args.id, searcher.ids(), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise CliError(f"no entry {args.id!r}{hint}")
    entry = record["entry"]
    if args.format == "json":
        _emit(json.dumps(entry, indent=2, ensure_ascii=False))
    elif args.format == "yaml":
        _emit(render_yaml(entry))
    elif args.format == "bibtex":
        _emit(bibtex(record["hit"]))
    else:
        _emit(_render_entry(entry))
    return 0


def _render_entry(entry: dict[str, Any]) -> str:
    tags = entry["tags"]
    venue = entry["venue"] + (f" ({entry['venue_detail']})" if entry.get("venue_detail") else "")
    prov = entry["provenance"]
    fields: list[tuple[str, str]] = [("id", entry["id"]), ("year", str(entry["year"])), ("venue", venue)]
    if entry.get("authors"):
        fields.append(("authors", ", ".join(entry["authors"])))
    fields += [(key, str(value)) for key, value in entry["links"].items() if value]
    fields += [(facet.name, ", ".join(tags[facet.field]) or "-") for facet in vocab.FACETS]
    fields.append(("impls", ", ".join(entry["impls"]) or "-"))
    sections = f" (sections: {', '.join(prov['sections'])})" if prov.get("sections") else ""
    source = f"{vocab.source_of(prov['source'])}: {prov['source']}{sections}"
    width = max(len(label) for label, _ in [*fields, ("source", "")]) + 2
    lines = [entry["title"], "=" * min(len(entry["title"]), 100)]
    lines += [f"{label + ':':{width}}{value}" for label, value in fields]
    if entry.get("summary"):
        lines += ["", entry["summary"]]
    lines += ["", f"{'source:':{width}}{source}"]
    if entry.get("notes"):
        lines += ["notes:"] + [f"  - {n}" for n in entry["notes"]]
    return "\n".join(lines)


def cmd_facets(args: argparse.Namespace) -> int:
    from mi_catalog.formats import render_vocab_counts

    counts = _open_searcher(args).search(QueryParams(limit=0).resolve()).facets
    if args.format == "json":
        _emit(json.dumps({k: dict(v) for k, v in counts.items()}, indent=2))
    else:
        _emit(render_vocab_counts(counts))
    return 0


# ---------------------------------------------------------------- maintenance


def cmd_validate(args: argparse.Namespace) -> int:
    from mi_catalog.paths import catalog_files
    from mi_catalog.validate import validate_catalog

    catalog_dir = _catalog_dir(args)
    if not catalog_files(catalog_dir):
        raise CliError(f"nothing to validate: no catalog entry files (*.yaml) in {catalog_dir}")
    found = validate_catalog(catalog_dir)
    problems = [p for p in found if p.severity == "error"]
    warnings = [p for p in found if p.severity != "error"]
    n_files = len(catalog_files(catalog_dir))
    if args.format == "json":
        # "problems" are the errors (exit 1); "warnings" never fail the run.
        report = {
            "files": n_files,
            "problems": [p.__dict__ for p in problems],
            "warnings": [p.__dict__ for p in warnings],
        }
        _emit(json.dumps(report, indent=2))
    else:
        for p in problems:
            print(p)
        for p in warnings:
            print(p)
        bad = len({p.file for p in problems})
        status = "OK" if not problems else f"{len(problems)} problem(s) in {bad} file(s)"
        if warnings:
            status += f", {len(warnings)} warning(s)"
        print(f"{n_files} files checked: {status}", file=sys.stderr if problems else sys.stdout)
    return 1 if problems else 0


def cmd_stats(args: argparse.Namespace) -> int:
    from mi_catalog.stats import catalog_stats, format_table

    stats = catalog_stats(_catalog_dir(args))
    _emit(json.dumps(stats.to_dict(), indent=2) if args.format == "json" else format_table(stats))
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from mi_catalog.index import ensure_index

    info = ensure_index(_catalog_dir(args), rebuild=args.rebuild)
    _warn_invalid(info)
    state = "rebuilt" if info.rebuilt else "up to date"
    print(f"index {state}: {info.entries} entries, content {info.content_hash[:12]}, at {info.path}")
    return 0


def cmd_import_awesome(args: argparse.Namespace) -> int:
    from mi_catalog.importer import import_awesome

    source = Path(args.path)
    if not source.is_file():
        raise CliError(f"no such file: {source}")
    catalog_dir = resolve_catalog_dir(args.catalog)
    try:
        report = import_awesome(source, catalog_dir, dry_run=args.dry_run)
    except ValueError as err:
        raise CliError(f"{source}: {err}") from None
    verb = "would add" if args.dry_run else "added"
    for entry_id, title in report.added:
        print(f"{verb}: {entry_id}  ({title})")
    for title, reason in report.skipped:
        print(f"skipped: {title}  — {reason}")
    print(f"{report.rows} rows → {len(report.added)} {verb}, {len(report.skipped)} skipped")
    return 0


# ---------------------------------------------------------------- registration


def add_query_arguments(p: argparse.ArgumentParser) -> None:
    """The query flags, generated from :class:`~mi_catalog.query.QueryParams` (one definition)."""
    from dataclasses import fields

    for f in fields(QueryParams):
        meta = f.metadata
        if f.name == "text":
            p.add_argument("text", nargs="*", help=meta["help"])
        elif meta.get("facet"):
            p.add_argument(f"--{f.name}", action="append", default=[], metavar="V", help=FACETS_BY_NAME[f.name].help)
        elif f.type in (bool, "bool"):
            p.add_argument(f"--{f.name.replace('_', '-')}", action="store_true", help=meta["help"])
        else:
            p.add_argument(
                f"--{f.name.replace('_', '-')}",
                choices=meta.get("choices"),
                metavar=meta.get("metavar"),
                help=meta["help"],
            )


def params_from_args(args: argparse.Namespace) -> QueryParams:
    """The parsed flags as a :class:`~mi_catalog.query.QueryParams`."""
    from dataclasses import fields

    values = {f.name: getattr(args, f.name) for f in fields(QueryParams)}
    values["text"] = " ".join(args.text) if args.text else None
    for f in fields(QueryParams):
        if f.metadata.get("facet"):
            values[f.name] = tuple(values[f.name])
    return QueryParams(**values)


def register(subparsers: Any) -> None:
    from mi_catalog.cli import add_catalog_option

    q = subparsers.add_parser(
        "query",
        help="faceted search: OR within a facet, AND across facets, plus free text",
        description="Search the catalog. Example: mi-catalog query --object head --method probe",
    )
    add_query_arguments(q)
    q.add_argument("--format", choices=FORMATS, default="table")
    add_catalog_option(q)
    q.set_defaults(func=cmd_query)

    s = subparsers.add_parser("show", help="show one entry")
    s.add_argument("id")
    s.add_argument("--format", choices=("text", "json", "yaml", "bibtex"), default="text")
    add_catalog_option(s)
    s.set_defaults(func=cmd_show)

    f = subparsers.add_parser("facets", help="counts per facet value over the whole catalog")
    f.add_argument("--format", choices=("table", "json"), default="table")
    add_catalog_option(f)
    f.set_defaults(func=cmd_facets)

    v = subparsers.add_parser(
        "validate", help="check every catalog file; exit 1 on any error (warnings are printed, never fail)"
    )
    v.add_argument("--format", choices=("text", "json"), default="text")
    add_catalog_option(v)
    v.set_defaults(func=cmd_validate)

    st = subparsers.add_parser("stats", help="coverage of every entry field and of the review against the papers")
    st.add_argument("--format", choices=("table", "json"), default="table")
    add_catalog_option(st)
    st.set_defaults(func=cmd_stats)

    i = subparsers.add_parser("index", help="build the search index (automatic on query when the catalog changed)")
    i.add_argument("--rebuild", action="store_true", help="rebuild even if up to date")
    add_catalog_option(i)
    i.set_defaults(func=cmd_index)

    imp = subparsers.add_parser("import-awesome", help="create entries from an awesome-list Markdown table")
    imp.add_argument("path", help="the Markdown file (e.g. the survey's README.md)")
    imp.add_argument("--dry-run", action="store_true", help="report what would be added; write nothing")
    add_catalog_option(imp)
    imp.set_defaults(func=cmd_import_awesome)
