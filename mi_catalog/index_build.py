"""Building the index: validated entries → Whoosh files and the facet table, in a fresh folder,
swapped in with one atomic symlink rename (see :mod:`mi_catalog.index` for the layout and the
freshness check, which imports this module only when the catalog changed)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mi_catalog.errors import CatalogNotFoundError
from mi_catalog.facets import FACET_TABLE
from mi_catalog.fsutil import pid_alive
from mi_catalog.index import FACETS_FILE, INDEX_FORMAT, META_FILE, IndexInfo, content_hash
from mi_catalog.paths import catalog_files, catalog_signature, index_dir_for
from mi_catalog.query import Hit, text_analyzer


def _schema() -> Any:
    from whoosh import fields

    analyzer = text_analyzer()
    facet_fields = {k.index_field: fields.KEYWORD(commas=True, lowercase=False, scorable=False) for k in FACET_TABLE}
    return fields.Schema(
        id=fields.ID(stored=True, unique=True),
        title=fields.TEXT(analyzer=analyzer, field_boost=2.0),
        summary=fields.TEXT(analyzer=analyzer),
        authors=fields.TEXT(analyzer=analyzer),
        title_sort=fields.ID(sortable=True),
        year_sort=fields.NUMERIC(int, sortable=True),
        has_impl=fields.ID(),
        record=fields.STORED,
        **facet_fields,
    )


def entry_record(entry: Any) -> dict[str, Any]:
    """The stable JSON record of an entry (the ``--format json`` result shape), plus the full entry."""
    tags = entry.tags
    hit = Hit(
        id=entry.id,
        title=entry.title,
        year=entry.year,
        venue=entry.venue,
        venue_detail=entry.venue_detail,
        authors=tuple(entry.authors),
        summary=entry.summary,
        objects=tuple(tags.objects),
        methods=tuple(tags.methods),
        steering=tuple(tags.steering),
        applications=tuple(tags.applications),
        links=entry.links.model_dump(exclude_none=True),
        impls=tuple(entry.impls),
    )
    return {"hit": hit.to_json(), "entry": entry.model_dump(mode="json")}


def text_fields(entry: Any) -> dict[str, str]:
    """The free-text fields as indexed (the explore page analyzes exactly these strings)."""
    return {"title": entry.title, "summary": entry.summary or "", "authors": " ; ".join(entry.authors)}


def _document(entry: Any) -> dict[str, Any]:
    return {
        "id": entry.id,
        **text_fields(entry),
        "title_sort": entry.title.casefold(),
        "year_sort": entry.year,
        **{k.index_field: ",".join(k.values_of(entry)) for k in FACET_TABLE},
        "has_impl": "1" if entry.impls else "0",
        "record": json.dumps(entry_record(entry), ensure_ascii=False),
    }


def write_index(entries: Iterable[Any], target: Path, meta: Mapping[str, Any]) -> None:
    """Write a complete index of ``entries`` into the empty folder ``target``."""
    from whoosh import index as whoosh_index

    target.mkdir(parents=True)
    idx = whoosh_index.create_in(str(target), _schema())
    writer = idx.writer(limitmb=256)
    entries_by_id: dict[str, Any] = {}
    try:
        for entry in entries:
            writer.add_document(**_document(entry))
            entries_by_id[entry.id] = entry
    except BaseException:
        writer.cancel()
        raise
    writer.commit()
    _write_facet_table(idx, entries_by_id, target / FACETS_FILE)
    (target / META_FILE).write_text(json.dumps(dict(meta), indent=2), encoding="utf-8")


def _write_facet_table(idx: Any, entries_by_id: Mapping[str, Any], path: Path) -> None:
    ids: list[str] = []
    with idx.reader() as reader:
        for docnum, stored in reader.iter_docs():
            if docnum != len(ids):
                raise RuntimeError(f"index documents are not numbered 0..n-1 (got {docnum} after {len(ids)})")
            ids.append(stored["id"])
    terms: dict[str, dict[str, list[int]]] = {k.index_field: {} for k in FACET_TABLE}
    terms["has_impl"] = {}
    for docnum, entry_id in enumerate(ids):
        entry = entries_by_id[entry_id]
        for kind in FACET_TABLE:
            for value in kind.values_of(entry):
                terms[kind.index_field].setdefault(value, []).append(docnum)
        terms["has_impl"].setdefault("1" if entry.impls else "0", []).append(docnum)
    table = {
        "ids": ids,
        "years": [entries_by_id[i].year for i in ids],
        "titles": [entries_by_id[i].title.casefold() for i in ids],
        "hits": [entry_record(entries_by_id[i])["hit"] for i in ids],
        "terms": terms,
    }
    path.write_text(json.dumps(table, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


def _remove_stale(root: Path, keep: set[str]) -> None:
    """Drop old versions and dead builds' leftovers; keep the live and the previous version."""
    import shutil

    for child in root.iterdir():
        if child.name in keep or child.name == "current" or child.is_symlink():
            continue
        if child.name.startswith(".staging-"):
            pid = child.name.rsplit("-", 1)[-1]
            if pid.isdigit() and _pid_alive(int(pid)):
                continue  # another process is building right now
        shutil.rmtree(child, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftover from an earlier, failed build in this process
    return pid_alive(pid)


def build_index(catalog_dir: Path, index_root: Path | None = None, *, signature: str | None = None) -> IndexInfo:
    """Load and validate the catalog, build a fresh index aside, then swap it in atomically."""
    import shutil

    from mi_catalog.load import load_catalog

    index_root = index_root or index_dir_for(catalog_dir)
    if not catalog_files(catalog_dir):
        raise CatalogNotFoundError(
            f"no catalog entries (*.yaml) in {catalog_dir}: point --catalog or $MI_CATALOG_DIR at a catalog folder"
        )
    index_root.mkdir(parents=True, exist_ok=True)
    # Signature before hash before load: an edit racing the build makes the next query rebuild again.
    signature = signature or catalog_signature(catalog_dir)
    digest = content_hash(catalog_dir)
    loaded = load_catalog(catalog_dir)
    invalid = tuple(sorted({p.file for p in loaded.problems}))
    staging = index_root / f".staging-{digest[:12]}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    meta = {
        "format": INDEX_FORMAT,
        "content_hash": digest,
        "signature": signature,
        "entries": len(loaded.entries),
        "invalid_files": invalid,
    }
    write_index(loaded.entries, staging, meta)
    final = index_root / f"v-{digest[:12]}-{os.getpid()}"
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    current = index_root / "current"
    previous = current.resolve().name if current.is_symlink() else None
    _swap_symlink(current, final.name)
    _remove_stale(index_root, {final.name, *([previous] if previous else [])})
    return IndexInfo(final, digest, len(loaded.entries), invalid, rebuilt=True)


def _swap_symlink(link: Path, target_name: str) -> None:
    tmp = link.parent / f".current.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(target_name, tmp)
    os.replace(tmp, link)  # atomic on POSIX: readers see the old or the new target
