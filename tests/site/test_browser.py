"""The built site in headless Chromium: explore semantics, URL state, chart links, inert catalog text."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from conftest import BuiltSite
from site_fixtures import HOSTILE_TITLE, cli_query_available, expected_total, facet_counts, reference_matches
from support import QUERY_LANGUAGE_CASES

pytestmark = pytest.mark.browser

FIXTURE_QUERIES: list[list[tuple[str, str]]] = [
    [],
    [("object", "head")],
    [("object", "head"), ("object", "ffn")],
    [("object", "Attention Heads"), ("method", "probe")],
    [("application", "alignment")],
    [("application", "alignment"), ("year", "2024")],
    [("application", "capability"), ("steer", "ROME")],
    [("venue", "nips")],
    [("venue", "acl-findings"), ("venue", "arxiv")],
    [("method", "acdc"), ("object", "circuit")],
    [("q", "refusal")],
    [("q", "Refusal direction")],
    [("q", "the REFUSAL of")],
    [("q", "u.s")],
    [("q", "alert")],
    [("q", "neel nanda"), ("steer", "caa")],
    [("q", "café")],
    [("year", "1999")],
]

REAL_QUERIES: list[list[tuple[str, str]]] = [
    [],
    [("object", "head"), ("method", "probe")],
    [("object", "neuron"), ("object", "sae"), ("application", "efficiency")],
    [("method", "patching"), ("steer", "steering-vector"), ("year", "2024")],
    [("venue", "Findings of EMNLP"), ("venue", "emnlp")],
    [("q", "steering vectors")],
    [("q", "sparse autoencoder"), ("application", "alignment")],
    [("q", "knowledge neurons")],
]


@pytest.fixture(scope="session")
def use_cli() -> bool:
    # Expected counts come from the real `mi-catalog query --format json`: the site and the CLI must agree.
    assert cli_query_available(), "`mi-catalog query` must work for the site tests"
    return True


@pytest.fixture(scope="session")
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context()
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    """A fresh page that fails the test on a console error, an uncaught exception or any dialog."""
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))

    def dialog(d: Any) -> None:
        problems.append(f"dialog: {d.message}")
        d.dismiss()

    pg.on("dialog", dialog)
    yield pg
    pg.close()
    assert problems == []


def open_explore(page: Any, base: str, params: list[tuple[str, str]]) -> int:
    page.goto(base + "explore/" + ("?" + urlencode(params) if params else ""))
    page.wait_for_selector("#mi-explore[data-ready='true']")
    return result_count(page)


def result_count(page: Any) -> int:
    return int(page.text_content("[data-testid=result-count]"))


def url_params(page: Any) -> list[tuple[str, str]]:
    # location.search, not page.url: Playwright may not have seen a replaceState yet.
    return parse_qsl(page.evaluate("location.search").lstrip("?"))


@pytest.mark.parametrize("params", FIXTURE_QUERIES, ids=lambda p: urlencode(p) or "all")
def test_explore_counts_match_query(page: Any, fixture_site: BuiltSite, fixture_url: str, use_cli: bool,
                                    params: list[tuple[str, str]]) -> None:
    shown = open_explore(page, fixture_url, params)
    assert shown == expected_total(fixture_site.entries, fixture_site.catalog, params, use_cli)
    matches = reference_matches(fixture_site.entries, params)
    assert shown == len(matches)
    ids = page.eval_on_selector_all("[data-testid=result]", "els => els.map(e => e.dataset.id)")
    assert sorted(ids) == sorted(e.id for e in matches)
    for name in ("object", "method", "steer", "application", "venue", "year"):
        expected = facet_counts(matches, name)
        for value, count in page.eval_on_selector_all(
            f"[data-testid=facet-count][data-facet={name}]", "els => els.map(e => [e.dataset.value, +e.textContent])"
        ):
            if name == "application" and value in ("alignment", "capability", "efficiency"):
                children = {"alignment": ("safety", "fairness", "persona"), "capability": (
                    "multilingual", "knowledge", "reasoning"), "efficiency": ("efficient-training", "efficient-inference")}
                count_expected = sum(1 for e in matches if set(children[value]) & set(e.tags.applications))
                assert count == count_expected, (name, value)
            else:
                assert count == expected.get(value, 0), (name, value)


@pytest.mark.parametrize("params", REAL_QUERIES, ids=lambda p: urlencode(p) or "all")
def test_real_catalog_counts_match_query(page: Any, real_site: BuiltSite, real_url: str, use_cli: bool,
                                         params: list[tuple[str, str]]) -> None:
    assert open_explore(page, real_url, params) == expected_total(real_site.entries, real_site.catalog, params, use_cli)


def test_results_link_to_paper_pages(page: Any, fixture_url: str) -> None:
    open_explore(page, fixture_url, [("object", "ffn")])
    page.click("[data-testid=result][data-id=rome-like] a")
    page.wait_for_url("**/papers/rome-like/")
    assert "Locating and Editing Factual Associations" in page.text_content("article h1")


def test_clicking_facets_updates_counts_url_and_back_restores(page: Any, fixture_site: BuiltSite,
                                                              fixture_url: str) -> None:
    entries = fixture_site.entries
    assert open_explore(page, fixture_url, []) == len(entries)
    page.check("input[data-facet=object][data-value=attention-head]")
    assert url_params(page) == [("object", "attention-head")]
    assert result_count(page) == len(reference_matches(entries, url_params(page)))
    page.check("input[data-facet=object][data-value=ffn]")
    assert url_params(page) == [("object", "attention-head"), ("object", "ffn")]
    page.check("input[data-facet=year][data-value='2024']")
    both = [("object", "attention-head"), ("object", "ffn"), ("year", "2024")]
    assert url_params(page) == both
    assert result_count(page) == len(reference_matches(entries, both))
    page.check("input[data-facet=application][data-value=alignment]")  # a group: checks its children
    assert [v for k, v in url_params(page) if k == "application"] == ["safety", "fairness", "persona"]
    assert page.is_checked("input[data-facet=application][data-value=persona]")

    page.go_back()
    page.wait_for_function("location.search.indexOf('application') < 0")
    assert url_params(page) == both
    assert result_count(page) == len(reference_matches(entries, both))
    assert page.is_checked("input[data-facet=year][data-value='2024']")
    assert not page.is_checked("input[data-facet=application][data-value=persona]")
    page.go_back()
    page.go_back()
    page.wait_for_function("location.search === '?object=attention-head'")
    assert result_count(page) == len(reference_matches(entries, [("object", "attention-head")]))
    assert not page.is_checked("input[data-facet=object][data-value=ffn]")
    page.go_forward()
    page.wait_for_function("location.search.indexOf('ffn') > 0")
    assert page.is_checked("input[data-facet=object][data-value=ffn]")


def test_q_in_the_url_belongs_to_explore_not_to_materials_search(page: Any, fixture_url: str) -> None:
    open_explore(page, fixture_url, [("q", "refusal"), ("object", "residual-stream")])
    page.wait_for_timeout(300)  # let Material's search worker start: it must not grab ?q=
    assert url_params(page) == [("q", "refusal"), ("object", "residual-stream")]
    assert page.evaluate("document.querySelector('input[data-md-toggle=search]').checked") is False
    assert page.input_value("input.md-search__input") == ""
    assert page.input_value("[data-testid=search-input]") == "refusal"
    assert result_count(page) == 1


def test_free_text_filters_and_is_shareable(page: Any, fixture_site: BuiltSite, fixture_url: str) -> None:
    open_explore(page, fixture_url, [("object", "residual-stream")])
    page.fill("[data-testid=search-input]", "refusal")
    page.fill("[data-testid=search-input]", "refusal direction")
    params = [("object", "residual-stream"), ("q", "refusal direction")]
    assert url_params(page) == params
    assert result_count(page) == len(reference_matches(fixture_site.entries, params)) == 1
    page.go_back()  # one history entry for the whole typing run
    page.wait_for_function("location.search === '?object=residual-stream'")
    assert page.input_value("[data-testid=search-input]") == ""
    assert result_count(page) == len(reference_matches(fixture_site.entries, [("object", "residual-stream")]))
    page.go_forward()
    page.wait_for_function("location.search.indexOf('q=') > 0")
    assert page.input_value("[data-testid=search-input]") == "refusal direction"
    assert result_count(page) == 1


def test_unknown_values_are_reported_and_ignored(page: Any, fixture_site: BuiltSite, fixture_url: str) -> None:
    shown = open_explore(page, fixture_url, [("object", "hed"), ("object", "ffn"), ("year", "soon")])
    assert shown == len(reference_matches(fixture_site.entries, [("object", "ffn")]))
    warning = page.text_content("[data-testid=explore-warnings]")
    assert "object \u201ched\u201d" in warning and "year \u201csoon\u201d" in warning
    assert page.is_visible("[data-testid=explore-warnings]")


def test_hostile_title_is_inert_everywhere(page: Any, fixture_url: str) -> None:
    page.goto(fixture_url + "papers/hostile-entry/")
    h1_text = "document.querySelector('article h1').childNodes[0].textContent"  # without the ¶ permalink
    assert page.evaluate(h1_text) == HOSTILE_TITLE
    assert page.title().startswith(HOSTILE_TITLE)
    assert page.eval_on_selector("article", "a => a.querySelectorAll('h1 b, h1 script, img[src=x]').length") == 0
    assert "onerror" in page.text_content("article")  # the hostile summary, shown as text
    assert "<script>alert(1)</script>" in page.text_content("pre.mi-bibtex")

    open_explore(page, fixture_url, [("q", "alert")])
    assert page.text_content("[data-testid=result][data-id=hostile-entry] a") == HOSTILE_TITLE
    assert page.eval_on_selector("#mi-explore", "r => r.querySelectorAll('script, b').length") == 0

    page.goto(fixture_url + "taxonomy/object/attention-head/")
    assert page.get_by_text(HOSTILE_TITLE, exact=True).count() == 1

    page.click("input.md-search__input")  # Material's own search renders our text too (found by author)
    page.keyboard.type("mallory")
    page.wait_for_selector(".md-search-result__item")
    assert page.eval_on_selector(".md-search-result", "r => r.querySelectorAll('script, b, img').length") == 0
    assert "<script>alert(1)</script>" in page.text_content(".md-search-result")


def test_chart_cells_match_explore_counts(page: Any, fixture_url: str) -> None:
    page.goto(fixture_url + "chart/")
    cells = page.eval_on_selector_all(
        "table.mi-chart td", "tds => tds.map(td => [td.querySelector('a').href, +td.dataset.count, "
        "td.classList.contains('mi-gap'), getComputedStyle(td).backgroundImage])",
    )
    assert len(cells) == 7 * 6 + 7 * 3
    for _, count, gap, background in cells:
        assert gap == (count == 0) and (background != "none") == gap  # gaps are visibly styled
    page.click("table.mi-chart td[data-row=attention-head][data-col=probing] a")  # one real navigation
    page.wait_for_selector("#mi-explore[data-ready='true']")
    assert url_params(page) == [("object", "attention-head"), ("method", "probing")]
    for href, count, _, _ in cells:
        # Each cell's own URL, applied in place (as the back button does) rather than by reloading the page.
        page.evaluate("h => { history.pushState(null, '', h); dispatchEvent(new PopStateEvent('popstate')); }", href)
        assert result_count(page) == count, href


def test_tags_on_a_paper_page_open_the_filtered_explore_page(page: Any, fixture_site: BuiltSite,
                                                            fixture_url: str) -> None:
    page.goto(fixture_url + "papers/circuit-math/")
    page.click("a.mi-tag:has-text('Circuit Discovery')")
    page.wait_for_selector("#mi-explore[data-ready='true']")
    assert url_params(page) == [("method", "circuit-discovery")]
    assert result_count(page) == len(reference_matches(fixture_site.entries, [("method", "circuit-discovery")]))


def test_home_taxonomy_and_chart_pages_have_no_errors(page: Any, fixture_url: str) -> None:
    for path in ["", "taxonomy/", "taxonomy/application/", "taxonomy/application/alignment/", "chart/",
                 "papers/refusal-direction/"]:
        response = page.goto(fixture_url + path)
        assert response is not None and response.ok, path


# --- the CLI's query language on the page (issue 12, defect 7): same ids as `mi-catalog query` ---------

LANGUAGE_QUERIES = [*QUERY_LANGUAGE_CASES, "sparse autoencoder*"]


def cli_ids(catalog: Any, args: list[str]) -> list[str]:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "mi_catalog", "query", "--catalog", str(catalog), *args, "--format", "ids"],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize("text", LANGUAGE_QUERIES)
def test_query_language_matches_the_cli(page: Any, real_site: BuiltSite, real_url: str, text: str) -> None:
    import shlex

    shown = open_explore(page, real_url, [("q", text)])
    expected = cli_ids(real_site.catalog, [text])
    assert shown == len(expected), text
    # Every result, not only the first page.
    while page.is_visible("[data-testid=show-more]"):
        page.click("[data-testid=show-more]")
    ids = page.eval_on_selector_all("[data-testid=result]", "els => els.map(e => e.dataset.id)")
    assert sorted(ids) == sorted(expected)
    assert page.is_hidden("[data-testid=explore-warnings]")
    # The command the page prints returns the same set.
    command = shlex.split(page.text_content("[data-testid=cli-equivalent]"))
    assert command[:2] == ["mi-catalog", "query"]
    assert sorted(cli_ids(real_site.catalog, command[2:])) == sorted(expected)


def test_query_language_counts_from_the_issue(page: Any, real_site: BuiltSite, real_url: str) -> None:
    # The four examples of the issue: the page found 0, 0, 0 and 4 where the CLI found 9, 13, 6 and 5.
    for text in ("refus*", "refusal OR sycophancy", "title:refusal", "refusal NOT direction"):
        expected = len(cli_ids(real_site.catalog, [text]))
        assert expected > 0
        assert open_explore(page, real_url, [("q", text)]) == expected, text


@pytest.mark.parametrize("text", ['refusal "unclosed', "(refusal", "venue:ICLR", "refusal AND", "NOT", "title: x"])
def test_malformed_query_is_the_cli_error(page: Any, real_site: BuiltSite, real_url: str, text: str) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "mi_catalog", "query", "--catalog", str(real_site.catalog), text],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    message = done.stderr.strip().removeprefix("mi-catalog: error: ")
    assert open_explore(page, real_url, [("q", text)]) == 0
    assert page.text_content("[data-testid=explore-warnings]").strip() == message


@pytest.mark.parametrize(
    "params",
    [[("steer", "vector")], [("method", "grad")], [("source", "foundational")], [("source", "survey"), ("q", "refusal")],
     [("year", "2024,2025")], [("object", "head,mlp"), ("method", "probe")]],
    ids=lambda p: urlencode(p),
)
def test_words_prefixes_and_source_match_the_cli(page: Any, real_site: BuiltSite, real_url: str,
                                                 params: list[tuple[str, str]]) -> None:
    from site_fixtures import params_to_cli_args

    expected = cli_ids(real_site.catalog, params_to_cli_args(params))
    assert open_explore(page, real_url, params) == len(expected) > 0


def test_ambiguous_value_is_reported(page: Any, real_url: str) -> None:
    open_explore(page, real_url, [("venue", "findings")])
    warning = page.text_content("[data-testid=explore-warnings]")
    assert "Ambiguous venue" in warning and "Findings of EMNLP" in warning
