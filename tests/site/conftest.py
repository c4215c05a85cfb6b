"""Session fixtures: the fixture catalog, its built site, a static server and a browser."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from site_fixtures import fixture_entries, write_catalog

from mi_catalog.schema import Entry

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]


@dataclass(frozen=True)
class BuiltSite:
    catalog: Path
    project: Path
    out: Path
    entries: list[Entry]


def _build(tmp: Path, catalog: Path, entries: list[Entry]) -> BuiltSite:
    from mi_catalog.site.build import build_site

    report = build_site(catalog, out_dir=tmp / "out", project_dir=tmp / "project")
    return BuiltSite(catalog, tmp / "project", report.out_dir, entries)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    # `mi-catalog query` (when used as the reference) must not touch the user's index cache.
    os.environ["MI_CATALOG_CACHE"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="session")
def fixture_site(tmp_path_factory: pytest.TempPathFactory) -> BuiltSite:
    tmp = tmp_path_factory.mktemp("fixture-site")
    entries = fixture_entries()
    return _build(tmp, write_catalog(tmp / "catalog", entries), entries)


@pytest.fixture(scope="session")
def real_site(tmp_path_factory: pytest.TempPathFactory) -> BuiltSite:
    from mi_catalog.load import load_catalog
    from mi_catalog.paths import default_catalog_dir

    catalog = default_catalog_dir()
    return _build(tmp_path_factory.mktemp("real-site"), catalog, load_catalog(catalog).entries)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} does not exist (install Debian's chromium to run the browser tests)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def serve(root: Path) -> Iterator[str]:
    from mi_catalog.site.serve import serve_in_thread

    server, base = serve_in_thread(root)
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def fixture_url(fixture_site: BuiltSite) -> Iterator[str]:
    yield from serve(fixture_site.out)


@pytest.fixture(scope="session")
def real_url(real_site: BuiltSite) -> Iterator[str]:
    yield from serve(real_site.out)
