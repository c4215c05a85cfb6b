"""`mi-catalog stats`: field and review coverage, computed once and shown identically by the CLI and the site."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support import make_entry_data, write_entry

from mi_catalog.schema import Entry
from mi_catalog.site.pages import home_page
from mi_catalog.stats import catalog_stats, compute_stats, format_markdown, format_table

SURVEY_PROVENANCE = {"source": "awesome-actionable-mi-survey", "sections": ["safety"]}
TAGS = {"objects": ["attention-head"], "methods": ["probing"], "steering": [], "applications": ["safety"]}


def entries() -> list[Entry]:
    """Four entries whose coverage is counted by hand in the assertions below."""
    return [
        Entry.model_validate(
            make_entry_data(
                "full",
                authors=["A. Author"],
                summary="Does a thing.",
                links={"paper": "https://arxiv.org/abs/2401.00001", "arxiv": "2401.00001", "code": "https://x.org/c"},
                tags=TAGS,
                review={"tags": "reviewed", "metadata": "checked", "sources": ["https://arxiv.org/abs/2401.00001"]},
                notes=["A correction."],
            )
        ),
        Entry.model_validate(make_entry_data("survey-bare", venue="arXiv", provenance=SURVEY_PROVENANCE)),
        Entry.model_validate(
            make_entry_data(
                "survey-half",
                authors=["B. Author"],
                tags=TAGS,
                provenance=SURVEY_PROVENANCE,
                review={"tags": "reviewed"},
            )
        ),
        Entry.model_validate(make_entry_data("found-bare", links={"paper": "https://e.org/p", "arxiv": "2401.00002"})),
    ]


def test_counts_are_exact() -> None:
    st = compute_stats(entries())
    assert (st.total, st.survey, st.foundational, st.invalid_files) == (4, 2, 2, 0)
    counts = {c.key: c.count for c in (*st.fields, *st.review)}
    assert counts["arxiv"] == 2
    assert counts["authors"] == 2
    assert counts["summary"] == 1
    assert counts["code"] == 1
    assert counts["published_venue"] == 3  # make_entry_data defaults to ICLR; one is arXiv
    assert counts["tags.objects"] == 2 and counts["tags.steering"] == 0
    assert counts["notes"] == 1 and counts["impls"] == 0
    assert counts["review.tags_reviewed"] == 2 and counts["review.tags_upstream"] == 2
    assert counts["review.metadata_checked"] == 1 and counts["review.sources"] == 1
    assert st.field("summary").percent == 25.0
    assert all(c.total == 4 for c in (*st.fields, *st.review))


def test_empty_catalog_has_zero_percent() -> None:
    st = compute_stats([])
    assert st.total == 0 and all(c.percent == 0.0 for c in st.fields)


def test_invalid_files_are_counted_not_included(tmp_path: Path) -> None:
    write_entry(tmp_path, "good", summary="Fine.")
    (tmp_path / "broken.yaml").write_text("id: [\n", encoding="utf-8")
    st = catalog_stats(tmp_path)
    assert (st.total, st.invalid_files) == (1, 1)
    assert "1 invalid file(s) not counted" in format_table(st)


def test_site_home_page_shows_the_same_figures() -> None:
    es = entries()
    page = home_page(es, {}).markdown
    assert format_markdown(compute_stats(es)) in page
    assert "| summary | 1/4 | 25.0% |" in page
    assert "4 entries: 2 from the survey, 2 foundational." in page


def test_cli_table_and_json_through_the_entry_point(tmp_path: Path, cli) -> None:
    for e in entries():
        (tmp_path / f"{e.id}.yaml").write_text(
            json.dumps(e.model_dump(mode="json", exclude_none=True)), encoding="utf-8"
        )  # JSON is valid YAML
    table = cli("stats", "--catalog", str(tmp_path))
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("4 entries: 2 from the survey, 2 foundational")
    assert "summary" in table.stdout and "1/4" in table.stdout and "25.0%" in table.stdout
    js = cli("stats", "--catalog", str(tmp_path), "--format", "json")
    assert js.returncode == 0, js.stderr
    assert json.loads(js.stdout) == catalog_stats(tmp_path).to_dict()


def test_cli_missing_catalog_is_one_line(tmp_path: Path, cli) -> None:
    res = cli("stats", "--catalog", str(tmp_path / "nope"))
    assert res.returncode == 2
    assert res.stderr.startswith("mi-catalog: error: catalog folder not found") and "Traceback" not in res.stderr


def test_stats_imports_no_heavy_modules(small_catalog: Path) -> None:
    code = (
        "import sys; from mi_catalog.cli import main; code = main(['stats', '--format', 'json']);"
        "print(sorted(m for m in ('torch', 'transformers', 'whoosh', 'mkdocs') if m in sys.modules), file=sys.stderr)"
    )
    env = {**os.environ, "MI_CATALOG_DIR": str(small_catalog)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "[]"
