"""The index store: validated entries → a Whoosh index on disk, kept fresh, swapped atomically.

Layout, per catalog folder (see :func:`mi_catalog.paths.index_dir_for`)::

    <cache>/index/<catalog key>/current -> v-<content hash>-<pid>/   (a symlink)

The index is rebuilt automatically when the catalog's content hash changes.
A build writes a fresh version folder aside and then swaps the ``current``
symlink in one atomic rename, so a crash mid-build leaves the old index
answering. The query path reads only this folder: it never parses YAML and
never imports pydantic, torch or transformers. Building it is
:mod:`mi_catalog.index_build` (imported only when the catalog changed); searching it is
:mod:`mi_catalog.search`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mi_catalog.fsutil import atomic_write_text
from mi_catalog.paths import catalog_files, catalog_signature, index_dir_for

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the query path (mypy reads it as True)
if TYPE_CHECKING:
    from typing import Any

INDEX_FORMAT = 4  # bump when the index schema, the stored record, the facet table file or the Whoosh library changes
META_FILE = "mi-catalog-meta.json"
# Beside the Whoosh files: per document (in Whoosh's document order) its id, sort keys and result
# record, and per facet field value → documents. A query without free text reads only this file
# (and never imports Whoosh); free text and `show` open the Whoosh index.
FACETS_FILE = "mi-catalog-facets.json"


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


def ensure_index(catalog_dir: Path, *, rebuild: bool = False) -> IndexInfo:
    """The up-to-date index for ``catalog_dir``, rebuilding it when its content changed.

    Fast path: the folder's stat signature (names, sizes, mtimes) equals the one
    recorded at build time, so no file is read. Otherwise the content hash
    decides; a touched-but-unchanged catalog only refreshes the recorded signature.
    Raises :class:`CatalogNotFoundError` for a missing folder or one without entry files;
    invalid files are left out and listed in ``IndexInfo.invalid_files`` (the caller reports them).
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
    from mi_catalog.index_build import build_index  # only when the catalog changed

    return build_index(catalog_dir, root, signature=signature)


def _info(current: Path, meta: Mapping[str, Any]) -> IndexInfo:
    return IndexInfo(
        current.resolve(), meta["content_hash"], meta["entries"], tuple(meta.get("invalid_files", ())), False
    )
