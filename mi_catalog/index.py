"""The Whoosh index: validated entries → a searchable, faceted index on disk.

Layout, per catalog folder (see :func:`mi_catalog.paths.index_dir_for`)::

    <cache>/index/<catalog key>/current -> v-<content hash>-<pid>/   (a symlink)

The index is rebuilt automatically when the catalog's content hash changes.
A build writes a fresh version folder aside and then swaps the ``current``
symlink in one atomic rename, so a crash mid-build leaves the old index
answering. The query path reads only this folder: it never parses YAML and
never imports pydantic, torch or transformers.

Facet filtering and counting use per-term document sets read from the index
(cached per searcher); Whoosh's BM25 scores the free text.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mi_catalog import vocab
from mi_catalog.errors import CliError, QueryError
from mi_catalog.fsutil import atomic_write_text
from mi_catalog.paths import catalog_files, catalog_signature, index_dir_for
from mi_catalog.query import COUNT_FACETS, TEXT_FIELDS, Hit, Query, QueryResult, text_analyzer

INDEX_FORMAT = 1  # bump when the index schema or the stored record changes
META_FILE = "mi-catalog-meta.json"
# Index field per counted facet: the four vocabulary facets store their plural field names.
FACET_FIELDS: dict[str, str] = {**{f.name: f.field for f in vocab.FACETS}, "venue": "venue", "year": "year"}


# ---------------------------------------------------------------- freshness


def content_hash(catalog_dir: Path) -> str:
    """Hash of every entry file's name and bytes (plus the index format): any edit changes it."""
    digest = hashlib.sha256(f"format={INDEX_FORMAT}\0".encode())
    for path in catalog_files(catalog_dir):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class IndexInfo:
    path: Path
    content_hash: str
    entries: int
    invalid_files: tuple[str, ...]
    rebuilt: bool


def _read_meta(version_dir: Path) -> dict[str, Any] | None:
    try:
        meta: dict[str, Any] = json.loads((version_dir / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta


# ---------------------------------------------------------------- building


def _schema() -> Any:
    from whoosh import fields

    analyzer = text_analyzer()
    keyword = {"commas": True, "lowercase": False, "scorable": False}
    return fields.Schema(
        id=fields.ID(stored=True, unique=True),
        title=fields.TEXT(analyzer=analyzer, field_boost=2.0),
        summary=fields.TEXT(analyzer=analyzer),
        authors=fields.TEXT(analyzer=analyzer),
        title_sort=fields.ID(sortable=True),
        year_sort=fields.NUMERIC(int, sortable=True),
        year=fields.ID(),
        venue=fields.ID(),
        objects=fields.KEYWORD(**keyword),
        methods=fields.KEYWORD(**keyword),
        steering=fields.KEYWORD(**keyword),
        applications=fields.KEYWORD(**keyword),
        has_impl=fields.ID(),
        record=fields.STORED,
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


def _document(entry: Any) -> dict[str, Any]:
    return {
        "id": entry.id,
        "title": entry.title,
        "summary": entry.summary or "",
        "authors": " ; ".join(entry.authors),
        "title_sort": entry.title.casefold(),
        "year_sort": entry.year,
        "year": str(entry.year),
        "venue": entry.venue,
        "objects": ",".join(entry.tags.objects),
        "methods": ",".join(entry.tags.methods),
        "steering": ",".join(entry.tags.steering),
        "applications": ",".join(entry.tags.applications),
        "has_impl": "1" if entry.impls else "0",
        "record": json.dumps(entry_record(entry), ensure_ascii=False),
    }


def write_index(entries: Iterable[Any], target: Path, meta: Mapping[str, Any]) -> None:
    """Write a complete index of ``entries`` into the empty folder ``target``."""
    from whoosh import index as whoosh_index

    target.mkdir(parents=True)
    idx = whoosh_index.create_in(str(target), _schema())
    writer = idx.writer(limitmb=256)
    try:
        for entry in entries:
            writer.add_document(**_document(entry))
    except BaseException:
        writer.cancel()
        raise
    writer.commit()
    (target / META_FILE).write_text(json.dumps(dict(meta), indent=2), encoding="utf-8")


def _remove_stale(root: Path, keep: set[str]) -> None:
    """Drop old versions and dead builds' leftovers; keep the live and the previous version."""
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
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def build_index(catalog_dir: Path, index_root: Path | None = None, *, signature: str | None = None) -> IndexInfo:
    """Load and validate the catalog, build a fresh index aside, then swap it in atomically."""
    from mi_catalog.load import load_catalog

    index_root = index_root or index_dir_for(catalog_dir)
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


def ensure_index(catalog_dir: Path, *, rebuild: bool = False, quiet: bool = False) -> IndexInfo:
    """The up-to-date index for ``catalog_dir``, rebuilding it when its content changed.

    Fast path: the folder's stat signature (names, sizes, mtimes) equals the one
    recorded at build time, so no file is read. Otherwise the content hash
    decides; a touched-but-unchanged catalog only refreshes the recorded signature.
    """
    root = index_dir_for(catalog_dir)
    current = root / "current"
    signature = catalog_signature(catalog_dir)
    meta = _read_meta(current) if current.exists() else None
    fresh_format = bool(meta) and meta.get("format") == INDEX_FORMAT  # type: ignore[union-attr]
    if not rebuild and meta and fresh_format:
        if meta.get("signature") == signature:
            return _info(current, meta)
        if meta.get("content_hash") == content_hash(catalog_dir):
            meta["signature"] = signature
            atomic_write_text(current.resolve() / META_FILE, json.dumps(meta, indent=2))
            return _info(current, meta)
    info = build_index(catalog_dir, root, signature=signature)
    if info.invalid_files and not quiet:
        print(
            f"mi-catalog: warning: {len(info.invalid_files)} invalid catalog file(s) left out of the index"
            f" ({', '.join(info.invalid_files[:3])}{', ...' if len(info.invalid_files) > 3 else ''});"
            " run `mi-catalog validate`",
            file=sys.stderr,
        )
    return info


def _info(current: Path, meta: Mapping[str, Any]) -> IndexInfo:
    return IndexInfo(
        current.resolve(), meta["content_hash"], meta["entries"], tuple(meta.get("invalid_files", ())), False
    )


# ---------------------------------------------------------------- searching


@dataclass
class IndexSearcher:
    """An open index with per-term document sets cached for fast facet filtering and counting."""

    path: Path
    _searcher: Any = None
    _term_docs: dict[str, dict[str, frozenset[int]]] = field(default_factory=dict)
    _keys: tuple[list[int], list[str]] | None = None

    def __post_init__(self) -> None:
        from whoosh import index as whoosh_index

        self._searcher = whoosh_index.open_dir(str(self.path)).searcher()
        self.all_docs = frozenset(self._searcher.reader().all_doc_ids())

    def close(self) -> None:
        self._searcher.close()

    def term_docs(self, fieldname: str) -> dict[str, frozenset[int]]:
        """Value → document numbers for one keyword field (cached)."""
        cached = self._term_docs.get(fieldname)
        if cached is None:
            reader = self._searcher.reader()
            cached = {}
            for raw in reader.lexicon(fieldname):
                value = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
                cached[value] = frozenset(reader.postings(fieldname, raw).all_ids())
            self._term_docs[fieldname] = cached
        return cached

    def _union(self, fieldname: str, values: Iterable[str]) -> set[int]:
        docs = self.term_docs(fieldname)
        out: set[int] = set()
        for v in values:
            out |= docs.get(v, frozenset())
        return out

    def filter_docs(self, query: Query) -> set[int]:
        """Documents passing every facet filter (OR within a facet, AND across facets)."""
        matched = set(self.all_docs)
        for name, values in query.facets.items():
            matched &= self._union(FACET_FIELDS[name], values)
        if query.venues:
            matched &= self._union("venue", query.venues)
        years = self._year_values(query)
        if years is not None:
            matched &= self._union("year", years)
        if query.has_impl:
            matched &= self._union("has_impl", ["1"])
        return matched

    def _year_values(self, query: Query) -> list[str] | None:
        if not (query.years or query.since is not None or query.until is not None):
            return None
        present = [int(y) for y in self.term_docs("year")]
        lo = query.since if query.since is not None else -1
        hi = query.until if query.until is not None else 10_000
        wanted = set(query.years) if query.years else set(present)
        return [str(y) for y in present if y in wanted and lo <= y <= hi]

    def _parse_text(self, text: str) -> Any:
        """The Whoosh query for free text, or None when only stop words remain (no text constraint)."""
        from whoosh import qparser
        from whoosh.query import NullQuery

        parser = qparser.MultifieldParser(list(TEXT_FIELDS), self._searcher.schema, group=qparser.AndGroup)
        parser.remove_plugin_class(qparser.FieldsPlugin)
        parser.add_plugin(qparser.FieldsPlugin(expr=r"(?P<text>(title|summary|authors)):(?=\S)"))
        try:
            parsed = parser.parse(text)
        except Exception as err:  # whoosh raises assorted errors on odd syntax
            raise QueryError(f"malformed query {text!r}: {err}") from None
        return None if parsed is None or parsed.normalize() is NullQuery else parsed

    def _text_match(self, text: str, within: set[int], top: int | None) -> tuple[set[int], dict[int, float]]:
        """Documents of ``within`` matching the text, and BM25 scores for the best ``top`` (all if None)."""
        parsed = self._parse_text(text)
        if parsed is None:
            return within, {}
        matched = {d for d in self._searcher.docs_for_query(parsed) if d in within}
        if top == 0 or not matched:
            return matched, {}
        results = self._searcher.search(parsed, filter=matched, limit=top)
        return matched, {hit.docnum: float(hit.score) for hit in results}

    def facet_counts(self, docs: set[int]) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for name in COUNT_FACETS:
            per_value = {v: len(d & docs) for v, d in self.term_docs(FACET_FIELDS[name]).items()}
            counts[name] = _ordered_counts(name, {v: c for v, c in per_value.items() if c})
        return counts

    def _sort_keys(self) -> tuple[list[int], list[str]]:
        """Year and casefolded title of every document, read once per searcher."""
        if self._keys is None:
            reader = self._searcher.reader()
            years = reader.column_reader("year_sort")
            titles = reader.column_reader("title_sort")
            n = reader.doc_count_all()
            self._keys = ([years[d] for d in range(n)], [titles[d] for d in range(n)])
        return self._keys

    def _order(self, docs: Iterable[int], query: Query, scores: Mapping[int, float]) -> list[int]:
        years, titles = self._sort_keys()
        if query.sort == "title":
            return sorted(docs, key=titles.__getitem__)
        by_year = sorted(docs, key=lambda d: (-years[d], titles[d]))
        if query.sort == "relevance" and scores:
            # Scored documents first by score; the rest (beyond the limit) keep the year order.
            best = sorted(scores, key=lambda d: (-scores[d], -years[d], titles[d]))
            return best + [d for d in by_year if d not in scores]
        return by_year

    def record(self, docnum: int) -> dict[str, Any]:
        stored: dict[str, Any] = json.loads(self._searcher.stored_fields(docnum)["record"])
        return stored

    def search(self, query: Query) -> QueryResult:
        matched = self.filter_docs(query)
        scores: dict[int, float] = {}
        if query.text and matched:
            top = query.limit if query.sort == "relevance" else 0
            matched, scores = self._text_match(query.text, matched, top)
        ordered = self._order(matched, query, scores)
        shown = ordered if query.limit is None else ordered[: query.limit]
        hits = tuple(_hit(self.record(d)["hit"], scores.get(d) if query.text else None) for d in shown)
        return QueryResult(total=len(matched), facets=self.facet_counts(matched), results=hits)

    def get(self, entry_id: str) -> dict[str, Any] | None:
        docnum = self._searcher.document_number(id=entry_id)
        return None if docnum is None else self.record(docnum)

    def ids(self) -> list[str]:
        return sorted(self.term_docs("id"))


def _ordered_counts(facet: str, counts: dict[str, int]) -> dict[str, int]:
    """Vocabulary facets in vocabulary order; venues by count; years newest first."""
    if facet in vocab.FACETS_BY_NAME:
        order = vocab.FACETS_BY_NAME[facet].ids
        return {v: counts[v] for v in order if v in counts}
    if facet == "year":
        return dict(sorted(counts.items(), reverse=True))
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _hit(data: Mapping[str, Any], score: float | None) -> Hit:
    return Hit(
        id=data["id"],
        title=data["title"],
        year=data["year"],
        venue=data["venue"],
        venue_detail=data.get("venue_detail"),
        authors=tuple(data.get("authors", ())),
        summary=data.get("summary"),
        objects=tuple(data["objects"]),
        methods=tuple(data["methods"]),
        steering=tuple(data["steering"]),
        applications=tuple(data["applications"]),
        links=data["links"],
        impls=tuple(data["impls"]),
        score=score,
    )


def open_searcher(catalog_dir: Path, *, quiet: bool = False) -> IndexSearcher:
    try:
        info = ensure_index(catalog_dir, quiet=quiet)
    except FileNotFoundError as err:
        raise CliError(str(err), code=2) from None
    return IndexSearcher(info.path)
