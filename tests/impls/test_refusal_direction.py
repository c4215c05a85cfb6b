"""refusal-direction: the difference-of-means direction mediates the toy's refusal (ablating it removes refusal
of held-out harmful prompts, harmless prompts still comply; adding it makes harmless prompts refused), the
ablation really keeps the direction out of the residual stream, and a random direction does nothing alike."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


from mi_catalog.methods import steering as st  # noqa: E402
from mi_catalog.methods.runner import run_impl  # noqa: E402
from mi_catalog.models.hooks import capture  # noqa: E402
from mi_catalog.tasks import TaskDataError  # noqa: E402
from mi_catalog.toy.tasks import PLANTED  # noqa: E402
from reference_impls import refusal_direction as rd  # noqa: E402
from reference_impls._steer import answer_token_set, contrast_sides, residual_write_sites, split_sides  # noqa: E402

SEEDS = range(10)
_RUNS: dict[int, object] = {}


def _run(toy, seed: int):  # type: ignore[no-untyped-def]
    if seed not in _RUNS:
        _RUNS[seed] = run_impl("refusal-direction", model=toy, task="refusal", seed=seed, n_side=4)
    return _RUNS[seed]


@pytest.mark.parametrize("seed", SEEDS)
def test_ablation_removes_refusal_and_addition_induces_it(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    m = _run(toy, seed).metrics
    assert m["refusal_rate_before"] >= 0.9
    # Issue 8's bar at every seed: held-out harmful refusal from ≥ 0.9 to ≤ 0.1. (The recipe-v1 toy kept a
    # word-specific remainder, e.g. 'toxin', in some draws: 0.00-0.21 per seed; recipes v2 and v3 (shipped) are 0.00 at
    # every one of these 10 seeds, 128 held-out harmful prompts each.)
    assert m["refusal_rate_ablated"] <= 0.1
    assert m["harmless_accuracy_before"] >= 0.9 and m["harmless_accuracy_ablated"] >= 0.9  # still 'sure'
    assert m["harmless_refusal_before"] <= 0.1 and m["harmless_refusal_added"] >= 0.9
    assert m["direction_position"] in (-1, -2) and 0 <= m["direction_layer"] < toy.n_layers
    out = _run(toy, seed).output
    assert out.improve is not None and out.improve.before == m["refusal_rate_before"]
    assert out.improve.after == m["refusal_rate_ablated"] and out.improve.goal == "decrease"  # bypassing refusal
    assert [s.name for s in out.side_effects][-1] == "kl_neutral"


def test_refusal_tokens_are_the_planted_one(toy) -> None:  # type: ignore[no-untyped-def]
    examples = toy.tasks.examples("refusal", 32, seed=0)
    sides = contrast_sides(examples)
    assert (sides.behaviour_name, sides.other_name, sides.mode) == ("harmful", "harmless", "labels")
    assert answer_token_set(toy, sides.behaviour) == [toy.token_id(PLANTED.refuse_token)]


def test_ablation_keeps_the_direction_out_of_every_residual(toy) -> None:  # type: ignore[no-untyped-def]
    direction = torch.randn(toy.d_model, generator=torch.Generator().manual_seed(0))
    unit = direction / direction.norm()
    prompts = [ex.prompt for ex in toy.tasks.examples("refusal", 8, seed=1)]
    sites = [f"resid_{kind}.{layer}" for layer in range(toy.n_layers) for kind in ("pre", "post")]
    with rd.ablation(toy, direction).apply(toy), capture(toy, sites) as cache:
        toy.logits(toy.encode(prompts))
    for s in sites:
        assert float((cache[s] @ unit).abs().max()) < 1e-4, s
    with capture(toy, sites) as plain:
        toy.logits(toy.encode(prompts))
    assert float((plain["resid_post.2"] @ unit).abs().max()) > 1e-2  # without it the component is there
    assert len(residual_write_sites(toy)) == 3 * toy.n_layers


def test_random_directions_do_not_remove_refusal(toy) -> None:  # type: ignore[no-untyped-def]
    """The control: 20 random directions, ablated the same way at all 12 residual write sites, leave the harmful
    prompts refused — on average >= 0.9 and each far above the refusal direction's <= 0.1. Recipe-v3 toy (36
    harmful prompts): 16 of 20 directions keep 1.00 or 0.94, directions 1 and 4 keep 0.75 and 0.69 (mean 0.96);
    recipe v2 had one direction of 20 below 0.9 (0.89), so a per-direction >= 0.9 bar tested luck, not the claim."""
    examples = toy.tasks.examples("refusal", 64, seed=3)
    harmful = [ex.prompt for ex in examples if ex.label == "harmful"]
    tokens = [toy.token_id(PLANTED.refuse_token)]
    kept = []
    for seed in range(20):
        direction = torch.randn(toy.d_model, generator=torch.Generator().manual_seed(seed))
        kept.append(float(st.token_rate(toy, harmful, tokens, rd.ablation(toy, direction)).mean()))
    assert sum(kept) / len(kept) >= 0.9, kept
    assert min(kept) >= 0.5, kept


def test_candidates_of_a_shared_token_at_the_embeddings_are_degenerate(toy) -> None:  # type: ignore[no-untyped-def]
    sides = contrast_sides(toy.tasks.examples("refusal", 32, seed=0))
    train, _ = split_sides(sides, 0.5)
    candidates = rd.fit_candidates(toy, train, 2)
    assert len(candidates) == 2 * toy.n_layers
    # Every prompt ends in the same "answer :" tokens: at resid_pre.0 the two classes do not differ there.
    assert all(c.degenerate for c in candidates if c.layer == 0)
    assert not any(c.degenerate for c in candidates if c.layer == toy.n_layers - 1)


def test_zero_multiplier_is_the_unsteered_model(toy) -> None:  # type: ignore[no-untyped-def]
    out = _run(toy, 0).output
    sweep = next(f for f in out.figures if f.name == "addition_sweep")
    zero = sweep.x.index(0.0)
    assert sweep.series["harmful refused"][zero] == pytest.approx(out.metrics["refusal_rate_before"])
    assert sweep.series["harmless refused"][zero] == pytest.approx(out.metrics["harmless_refusal_before"])


def test_contrast_falls_back_to_corrupt_pairs_and_refuses_neither(toy) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    facts = toy.tasks.examples("facts", 6, seed=0)
    sides = contrast_sides(facts)
    assert sides.mode == "pairs" and [ex.prompt for ex in sides.other] == [ex.corrupt_prompt for ex in facts]
    with pytest.raises(TaskDataError):
        contrast_sides([replace(ex, corrupt_prompt=None, label=None) for ex in facts])
