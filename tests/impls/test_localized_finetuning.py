"""Localized fine-tuning: the unit masks cover exactly the located units' parameters (every storage layout),
training runs on a copy, and on the toy the located arm reaches the edits with a few percent of the
parameters and far smaller side effects than full fine-tuning at the same budget (10 seeds)."""

from __future__ import annotations

import pytest
import torch

from mi_catalog.methods import steering
from mi_catalog.methods.runner import run_impl
from mi_catalog.models.hooks import capture, scale
from mi_catalog.models.tiny import tiny_model
from reference_impls import localized_finetuning as lft


def _perturbed(lm, masks: dict[str, torch.Tensor], seed: int = 0) -> steering.WeightEdit:  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(seed)
    params = dict(lm.model.named_parameters())
    return steering.WeightEdit(
        {n: params[n].detach() + m * torch.randn(m.shape, generator=gen) for n, m in masks.items()}
    )


@pytest.mark.parametrize("family", ["gpt2", "gpt-neox", "llama"])
def test_neuron_mask_touches_that_neuron_only(family: str) -> None:
    """Changing the masked entries of one neuron changes that neuron's activation and nothing else in its
    layer's FFN hidden state; the mask holds its input row(s) (+ bias) and its output row."""
    lm = tiny_model(family, seed=1)
    layer, j = lm.n_layers - 1, 5
    masks = lft.unit_masks(lm, [(layer, j)], "neurons")
    n_inputs = 2 if lm.family.mlp_gate else 1
    has_bias = family != "llama"
    assert int(sum(float(m.sum()) for m in masks.values())) == (n_inputs + 1) * lm.d_model + int(has_bias)
    batch = lm.encode(["The capital of France is", "Big Ben is in the city of"])
    with capture(lm, [f"mlp_act.{layer}"]) as before:
        lm.logits(batch)
    with _perturbed(lm, masks).apply(lm), capture(lm, [f"mlp_act.{layer}"]) as after:
        lm.logits(batch)
    a, b = before[f"mlp_act.{layer}"], after[f"mlp_act.{layer}"]
    others = [i for i in range(a.shape[-1]) if i != j]
    torch.testing.assert_close(a[..., others], b[..., others])
    assert not torch.allclose(a[..., j], b[..., j])


@pytest.mark.parametrize("family", ["gpt2", "gpt-neox", "llama"])
def test_head_mask_is_the_heads_output_projection(family: str) -> None:
    """With head h silenced, changing its masked W_O entries changes nothing; with it active, the output moves."""
    lm = tiny_model(family, seed=1)
    layer, h = 0, 2
    masks = lft.unit_masks(lm, [(layer, h)], "heads")
    assert int(sum(float(m.sum()) for m in masks.values())) == lm.d_head * lm.d_model
    batch = lm.encode(["The capital of France is"])
    with scale(lm, f"head_out.{layer}", 0.0, heads=[h]):
        silent = lm.logits(batch)
        with _perturbed(lm, masks).apply(lm):
            silent_perturbed = lm.logits(batch)
    torch.testing.assert_close(silent, silent_perturbed)
    with _perturbed(lm, masks).apply(lm):
        assert not torch.allclose(lm.logits(batch), silent)


def test_finetune_changes_only_masked_entries_and_leaves_the_model(toy) -> None:  # type: ignore[no-untyped-def]
    state = {k: v.clone() for k, v in toy.model.state_dict().items()}
    examples = toy.tasks.examples("facts", 4, seed=0)
    batch = toy.encode([ex.prompt for ex in examples])
    targets = torch.tensor([toy.token_id(ex.corrupt_answer) for ex in examples])
    masks = lft.unit_masks(toy, [(3, 7), (2, 100)], "neurons")
    trained = lft.finetune(toy, batch, targets, masks, steps=5, lr=1e-2)
    assert trained.losses[-1] < trained.losses[0]
    params = dict(toy.model.named_parameters())
    for name, value in trained.edit.updates.items():
        moved = value != params[name].detach()
        assert bool(moved.any()) and not bool((moved & (masks[name] == 0)).any())
    assert all(torch.equal(state[k], v) for k, v in toy.model.state_dict().items())


@pytest.mark.parametrize("seed", range(10))
def test_located_units_reach_the_edits_with_less_collateral_than_full_finetuning(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    """Same steps and learning rate: the located neurons (≤ 5 % of the parameters) learn the 16 held-out edits
    (efficacy ≥ 0.9) while changing the rest of the model far less than full fine-tuning: lower KL on other
    tasks' text, neighbours and the subjects' other relations kept more often, other tasks' accuracy kept."""
    m = run_impl("localized-finetuning", model=toy, task="facts", seed=seed, random_control=False).output.metrics
    assert m["efficacy_before"] == 0.0
    assert m["efficacy"] >= 0.9
    assert m["lft_params_share"] <= 0.05
    assert m["kl_neutral"] < 0.5 * m["full_kl_neutral"]
    assert m["specificity"] > m["full_specificity"]
    assert m["relation_specificity"] > m["full_relation_specificity"]
    assert m["side_accuracy_drop"] <= m["full_side_accuracy_drop"]
    assert m["side_accuracy_drop"] <= 0.1
