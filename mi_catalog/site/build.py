"""Generate the project and run the mkdocs-material build, as a library (no subprocess).

The output folder is built beside its final place and swapped in, and only a
folder that an earlier build made (it holds :data:`MARKER`) is ever replaced —
``--out ~/Documents`` must not wipe anything.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mi_catalog.errors import BuildError, CatalogProblemsError, UsageError
from mi_catalog.paths import PACKAGE_DIR, cache_root

MARKER = ".mi-catalog-site"
_CHECKOUT_ROOT = PACKAGE_DIR.parent


@dataclass(frozen=True)
class BuildReport:
    papers: int
    pages: int
    out_dir: Path
    config_file: Path
    generate_seconds: float
    mkdocs_seconds: float


def in_source_checkout() -> bool:
    return (_CHECKOUT_ROOT / "pyproject.toml").is_file() and (_CHECKOUT_ROOT / "mi_catalog").is_dir()


def default_project_dir() -> Path:
    """The repository's ``site/`` in a checkout; a cache folder for an installed package."""
    return _CHECKOUT_ROOT / "site" if in_source_checkout() else cache_root() / "site-project"


def default_out_dir() -> Path:
    """The git-ignored ``_site/`` of a checkout; ``./_site`` otherwise."""
    return _CHECKOUT_ROOT / "_site" if in_source_checkout() else Path.cwd() / "_site"


def require_mkdocs() -> None:
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
    except ImportError:
        raise UsageError("the site needs mkdocs and mkdocs-material: pip install 'mi-catalog[site]'") from None


def check_out_dir(out_dir: Path, project_dir: Path) -> None:
    out, project = out_dir.resolve(), project_dir.resolve()
    if out == project or project.is_relative_to(out) or out.is_relative_to(project / "docs"):
        raise UsageError(f"--out {out_dir} would overlap the mkdocs project in {project_dir}; choose another folder")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise UsageError(
            f"--out {out_dir} is a non-empty folder that mi-catalog did not build; "
            "refusing to replace it (choose an empty or new folder)"
        )


def run_mkdocs(config_file: Path, site_dir: Path, strict: bool = True) -> None:
    """`mkdocs build [--strict]` in-process; warnings go to stderr and fail a strict build."""
    from mkdocs import exceptions
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    logger = logging.getLogger("mkdocs")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("mkdocs: %(levelname)s: %(message)s"))
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    try:
        config = load_config(config_file=str(config_file), site_dir=str(site_dir), strict=strict)
        build(config)
    except exceptions.Abort as err:
        raise BuildError(f"mkdocs build failed: {err}") from None
    except exceptions.ConfigurationError as err:
        raise BuildError(f"mkdocs configuration error: {err}") from None
    finally:
        logger.removeHandler(handler)


def build_site(
    catalog_dir: Path,
    out_dir: Path | None = None,
    project_dir: Path | None = None,
    strict: bool = True,
) -> BuildReport:
    """Load the catalog, generate the mkdocs project, build it into ``out_dir``."""
    from mi_catalog.fsutil import replace_dir
    from mi_catalog.impl_info import ImplDeclarationError, discover_impls
    from mi_catalog.load import load_catalog
    from mi_catalog.site.project import write_project

    require_mkdocs()
    project_dir = project_dir or default_project_dir()
    out_dir = out_dir or default_out_dir()
    check_out_dir(out_dir, project_dir)

    started = time.perf_counter()
    result = load_catalog(catalog_dir)  # CatalogNotFoundError for a missing folder
    if result.problems:
        shown = "\n  ".join(str(p) for p in result.problems[:10])
        more = f"\n  … and {len(result.problems) - 10} more" if len(result.problems) > 10 else ""
        raise CatalogProblemsError(f"the catalog has problems (run `mi-catalog validate`):\n  {shown}{more}")
    try:
        impls = discover_impls()
    except ImplDeclarationError as err:
        raise CatalogProblemsError(f"reference implementations: {err}") from None
    config_file = write_project(project_dir, result.entries, impls)
    generated = time.perf_counter()

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building.", dir=out_dir.parent))
    try:
        run_mkdocs(config_file, staging, strict=strict)
        (staging / MARKER).write_text("built by `mi-catalog site build`; safe to delete\n", encoding="utf-8")
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700; a static server run by someone else must read it
        replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    done = time.perf_counter()
    pages = sum(1 for _ in (project_dir / "docs").rglob("*.md"))
    return BuildReport(len(result.entries), pages, out_dir, config_file, generated - started, done - generated)
