"""Vocabulary drift: one source of truth, every alias resolves, every value is described."""

from __future__ import annotations

import pytest

from mi_catalog import vocab
from mi_catalog.commands import register
from mi_catalog.schema import Tags

# Aliases the survey's readers type, per facet (from the issue): each must resolve as stated.
EXPECTED_ALIASES = {
    "object": {
        "head": "attention-head",
        "heads": "attention-head",
        "mha": "attention-head",
        "attention": "attention-head",
        "mlp": "ffn",
        "feed-forward": "ffn",
        "resid": "residual-stream",
        "residual": "residual-stream",
        "hidden-state": "residual-stream",
        "sae": "sae-feature",
        "feature": "sae-feature",
        "embedding": "token-embedding",
    },
    "method": {
        "probe": "probing",
        "linear-probe": "probing",
        "logit-lens": "vocab-projection",
        "tuned-lens": "vocab-projection",
        "patching": "causal-attribution",
        "activation-patching": "causal-attribution",
        "causal-tracing": "causal-attribution",
        "ablation": "causal-attribution",
        "gradient": "gradient-detection",
        "attribution-patching": "gradient-detection",
        "integrated-gradients": "gradient-detection",
        "acdc": "circuit-discovery",
        "eap": "circuit-discovery",
    },
    "steer": {
        "steering-vector": "vector-arithmetic",
        "caa": "vector-arithmetic",
        "actadd": "vector-arithmetic",
        "repe": "vector-arithmetic",
        "task-vector": "vector-arithmetic",
        "rome": "targeted-optimization",
        "memit": "targeted-optimization",
        "editing": "targeted-optimization",
        "fine-tuning": "targeted-optimization",
        "scaling": "amplitude-manipulation",
        "zeroing": "amplitude-manipulation",
        "clamping": "amplitude-manipulation",
        "ablation": "amplitude-manipulation",
    },
}


@pytest.mark.parametrize(
    ("facet", "alias", "canonical"), [(f, a, c) for f, m in EXPECTED_ALIASES.items() for a, c in m.items()]
)
def test_researcher_aliases_resolve(facet: str, alias: str, canonical: str) -> None:
    assert vocab.FACETS_BY_NAME[facet].resolve(alias) == (canonical,)
    assert vocab.FACETS_BY_NAME[facet].resolve(alias.upper().replace("-", " ")) == (canonical,)


def test_the_survey_values_exist() -> None:
    assert vocab.OBJECT.ids == (
        "token-embedding",
        "residual-stream",
        "attention-head",
        "ffn",
        "neuron",
        "sae-feature",
        "circuit",
    )
    assert vocab.METHOD.ids == (
        "magnitude-analysis",
        "causal-attribution",
        "gradient-detection",
        "probing",
        "vocab-projection",
        "circuit-discovery",
    )
    assert vocab.STEER.ids == ("amplitude-manipulation", "targeted-optimization", "vector-arithmetic")
    assert {g.id: vocab.APPLICATION.children(g.id) for g in vocab.APPLICATION.groups} == {
        "alignment": ("safety", "fairness", "persona"),
        "capability": ("multilingual", "knowledge", "reasoning"),
        "efficiency": ("efficient-training", "efficient-inference"),
    }


@pytest.mark.parametrize("facet", vocab.FACETS, ids=lambda f: f.name)
def test_every_value_is_described_and_every_alias_resolves_within_its_facet(facet: vocab.Facet) -> None:
    for term in (*facet.terms, *facet.groups):
        assert term.label and term.description.endswith("."), term.id
        for spelling in (term.id, term.label, *term.aliases):
            resolved = facet.resolve(spelling)
            assert resolved == ((term.id,) if term in facet.terms else facet.children(term.id))


def test_colliding_alias_is_rejected_at_definition() -> None:
    with pytest.raises(ValueError, match="maps to both"):
        vocab.Facet("x", "X", "xs", "d", (vocab.Term("a", "A", "d.", ("same",)), vocab.Term("b", "B", "d.", ("same",))))


def test_unknown_value_suggests() -> None:
    with pytest.raises(vocab.UnknownValueError, match="did you mean 'probe'"):
        vocab.METHOD.resolve("prob")


def test_schema_and_cli_use_the_vocabulary() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    query = parser._subparsers._group_actions[0].choices["query"]  # type: ignore[union-attr]
    helps = {a.dest: a.help or "" for a in query._actions}
    for facet in vocab.FACETS:
        assert f"--{facet.name}" in query.format_help()
        # Every canonical id, as a whole comma-separated item of that flag's own help (not the joined text).
        listed = helps[facet.name].split(": ", 1)[1].split(";")[0].split(", ")
        assert listed == list(facet.ids)
    assert Tags(objects=list(vocab.OBJECT.ids)).objects == list(vocab.OBJECT.ids)


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("TLMR", "TMLR"),
        ("Arxiv", "arXiv"),
        ("ArXiv", "arXiv"),
        ("ACLWS", "Workshop"),
        ("NeurIPS", "NeurIPS"),
        ("eacl", "EACL"),
    ],
)
def test_venue_aliases(raw: str, canonical: str) -> None:
    assert vocab.resolve_venue(raw) == canonical
