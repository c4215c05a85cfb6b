"""The bench's ground truth on the toy: each mechanism is valid, and ablating its true units really hurts the task
(more than ablating as many other units). Behavioural checks only — no head or neuron numbers, so a retrained toy
passes too."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("torch")

from mi_catalog.bench.expectations import Expectations, Mechanism, has_planted_truth, mechanisms_for
from mi_catalog.bench.scoring import Unit
from mi_catalog.models import load_model


@pytest.fixture(scope="module")
def expect() -> Iterator[Expectations]:
    lm = load_model("toy")
    yield Expectations(lm, n=32, n_neurons=12)


def _by_id(expect: Expectations, mech_id: str) -> Mechanism:
    return next(m for m in expect.mechanisms() if m.id == mech_id)


def _others(expect: Expectations, mech: Mechanism, k: int) -> list[Unit]:
    """k non-true units with the smallest defining effect (the most obviously irrelevant ones)."""
    truth = expect.truth(mech)
    rest = sorted((u for u in truth.universe if u not in truth.true_set), key=lambda u: (truth.effect[u], u))
    return rest[:k]


@pytest.mark.parametrize(
    "mech_id", ["induction-heads", "previous-token-heads", "facts-heads", "refusal-heads", "refusal-layers"]
)
def test_true_units_are_valid_and_their_ablation_hurts(expect: Expectations, mech_id: str) -> None:
    mech = _by_id(expect, mech_id)
    truth = expect.truth(mech)
    assert truth.valid, truth.reason
    assert 0 < len(truth.true) < len(truth.universe)
    assert truth.faithfulness >= 0.5  # ablating the true set removes most of the behaviour
    if mech_id not in ("induction-heads", "previous-token-heads"):  # defined by ablation: the true set beats the rest
        others = _others(expect, mech, len(truth.true))
        assert expect.faithfulness(mech, others) < truth.faithfulness - 0.3
    assert expect.faithfulness(mech, []) == 0.0


def test_induction_and_previous_token_heads_are_different_heads_in_order(expect: Expectations) -> None:
    induction = expect.truth(_by_id(expect, "induction-heads"))
    previous = expect.truth(_by_id(expect, "previous-token-heads"))
    assert not induction.true_set & previous.true_set
    # the previous-token head feeds the induction heads: it sits in an earlier layer
    assert max(u.layer for u in previous.true) < min(u.layer for u in induction.true)


def test_language_selective_neurons_hurt_one_language_more_than_the_other(expect: Expectations) -> None:
    truth = expect.truth(_by_id(expect, "language-selective-neurons"))
    assert truth.valid, truth.reason
    assert all(truth.effect[u] >= 0.5 for u in truth.true)
    assert max(truth.effect[u] for u in truth.universe if u not in truth.true_set) < 0.5


def test_truth_is_cached_and_deterministic(expect: Expectations) -> None:
    mech = _by_id(expect, "refusal-heads")
    first = expect.truth(mech)
    assert expect.truth(mech) is first
    again = Expectations(expect.lm, n=32, n_neurons=12).truth(mech)
    assert again.to_dict() == first.to_dict()


def test_a_task_the_model_cannot_do_is_invalid_not_scored(expect: Expectations) -> None:
    mech = Mechanism("never-heads", "induction", "head", "x", "x")
    low = Expectations(expect.lm, n=8)
    low.examples = lambda task, n, offset=0: [  # type: ignore[method-assign]
        ex.__class__(**{**ex.__dict__, "answer": "sorry"}) for ex in expect.examples(task, n, offset)
    ]
    truth = low.truth(mech)
    assert not truth.valid and "does not do" in truth.reason


def test_mechanisms_need_planted_truth(expect: Expectations) -> None:
    assert has_planted_truth(expect.lm)
    ids = {m.id for m in expect.mechanisms(["induction", "refusal"])}
    assert {"induction-heads", "previous-token-heads", "refusal-layers", "refusal-heads"} <= ids
    assert {m.task for m in expect.mechanisms(["refusal"])} == {"refusal"}
    assert [m.kind for m in mechanisms_for("language")] == ["head", "neuron"]


def test_a_method_is_never_scored_against_its_own_algorithm() -> None:
    from mi_catalog.bench.expectations import INDUCTION_HEADS, REFUSAL_LAYERS, task_heads, task_neurons

    for mech in (task_heads("facts"), task_neurons("refusal")):
        assert not mech.scores("ablation-importance") and mech.scores("attribution-patching")
    assert INDUCTION_HEADS.scores("ablation-importance") and REFUSAL_LAYERS.scores("ablation-importance")


def test_refusal_directions_are_fitted_on_the_unablated_model(expect: Expectations) -> None:
    mech = _by_id(expect, "refusal-layers")
    truth = expect.truth(mech)
    fresh = Expectations(expect.lm, n=32, n_neurons=12)  # nothing cached: the set's directions are fitted first
    assert len(truth.true) > 1 and fresh.faithfulness(mech, truth.true) == truth.faithfulness
