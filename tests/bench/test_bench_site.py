"""The site's Benchmark pages are built from a bench result file, without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mi_catalog.bench.rows import committed_result, load_result
from mi_catalog.bench.site import bench_pages, impl_page, index_page

FIXTURE = Path(__file__).parent / "data" / "bench_fixture.json"


def test_pages_from_a_fixture_result() -> None:
    result = load_result(FIXTURE)
    pages = dict(bench_pages(result))
    index = pages["benchmark/index.md"]
    assert index.startswith('---\ntitle: "Benchmark"\n---')
    for text in ("## Leaderboard", "### Locate", "### Steer", "### Cost", "## Ground truth", "## The JSON contract",
                 "induction-heads", "refusal-layers", "| attribution-patching |", "(locate-auroc.svg)",
                 "[`refusal-direction`](refusal-direction.md)", "A --quick result"):  # fmt: skip
        assert text in index, text
    # every mechanism's definition is stated on the page
    for mech in result["mechanisms"]:
        assert mech["definition"] in index
    # one page per implementation with its own rows only
    assert set(pages) >= {"benchmark/attribution-patching.md", "benchmark/refusal-direction.md",
                          "benchmark/locate-auroc.svg", "benchmark/steer-combined.svg"}  # fmt: skip
    steer_page = pages["benchmark/refusal-direction.md"]
    assert "### Steer" in steer_page and "| refusal-direction |" in steer_page
    assert "| attribution-patching |" not in steer_page
    assert "### Strength sweeps" in steer_page and "### Side effects" in steer_page
    locator_page = impl_page(result, "attribution-patching")
    assert "### Locate" in locator_page and "### Steer" not in locator_page
    assert pages["benchmark/locate-auroc.svg"].startswith("<svg")


def test_no_result_is_a_page_that_says_so() -> None:
    assert bench_pages(None) == [("benchmark/index.md", index_page(None))]
    assert "No bench result is committed yet" in index_page(None)


def test_the_committed_result_loads_and_follows_the_contract() -> None:
    result = committed_result("toy")
    assert result is not None, "mi_catalog/bench/results/toy.json is missing"
    assert result["rows"] and {r["track"] for r in result["rows"]} >= {"locate", "cost"}


def test_building_the_pages_never_imports_torch() -> None:
    code = (
        "import sys, json; from mi_catalog.bench.rows import load_result; from mi_catalog.bench.site import bench_pages;"
        "from mi_catalog.site.pages import benchmark_pages;"
        f"pages = bench_pages(load_result({str(FIXTURE)!r})); benchmark_pages();"
        "print(json.dumps([len(pages), sorted(m for m in ('torch', 'transformers') if m in sys.modules)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    count, heavy = json.loads(out.stdout)
    assert count > 3 and heavy == []


def test_paper_pages_link_their_implementations_benchmark_page() -> None:
    from support import make_entry_data

    from mi_catalog.bench.site import benchmarked_impls
    from mi_catalog.impl_info import ImplInfo
    from mi_catalog.schema import Entry
    from mi_catalog.site import pages

    benched = sorted(benchmarked_impls())
    assert benched, "the committed result benchmarks some implementation"
    entry = Entry.model_validate(make_entry_data("paper-x", impls=[benched[0], "not-benchmarked"]))
    impls = {i: ImplInfo(id=i, title=f"T {i}") for i in (benched[0], "not-benchmarked")}
    md = pages.paper_page(entry, impls).markdown
    assert f"`mi-catalog run {benched[0]}` · [benchmark](../benchmark/{benched[0]}.md)" in md
    assert "`mi-catalog run not-benchmarked`\n" in md
