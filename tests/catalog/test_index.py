"""The index: rebuilt when content changes, swapped atomically, and the query path stays light."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import write_entry

from mi_catalog import Catalog, index, index_build
from mi_catalog.errors import CatalogNotFoundError
from mi_catalog.paths import index_dir_for
from mi_catalog.query import Query
from mi_catalog.search import IndexSearcher


def test_rebuilds_only_when_content_changes(small_catalog: Path) -> None:
    first = index.ensure_index(small_catalog)
    assert first.rebuilt and first.entries == 6
    assert not index.ensure_index(small_catalog).rebuilt
    write_entry(small_catalog, "new-paper", title="A Brand New Paper")
    third = index.ensure_index(small_catalog)
    assert third.rebuilt and third.entries == 7
    assert Catalog(small_catalog).query("brand").total == 1


def test_crash_mid_build_leaves_the_old_index_answering(small_catalog: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cat = Catalog(small_catalog)
    assert cat.query(object=["head"]).total == 2
    old_target = (index_dir_for(small_catalog) / "current").resolve()
    write_entry(
        small_catalog,
        "another-head",
        tags={"objects": ["attention-head"], "methods": [], "steering": [], "applications": []},
    )

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(index_build, "_document", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        index.ensure_index(small_catalog)
    current = index_dir_for(small_catalog) / "current"
    assert current.resolve() == old_target  # still the old version
    assert IndexSearcher(current.resolve()).search(Query(filters={"object": ("attention-head",)})).total == 2
    monkeypatch.undo()
    assert Catalog(small_catalog).query(object=["head"]).total == 3  # next query rebuilds and cleans up
    leftovers = [p.name for p in index_dir_for(small_catalog).iterdir() if p.name.startswith(".staging-")]
    assert leftovers == []


def test_invalid_files_are_left_out_with_a_warning(small_catalog: Path) -> None:
    (small_catalog / "broken.yaml").write_text("id: [\n")
    info = index.ensure_index(small_catalog)
    assert info.entries == 6 and info.invalid_files == ("broken.yaml",)


def test_empty_or_missing_catalog_folder_is_a_library_error(tmp_path: Path) -> None:
    for folder in (tmp_path, tmp_path / "missing"):
        with pytest.raises(CatalogNotFoundError, match="catalog"):
            index.ensure_index(folder)


def test_catalog_of_only_invalid_files_answers_empty(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("id: [\n")
    res = Catalog(tmp_path).query("refusal", object="head")
    assert (res.total, res.results) == (0, ())


CHECK_LIGHT = """
import sys, json
from mi_catalog.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "transformers", "yaml", "pydantic", "mkdocs", "tokenizers", "safetensors") if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["query", "--object", "head", "--method", "probe", "--format", "json"],
        ["query", "refusal", "--format", "table"],
        ["show", "refusal-heads"],
        ["facets"],
        ["impls", "--format", "json"],
    ],
)
def test_query_path_imports_no_heavy_modules(small_catalog: Path, argv: list[str]) -> None:
    """Once the index is built, answering never parses YAML, nor imports pydantic, torch or transformers."""
    index.ensure_index(small_catalog)
    env = {**os.environ, "MI_CATALOG_DIR": str(small_catalog)}
    proc = subprocess.run(
        [sys.executable, "-c", CHECK_LIGHT, *argv], capture_output=True, text=True, env=env, timeout=120
    )
    report = json.loads(proc.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "heavy": []}, proc.stderr


def test_catalog_side_modules_import_no_torch() -> None:
    code = (
        "import sys, mi_catalog.cli, mi_catalog.commands, mi_catalog.validate, mi_catalog.api, mi_catalog.load;"
        "import mi_catalog.cli_run, mi_catalog.toy, mi_catalog.toy.cli, mi_catalog.site;"
        "mi_catalog.cli.build_parser();"
        "print(sorted(m for m in ('torch','transformers','mkdocs','tokenizers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_facet_only_query_never_imports_whoosh(small_catalog: Path) -> None:
    """The facet table beside the index answers queries without free text; Whoosh loads for text only."""
    index.ensure_index(small_catalog)
    code = (
        "import sys, io, contextlib; from mi_catalog.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out): code = main(sys.argv[1:])\n"
        "print(code, 'whoosh' in sys.modules, out.getvalue().count('\"id\"'))"
    )

    def run(*argv: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code, "query", *argv, "--catalog", str(small_catalog), "--format", "json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert run("--object", "head", "--method", "probe") == ["0", "False", "1"]
    assert run("refusal") == ["0", "True", "2"]
