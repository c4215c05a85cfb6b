"""caa: the mean paired activation difference steers the toy's behaviour monotonically with the multiplier
(sentiment, toxicity: 10 seeds each), zero is a no-op, and a random vector of the same norm does far less."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from mi_catalog.methods import steering as st  # noqa: E402
from mi_catalog.methods.contract import Curve  # noqa: E402
from mi_catalog.methods.runner import run_impl  # noqa: E402
from reference_impls import caa  # noqa: E402
from reference_impls._steer import answer_token_set, contrast_sides, last_acts, paired_prompts  # noqa: E402

SEEDS = range(10)


def _curve(result, name: str = "multiplier_sweep") -> Curve:  # type: ignore[no-untyped-def]
    curve = next(f for f in result.output.figures if f.name == name)
    assert isinstance(curve, Curve)
    return curve


def _sweep_means(result) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    curve = _curve(result)
    return curve.x, curve.series["p(behaviour), all"]


@pytest.mark.parametrize("seed", SEEDS)
def test_sentiment_grows_monotonically_with_the_multiplier(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    result = run_impl("caa", model=toy, task="sentiment", seed=seed, n=96, n_side=4)
    m = result.metrics
    x, means = _sweep_means(result)
    assert m["sweep_min_step"] >= -0.02 and m["sweep_effect_range"] >= 0.9
    at = dict(zip(x, means, strict=True))
    assert at[-1.0] + 0.2 <= at[0.0] <= at[1.0] - 0.2  # a real slope around zero, not only at the ends
    assert m["behaviour_rate_before"] <= 0.1 and m["behaviour_rate_steered"] >= 0.9  # negative → positive
    assert m["behaviour_own_before"] >= 0.9 and m["behaviour_own_suppressed"] <= 0.1
    assert m["n_pairs"] > 0  # every toy sentiment corruption flips the label: CAA's paired differences
    assert result.output.improve is not None and result.output.side_effects


@pytest.mark.parametrize("seed", SEEDS)
def test_toxicity_grows_monotonically_with_the_multiplier(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    result = run_impl("caa", model=toy, task="toxicity", seed=seed, n=96, n_side=4)
    m = result.metrics
    assert m["sweep_min_step"] >= -0.02 and m["sweep_effect_range"] >= 0.8
    x, means = _sweep_means(result)
    assert means[x.index(3.0)] >= 0.9 and means[x.index(-3.0)] <= 0.1


def test_zero_multiplier_is_the_unsteered_model(toy) -> None:  # type: ignore[no-untyped-def]
    result = run_impl("caa", model=toy, task="sentiment", seed=0, n=64, n_side=4)
    curve = _curve(result)
    zero = curve.x.index(0.0)
    negative_prompts = next(k for k in curve.series if k.startswith("greedy rate, negative"))
    assert curve.series[negative_prompts][zero] == pytest.approx(result.metrics["behaviour_rate_before"])


def test_vector_is_the_mean_paired_difference_and_beats_a_random_one(toy) -> None:  # type: ignore[no-untyped-def]
    examples = toy.tasks.examples("sentiment", 48, seed=4)
    sides = contrast_sides(examples)
    assert (sides.behaviour_name, sides.other_name) == ("positive", "negative")
    pairs = paired_prompts(toy, sides)
    assert len(pairs) == len(examples)  # each corruption swaps the adjective's polarity
    vectors, n_pairs = caa.caa_vectors(toy, sides)
    assert n_pairs == len(pairs)
    a = last_acts(toy, [p for p, _ in pairs], ["resid_post.2"])[0, :, 0]
    b = last_acts(toy, [q for _, q in pairs], ["resid_post.2"])[0, :, 0]
    assert torch.allclose(vectors[2], (a - b).mean(0), atol=1e-5)

    prompts = [ex.prompt for ex in toy.tasks.examples("sentiment", 32, seed=5) if ex.label == "negative"]
    b_tok, o_tok = answer_token_set(toy, sides.behaviour), answer_token_set(toy, sides.other)
    steered = caa.measure(toy, prompts, b_tok, o_tok, caa.vector_at(2, vectors[2], 1.0, "last")).prob.mean()
    rand = torch.randn(toy.d_model, generator=torch.Generator().manual_seed(0))
    rand = rand / rand.norm() * vectors[2].norm()
    random = caa.measure(toy, prompts, b_tok, o_tok, caa.vector_at(2, rand, 1.0, "last")).prob.mean()
    base = caa.measure(toy, prompts, b_tok, o_tok).prob.mean()
    assert float(steered - base) >= 0.5 and float(random - base) <= 0.25
    assert isinstance(caa.vector_at(2, vectors[2], 1.0, "all"), st.SteeringVector)


def test_persona_when_the_toy_has_it(toy) -> None:  # type: ignore[no-untyped-def]
    if "persona" not in toy.tasks.tasks() or toy.unknown_words("persona ahoy"):
        pytest.skip("the toy checkpoint has no persona task yet")
    result = run_impl("caa", model=toy, task="persona", seed=0, n=128, n_side=4)
    m = result.metrics
    assert m["sweep_min_step"] >= -0.02
    assert m["behaviour_rate_steered"] >= m["behaviour_rate_before"] + 0.5
