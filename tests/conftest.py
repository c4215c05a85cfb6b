"""Shared fixtures: an isolated index cache, a small hand-written catalog, and the real CLI."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import ENTRY_POINT, SMALL_CATALOG, write_entry


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Never touch the user's ~/.cache: every test session gets its own index cache."""
    old = os.environ.get("MI_CATALOG_CACHE")
    os.environ["MI_CATALOG_CACHE"] = str(tmp_path_factory.mktemp("mi-catalog-cache"))
    yield
    if old is None:
        os.environ.pop("MI_CATALOG_CACHE", None)
    else:
        os.environ["MI_CATALOG_CACHE"] = old


@pytest.fixture
def small_catalog(tmp_path: Path) -> Path:
    catalog_dir = tmp_path / "catalog"
    catalog_dir.mkdir()
    for entry_id, fields in SMALL_CATALOG.items():
        write_entry(catalog_dir, entry_id, **fields)
    return catalog_dir


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed `mi-catalog` entry point; returns the completed process (never raises)."""

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            [str(ENTRY_POINT), *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=300
        )

    return run
