"""Query semantics against hand-computed answers on the six-paper fixture catalog (tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import QUERY_LANGUAGE_CASES

from mi_catalog import Catalog
from mi_catalog.errors import QueryError


def ids(result) -> set[str]:
    return {h.id for h in result.results}


@pytest.fixture
def cat(small_catalog: Path) -> Catalog:
    return Catalog(small_catalog)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"object": ["head"]}, {"refusal-heads", "knowledge-circuits-heads"}),
        # OR within a facet
        ({"object": ["head", "mlp"]}, {"refusal-heads", "knowledge-circuits-heads", "locating-and-editing"}),
        ({"object": ["head,mlp"]}, {"refusal-heads", "knowledge-circuits-heads", "locating-and-editing"}),
        # AND across facets
        ({"object": ["head"], "method": ["probe"]}, {"refusal-heads"}),
        ({"object": ["heads"], "method": ["probe"], "steer": ["caa"]}, {"refusal-heads"}),
        ({"object": ["neuron"], "method": ["probe"]}, set()),
        # "ablation" is causal attribution under --method but amplitude manipulation under --steer
        ({"method": ["ablation"]}, {"knowledge-circuits-heads", "locating-and-editing"}),
        ({"steer": ["ablation"]}, {"knowledge-circuits-heads", "language-specific-neurons"}),
        ({"method": ["logit-lens"]}, {"early-exit-lens"}),
        # an application group expands to its children
        ({"application": ["alignment"]}, {"refusal-heads", "persona-vectors-steering"}),
        (
            {"application": ["knowledge", "efficiency"]},
            {"knowledge-circuits-heads", "locating-and-editing", "early-exit-lens"},
        ),
        ({"venue": ["neurips"]}, {"knowledge-circuits-heads", "locating-and-editing"}),
        ({"venue": ["findings-acl"]}, {"language-specific-neurons"}),
        ({"year": [2024]}, {"refusal-heads", "language-specific-neurons", "early-exit-lens"}),
        ({"year": ["2022", "2025"]}, {"locating-and-editing", "persona-vectors-steering"}),
        (
            {"since": 2024},
            {"refusal-heads", "persona-vectors-steering", "language-specific-neurons", "early-exit-lens"},
        ),
        ({"until": 2023}, {"knowledge-circuits-heads", "locating-and-editing"}),
        (
            {"since": 2023, "until": 2024},
            {"refusal-heads", "knowledge-circuits-heads", "language-specific-neurons", "early-exit-lens"},
        ),
        ({"year": [2024], "since": 2025}, set()),
        ({"has_impl": True}, {"knowledge-circuits-heads"}),
        # free text: title, summary and authors; every word must match
        ({"text": "refusal"}, {"refusal-heads", "persona-vectors-steering"}),
        ({"text": "refusal", "object": ["head"]}, {"refusal-heads"}),
        ({"text": "refusal persona"}, {"persona-vectors-steering"}),
        ({"text": "meng"}, {"locating-and-editing"}),
        ({"text": "refusal OR meng"}, {"refusal-heads", "persona-vectors-steering", "locating-and-editing"}),
        ({"text": "title:refusal"}, {"refusal-heads"}),
        # the query language (mi_catalog/textquery.py), shared with the explore page
        ({"text": "refus*"}, {"refusal-heads", "persona-vectors-steering"}),
        ({"text": "ref?sal"}, {"refusal-heads", "persona-vectors-steering"}),
        ({"text": "refusal NOT persona"}, {"refusal-heads"}),
        (
            {"text": "NOT refusal"},
            {"knowledge-circuits-heads", "language-specific-neurons", "locating-and-editing", "early-exit-lens"},
        ),
        ({"text": '"attention heads"'}, {"refusal-heads"}),  # summary: "We probe attention heads"
        ({"text": '"heads attention"'}, set()),  # a phrase keeps its order
        ({"text": '"heads for the refusal"'}, {"refusal-heads"}),  # stop words are skipped
        ({"text": 'title:"persona vectors"'}, {"persona-vectors-steering"}),
        ({"text": "summary:(refusal OR probe) NOT title:persona"}, {"refusal-heads"}),
        ({"text": "authors:bau"}, {"locating-and-editing"}),
        # juxtaposition binds loosest: (refusal OR meng) AND kevin
        ({"text": "refusal OR meng kevin"}, {"locating-and-editing"}),
        ({"text": "lens AND early OR meng"}, {"early-exit-lens", "locating-and-editing"}),
        ({"text": "language-specific"}, {"language-specific-neurons"}),  # several tokens: a phrase
        # comma lists, words and prefixes that name one value, the source facet
        ({"year": ["2022,2025"]}, {"locating-and-editing", "persona-vectors-steering"}),
        ({"steer": ["vector"]}, {"refusal-heads", "persona-vectors-steering"}),
        ({"method": ["magn"]}, {"language-specific-neurons"}),
        (
            {"source": ["foundational"]},
            {
                "refusal-heads",
                "knowledge-circuits-heads",
                "persona-vectors-steering",
                "language-specific-neurons",
                "locating-and-editing",
                "early-exit-lens",
            },
        ),
        ({"source": ["survey"]}, set()),
    ],
)
def test_query_matches_hand_computed_sets(cat: Catalog, kwargs: dict, expected: set[str]) -> None:
    text = kwargs.pop("text", None)
    result = cat.query(text, **kwargs)
    assert ids(result) == expected
    assert result.total == len(expected)


def test_stop_words_only_is_no_text_constraint(cat: Catalog) -> None:
    assert cat.query("the of").total == 6


def test_facet_counts_cover_the_current_result_set(cat: Catalog) -> None:
    res = cat.query(object=["head"])
    assert res.facets["object"] == {"attention-head": 2, "ffn": 1}
    assert res.facets["method"] == {"causal-attribution": 1, "probing": 1}
    assert res.facets["steer"] == {"amplitude-manipulation": 1, "vector-arithmetic": 1}
    assert res.facets["application"] == {"safety": 1, "knowledge": 1}
    assert res.facets["venue"] == {"ICLR": 1, "NeurIPS": 1}
    assert res.facets["year"] == {"2024": 1, "2023": 1}


def test_whole_catalog_counts(cat: Catalog) -> None:
    facets = cat.facets()
    assert facets["object"] == {"residual-stream": 2, "attention-head": 2, "ffn": 2, "neuron": 1}
    assert facets["year"] == {"2025": 1, "2024": 3, "2023": 1, "2022": 1}
    assert list(facets["year"]) == ["2025", "2024", "2023", "2022"]  # newest first


def test_limit_bounds_results_only(cat: Catalog) -> None:
    full = cat.query(object=["head"])
    limited = cat.query(object=["head"], limit=1)
    assert limited.total == 2 and len(limited.results) == 1
    assert limited.facets == full.facets
    assert cat.query(limit=0).results == ()


def test_sorting(cat: Catalog) -> None:
    by_year = [h.year for h in cat.query(sort="year").results]
    assert by_year == sorted(by_year, reverse=True)
    by_title = [h.title.casefold() for h in cat.query(sort="title").results]
    assert by_title == sorted(by_title)
    # relevance: a title match (boosted) outranks a summary-only match
    assert [h.id for h in cat.query("refusal").results] == ["refusal-heads", "persona-vectors-steering"]


def test_results_carry_the_json_contract(cat: Catalog) -> None:
    record = cat.query(object=["neuron"]).to_json()
    assert record["total"] == 1
    hit = record["results"][0]
    for key in ("id", "title", "year", "venue", "objects", "methods", "steering", "applications", "links", "impls"):
        assert key in hit
    assert hit["objects"] == ["neuron"] and hit["venue"] == "Findings of ACL"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"object": ["hed"]}, "did you mean"),
        ({"method": ["probbing"]}, "did you mean"),
        ({"venue": ["nowhere"]}, "unknown venue"),
        ({"text": 'refusal "unclosed'}, "unbalanced double quote"),
        ({"text": "(refusal"}, "unbalanced parentheses"),
        ({"text": "venue:ICLR"}, "unknown field"),
        ({"text": "refusal AND"}, "AND needs words on both sides"),
        ({"text": "OR refusal"}, "OR needs words on both sides"),
        ({"text": "refusal NOT"}, "NOT needs a word"),
        ({"text": "title: refusal"}, "needs a word"),
        ({"steer": ["a"]}, "unknown steer"),
        (
            {"method": ["attribution"]},
            "ambiguous method 'attribution': could be causal-attribution, gradient-detection",
        ),
        ({"limit": -1}, "--limit"),
        ({"year": ["twenty"]}, "--year"),
        ({"since": 2025, "until": 2020}, "after"),
        ({"sort": "random"}, "unknown sort"),
        ({"venue": ["findings"]}, "ambiguous venue 'findings': could be Findings of ACL, Findings of EMNLP"),
        ({"source": ["surve"]}, None),  # a prefix of one value resolves: no error
    ],
)
def test_bad_input_is_a_query_error(cat: Catalog, kwargs: dict, message: str | None) -> None:
    text = kwargs.pop("text", None)
    if message is None:
        cat.query(text, **kwargs)
        return
    with pytest.raises(QueryError, match=message):
        cat.query(text, **kwargs)


def test_source_facet_on_the_shipped_catalog() -> None:
    import yaml

    from mi_catalog.paths import catalog_files, default_catalog_dir

    files = catalog_files(default_catalog_dir())
    foundational = {
        f.stem for f in files if yaml.safe_load(f.read_text(encoding="utf-8"))["provenance"]["source"] == "mi-catalog"
    }
    cat = Catalog()
    assert {h.id for h in cat.query(source="foundational").results} == foundational
    assert cat.query(source="survey").total == len(files) - len(foundational)
    assert cat.facets()["source"] == {"survey": len(files) - len(foundational), "foundational": len(foundational)}


def test_one_definition_of_the_query_parameters(cat: Catalog) -> None:
    import argparse
    from dataclasses import fields

    from mi_catalog.commands import add_query_arguments, params_from_args
    from mi_catalog.facets import FACET_NAMES
    from mi_catalog.query import QueryParams, url_keys

    parser = argparse.ArgumentParser()
    add_query_arguments(parser)
    assert [a.dest for a in parser._actions if a.dest != "help"] == [f.name for f in fields(QueryParams)]
    args = parser.parse_args(["refusal", "--object", "head,mlp", "--year", "2024", "--has-impl", "--limit", "3"])
    assert params_from_args(args) == QueryParams.of("refusal", object=["head,mlp"], year=2024, has_impl=True, limit="3")
    assert [k for k, v in url_keys().items() if v != "text"] == list(FACET_NAMES)
    with pytest.raises(TypeError, match="unknown query parameter"):
        cat.query(objects="head")


PARITY_QUERIES = [*QUERY_LANGUAGE_CASES, "s*e"]


@pytest.mark.parametrize("text", PARITY_QUERIES)
def test_whoosh_evaluation_agrees_with_the_reference_matcher(text: str) -> None:
    """The CLI evaluates the tree with Whoosh; textquery.matches (which explore.js ports) on the analyzed fields."""
    from mi_catalog.index_build import text_fields
    from mi_catalog.load import load_catalog
    from mi_catalog.paths import default_catalog_dir
    from mi_catalog.query import parse_text
    from mi_catalog.site.text import analyzed
    from mi_catalog.textquery import matches

    entries = _real_entries(default_catalog_dir(), load_catalog)
    tree = parse_text(text)
    expected = {
        e.id for e in entries if tree is None or matches(tree, {f: analyzed(t) for f, t in text_fields(e).items()})
    }
    assert {h.id for h in Catalog().query(text).results} == expected


_ENTRIES: list = []


def _real_entries(folder: Path, load) -> list:
    if not _ENTRIES:
        _ENTRIES.extend(load(folder).entries)
    return _ENTRIES
