"""Knowledge neurons: integrated-gradients invariants, the sharing filter, and the causal check on the toy."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import answer_prob
from mi_catalog.models.hooks import ablate
from reference_impls import knowledge_neurons as kn
from reference_impls._common import answer_ids


def test_integrated_gradients_are_complete(tiny) -> None:  # type: ignore[no-untyped-def]
    """Σ_j Attr_j = p(answer) − p(answer | the layer's last-token activation zeroed), up to the Riemann error."""
    lm = tiny
    examples = lm.tasks.examples("induction", 3, 0)  # IG does not care about the task; induction is always there
    batch = lm.encode([ex.prompt for ex in examples])
    answers = answer_ids(lm, examples)
    acts, logits = kn.last_activations(lm, batch)
    layer = lm.n_layers - 1
    attr = kn.integrated_gradients(lm, batch, answers.cpu(), acts.cpu(), layer, steps=64, batch_rows=256)
    p = answer_prob(logits, answers).float().cpu()
    with ablate(lm, f"mlp_act.{layer}", positions=[-1]):
        p0 = answer_prob(lm.logits(batch), answers).float().cpu()
    torch.testing.assert_close(attr.sum(dim=1), p - p0, atol=2e-3 + 0.05 * float((p - p0).abs().max()), rtol=0.0)


def test_steps_are_batched_and_chunking_does_not_change_the_result(toy) -> None:  # type: ignore[no-untyped-def]
    examples = toy.tasks.examples("facts", 3, 0)
    batch = toy.encode([ex.prompt for ex in examples])
    answers = answer_ids(toy, examples).cpu()
    acts, _ = kn.last_activations(toy, batch)
    whole = kn.integrated_gradients(toy, batch, answers, acts, 1, steps=20, batch_rows=512)
    split = kn.integrated_gradients(toy, batch, answers, acts, 1, steps=20, batch_rows=20)
    torch.testing.assert_close(whole, split, atol=1e-5, rtol=1e-4)


def test_sharing_keeps_only_neurons_common_to_the_facts_prompts(toy) -> None:  # type: ignore[no-untyped-def]
    from mi_catalog.toy.tasks import FACT_TEMPLATES

    first = toy.tasks.examples("facts", 1, 0)[0]
    relation, subject = first.meta["relation"], first.meta["subject"]
    paraphrases = [replace(first, prompt=t.format(s=subject), subject_positions=()) for t in FACT_TEMPLATES[relation]]
    spec = kn.Spec(n=len(paraphrases), share=1.0, random_draws=1)
    out = kn.run(toy, spec, RunData("facts", paraphrases))
    assert out.metrics["n_facts"] == 1
    attr = out.tensors["attribution"]
    coarse = attr / attr.flatten(1).max(dim=1).values[:, None, None] > spec.threshold
    knowledge = out.tensors["knowledge_neurons"].bool()
    assert bool((knowledge <= coarse).all()), "a knowledge neuron must be coarse in every prompt when share = 1"
    assert bool((knowledge == coarse.all(dim=0)).all())


def test_random_control_matches_the_counts_and_never_draws_the_knowledge_neurons() -> None:
    """The control is as many neurons per (prompt, layer) as the knowledge neurons, never one of them: on the
    recipe-v3 toy (seed 2) a draw that included a prompt's own knowledge neuron (L0N63; zeroing it alone: p(answer)
    -87 %) made 'random' look like the knowledge neurons."""
    gen = torch.Generator().manual_seed(0)
    masks = torch.zeros(40, 3, 6, dtype=torch.bool)
    for row in range(40):
        masks[row, row % 3, torch.randperm(6, generator=gen)[: 1 + row % 3]] = True  # 1-3 of 6 neurons
    masks[0, 1, :5] = True  # more selected than remain: the control takes all the rest
    for _ in range(20):
        rand = kn.random_like(masks, gen)
        assert not bool((rand & masks).any())
        assert torch.equal(rand.sum(dim=2), torch.minimum(masks.sum(dim=2), (~masks).sum(dim=2)))


@pytest.mark.parametrize("seed", range(10))
def test_toy_suppressing_knowledge_neurons_hurts_more_than_random(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    examples = toy.tasks.examples("facts", 12, seed)
    out = kn.run(toy, kn.Spec(n=12, seed=seed, random_draws=3), RunData("facts", examples, seed=seed))
    m, ci = out.metrics, out.intervals
    assert m["n_skipped"] == 0 and m["kn_per_fact"] >= 1
    assert m["kn_suppress_change"] < m["kn_suppress_change_random"] - 0.05, m
    assert ci["kn_suppress_change"][1] < ci["kn_suppress_change_random"][0], ci
    assert all(f.object == "neuron" and 0 < f.score <= 1 for f in out.findings)
