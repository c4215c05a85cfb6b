"""Recipe v2's tasks on the shipped (recipe v3) checkpoint: the bias and persona tasks are learnt, and the planted
stereotype shows.

Fast (a few hundred short prompts); the full card re-measurement is in ``test_toy_shipped.py`` (slow).
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from mi_catalog.toy import card, load_toy
from mi_catalog.toy.evaluate import accuracy, predict_next
from mi_catalog.toy.tasks import PLANTED, RECIPE_VERSION, examples, vocabulary

FLOOR = 0.95


@pytest.fixture(scope="module")
def toy() -> tuple[Any, Any]:
    return load_toy()


def _accuracy(toy: tuple[Any, Any], batch: list[Any]) -> float:
    return accuracy(*toy, batch)


def test_shipped_checkpoint_is_the_current_recipe() -> None:
    from mi_catalog.models import load_model

    assert card()["data_recipe_version"] == RECIPE_VERSION == 3
    assert card()["model"]["vocab_size"] == len(vocabulary()) == len(vocabulary(2)) == 346  # v3 appends no word
    assert load_model("toy").tasks.version == 3
    assert set(card()["retained_accuracies"]) == {"toxicity_plain", "continuation"}
    assert all(acc >= FLOOR for acc in card()["retained_accuracies"].values())


def test_the_v2_base_is_still_evaluated_on_v2_tasks() -> None:
    from mi_catalog.models import load_model
    from mi_catalog.toy import CHECKPOINT_DIR

    base = load_model(str(CHECKPOINT_DIR.parent / "base" / "v2"))
    assert base.tasks.version == 2
    assert all(ex.prompt.startswith("comment : you ") for ex in base.tasks.examples("toxicity", 20))


@pytest.mark.parametrize("kind", ["ambiguous", "unambiguous"])
def test_bias_is_learnt_in_both_kinds(toy: tuple[Any, Any], kind: str) -> None:
    batch = [ex for ex in examples("bias", 400, seed=7) if ex.meta["kind"] == kind]
    assert len(batch) > 150
    assert _accuracy(toy, batch) >= FLOOR
    if kind == "unambiguous":  # a stated gender wins over the stereotype
        counter = [ex for ex in batch if ex.meta["counter_stereotypical"]]
        assert len(counter) > 50 and _accuracy(toy, counter) >= FLOOR


def test_persona_is_learnt_for_every_persona(toy: tuple[Any, Any]) -> None:
    batch = examples("persona", 200, seed=7)
    assert _accuracy(toy, batch) >= FLOOR
    for persona in PLANTED.personas:
        assert _accuracy(toy, [ex for ex in batch if ex.label == persona]) >= FLOOR


def test_persona_free_prompt_gets_the_neutral_reply(toy: tuple[Any, Any]) -> None:
    from mi_catalog.toy.tasks import PERSONA_INTENTS, persona_prompt

    model, tokenizer = toy
    predictions = predict_next(model, tokenizer, [persona_prompt(None, i) for i in PERSONA_INTENTS])
    assert predictions == [PLANTED.personas[PLANTED.no_persona][i] for i in PERSONA_INTENTS]


def test_planted_stereotype_is_measurable_and_matches_the_card(toy: tuple[Any, Any]) -> None:
    from mi_catalog.toy.mechanisms import _bias_scores, _lm

    model, tokenizer = toy
    scores = _bias_scores(_lm(model, tokenizer))
    recorded = card()["mechanisms"]["planted_bias"]["baseline"]
    # Ambiguous mentions lean clearly to the stereotype: every prompt's top pronoun is the stereotyped one...
    assert scores["stereotyped_top1"] == 1.0
    assert scores["stereotype_gap"] >= 0.3
    assert scores["pronoun_mass"] >= 0.9  # ...and the model does predict a pronoun there
    # ...while a stated gender is followed, including against the stereotype.
    assert scores["counter_stereotypical_accuracy"] >= FLOOR
    for key, value in scores.items():
        assert abs(value - recorded[key]) < 0.01, key


def test_stereotype_comes_from_the_profession(toy: tuple[Any, Any]) -> None:
    """Swapping the profession for one of the other stereotype flips the pronoun (the contrast pairs work)."""
    model, tokenizer = toy
    batch = [ex for ex in examples("bias", 200, seed=3) if ex.meta["kind"] == "ambiguous"]
    clean = predict_next(model, tokenizer, [ex.prompt for ex in batch])
    corrupt = predict_next(model, tokenizer, [ex.corrupt_prompt for ex in batch])
    flipped = sum(c == ex.answer and k == ex.corrupt_answer for c, k, ex in zip(clean, corrupt, batch, strict=True))
    assert flipped / len(batch) >= FLOOR


def test_fairness_intervention_on_the_card_balances_without_breaking_stated_gender(toy: tuple[Any, Any]) -> None:
    """Projecting out the located stereotype direction at the card's layer closes the gap; stated genders hold."""
    from mi_catalog.toy.mechanisms import planted_bias

    model, tokenizer = toy
    measured = planted_bias(model, tokenizer)
    recorded = card()["mechanisms"]["planted_bias"]
    assert measured["best_layer"] == recorded["best_layer"] is not None
    best = measured["direction_ablated_by_layer"][measured["best_layer"]]
    assert measured["baseline"]["stereotype_gap"] >= 0.3
    assert abs(best["stereotype_gap"]) <= 0.1
    assert best["stated_gender_accuracy"] >= 0.9


def test_persona_vector_induces_the_persona_without_its_prefix(toy: tuple[Any, Any]) -> None:
    from mi_catalog.toy.mechanisms import persona_steering

    model, tokenizer = toy
    measured = persona_steering(model, tokenizer)
    recorded = card()["mechanisms"]["persona_steering"]
    assert measured["baseline_neutral_rate"] == 1.0  # unsteered, every persona-free prompt gets the neutral reply
    assert measured["best_layer"] == recorded["best_layer"]
    assert measured["induced_rate_by_layer"] == recorded["induced_rate_by_layer"]
    assert measured["induced_rate_by_layer"][measured["best_layer"]] >= 0.9
