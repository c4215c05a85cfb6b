"""Where things live: the catalog folder and the index cache.

The catalog ships inside the wheel (``mi_catalog/_catalog``, mapped from the
repository's top-level ``catalog/`` at build time); in a source checkout or an
editable install the top-level folder is used. ``--catalog DIR`` or
``MI_CATALOG_DIR`` overrides both.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CATALOG_ENV = "MI_CATALOG_DIR"
CACHE_ENV = "MI_CATALOG_CACHE"


def default_catalog_dir() -> Path:
    env = os.environ.get(CATALOG_ENV)
    if env:
        return Path(env).expanduser().resolve()
    packaged = PACKAGE_DIR / "_catalog"
    if packaged.is_dir():
        return packaged
    return PACKAGE_DIR.parent / "catalog"


def resolve_catalog_dir(catalog: str | os.PathLike[str] | None) -> Path:
    return Path(catalog).expanduser().resolve() if catalog else default_catalog_dir()


def cache_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mi-catalog"


def index_dir_for(catalog_dir: Path) -> Path:
    """One index folder per catalog folder, so --catalog DIR never clobbers the default index."""
    key = hashlib.sha256(str(catalog_dir.resolve()).encode()).hexdigest()[:16]
    return cache_root() / "index" / key


def _entry_dirents(catalog_dir: Path) -> list[os.DirEntry[str]]:
    if not catalog_dir.is_dir():
        from mi_catalog.errors import CatalogNotFoundError

        raise CatalogNotFoundError(f"catalog folder not found: {catalog_dir} (check --catalog DIR or ${CATALOG_ENV})")
    with os.scandir(catalog_dir) as it:
        found = [d for d in it if d.name.endswith((".yaml", ".yml")) and not d.name.startswith(".") and d.is_file()]
    return sorted(found, key=lambda d: d.name)


def catalog_files(catalog_dir: Path) -> list[Path]:
    """The entry files of a catalog folder, sorted by name (``*.yaml`` and ``*.yml``; dotfiles skipped)."""
    return [catalog_dir / d.name for d in _entry_dirents(catalog_dir)]


def catalog_signature(catalog_dir: Path) -> str:
    """Cheap fingerprint from names, sizes and modification times (no file is read).

    Used as a fast path before the content hash: when it is unchanged the
    content is too; when it changed, the content hash decides.
    """
    digest = hashlib.sha256()
    for d in _entry_dirents(catalog_dir):
        st = d.stat()
        digest.update(f"{d.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()
