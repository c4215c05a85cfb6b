"""DoLa: the decoding rule's invariants (JSD, dynamic premature layer, plausibility head, α = 1 is greedy,
the last exit is the model's output) and its effect on the toy's facts over 10 seeds."""

from __future__ import annotations

import math

import pytest
import torch

from mi_catalog.methods.runner import run_impl
from mi_catalog.models.tiny import tiny_model
from reference_impls import dola


def _random_exits(layers: int = 5, n: int = 7, vocab: int = 50, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(layers, n, vocab, generator=gen)).log_softmax(-1)


def test_jsd_is_a_bounded_symmetric_divergence() -> None:
    exits = _random_exits()
    a, b = exits[0], exits[1]
    torch.testing.assert_close(dola.jsd(a, b), dola.jsd(b, a))
    torch.testing.assert_close(dola.jsd(a, a), torch.zeros(a.shape[0]), atol=1e-6, rtol=0)
    assert bool((dola.jsd(a, b) > 0).all()) and bool((dola.jsd(a, b) <= math.log(2) + 1e-6).all())


def test_premature_layer_maximises_jsd_and_the_token_is_plausible() -> None:
    exits = _random_exits(seed=1)
    candidates = [0, 1, 2, 3]
    decoded = dola.dola_scores(exits, candidates, alpha=0.1)
    for i in range(exits.shape[1]):
        divergences = [float(dola.jsd(exits[-1, i], exits[j, i])) for j in candidates]
        assert int(decoded.premature[i]) == candidates[max(range(len(candidates)), key=divergences.__getitem__)]
        top = int(decoded.scores[i].argmax())
        final = exits[-1, i].exp()
        assert float(final[top]) >= 0.1 * float(final.max()) - 1e-7  # inside the adaptive plausibility head
        # the contrast ranks the plausible tokens by log q_N − log q_M
        head = (final >= 0.1 * final.max()).nonzero().flatten()
        contrast = exits[-1, i] - exits[int(decoded.premature[i]), i]
        assert top == int(head[contrast[head].argmax()])
    assert torch.isinf(decoded.scores).any()  # tokens outside the head get −∞


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_last_exit_is_the_model_output_and_alpha_one_is_greedy(family: str) -> None:
    lm = tiny_model(family, seed=1)
    prompts = ["The capital of France is", "Big Ben is in the city of", "Michael Jordan plays the sport of"]
    exits = dola.exit_logprobs(lm, prompts, batch_size=2)
    own = lm.logits(lm.encode(prompts))[:, -1].float().log_softmax(-1).cpu()
    torch.testing.assert_close(exits[-1], own, atol=1e-4, rtol=1e-4)
    greedy = dola.dola_scores(exits, dola.candidate_layers(lm), alpha=1.0).scores.argmax(-1)
    assert torch.equal(greedy, own.argmax(-1))


def test_tied_embeddings_are_not_a_candidate(toy) -> None:  # type: ignore[no-untyped-def]
    assert dola.tied_embeddings(toy)  # the toy ties W_U to W_E
    assert dola.candidate_layers(toy) == list(range(1, toy.n_layers))
    untied = tiny_model("gpt-neox", seed=1)  # GPT-NeoX unties its embed_out
    assert not dola.tied_embeddings(untied) and dola.candidate_layers(untied)[0] == 0


@pytest.mark.parametrize("seed", range(10))
def test_dola_keeps_the_toys_facts_and_sharpens_them(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    """The toy's facts emerge in late layers, so contrasting with a premature exit keeps every held-out fact
    the model knows (accuracy never drops) and puts more mass on the answer than the model's own softmax;
    the premature layer is never the last block (it is an *early* exit) and the decodes are DoLa's own."""
    result = run_impl("dola", model=toy, task="facts", seed=seed, n=24)
    m = result.output.metrics
    assert m["dola_accuracy_base"] >= 0.95
    assert m["dola_accuracy"] >= m["dola_accuracy_base"]
    assert m["dola_answer_prob"] >= m["dola_answer_prob_base"]
    assert 1 <= m["dola_top_premature_layer"] < toy.n_layers
    improve = result.output.improve
    assert improve is not None and improve.metric == "accuracy" and improve.after == m["dola_accuracy"]
    assert any(s.name == "top1_changed_neutral" for s in result.output.side_effects)
