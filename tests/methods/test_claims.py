"""The results table of methods on a real model: each criterion decides from the run's numbers (both ways), every
claim names a real implementation, task and catalog entry, and the README shows the committed record."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mi_catalog.impl_info import discover_impls
from mi_catalog.load import load_catalog
from mi_catalog.methods import claims
from mi_catalog.paths import default_catalog_dir

REPO = Path(__file__).resolve().parents[2]


def _run(metrics: dict[str, float], findings: list[dict[str, object]] | None = None) -> dict[str, object]:
    return {"metrics": metrics, "intervals": {}, "findings": findings or []}


def test_every_claim_names_a_real_implementation_task_and_paper() -> None:
    impls = discover_impls()
    ids = {e.id for e in load_catalog(default_catalog_dir()).entries}
    for claim in claims.CLAIMS:
        assert claim.impl in impls, claim.impl
        assert claim.paper is None or claim.paper in ids, claim.paper
        assert claim.criterion and claim.claim


@pytest.mark.parametrize(
    ("summary", "agrees", "differs"),
    [
        (claims._causal_tracing,
         {"resid_subject_last_peak_layer": 3, "resid_last_peak_layer": 20, "mlp_subject_last_peak_layer": 2},
         {"resid_subject_last_peak_layer": 20, "resid_last_peak_layer": 3, "mlp_subject_last_peak_layer": 2}),
        (claims._tuned_lens, {"lens_kl_reduction": 0.4}, {"lens_kl_reduction": -0.1}),
        (claims._lape, {"lape_own_nll_increase": 0.05, "lape_other_nll_increase": 0.001, "lape_own_drop": 0.0},
         {"lape_own_nll_increase": 0.0, "lape_other_nll_increase": 0.02, "lape_own_drop": 0.3}),
        (claims._caa, {"sweep_effect_range": 0.8, "sweep_min_step": 0.0}, {"sweep_effect_range": 0.8, "sweep_min_step": -0.3}),
        (claims._refusal, {"refusal_rate_before": 1.0, "refusal_rate_ablated": 0.1, "harmless_refusal_before": 0.0,
                           "harmless_refusal_added": 0.9},
         {"refusal_rate_before": 1.0, "refusal_rate_ablated": 0.9, "harmless_refusal_before": 0.0,
          "harmless_refusal_added": 0.9}),
    ],
)  # fmt: skip
def test_criteria_decide_both_ways(summary, agrees: dict[str, float], differs: dict[str, float]) -> None:  # type: ignore[no-untyped-def]
    assert summary(_run(agrees))[1] == "agrees"
    assert summary(_run(differs))[1] == "differs"


def test_knowledge_neurons_upper_half_is_of_the_models_depth_not_of_the_findings() -> None:
    def neurons(*layers: int) -> list[dict[str, object]]:
        return [{"object": "neuron", "layer": layer, "index": i, "score": 1.0, "label": f"L{layer}N{i}"}
                for i, layer in enumerate(layers)]

    shallow = {**_run({}, neurons(3, 4, 5, 5, 5, 2)), "n_layers": 30}  # all in the lower half of 30 blocks
    assert claims._knowledge_neurons(shallow)[1] == "differs"  # (deepest finding 5 would have called 3–5 "upper")
    deep = {**_run({}, neurons(20, 25, 29, 3)), "n_layers": 30}
    assert claims._knowledge_neurons(deep)[1] == "agrees"


def test_refusal_is_not_applicable_to_a_model_that_does_not_refuse() -> None:
    run = _run({"refusal_rate_before": 0.0, "refusal_rate_ablated": 0.0, "harmless_refusal_before": 0.0,
                "harmless_refusal_added": 0.0})  # fmt: skip
    text, verdict = claims._refusal(run)
    assert verdict == "n/a" and "hardly refuses" in text


def test_table_escapes_pipes_and_lists_every_row() -> None:
    record = {"model": "m", "rows": [{"impl": "a", "task": "t", "claim": "x | y", "found": "f", "verdict": "agrees"}]}
    table = claims.render_markdown(record)
    assert "x \\| y" in table and table.count("\n") == 3


def test_readme_shows_the_committed_record() -> None:
    record = claims.load_record("smollm2-135m")
    if record is None:
        pytest.skip("no results record committed yet")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- claims:start -->\n(.*?)<!-- claims:end -->", readme, re.S)
    assert block is not None, "README lacks the claims table markers"
    assert block.group(1) == claims.render_markdown(record)


def test_compact_keeps_the_top_findings_of_each_kind_in_rank_order() -> None:
    findings = [{"object": "neuron" if i % 3 else "attention-head", "layer": i, "index": i, "score": -i}
                for i in range(12)]  # fmt: skip
    run = claims.compact(_run({}, findings), keep=2)
    assert [f["layer"] for f in run["findings"]] == [0, 1, 2, 3]  # heads 0, 3; neurons 1, 2
    assert run["n_findings"] == 12


def test_committed_verdicts_follow_from_the_recorded_runs() -> None:
    """The record keeps only each run's top findings: enough for every row's summary to re-derive exactly."""
    record = claims.load_record("smollm2-135m")
    if record is None:
        pytest.skip("no SmolLM2 record committed")
    by_row = {(c.impl, c.task): c for c in claims.CLAIMS}
    for row in record["rows"]:
        assert len(row["run"]["findings"]) <= claims.FINDINGS_KEPT * 4, row["impl"]
        assert by_row[(row["impl"], row["task"])].summary(row["run"]) == (row["found"], row["verdict"]), row["impl"]


def test_merge_rows_replaces_only_the_rerun_rows_in_place() -> None:
    old = {"model": "m", "command": "c", "rows": [{"impl": "a", "task": "t", "v": 1}, {"impl": "b", "task": "t", "v": 1}]}
    new = {"model": "m", "command": "c", "rows": [{"impl": "b", "task": "t", "v": 2}]}
    merged = claims.merge_rows(old, new)
    assert merged["rows"] == [{"impl": "a", "task": "t", "v": 1}, {"impl": "b", "task": "t", "v": 2}]


def test_only_names_unknown_implementations_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert claims.main(["--only", "no-such-impl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no claim for no-such-impl" in err
