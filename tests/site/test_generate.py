"""Markdown generation, the data file and the mkdocs build — no browser."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import BuiltSite
from site_fixtures import HOSTILE_TITLE, fixture_entries, write_catalog

from mi_catalog import vocab
from mi_catalog.errors import BuildError, CatalogProblemsError, UsageError
from mi_catalog.site import pages
from mi_catalog.site.build import MARKER, build_site, check_out_dir, require_mkdocs, run_mkdocs
from mi_catalog.site.explore_data import explore_data
from mi_catalog.site.project import mkdocs_yml, write_project
from mi_catalog.site.text import analyzed, bibtex_entry, md_text, stop_words

ENTRIES = fixture_entries()
BY_ID = {e.id: e for e in ENTRIES}


# --- pages ----------------------------------------------------------------------------------


def test_every_paper_gets_a_page_at_a_stable_url(fixture_site: BuiltSite) -> None:
    for e in ENTRIES:
        assert (fixture_site.project / "docs" / "papers" / f"{e.id}.md").is_file()
        assert (fixture_site.out / "papers" / e.id / "index.html").is_file()


def test_paper_page_shows_metadata_tags_and_corrections() -> None:
    md = pages.paper_page(BY_ID["lens-early-exit"], {}).markdown
    assert "**2023**" in md and "BlackboxNLP" in md
    assert "](../explore.md?method=vocab-projection)" in md
    assert "](../explore.md?application=efficient-inference)" in md
    assert "](../explore.md?venue=Workshop)" in md
    assert "## Provenance" in md and "../taxonomy/application/efficient-inference.md" in md
    hostile = pages.paper_page(BY_ID["hostile-entry"], {}).markdown
    assert "## Corrections" in hostile and "&lt;i&gt;markup&lt;/i&gt;" in hostile


def test_paper_page_links_reference_implementations() -> None:
    from mi_catalog.impl_info import ImplInfo

    entry = BY_ID["rome-like"].model_copy(update={"impls": ["rome", "missing-impl"]})
    impls = {
        "rome": ImplInfo(id="rome", title="ROME edit"),
        "tracing": ImplInfo(id="tracing", title="Causal tracing", reproduces=("rome-like",)),
    }
    md = pages.paper_page(entry, impls).markdown
    assert "**ROME edit** — run it with `mi-catalog run rome`" in md
    assert "`mi-catalog run tracing`" in md  # declared by the implementation's `reproduces`
    assert "`missing-impl` — not available" in md
    home = pages.home_page(ENTRIES, impls).markdown
    assert "`mi-catalog run tracing`: Causal tracing — reproduces [Locating and Editing" in home


@pytest.mark.parametrize(
    "text",
    [HOSTILE_TITLE, "a *b* _c_ `d` [e](f) <g> & h # i | j", "![x](javascript:alert(1))", "line\n\n# heading",
     "GPT-2's \"quoted\" &amp; &#35; entity-like", "\\*not\\* escaped \\\\ twice"],
)
def test_md_text_renders_literally(text: str) -> None:
    import markdown

    rendered = markdown.markdown(md_text(text), extensions=["attr_list", "md_in_html", "tables"])
    assert rendered.startswith("<p>") and rendered.endswith("</p>")
    inner = rendered[3:-4]
    assert "<" not in inner and ">" not in inner  # no element of any kind
    assert html.unescape(inner) == " ".join(text.split())


def test_hostile_title_is_escaped_in_markdown_and_every_built_page(fixture_site: BuiltSite) -> None:
    docs = fixture_site.project / "docs"
    for md in docs.rglob("*.md"):
        text = md.read_text(encoding="utf-8")
        assert "<script>alert" not in text and "<b>x</b>" not in text and "<img src=x" not in text, md
    front = (docs / "papers" / "hostile-entry.md").read_text(encoding="utf-8").split("---")[1]
    assert yaml.safe_load(front)["title"] == "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;x&lt;/b&gt;"
    checked = 0
    for page in fixture_site.out.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "<script>alert" not in text and "<b>x</b>" not in text and "onerror=" not in text, page
        checked += HOSTILE_TITLE in html.unescape(text)  # what the reader sees: the title, as text
    assert checked >= 5  # its paper page, and the taxonomy pages of its tags
    index = (fixture_site.out / "search" / "search_index.json").read_text(encoding="utf-8")
    assert "<script>alert" not in index and "<img" not in index


def test_taxonomy_pages_count_papers_per_value(fixture_site: BuiltSite) -> None:
    docs = fixture_site.project / "docs"
    for facet in vocab.FACETS:
        for term in (*facet.groups, *facet.terms):
            leaves = set(facet.children(term.id)) if term in facet.groups else {term.id}
            expected = sum(1 for e in ENTRIES if leaves & set(e.facet_values(facet)))
            md = (docs / "taxonomy" / facet.name / f"{term.id}.md").read_text(encoding="utf-8")
            assert re.search(rf"\*\*{expected} papers?\*\*", md), (facet.name, term.id)
            assert md.count("](../../papers/") == expected
            assert md_text(term.description) in md
    alignment = (docs / "taxonomy" / "application" / "alignment.md").read_text(encoding="utf-8")
    assert "**6 papers**" in alignment  # safety 4 + fairness 1 + persona 2, one of which (sae-steer) is also safety


def test_chart_counts_every_pair_and_marks_gaps() -> None:
    table = pages.chart_table(ENTRIES, vocab.OBJECT, vocab.METHOD, "chart.md")
    cells = re.findall(r'<td class="([^"]+)" data-row="([^"]+)" data-col="([^"]+)" data-count="(\d+)">'
                       r'<a href="([^"]+)"', table)
    assert len(cells) == len(vocab.OBJECT.ids) * len(vocab.METHOD.ids)
    for cls, row, col, count, href in cells:
        expected = sum(1 for e in ENTRIES if row in e.tags.objects and col in e.tags.methods)
        assert int(count) == expected
        assert ("mi-gap" in cls) == (expected == 0)
        assert href == f"../explore/?object={row}&amp;method={col}"
    assert ("attention-head", "probing") in {(r, c) for _, r, c, n, _ in cells if n == "2"}


def test_bibtex_record() -> None:
    bib = bibtex_entry(BY_ID["refusal-direction"])
    assert bib.startswith("@inproceedings{refusal-direction,\n")
    assert "title = {{Refusal in Language Models Is Mediated by a Single Direction}}" in bib
    assert "author = {Andy Arditi and Neel Nanda}" in bib
    assert "booktitle = {Conference on Neural Information Processing Systems}" in bib
    assert "eprint = {2406.11717}" in bib and "year = {2024}" in bib
    assert bibtex_entry(BY_ID["grokking-circuits"]).startswith("@article{")
    assert "journal = {Transactions on Machine Learning Research}" in bibtex_entry(BY_ID["grokking-circuits"])
    assert bibtex_entry(BY_ID["token-prune"]).startswith("@misc{")
    assert "booktitle = {BlackboxNLP}" in bibtex_entry(BY_ID["lens-early-exit"])
    hostile = bibtex_entry(BY_ID["hostile-entry"])
    assert r"\& <b>x</b>" in hostile and "Eve \\& Co" in hostile
    assert hostile.count("{") - hostile.count("\\{") == hostile.count("}") - hostile.count("\\}")


def test_bibtex_block_is_escaped_on_the_page() -> None:
    md = pages.paper_page(BY_ID["hostile-entry"], {}).markdown
    block = md.split('<pre class="mi-bibtex"><code>')[1]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in block and "\n\n" not in block


# --- explore data -----------------------------------------------------------------------------


def test_explore_data_is_lean_and_driven_by_the_facet_table() -> None:
    from mi_catalog.facets import FACET_NAMES

    data = explore_data(ENTRIES)
    names = [f["name"] for f in data["facets"]]
    assert tuple(names) == FACET_NAMES == ("object", "method", "steer", "application", "venue", "year", "source")
    for f in data["facets"][:4]:
        facet = vocab.FACETS_BY_NAME[f["name"]]
        assert f["aliases"] == facet.alias_map()
        assert [v["id"] for v in f["values"]] == list(facet.ids)
    app = data["facets"][3]
    assert {g["id"]: g["children"] for g in app["groups"]}["alignment"] == ["safety", "fairness", "persona"]
    paper = next(p for p in data["papers"] if p[0] == "refusal-direction")
    assert paper[1] == BY_ID["refusal-direction"].title and paper[2] == 2024
    title, summary, authors = (field.split() for field in paper[4])
    assert title == analyzed("Refusal in Language Models Is Mediated by a Single Direction")
    assert title == ["refusal", "language", "models", "mediated", "single", "direction"]  # in order, for phrases
    assert summary == ["ablating", "one", "direction", "removes", "refusal"]
    assert authors == ["andy", "arditi", "neel", "nanda"]
    assert "Ablating one direction" not in json.dumps(data)  # tokens, not text
    assert data["text"]["fields"] == ["title", "summary", "authors"] and data["text"]["key"] == "q"


def test_venue_aliases_agree_with_resolve_venue() -> None:
    venue = next(f for f in explore_data(ENTRIES)["facets"] if f["name"] == "venue")
    for key, canonical in venue["aliases"].items():
        assert vocab.resolve_venue(key) == canonical


def query_tokens(query: str) -> list[str]:
    """Tokens of a free-text query the way explore.js computes them: TOKEN_PATTERN, lowercase, 2+, no stop word."""
    from mi_catalog.query import TOKEN_MIN_LENGTH, TOKEN_PATTERN

    stops = set(stop_words())
    found = (m.group(0).lower() for m in re.finditer(TOKEN_PATTERN, query))
    return [t for t in found if len(t) >= TOKEN_MIN_LENGTH and t not in stops]


@pytest.mark.parametrize("query", ["Refusal in the U.S.A!", "gpt-2 & x-ray café Über a_b 3.14", "the of tbd"])
def test_query_tokens_match_whoosh(query: str) -> None:
    from whoosh.analysis import StandardAnalyzer

    assert query_tokens(query) == [t.text for t in StandardAnalyzer()(query)]


# --- config and build -----------------------------------------------------------------------


def test_mkdocs_config_is_offline_short_and_stable() -> None:
    config = yaml.safe_load(mkdocs_yml())
    assert config["theme"]["font"] is False
    assert config["plugins"] == ["search"]  # no privacy/social plugin: nothing is fetched at build time
    assert config["site_dir"] == "../_site" and config["use_directory_urls"] is True
    assert len(json.dumps(config["nav"])) < 500 and "papers/" not in json.dumps(config["nav"])
    assert mkdocs_yml() == mkdocs_yml()


def test_built_site_loads_nothing_from_the_network(fixture_site: BuiltSite) -> None:
    for page in [fixture_site.out / "index.html", fixture_site.out / "explore" / "index.html"]:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r'<(script|link)[^>]+(src|href)="(https?:)?//', text), page


def test_strict_build_fails_on_a_broken_link(tmp_path: Path) -> None:
    config = write_project(tmp_path / "project", ENTRIES[:2], {})
    (tmp_path / "project" / "docs" / "index.md").write_text("# x\n\n[gone](nowhere.md)\n", encoding="utf-8")
    with pytest.raises(BuildError, match="mkdocs build failed"):
        run_mkdocs(config, tmp_path / "out")


def test_build_refuses_to_replace_a_folder_it_did_not_make(tmp_path: Path) -> None:
    precious = tmp_path / "docs-of-mine"
    precious.mkdir()
    (precious / "thesis.tex").write_text("…", encoding="utf-8")
    with pytest.raises(UsageError, match="refusing to replace"):
        check_out_dir(precious, tmp_path / "project")
    (precious / MARKER).write_text("", encoding="utf-8")
    check_out_dir(precious, tmp_path / "project")  # an earlier build: fine
    with pytest.raises(UsageError, match="overlap"):
        check_out_dir(tmp_path / "project" / "docs" / "x", tmp_path / "project")


def test_rebuild_drops_pages_of_removed_papers(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "catalog", ENTRIES[:3])
    build_site(catalog, out_dir=tmp_path / "out", project_dir=tmp_path / "project")
    (catalog / f"{ENTRIES[2].id}.yaml").unlink()
    build_site(catalog, out_dir=tmp_path / "out", project_dir=tmp_path / "project")
    assert not (tmp_path / "project" / "docs" / "papers" / f"{ENTRIES[2].id}.md").exists()
    assert not (tmp_path / "out" / "papers" / ENTRIES[2].id).exists()
    assert (tmp_path / "out" / MARKER).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_invalid_catalog_is_a_cli_error(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "catalog", ENTRIES[:1])
    (catalog / "broken.yaml").write_text("id: broken\ntitle: x\n", encoding="utf-8")
    with pytest.raises(CatalogProblemsError, match="mi-catalog validate"):
        build_site(catalog, out_dir=tmp_path / "out", project_dir=tmp_path / "project")


def test_cli_site_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mi_catalog.cli import main

    catalog = write_catalog(tmp_path / "catalog", ENTRIES[:2])
    code = main(["site", "build", "--catalog", str(catalog), "--out", str(tmp_path / "o"),
                 "--project", str(tmp_path / "p")])
    assert code == 0 and "built 2 papers" in capsys.readouterr().out
    assert (tmp_path / "o" / "explore" / "index.html").is_file()


def test_missing_mkdocs_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mkdocs", None)  # makes `import mkdocs` raise ImportError
    with pytest.raises(UsageError, match=r"pip install 'mi-catalog\[site\]'"):
        require_mkdocs()


def test_site_module_import_is_light() -> None:
    code = "import sys, mi_catalog.site; print(sorted(m for m in ('mkdocs', 'material', 'whoosh', 'yaml') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_serve_without_a_build_is_a_cli_error(tmp_path: Path) -> None:
    from mi_catalog.cli import main

    assert main(["site", "serve", "--no-build", "--out", str(tmp_path / "nothing")]) == 2


def test_server_serves_the_built_folder_on_localhost(fixture_site: BuiltSite) -> None:
    import urllib.request

    from mi_catalog.site.serve import make_server, serve_in_thread

    server, base = serve_in_thread(fixture_site.out)
    try:
        assert base.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(base + "assets/explore-data.json", timeout=10) as response:
            assert json.loads(response.read())["version"] == 2
        with pytest.raises(UsageError, match="cannot listen"):
            make_server(fixture_site.out, server.server_address[1])  # the port is taken
    finally:
        server.shutdown()
        server.server_close()


def test_results_page_shows_the_committed_real_model_record_with_its_criteria() -> None:
    from mi_catalog.methods.claims import load_record

    record = load_record("smollm2-135m")
    assert record is not None, "the SmolLM2 results record is committed (python -m mi_catalog.methods.claims)"
    text = pages.results_page(record).markdown
    for row in record["rows"]:
        assert f"`{row['impl']}`" in text and row["criterion"] in text
        assert row["found"].replace("|", "\\|") in text
    assert record["command"] in text
    assert "No results record" in pages.results_page(None).markdown
    assert "  - Results: results.md" in mkdocs_yml()  # in the navigation
