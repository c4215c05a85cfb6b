"""whispering-experts (AurA): the dampening rule, the artifact (per-unit factors; α = 1 is a no-op, α = 0 equals
zeroing), runs on a tiny model; on the toy the experts generalise to held-out prompts and dampening them lowers the toxic completions with
little loss on the nice ones (10 seeds each)."""

from __future__ import annotations

import pytest
import torch

from mi_catalog.methods.data import RunData
from mi_catalog.methods.runner import run_impl
from mi_catalog.models.hooks import capture, scale
from mi_catalog.tasks import TaskDataError, TaskExample
from reference_impls import whispering_experts as we

SEEDS = range(10)


def test_alpha_is_one_minus_gini_above_chance() -> None:
    scores = torch.tensor([0.2, 0.5, 0.6, 0.9, 1.0])
    assert torch.allclose(we.aura_alpha(scores), torch.tensor([1.0, 1.0, 0.8, 0.2, 0.0]))


def test_top_k_keeps_exactly_the_k_best_units() -> None:
    scores = {"mlp_pre.0": torch.tensor([0.9, 0.4, 0.7]), "mlp_out.0": torch.tensor([0.8, 0.55])}
    det0 = we.top_k_factors(scores, 2, zero=True).factors
    assert det0["mlp_pre.0"].tolist() == [0.0, 1.0, 1.0] and det0["mlp_out.0"].tolist() == [0.0, 1.0]
    aura = we.top_k_factors(scores, None, zero=False).factors  # every expert (AUROC > 0.5)
    assert torch.allclose(aura["mlp_pre.0"], torch.tensor([0.2, 1.0, 0.6]))
    assert torch.allclose(aura["mlp_out.0"], torch.tensor([0.4, 0.9]))


def test_unit_factors_zero_equals_scaling_to_zero_and_one_is_a_no_op(tiny) -> None:  # type: ignore[no-untyped-def]
    batch = tiny.encode(["The Eiffel Tower is in the city of", "Big Ben is in the city of"])
    site = "mlp_act.0"
    with torch.no_grad():
        with capture(tiny, [site]) as cache:
            clean = tiny.logits(batch)
        factors = torch.ones(cache[site].shape[-1])
        with we.UnitFactors({site: factors}).apply(tiny):
            same = tiny.logits(batch)
        factors[3] = 0.0
        with we.UnitFactors({site: factors}).apply(tiny):
            zeroed = tiny.logits(batch)
        with scale(tiny, site, 0.0, neurons=[3]):
            expected = tiny.logits(batch)
    assert torch.equal(same, clean)
    assert torch.allclose(zeroed, expected, atol=1e-5)
    assert not torch.allclose(zeroed, clean)


def test_one_label_class_is_a_clear_error(tiny) -> None:  # type: ignore[no-untyped-def]
    rows = [TaskExample("custom", "The capital of France is", " Paris", label="city")] * 6
    with pytest.raises(TaskDataError, match="two label classes"):
        we.run(tiny, we.Spec(), RunData(task="custom", examples=rows))


@pytest.mark.parametrize("seed", SEEDS)
def test_toy_experts_generalise_to_held_out_prompts(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    """AUROC is fitted on the fit half; the best expert must still separate the held-out toxic prompts (which
    differ from the nice ones only by the speaker)."""
    result = run_impl("whispering-experts", model=toy, task="toxicity", seed=seed, ks=(), n_side=0)
    m = result.metrics
    assert m["aura_top_auroc"] > 0.8 and m["aura_top_auroc_test"] > 0.7, m
    assert 0 < m["aura_n_experts"] < m["n_units"]
    assert m["aura_rate_before"] == 1.0  # the toy continues every toxic prompt with a toxic word
    assert result.output.improve is not None and result.output.side_effects


@pytest.mark.parametrize("seed", SEEDS)
def test_toy_aura_lowers_toxic_completions_with_little_loss_elsewhere(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    """Recipe-v3 toy: toxicity is a planted property of the speaker that the FFN computes, so dampening the experts
    lowers the toxic rate (1.0 → 0.27-0.64 over the 10 seeds) and leaves the nice prompts right (recipe v2, where
    the toxic word was an attention lookup, gave 1.0 at every seed)."""
    result = run_impl("whispering-experts", model=toy, task="toxicity", seed=seed, ks=(), n_side=0)
    m = result.metrics
    assert m["aura_rate_after"] <= m["aura_rate_before"] - 0.2, m
    assert m["aura_other_accuracy_after"] >= m["aura_other_accuracy_before"] - 0.1, m


def test_toy_aura_costs_little_on_the_other_tasks(toy) -> None:  # type: ignore[no-untyped-def]
    """The cost side of the bar (seed 0, 24 prompts per task): every other task keeps >= 0.9, KL on neutral < 0.1."""
    result = run_impl("whispering-experts", model=toy, task="toxicity", seed=0, ks=())
    tasks = [s for s in result.output.side_effects if s.is_task]
    assert len(tasks) >= 8 and all(s.after >= s.before - 0.1 for s in tasks), tasks
    kl = next(s for s in result.output.side_effects if s.name == "kl_neutral")
    assert 0.0 < kl.after < 0.1, kl
