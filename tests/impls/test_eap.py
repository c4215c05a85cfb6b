"""Edge attribution patching: graph and patching invariants on every family, and the toy's induction circuit."""

from __future__ import annotations

import pytest
import torch

from mi_catalog.methods.data import RunData
from mi_catalog.models.hooks import capture, patch
from reference_impls import eap
from reference_impls._contrast import make_contrast

INDUCTION_HEADS = {"L1H0", "L1H1", "L1H2", "L1H3"}  # the toy card's heads, validated by ablation
PREVIOUS_TOKEN_HEAD = "L0H3"


def run_on(lm, task: str, n: int, seed: int, **spec) -> eap.Output:  # type: ignore[no-untyped-def]
    examples = lm.tasks.examples(task, n, seed)
    return eap.run(lm, eap.Spec(n=n, seed=seed, **spec), RunData(task=task, examples=examples, seed=seed))


def edge_labels(out: eap.Output, top: int) -> list[str]:
    return [f.label.removeprefix("edge ") for f in out.findings if f.object == "circuit"][:top]


def test_graph_edges_respect_the_order_of_computation(toy) -> None:  # type: ignore[no-untyped-def]
    graph = eap.build_graph(toy)
    # embed → 4 attn + 4 mlp + logits; heads of layer l → attn > l, mlp ≥ l, logits; MLP l → attn > l, mlp > l, logits
    per_layer_heads = sum(toy.n_heads * ((3 - layer) + (4 - layer) + 1) for layer in range(4))
    per_layer_mlps = sum(2 * (3 - layer) + 1 for layer in range(4))
    assert len(graph.edges) == 9 + per_layer_heads + per_layer_mlps == 105
    for u, d in graph.edges:
        if u.kind != "embed" and d.kind != "logits":
            assert u.layer is not None and d.layer is not None
            assert u.layer < d.layer or (u.kind == "head" and d.kind == "mlp" and u.layer == d.layer)


def test_no_edge_kept_is_the_corrupt_run_and_every_edge_kept_is_the_clean_run(tiny) -> None:  # type: ignore[no-untyped-def]
    """Exact edge patching on every family (sequential and parallel residual): the δ wiring adds up."""
    examples = tiny.tasks.examples("induction", 3, 0)
    pair = make_contrast(tiny, examples, 0)
    graph = eap.build_graph(tiny)
    assert any(d.kind == ("block" if tiny.parallel_residual else "attn") for d in graph.downstream)
    scores = eap.score_edges(tiny, pair, graph)
    assert scores.scores.shape == (3, len(graph.edges)) and bool(torch.isfinite(scores.scores).all())
    none = eap.run_with_edges(tiny, pair, graph, set(), scores.corrupt_acts)
    every = eap.run_with_edges(tiny, pair, graph, set(range(len(graph.edges))), scores.corrupt_acts)
    torch.testing.assert_close(none, scores.corrupt, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(every, scores.clean, atol=1e-3, rtol=1e-3)


def test_node_input_gradients_match_finite_differences(tiny) -> None:  # type: ignore[no-untyped-def]
    """∂metric/∂(input of d) from the one backward equals a central difference along a random direction."""
    examples = tiny.tasks.examples("induction", 2, 0)
    pair = make_contrast(tiny, examples, 0)
    graph = eap.build_graph(tiny)
    scores = eap.score_edges(tiny, pair, graph)
    gen = torch.Generator().manual_seed(0)
    for d in (graph.downstream[1], graph.downstream[-2], graph.downstream[-1]):
        v = torch.randn(scores.grads[d].shape, generator=gen)
        eps = 1e-3  # tiny random models curve fast: at 1e-2 the central difference is off by ~10 %

        def metric_at(step: float, d: eap.Node = d, v: torch.Tensor = v) -> float:
            delta = {d: step * v}
            with eap.edit(tiny, eap._edits(tiny, lambda node, _seen: delta.get(node))):
                return float(pair.metric(tiny.logits(pair.clean)).sum())

        numeric = (metric_at(eps) - metric_at(-eps)) / (2 * eps)
        analytic = float((scores.grads[d] * v).sum())
        assert abs(numeric - analytic) <= 1e-2 + 0.05 * abs(analytic), (d, numeric, analytic)


def test_edge_scores_track_exact_single_edge_patching(toy) -> None:  # type: ignore[no-untyped-def]
    examples = toy.tasks.examples("induction", 8, 0)
    pair = make_contrast(toy, examples, 0)
    graph = eap.build_graph(toy)
    scores = eap.score_edges(toy, pair, graph)
    estimate = scores.scores.mean(0)
    top = estimate.abs().argsort(descending=True)[:15].tolist()
    every = set(range(len(graph.edges)))
    exact = [
        float((scores.clean - eap.run_with_edges(toy, pair, graph, every - {i}, scores.corrupt_acts)).mean())
        for i in top
    ]
    ranks = torch.tensor([exact, estimate[top].tolist()]).argsort(dim=1).argsort(dim=1).double()
    assert float(torch.corrcoef(ranks)[0, 1]) > 0.8
    assert all((e > 0) == (float(estimate[i]) > 0) for e, i in zip(exact, top, strict=True) if abs(e) > 0.5)


@pytest.mark.parametrize("seed", range(8))
def test_toy_induction_circuit(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    out = run_on(toy, "induction", 8, seed)
    top = edge_labels(out, 12)
    senders = {label.split("→")[0] for label in top}
    assert len(senders & INDUCTION_HEADS) >= 2, top
    assert any(label.split("→")[0] in INDUCTION_HEADS and label.endswith("logits") for label in top[:8]), top
    m = out.metrics
    assert 0 < m["circuit_edges"] <= 0.4 * m["n_edges"], m
    assert m["circuit_faithfulness"] >= 0.8
    curve = out.figures[0]
    assert curve.kind == "curve"
    assert abs(curve.series["faithfulness"][0]) < 0.02 and abs(curve.series["faithfulness"][-1] - 1) < 0.02  # type: ignore[union-attr]


_PLAIN = (
    "recipe-v3 toy, plain EAP (its first-order gradient is taken at the clean run, where the induction heads' "
    "softmax is saturated: they put 0.80-0.95 of their attention on the token to copy; ranks count from 0): "
)
_PLAIN_MISSES = {  # seed → why plain EAP (ig_steps=0) misses; exact patching ranks L0H3→attn L1 first after embed→attn L0
    0: "it scores L0H3→attn L1 0.008 of the gap (rank 28; the bar is < 20) while patching that one edge costs 0.48.",
    3: "it scores L0H3→attn L1 0.017 of the gap (rank 24; the bar is < 20) while patching that one edge costs 0.67.",
    7: "it ranks L0H3→attn L1 at 4 (0.075; exact 0.42) but scores L0H2→attn L1 0.001 (rank 50) while patching it "
       "costs 0.26, so its faithful circuit needs 60 of 105 edges (faithfulness 0.73 at 48; the bar is <= half).",
    9: "it ranks L0H3→attn L1 at 0 (0.19; exact 0.87), but its faithful circuit needs 60 of 105 edges (faithfulness "
       "0.59 at 38, 0.76 at 48, 0.80 at 60; the bar is <= half): edges costing 0.03-0.05 each when patched "
       "(MLP1→MLP3, L1H0→MLP3, L1H0→MLP2) rank 47-67.",
}  # fmt: skip
_IG_MISSES = {  # seed → why EAP-IG (ig_steps=5) misses
    7: "recipe-v3 toy, EAP-IG (ranks count from 0): L0H3→attn L1 ranks 1 (0.63; exact 0.42) in a 24-edge circuit (faithfulness 0.88), "
       "but only two induction heads (L1H0, L1H2) send a top-12 edge: L1H1→logits ranks 12 (0.053; patching it "
       "costs 0.06, rank 9 by exact patching, whose top 12 has three induction-head senders), behind L0H3→MLP0 "
       "(0.071; exact 0.04) and MLP0→attn L1 (0.048; exact < 0.03) - one slot.",
}  # fmt: skip


def _shuffled_induction_cases() -> list:  # type: ignore[type-arg]
    """(seed, ig_steps): plain EAP (0) and EAP-IG (5) on the same 10 seeds; the misses are strict xfails."""
    cases = []
    for ig_steps in (0, 5):
        for seed in range(10):
            reason = _PLAIN + _PLAIN_MISSES[seed] if ig_steps == 0 and seed in _PLAIN_MISSES else None
            reason = _IG_MISSES.get(seed) if ig_steps == 5 else reason
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            cases.append(pytest.param(seed, ig_steps, marks=marks, id=f"seed{seed}-ig{ig_steps}"))
    return cases


@pytest.mark.parametrize("seed", range(10))
def test_exact_patching_ranks_the_previous_token_edge_first_on_shuffled_induction(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    """The ground truth for the test below, by exact single-edge patching (not by any attribution score)."""
    examples = toy.tasks.examples("induction", 8, seed)
    pair = make_contrast(toy, examples, seed, corruption="shuffle")
    graph = eap.build_graph(toy)
    scores = eap.score_edges(toy, pair, graph)
    every = set(range(len(graph.edges)))
    cost = torch.tensor(
        [float((scores.clean - eap.run_with_edges(toy, pair, graph, every - {i}, scores.corrupt_acts)).mean())
         for i in range(len(graph.edges))]
    )  # fmt: skip
    labels = [f"{u.label}→{d.label}" for u, d in graph.edges]
    order = cost.abs().argsort(descending=True).tolist()
    assert order.index(labels.index(f"{PREVIOUS_TOKEN_HEAD}→attn L1")) <= 2, [labels[i] for i in order[:5]]


@pytest.mark.parametrize(("seed", "ig_steps"), _shuffled_induction_cases())
def test_shuffled_induction_finds_the_previous_token_head_too(toy, seed: int, ig_steps: int) -> None:  # type: ignore[no-untyped-def]
    """The task's contrast changes only the copied token (the value path); shuffling the prompt also breaks the
    key path, where the previous-token head L0H3 feeds the induction heads (K-composition). Exact patching of
    that one edge costs 0.42-0.87 of the gap (rank 1 of 105, counted from 0, after embed→attn L0 at seeds 0-9,
    recipe-v3 toy). Plain EAP underrates it (the key path goes through a saturated softmax): ranks 0-28, scores
    0.008-0.19 (v2: ranks 8-47 at seeds 0-7); EAP-IG ranks it 1 at every seed. The bar: inside the top 20 edges and inside the
    faithful circuit, and that circuit at most half the graph."""
    out = run_on(toy, "induction", 8, seed, corruption="shuffle", top_edges=105, ig_steps=ig_steps)
    labels = edge_labels(out, 105)
    rank = labels.index(f"{PREVIOUS_TOKEN_HEAD}→attn L1")
    assert rank < min(20, out.metrics["circuit_edges"]), (rank, labels[:20])
    assert len({label.split("→")[0] for label in labels[:12]} & INDUCTION_HEADS) >= 3, labels[:12]
    assert 0 < out.metrics["circuit_edges"] <= 0.5 * out.metrics["n_edges"]


def test_ig_with_one_step_is_eap(tiny) -> None:  # type: ignore[no-untyped-def]
    examples = tiny.tasks.examples("induction", 3, 0)
    pair = make_contrast(tiny, examples, 0)
    graph = eap.build_graph(tiny)
    torch.testing.assert_close(eap.score_edges(tiny, pair, graph, 1).scores, eap.score_edges(tiny, pair, graph).scores)
    with pytest.raises(ValueError, match="ig_steps"):
        eap.score_edges(tiny, pair, graph, -1)


def test_ig_embedding_edges_add_up_to_the_gap(toy) -> None:  # type: ignore[no-untyped-def]
    """Integrated gradients' completeness: every node reads the embeddings, so the embedding's edges sum to the
    path integral of the metric's gradient from the corrupt to the clean embeddings, i.e. clean − corrupt per
    prompt. Plain EAP's first-order sum misses most of it on the toy (the saturation EAP-IG corrects)."""
    examples = toy.tasks.examples("induction", 3, 0)
    pair = make_contrast(toy, examples, 0)
    graph = eap.build_graph(toy)
    embed = [i for i, (u, _d) in enumerate(graph.edges) if u.kind == "embed"]
    ig = eap.score_edges(toy, pair, graph, 32)
    gap = ig.clean - ig.corrupt
    torch.testing.assert_close(ig.scores[:, embed].sum(1), gap, rtol=0.02, atol=1e-3)
    plain = eap.score_edges(toy, pair, graph).scores[:, embed].sum(1)
    assert float((plain - gap).abs().max()) > 0.5 * float(gap.abs().min())


def test_toy_facts_circuit_is_faithful_with_a_subset_of_edges(toy) -> None:  # type: ignore[no-untyped-def]
    out = run_on(toy, "facts", 8, 0)
    assert 0 < out.metrics["circuit_edges"] <= 0.6 * out.metrics["n_edges"]
    top = edge_labels(out, 5)
    assert any(label.startswith("MLP") for label in top), top  # facts are recalled through the FFNs


def _exact_head_restorations(lm, pair) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Per head: the share of the clean − corrupt gap restored by patching its clean output alone into the corrupt run."""
    with capture(lm, [f"head_out.{layer}" for layer in range(lm.n_layers)]) as clean_heads:
        clean = pair.metric(lm.logits(pair.clean))
    corrupt = pair.metric(lm.logits(pair.corrupt))
    gap = (clean - corrupt).mean()
    shares = {}
    for layer in range(lm.n_layers):
        for head in range(lm.n_heads):
            with patch(lm, f"head_out.{layer}", clean_heads, heads=[head]):
                patched = pair.metric(lm.logits(pair.corrupt))
            shares[f"L{layer}H{head}"] = float((patched - corrupt).mean() / gap)
    return shares


@pytest.mark.parametrize("seed", range(10))
def test_head_ranking_follows_exact_head_patching(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    """EAP's head findings against the causal ground truth: patching each head's clean output alone.

    On the induction contrast (the copied token changed) the layer-0 heads L0H2 and L0H0 rank with the induction
    heads, often first: they write the copied token's identity at its own position, where the induction heads
    read it (the value path), and patching either alone restores 0.27–0.65 of the gap — more than any single
    induction head (0.07–0.34; the four are redundant); every other head restores < 0.05 (seeds 0–9, recipe-v3
    toy; v2: 0.26–0.63, 0.07–0.33). So the top
    of EAP's head ranking is the value path *and* the induction heads, which is what exact patching says."""
    examples = toy.tasks.examples("induction", 8, seed)
    out = eap.run(toy, eap.Spec(n=8, seed=seed), RunData(task="induction", examples=examples, seed=seed))
    pair = make_contrast(toy, examples, seed)
    exact = _exact_head_restorations(toy, pair)
    by_exact = sorted(exact, key=lambda label: -abs(exact[label]))
    by_eap = [f.label for f in out.findings if f.object == "attention-head"]
    assert set(by_exact[:6]) == INDUCTION_HEADS | {"L0H0", "L0H2"}, exact  # the ground truth itself
    assert all(abs(exact[label]) < 0.05 for label in by_exact[6:]), exact
    # EAP's first-order scores put all six within its top 7: on the recipe-v3 toy they are its top 6 at seeds 0-9;
    # the slot of slack was taken on v2 at seed 9 by the previous-token head L0H3, whose key-path effect the
    # linearisation overrates.
    assert set(by_exact[:6]) <= set(by_eap[:7]), [
        (label, round(exact[label], 2), by_eap.index(label)) for label in by_exact[:6]
    ]
