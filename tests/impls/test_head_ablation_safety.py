"""head-ablation-safety (Ships / Sahara): the batched Ships equal one ablation per head on every tiny family
(uniform attention = the head's query zeroed; output zeroed); KL is zero for a no-op; on the toy the top Ships
head is causally safety-critical on held-out harmful prompts — far more than a random head — while harmless
prompts stay answered, for 10 seeds."""

from __future__ import annotations

import pytest
import torch

from mi_catalog.methods.data import RunData
from mi_catalog.methods.runner import run_impl
from mi_catalog.models.hooks import scale
from mi_catalog.tasks import TaskDataError, TaskExample
from reference_impls import head_ablation_safety as has
from reference_impls._common import answer_ids
from reference_impls.ablation_importance import Ablator

SEEDS = range(10)
PROMPTS = ["The Eiffel Tower is in the city of", "Big Ben is in the city of", "The capital of Japan is"]


@pytest.mark.parametrize("ablation", has.ABLATIONS)
def test_batched_ships_equal_one_ablation_per_head(tiny, ablation: str) -> None:  # type: ignore[no-untyped-def]
    examples = [TaskExample("custom", p, " Paris") for p in PROMPTS]
    batch = tiny.encode(PROMPTS)
    ablator = Ablator(tiny, batch, answer_ids(tiny, examples), None, "zero", "all", None, batch_size=4)
    heads = [(layer, h) for layer in range(tiny.n_layers) for h in range(tiny.n_heads)][:5]
    with torch.no_grad():
        base = tiny.logits(batch)[:, -1].float()
        batched = has.kl_rows(base, ablator.last_logits([has.head_units(tiny, [hd], ablation) for hd in heads]))
        for i, (layer, h) in enumerate(heads):
            site = f"q.{layer}" if ablation == "undifferentiated" else f"head_out.{layer}"
            with scale(tiny, site, 0.0, heads=[h]):
                one = tiny.logits(batch)[:, -1].float()
            expected = has.kl_rows(base, one[:, None])[:, 0]
            assert torch.allclose(batched[:, i], expected, atol=1e-4), (layer, h, batched[:, i], expected)
    assert float(batched.sum()) > 0
    assert torch.allclose(has.kl_rows(base, base[:, None]), torch.zeros(len(PROMPTS), 1), atol=1e-6)


def test_one_label_class_is_a_clear_error(tiny) -> None:  # type: ignore[no-untyped-def]
    rows = [TaskExample("custom", p, " Paris", label="city") for p in PROMPTS] * 2
    with pytest.raises(TaskDataError, match="two label classes"):
        has.run(tiny, has.Spec(), RunData(task="custom", examples=rows))


@pytest.mark.parametrize("seed", SEEDS)
def test_toy_top_ships_head_is_safety_critical_on_held_out_prompts(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    result = run_impl("head-ablation-safety", model=toy, task="refusal", seed=seed, n_side=0, random_draws=8)
    m, ci = result.metrics, result.output.intervals
    assert m["refusal_rate_before"] >= 0.95
    # Ships is concentrated: one head moves the distribution, most do nothing.
    assert m["ships_top_kl"] > 10 * max(m["ships_median_kl"], 1e-3), m
    # Causal, held out: the top head's ablation lowers refusals; a random head's (the control) much less.
    assert m["refusal_rate_top_head"] <= m["refusal_rate_before"] - 0.25, m
    assert ci["refusal_rate_top_head"][1] < m["refusal_rate_before"], m
    assert m["refusal_rate_random_heads"] > m["refusal_rate_top_head"] + 0.2, m
    # ... and the harmless prompts are still answered.
    assert m["harmless_accuracy_heads_ablated"] >= m["harmless_accuracy_before"] - 0.1, m
    assert result.output.improve is not None and result.output.improve.after < result.output.improve.before
