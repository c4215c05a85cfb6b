"""Attribution patching: its own invariants, and the planted/causally validated truth on the toy."""

from __future__ import annotations

import pytest
import torch
from support import strict_xfail_at

from mi_catalog.methods.data import RunData
from mi_catalog.models.hooks import capture, patch
from mi_catalog.models.prompts import english_facts
from reference_impls import attribution_patching as ap
from reference_impls._contrast import make_contrast

INDUCTION_HEADS = {(1, 0), (1, 1), (1, 2), (1, 3)}  # the toy card's heads, validated by ablation


def run_on(lm, task: str, n: int, seed: int, **spec) -> ap.Output:  # type: ignore[no-untyped-def]
    examples = lm.tasks.examples(task, n, seed)
    data = RunData(task=task, examples=examples, source=lm.tasks, seed=seed)
    return ap.run(lm, ap.Spec(n=n, seed=seed, **spec), data)


def heads_of(out: ap.Output) -> list[tuple[int, int]]:
    return [(f.layer, f.index) for f in out.findings if f.object == "attention-head"]  # type: ignore[misc]


@pytest.mark.parametrize("seed", range(10))
def test_toy_induction_heads_rank_first(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    out = run_on(toy, "induction", 8, seed)
    ranking = heads_of(out)
    assert ranking[0] in INDUCTION_HEADS, ranking[:4]
    assert len(set(ranking[:4]) & INDUCTION_HEADS) >= 3, ranking[:4]
    assert out.metrics["clean_metric"] > 0 > out.metrics["corrupt_metric"], "contrast must flip the logit difference"


@pytest.mark.parametrize(("corruption", "forwards"), [("task", 2), ("shuffle", 3)])
def test_all_heads_and_neurons_in_two_forwards_and_one_backward(toy, corruption: str, forwards: int) -> None:  # type: ignore[no-untyped-def]
    calls = []
    handle = toy.model.register_forward_pre_hook(lambda *_: calls.append(1))
    real_grad = torch.autograd.grad
    backwards = []

    def counting_grad(*args, **kwargs):  # type: ignore[no-untyped-def]
        backwards.append(1)
        return real_grad(*args, **kwargs)

    try:
        torch.autograd.grad = counting_grad  # type: ignore[assignment]
        out = run_on(toy, "induction", 6, 0, corruption=corruption)
    finally:
        torch.autograd.grad = real_grad  # type: ignore[assignment]
        handle.remove()
    assert len(calls) == forwards == out.metrics["forward_passes"] and len(backwards) == 1
    assert out.tensors["head_attr"].shape == (toy.n_layers, toy.n_heads)
    assert out.tensors["neuron_attr"].shape[0] == toy.n_layers
    assert out.tensors["resid_attr"].shape[0] == toy.n_layers + 1


_EXACT: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}


def estimate_and_exact(toy, seed: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[no-untyped-def]
    """Per head [L, H]: the attribution estimate (all positions) and exact clean→corrupt patching, both normalised."""
    if seed not in _EXACT:
        examples = toy.tasks.examples("induction", 8, seed)
        out = ap.run(toy, ap.Spec(n=8, seed=seed, positions="all"), RunData("induction", examples))
        pair = make_contrast(toy, examples, seed)
        sites = [f"head_out.{layer}" for layer in range(toy.n_layers)]
        with capture(toy, sites) as clean:
            clean_metric = float(pair.metric(toy.logits(pair.clean)).mean())
        corrupt_metric = float(pair.metric(toy.logits(pair.corrupt)).mean())
        exact = torch.zeros(toy.n_layers, toy.n_heads)
        for layer in range(toy.n_layers):
            for head in range(toy.n_heads):
                with patch(toy, f"head_out.{layer}", clean, heads=[head]):
                    patched = float(pair.metric(toy.logits(pair.corrupt)).mean())
                exact[layer, head] = (patched - corrupt_metric) / (clean_metric - corrupt_metric)
        _EXACT[seed] = (out.tensors["head_attr"], exact)
    return _EXACT[seed]


@pytest.mark.parametrize("seed", range(10))
def test_head_attribution_tracks_exact_patching(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    """The first-order estimate ranks heads like exact clean→corrupt patching does (all positions)."""
    estimate, exact = estimate_and_exact(toy, seed)
    ranks = [t.flatten().argsort().argsort().double() for t in (estimate, exact)]
    spearman = float(torch.corrcoef(torch.stack(ranks))[0, 1])
    assert spearman > 0.6, (spearman, estimate, exact)


_TIE = (
    "recipe-v3 toy, induction, all positions: exact patching's top head is L0H2 (restores {e02:.2f} of the gap; "
    "L1H0 {e10:.2f}), but the first-order estimate ties them ({a02:.4f} vs {a10:.4f}) and L1H0 wins by a hair. "
    "L0H2's effect runs entirely through the later heads' values at the corrupted token (freezing every later "
    "layer's v at its corrupt value leaves {vfrozen:.2f} of it, freezing q and k leaves {qkfrozen:.2f}), and the "
    "metric grows convexly in it (restoring 1/4, 1/2, 3/4 of L0H2's clean-minus-corrupt output: {curve} of the "
    "gap), so the gradient at the corrupt run sees {r02:.2f} of L0H2's effect and {r10:.2f} of L1H0's - the "
    "first-order estimate's known false negatives for effects that are nonlinear in the patch (Kramar et al. "
    "2024; here downstream of the values, not the attention saturation AtP*'s QK fix targets; the curves are the "
    "same on v2, only the slopes at the corrupt run moved). Spearman over the 16 heads stays {rho:.3f}. On v2 the estimate's argmax matched at this seed (L0H2 {v2a:.4f} vs L1H0 {v2b:.4f}).")  # fmt: skip
_TIES = {
    0: _TIE.format(e02=0.50, e10=0.26, a02=0.0800, a10=0.0803, vfrozen=0.00, qkfrozen=0.50,
                   curve="0.05, 0.16, 0.34", r02=0.16, r10=0.31, rho=0.968, v2a=0.0926, v2b=0.0591),
    8: _TIE.format(e02=0.52, e10=0.28, a02=0.1214, a10=0.1226, vfrozen=-0.01, qkfrozen=0.51,
                   curve="0.06, 0.18, 0.34", r02=0.23, r10=0.45, rho=0.935, v2a=0.1652, v2b=0.1318),
}  # fmt: skip


@pytest.mark.parametrize("seed", strict_xfail_at(range(10), _TIES))
def test_head_attribution_finds_exact_patchings_top_head(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    estimate, exact = estimate_and_exact(toy, seed)
    assert int(estimate.argmax()) == int(exact.argmax()), (estimate, exact)


def test_noise_fallback_when_the_task_has_no_contrast_prompts(tiny) -> None:  # type: ignore[no-untyped-def]
    examples = english_facts(4, 0)  # the words every tiny tokenizer knows; no contrast prompts
    assert all(ex.corrupt_prompt is None for ex in examples)
    pair = make_contrast(tiny, examples, seed=0)
    assert pair.mode == "noise" and pair.others is None and pair.noise is not None
    assert float(pair.noise.abs().sum()) > 0
    out = ap.run(tiny, ap.Spec(n=4, top_neurons=5), RunData("facts", examples))
    kinds = [f.object for f in out.findings]
    assert kinds.count("attention-head") == tiny.n_layers * tiny.n_heads and kinds.count("neuron") == 5
    assert all(torch.isfinite(torch.tensor(f.score)) for f in out.findings)


def test_bad_positions_is_a_clear_error(toy) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="positions"):
        run_on(toy, "induction", 2, 0, positions="middle")
