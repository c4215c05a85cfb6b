"""The CLI through the installed entry point."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import REPO


def test_query_json_contract(small_catalog: Path, cli) -> None:
    res = cli("query", "--object", "head", "--method", "probe", "--format", "json", "--catalog", str(small_catalog))
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["total"] == 1 and [r["id"] for r in data["results"]] == ["refusal-heads"]
    assert data["facets"]["object"] == {"attention-head": 1}
    assert set(data["facets"]) == {"object", "method", "steer", "application", "venue", "year", "source"}


def test_query_table_shows_results_then_facet_counts(small_catalog: Path, cli) -> None:
    res = cli("query", "--object", "head", "--catalog", str(small_catalog))
    assert res.returncode == 0
    out = res.stdout
    assert out.index("refusal-heads") < out.index("facets:")
    assert "2 papers" in out and "attention-head (2)" in out and "ffn (1)" in out


def test_query_other_formats(small_catalog: Path, cli) -> None:
    args = ("query", "--venue", "NeurIPS", "--catalog", str(small_catalog), "--format")
    ids = cli(*args, "ids").stdout.split()
    assert ids == ["knowledge-circuits-heads", "locating-and-editing"]  # newest first
    rows = list(csv.DictReader(io.StringIO(cli(*args, "csv").stdout)))
    assert [r["id"] for r in rows] == ids and rows[0]["objects"] == "attention-head;ffn"
    bib = cli(*args, "bibtex").stdout
    assert bib.count("@inproceedings{") == 2 and "author = {Kevin Meng and David Bau}" in bib
    assert [r["id"] for r in yaml.safe_load(cli(*args, "yaml").stdout)] == ids


def test_catalog_env_var_and_any_working_directory(small_catalog: Path, tmp_path: Path, cli) -> None:
    res = cli("query", "--format", "ids", cwd=tmp_path, env={"MI_CATALOG_DIR": str(small_catalog)})
    assert res.returncode == 0 and len(res.stdout.split()) == 6


def test_bad_input_exits_2_with_one_line(small_catalog: Path, cli) -> None:
    for args in (("--object", "hed"), ("refusal (",), ("--method", "magic")):
        res = cli("query", *args, "--catalog", str(small_catalog))
        assert res.returncode == 2, args
        assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("mi-catalog: error:")
    assert "did you mean 'head'" in cli("query", "--object", "hed", "--catalog", str(small_catalog)).stderr
    missing = cli("query", "--catalog", str(small_catalog / "nope"))
    assert missing.returncode == 2 and "catalog folder not found" in missing.stderr


def test_show_and_facets(small_catalog: Path, cli) -> None:
    shown = cli("show", "locating-and-editing", "--catalog", str(small_catalog))
    assert shown.returncode == 0 and "Kevin Meng" in shown.stdout and "targeted-optimization" in shown.stdout
    as_json = json.loads(
        cli("show", "locating-and-editing", "--format", "json", "--catalog", str(small_catalog)).stdout
    )
    assert as_json["tags"]["objects"] == ["ffn"] and as_json["provenance"]["source"] == "mi-catalog"
    typo = cli("show", "locating-and-editin", "--catalog", str(small_catalog))
    assert typo.returncode == 2 and "did you mean locating-and-editing" in typo.stderr
    facets = json.loads(cli("facets", "--format", "json", "--catalog", str(small_catalog)).stdout)
    assert facets["method"]["causal-attribution"] == 2
    table = cli("facets", "--catalog", str(small_catalog)).stdout
    assert "circuit" in table and "sae-feature" in table  # zero counts are shown too


def test_index_command(small_catalog: Path, cli) -> None:
    first = cli("index", "--catalog", str(small_catalog))
    assert first.returncode == 0 and "6 entries" in first.stdout
    assert "up to date" in cli("index", "--catalog", str(small_catalog)).stdout
    assert "rebuilt" in cli("index", "--rebuild", "--catalog", str(small_catalog)).stdout


def test_python_dash_m_and_the_shipped_catalog(cli) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "mi_catalog", "query", "--object", "head", "--method", "probe", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["total"] >= 3
    assert all("attention-head" in r["objects"] and "probing" in r["methods"] for r in data["results"])


def test_non_editable_install_ships_the_catalog(tmp_path: Path) -> None:
    """Build the wheel, install it into a bare target folder, and query from elsewhere."""
    wheel_dir = tmp_path / "wheel"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if build.returncode != 0 and "hatchling" in build.stderr:
        build = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(REPO)],
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert build.returncode == 0, build.stderr
    (wheel,) = wheel_dir.glob("*.whl")
    target = tmp_path / "site-packages"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        timeout=600,
    )
    assert len(list((target / "mi_catalog" / "_catalog").glob("*.yaml"))) >= 211
    env = {
        "PYTHONPATH": str(target),
        "PATH": "/usr/bin:/bin",
        "MI_CATALOG_CACHE": str(tmp_path / "cache"),
        "HOME": str(tmp_path),
    }
    res = subprocess.run(
        [
            sys.executable,
            "-c",
            "import mi_catalog, sys; from mi_catalog.cli import main; print(mi_catalog.__file__); sys.exit(main(['query', '--method', 'logit-lens', '--format', 'ids']))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split()
    assert lines[0].startswith(str(target)) and len(lines) > 5


# --- issue 12: first-user trial ---------------------------------------------------------------


def test_empty_or_wrong_catalog_folder_is_one_line(tmp_path: Path, cli) -> None:
    (tmp_path / "notes.txt").write_text("not a catalog")
    for args, env in (
        (("query", "--catalog", str(tmp_path)), None),
        (("facets",), {"MI_CATALOG_DIR": str(tmp_path)}),
        (("show", "dola", "--catalog", str(tmp_path)), None),
        (("index", "--catalog", str(tmp_path)), None),
    ):
        res = cli(*args, env=env)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
        assert "no catalog entries (*.yaml)" in res.stderr
    res = cli("validate", "--catalog", str(tmp_path))
    assert res.returncode == 2 and "nothing to validate" in res.stderr


@pytest.mark.parametrize("columns", [60, 80, 100, 120, 200])
def test_query_table_fits_the_terminal_and_never_cuts_ids(columns: int, cli) -> None:
    ids = cli("query", "--object", "head", "--format", "ids").stdout.split()
    res = cli("query", "--object", "head", env={"COLUMNS": str(columns)})
    assert res.returncode == 0
    table = res.stdout.split("\nfacets:")[0]
    words = set(table.split())
    assert set(ids) <= words  # every id printed whole
    for line in res.stdout.splitlines():
        assert len(line) <= columns or line.split()[0] in ids, line
    longest = max(ids, key=len)
    assert cli("show", longest).returncode == 0


def test_usage_errors_are_one_line(cli) -> None:
    for args in (("query", "--limit", "abc"), ("query", "--sort", "date"), ("query", "--format", "xml"), ("nosuch",)):
        res = cli(*args)
        assert res.returncode == 2, args
        assert res.stderr.count("\n") == 1 and "usage:" not in res.stderr, res.stderr


def test_version_comma_years_and_ambiguous_values(small_catalog: Path, cli) -> None:
    from mi_catalog import __version__

    assert cli("--version").stdout.strip() == f"mi-catalog {__version__}"
    years = cli("query", "--year", "2022,2025", "--format", "ids", "--catalog", str(small_catalog))
    assert years.returncode == 0 and sorted(years.stdout.split()) == [
        "locating-and-editing",
        "persona-vectors-steering",
    ]
    vector = cli("query", "--steer", "vector", "--format", "ids", "--catalog", str(small_catalog))
    assert sorted(vector.stdout.split()) == ["persona-vectors-steering", "refusal-heads"]
    findings = cli("query", "--venue", "findings", "--catalog", str(small_catalog))
    assert findings.returncode == 2
    candidates = findings.stderr.split("could be ")[1].strip().split(", ")
    assert len(candidates) == len(set(candidates)) >= 2 and "Findings of ACL" in candidates


def test_no_results_prints_no_facet_header(small_catalog: Path, cli) -> None:
    res = cli("query", "nothingmatchesthis", "--catalog", str(small_catalog))
    assert res.returncode == 0 and res.stdout.strip() == "0 papers"


def test_show_aligns_every_label(small_catalog: Path, cli) -> None:
    lines = cli("show", "locating-and-editing", "--catalog", str(small_catalog)).stdout.splitlines()
    fields = [line for line in lines[2:] if re.match(r"^[a-z]+: +\S", line)]
    assert {"application:", "id:", "paper:", "source:"} <= {f.split()[0] for f in fields}
    assert len({len(re.match(r"^[a-z]+: +", f).group(0)) for f in fields}) == 1  # type: ignore[union-attr]


def test_site_help_is_for_users(cli) -> None:
    text = cli("site", "--help").stdout
    assert "handlers" not in text and "imports" not in text and "mkdocs-material" in text
