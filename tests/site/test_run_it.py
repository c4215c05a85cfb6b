"""Paper pages say how to run the paper ("Run it"), chart cells how to run the combination — and both equal
what the CLI runs."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mi_catalog import vocab
from mi_catalog.impl_info import discover_impls
from mi_catalog.methods import plan as P
from mi_catalog.site import pages

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def entries() -> dict[str, Any]:
    from mi_catalog.load import load_catalog
    from mi_catalog.paths import default_catalog_dir

    return {e.id: e for e in load_catalog(default_catalog_dir()).entries}


def run_it(markdown: str) -> str:
    return markdown[markdown.index("## Run it") : markdown.index("## Provenance")]


def test_every_paper_page_shows_its_command_and_kind(entries: dict[str, Any]) -> None:
    impls = discover_impls()
    kinds = set()
    for entry in entries.values():
        plan = P.plan_for(entry, impls)
        section = run_it(pages.paper_page(entry, impls).markdown)
        assert f"```bash\nmi-catalog run {entry.id}\n```" in section
        kind = "**Reproduction**" if plan.kind == "reproduction" else "**Pipeline**"
        assert kind in section and section.count("**Reproduction**") + section.count("**Pipeline**") == 1
        if plan.kind == "pipeline":
            assert "not the paper's exact algorithm" in section and f"`{plan.pipeline_command}`" in section
            assert all(note in section for note in plan.substitutions)
        else:
            assert f"runs `{plan.impl}`, the paper's own algorithm" in section
        kinds.add(plan.kind)
    assert kinds == {"reproduction", "pipeline"}


def test_run_it_drift_page_command_equals_the_cli_plan(entries: dict[str, Any]) -> None:
    """The command shown on a page is what the CLI runs: `--plan` on it gives the page's kind and pipeline."""
    impls = discover_impls()
    plans = {i: P.plan_for(e, impls) for i, e in entries.items()}
    picks = {next(i for i in sorted(plans) if test(plans[i])) for test in (
        lambda p: p.kind == "reproduction", lambda p: p.prune, lambda p: p.steer == "vector-arithmetic",
        lambda p: not p.composed, lambda p: p.kind == "pipeline" and p.steer is None and p.composed,
        lambda p: bool(p.substitutions) and p.composed)}  # fmt: skip
    for entry_id in sorted(picks):
        section = run_it(pages.paper_page(entries[entry_id], impls).markdown)
        command = re.search(r"```bash\n(.+)\n```", section).group(1)  # type: ignore[union-attr]
        shown = subprocess.run([sys.executable, "-m", "mi_catalog", *command.split()[1:], "--plan", "--format", "json"],
                               capture_output=True, text=True, cwd=REPO, timeout=300)  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        cli_plan = json.loads(shown.stdout)
        assert cli_plan["kind"] == plans[entry_id].kind and cli_plan["impl"] == plans[entry_id].run_id
        assert ("**Reproduction**" in section) == (cli_plan["kind"] == "reproduction")
        if cli_plan["kind"] == "pipeline":
            assert f"`{cli_plan['pipeline_command']}`" in section
            words = cli_plan["pipeline_command"].split()
            piped = subprocess.run([sys.executable, "-m", "mi_catalog", *words[1:], "--plan", "--format", "json"],
                                   capture_output=True, text=True, cwd=REPO, timeout=300)  # fmt: skip
            assert json.loads(piped.stdout)["impl"] == cli_plan["impl"]


@pytest.mark.parametrize("cols", [vocab.METHOD, vocab.STEER], ids=["method", "steer"])
def test_every_chart_cell_names_a_pipeline_that_plans(cols: vocab.Facet) -> None:
    impls = discover_impls()
    table = pages.chart_table([], vocab.OBJECT, cols, "chart.md")
    titles = re.findall(r'title="([^"]+)"', table)
    assert len(titles) == len(vocab.OBJECT.ids) * len(cols.ids)
    for title in titles:
        command = html.unescape(title).split(" — run: ")[1]
        words = command.split()
        assert words[:2] == ["mi-catalog", "pipeline"]
        opts = dict(zip(words[2::2], words[3::2], strict=True))
        plan = P.plan_pipeline(opts["--object"], opts["--method"], opts.get("--steer"), None, impls)
        assert plan.command == command and plan.locator in impls
