"""ROME: the rank-one update's algebra, batched = one-at-a-time value optimisation, the lookup position, and the
scientific bar on the toy (10 seeds): held-out edits work (efficacy) without breaking neighbours (specificity)."""

from __future__ import annotations

import random

import pytest
import torch

from mi_catalog.methods.data import RunData
from mi_catalog.methods.runner import run_impl
from mi_catalog.models.weights import W_out, b_out
from reference_impls import rome


def _setup(lm, n: int = 8, seed: int = 0, **overrides):  # type: ignore[no-untyped-def]
    examples = lm.tasks.examples("facts", n, seed=seed)
    data = RunData("facts", examples, source=lm.tasks, planted=getattr(lm.tasks, "planted", None), seed=seed)
    spec = rome.Spec(seed=seed, **overrides)
    cases = [c for c in (rome.make_case(lm, ex, data, spec, random.Random(seed)) for ex in examples) if c]
    return data, spec, cases


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_update_is_rank_one_and_maps_the_key_to_the_value(family: str) -> None:
    """Ŵ − W has rank one, and the edited FFN maps k* to v* exactly (the paper's constraint Ŵk* = v*),
    whatever the parameter's storage orientation (GPT-2 Conv1D [in, out], nn.Linear [out, in])."""
    from mi_catalog.models.tiny import tiny_model

    lm = tiny_model(family, seed=1)
    layer = 0
    data, spec, cases = _setup(lm, n=4, v_steps=3)
    requests = [rome.Request(c.ex, lm.token_id(c.target), "subject_last") for c in cases[:2]]
    contexts = [""]
    c_inv = torch.linalg.inv(rome.key_moment(lm, layer, [ex.prompt for ex in data.examples], 1e-3))
    edits = rome.rome_edits(lm, layer, requests, contexts, c_inv, spec)
    values = rome.optimise_values(lm, layer, requests, contexts, spec)
    k_star = rome.mean_keys(lm, layer, requests, contexts)
    name = rome.out_param_name(lm, layer)
    original = dict(lm.model.named_parameters())[name].detach().clone()
    for i, e in enumerate(edits):
        delta = e.weight_edit.updates[name].float() - original.float()
        assert torch.linalg.matrix_rank(delta, atol=1e-2 * float(delta.abs().max())) == 1
        with e.weight_edit.apply(lm):
            bias = b_out(lm, layer)
            out = k_star[i] @ W_out(lm, layer).float() + (bias.float() if bias is not None else 0.0)
        torch.testing.assert_close(out, values.v_star[i], atol=1e-3, rtol=1e-3)
    assert torch.equal(dict(lm.model.named_parameters())[name], original)


def test_batched_value_optimisation_equals_one_at_a_time(toy) -> None:  # type: ignore[no-untyped-def]
    """Editing several facts in one batch gives each the δ it gets alone (own gradient, clamp, early stop)."""
    _data, spec, cases = _setup(toy, n=3, v_steps=6)
    requests = [rome.Request(c.ex, toy.token_id(c.target), "last") for c in cases]
    together = rome.optimise_values(toy, 3, requests, ["", "the"], spec)
    for i, r in enumerate(requests):
        alone = rome.optimise_values(toy, 3, [r], ["", "the"], spec)
        torch.testing.assert_close(together.v_star[i], alone.v_star[0], atol=1e-3, rtol=1e-3)


def test_the_value_is_looked_up_at_the_subject(toy) -> None:  # type: ignore[no-untyped-def]
    """Causality check of the lookup position: the FFN of the last layer at the last subject token cannot reach
    the answer (later positions never read it), so no value written there makes an edit work; at the last
    token of the same layer it does."""
    dead = run_impl("rome", model=toy, task="facts", n=8, seed=0, layer=toy.n_layers - 1, token="subject_last",
                    side_edits=0, sweep_edits=0).output.metrics  # fmt: skip
    live = run_impl("rome", model=toy, task="facts", n=8, seed=0, layer=toy.n_layers - 1, token="last",
                    side_edits=0, sweep_edits=0).output.metrics  # fmt: skip
    assert dead["edit_at_last_token"] == 0 and live["edit_at_last_token"] == 1
    assert dead["efficacy"] == 0.0
    assert live["efficacy"] >= 0.75


@pytest.mark.parametrize("seed", range(10))
def test_edits_work_and_stay_specific_on_the_toy(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    """The bar: 16 held-out facts edited one at a time at the causal-trace site: the new object beats the old on
    the edit prompt (efficacy ≥ 0.9) and subjects sharing a first or last name keep their answers over the new
    object (specificity ≥ 0.8); before the edit neither the new objects win nor do the neighbours fail."""
    result = run_impl("rome", model=toy, task="facts", n=32, seed=seed, side_edits=0, sweep_edits=0)
    m = result.output.metrics
    assert m["n_edits"] == 16
    assert m["efficacy_before"] == 0.0 and m["specificity_before"] >= 0.95
    assert m["efficacy"] >= 0.9
    assert m["specificity"] >= 0.8
    assert m["generalization"] >= 0.6  # the relation's other templates (never seen by the edit)
    assert m["relation_specificity"] >= 0.9  # the edited subject's other relations keep their answers
    assert result.output.improve is not None and result.output.improve.after == m["efficacy"]
    assert result.output.improve.goal == "increase"
