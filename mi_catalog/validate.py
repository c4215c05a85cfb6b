"""`mi-catalog validate`: every problem in the catalog, each with file, field and a fix.

Per file (via :mod:`mi_catalog.load`): safe YAML, schema, vocabulary, id = file
stem. Across files: unique ids, duplicate titles, links and arXiv ids, and the
links between entries and reference implementations in both directions
(an entry's ``impls`` must exist; an implementation's ``reproduces`` must name
entries that list it back); content checks from :mod:`mi_catalog.checks`
(title casing — a warning —, duplicate summaries, arXiv id vs link). Reads
implementation metadata with :mod:`ast`, so it never imports torch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

from mi_catalog.checks import content_problems
from mi_catalog.identity import link_key, normalize_title
from mi_catalog.impl_info import IMPLS_DIR, ImplDeclarationError, ImplInfo, discover_impls
from mi_catalog.load import LoadResult, Problem, load_catalog
from mi_catalog.paths import catalog_files, default_catalog_dir
from mi_catalog.schema import Entry


def validate_catalog(
    catalog_dir: Path, impls_dir: Path = IMPLS_DIR, *, impl_coverage: bool | None = None
) -> list[Problem]:
    """All problems in the catalog folder, errors and warnings (valid means: no ``severity == "error"``).

    ``impl_coverage``: also require every entry an implementation reproduces to
    exist in this catalog. Default: only for the shipped catalog — another
    catalog folder need not contain the papers our implementations reproduce.
    """
    if impl_coverage is None:
        impl_coverage = catalog_dir.resolve() == default_catalog_dir().resolve()
    loaded = load_catalog(catalog_dir)
    problems = list(loaded.problems)
    problems += _duplicate_stems(catalog_dir)
    problems += _cross_entry_problems(loaded)
    problems += content_problems(loaded.entries)
    try:
        impls = discover_impls(impls_dir)
    except (ImplDeclarationError, SyntaxError) as err:
        return [*problems, Problem("reference_impls", "-", str(err), "fix the IMPL declaration")]
    problems += _impl_problems(loaded.entries, impls, impl_coverage)
    return problems


def _duplicate_stems(catalog_dir: Path) -> list[Problem]:
    seen: dict[str, str] = {}
    out = []
    for path in catalog_files(catalog_dir):
        if path.stem in seen:
            out.append(
                Problem(path.name, "id", f"same id as {seen[path.stem]}", "delete or rename one of the two files")
            )
        seen.setdefault(path.stem, path.name)
    return out


def _duplicates(entries: Iterable[Entry], key: Callable[[Entry], str | None], field: str, what: str) -> list[Problem]:
    groups: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        k = key(entry)
        if k:
            groups[k].append(entry)
    out = []
    for group in groups.values():
        for entry in group[1:]:
            out.append(
                Problem(
                    f"{entry.id}.yaml",
                    field,
                    f"same {what} as {group[0].id}.yaml",
                    "merge the two entries (keep every tag), or correct the wrong one and record why in notes",
                )
            )
    return out


def _cross_entry_problems(loaded: LoadResult) -> list[Problem]:
    entries = loaded.entries
    return [
        *_duplicates(entries, lambda e: normalize_title(e.title), "title", "title"),
        *_duplicates(entries, lambda e: link_key(e.links.paper), "links.paper", "paper link"),
        *_duplicates(entries, lambda e: e.links.arxiv, "links.arxiv", "arXiv id"),
    ]


def _impl_problems(entries: list[Entry], impls: dict[str, ImplInfo], coverage: bool) -> list[Problem]:
    by_id = {e.id: e for e in entries}
    out = []
    for entry in entries:
        for impl_id in entry.impls:
            if impl_id not in impls:
                out.append(
                    Problem(
                        f"{entry.id}.yaml",
                        "impls",
                        f"no reference implementation {impl_id!r}",
                        f"use one of: {', '.join(sorted(impls)) or '(none yet)'}",
                    )
                )
            elif entry.id not in impls[impl_id].reproduces:
                out.append(
                    Problem(
                        f"{entry.id}.yaml",
                        "impls",
                        f"{impl_id!r} does not list this entry in its reproduces",
                        f"add {entry.id!r} to IMPL.reproduces in {impls[impl_id].module}, or drop it here",
                    )
                )
    for impl in impls.values():
        impl_file = f"reference_impls/{impl.module.rsplit('.', 1)[-1]}.py"
        out.extend(Problem(impl_file, "IMPL", p, "use canonical ids from mi_catalog.vocab") for p in impl.problems())
        for entry_id in impl.reproduces:
            reproduced = by_id.get(entry_id)
            if reproduced is None:
                if not coverage:
                    continue
                out.append(
                    Problem(
                        impl_file, "IMPL.reproduces", f"no catalog entry {entry_id!r}", "add the entry or fix the id"
                    )
                )
            elif impl.id not in reproduced.impls:
                out.append(
                    Problem(
                        f"{entry_id}.yaml",
                        "impls",
                        f"reference implementation {impl.id!r} reproduces this entry but is not listed",
                        f"add {impl.id!r} to impls",
                    )
                )
    return out
