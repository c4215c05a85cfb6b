"""Activation patching: invariants on tiny models, and ROME's picture plus the induction heads on the toy,
held across 10 seeds. Ground truth for the heads is causal (ablation, checked here), not the method's own output."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mi_catalog.methods.metrics import answer_prob
from mi_catalog.methods.runner import run_impl
from mi_catalog.models.hooks import ablate, capture
from mi_catalog.tasks import TaskExample
from reference_impls import activation_patching as ap

SEEDS = range(10)
INDUCTION_HEADS = {(1, 0), (1, 1), (1, 2), (1, 3)}  # all of layer 1; causally validated below


def test_restoring_with_a_clean_corruption_changes_nothing(tiny) -> None:  # type: ignore[no-untyped-def]
    """Clean → clean: a 'corruption' equal to the clean run, any restoration gives exactly p_clean."""
    ex = TaskExample("facts", "The Eiffel Tower is in the city of", " Paris", subject="The Eiffel Tower")
    batch = tiny.encode([ex.prompt])
    answer = tiny.token_id(ex.answer)
    sites = [f"resid_post.{layer}" for layer in range(tiny.n_layers)] + [f"head_out.{layer}" for layer in range(tiny.n_layers)]
    with capture(tiny, sites) as clean:
        p_clean = float(answer_prob(tiny.logits(batch), torch.tensor([answer]))[0])
    none = ap.Corruption(batch, None, ())
    rests = [((f"resid_post.{layer}", "pos", (p,)),) for layer in range(tiny.n_layers) for p in range(batch.shape[1])]
    rests += [((f"head_out.{layer}", "heads", (0, 1)),) for layer in range(tiny.n_layers)]
    probs = ap.restore(tiny, none, clean, rests, answer, batch_size=7)
    assert torch.allclose(probs, torch.full_like(probs, p_clean), atol=1e-5)


@pytest.mark.parametrize("head_positions", ["last", "all"])
def test_prefix_cache_restorations_equal_full_forwards(tiny, head_positions: str) -> None:  # type: ignore[no-untyped-def]
    """Reusing the corrupted run's KV cache before a restoration's first position changes no number: every
    restoration kind (a position, several positions, heads, a head set across layers) on every family."""
    ex = TaskExample("facts", "The Eiffel Tower is in the city of", " Paris", subject="The Eiffel Tower")
    spec = ap.Spec(noise_samples=3)
    batch = tiny.encode([ex.prompt])
    n_pos, answer = batch.shape[1], tiny.token_id(ex.answer)
    sites = [f"{site}.{layer}" for site in ("resid_post", "mlp_out", "head_out") for layer in range(tiny.n_layers)]
    with capture(tiny, sites) as clean:
        tiny.logits(batch)
    corruption = ap.make_corruption(tiny, ex, spec, sigma=ap.subject_sigma(tiny, [ex]), seed=4)
    assert corruption is not None and corruption.samples == 3
    rests: list = [()]
    rests += [((f"resid_post.{layer}", "pos", (p,)),) for layer in range(tiny.n_layers) for p in range(n_pos)]
    rests += [((f"mlp_out.{layer}", "pos", (2, n_pos - 1)),) for layer in range(tiny.n_layers)]
    rests += [((f"head_out.{layer}", "heads", (h,)),) for layer in range(tiny.n_layers) for h in range(tiny.n_heads)]
    rests.append((("head_out.0", "heads", (0,)), (f"head_out.{tiny.n_layers - 1}", "heads", (1,))))
    cached = ap.restore(tiny, corruption, clean, rests, answer, 5, head_positions, prefix_cache=True)
    full = ap.restore(tiny, corruption, clean, rests, answer, 5, head_positions, prefix_cache=False)
    assert torch.allclose(cached, full, atol=1e-5), (cached - full).abs().max()


def test_key_positions_restore_only_the_last_subject_token_and_the_last_token(toy) -> None:  # type: ignore[no-untyped-def]
    examples = toy.tasks.examples("facts", 2, seed=0)
    out = run_impl("activation-patching", model=toy, task="facts", n=2, noise_samples=2, positions="key").output
    every = run_impl("activation-patching", model=toy, task="facts", n=2, noise_samples=2, positions="all").output
    assert set(out.tensors) == {"resid_subject_last", "resid_last", "mlp_subject_last", "mlp_last", "heads"}
    for key, value in out.tensors.items():  # the key groups are the same numbers as in the full grid
        assert torch.allclose(value, every.tensors[key], atol=1e-5), key
    assert len(examples) == 2


def test_restoring_the_last_state_restores_everything(tiny) -> None:  # type: ignore[no-untyped-def]
    ex = TaskExample("facts", "The Eiffel Tower is in the city of", " Paris", subject="The Eiffel Tower")
    spec = ap.Spec(noise_samples=3)
    pt = ap.trace(tiny, ex, spec, sigma=ap.subject_sigma(tiny, [ex]), seed=0)
    assert pt is not None
    last_layer = pt.grid["resid"][-1, -1]
    assert abs(float(last_layer) - 1.0) < 1e-4 or abs(pt.p_clean - pt.p_corrupt) < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_causal_tracing_on_the_toy_reproduces_romes_picture(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    """Facts: restoring the last subject token matters early (layer 0), the last token late; both clearly
    above the other tokens — for every seed (10 noise draws per prompt, 12 prompts)."""
    result = run_impl("activation-patching", model=toy, task="facts", n=12, seed=seed)
    m, ci = result.metrics, result.output.intervals
    assert m["resid_subject_last_peak_layer"] == 0
    assert m["resid_last_peak_layer"] == toy.n_layers - 1
    assert 0.15 <= m["resid_subject_last_peak_effect"] <= 0.9, m["resid_subject_last_peak_effect"]
    other = result.output.tensors["resid_other"].mean(dim=0)  # [n_layers]
    assert ci["resid_subject_last_peak_effect"][0] > float(other[0]) + 0.05
    assert m["resid_last_peak_effect"] > 0.95


@pytest.mark.slow
def test_induction_heads_are_causally_validated_by_ablation(toy) -> None:  # type: ignore[no-untyped-def]
    """The ground truth used below: ablating the four layer-1 heads breaks copying; ablating four others does not."""
    examples = toy.tasks.examples("induction", 64, seed=123)
    batch = toy.encode([ex.prompt for ex in examples])
    answers = torch.tensor([toy.token_id(ex.answer) for ex in examples])

    def accuracy() -> float:
        return float((toy.logits(batch)[:, -1].argmax(-1) == answers).float().mean())

    base = accuracy()
    with ablate(toy, "head_out.1", how="mean", heads=[0, 1, 2, 3]):
        without_induction = accuracy()
    with ablate(toy, "head_out.2", how="mean", heads=[0, 1]), ablate(toy, "head_out.3", how="mean", heads=[0, 1]):
        without_others = accuracy()
    assert base > 0.95 and without_induction < 0.3 and without_others > 0.9


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_head_patching_ranks_the_induction_heads_first(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    result = run_impl("activation-patching", model=toy, task="induction", n=8, seed=seed)
    heads = [(f.layer, f.index) for f in result.output.findings if f.object == "attention-head"]
    assert set(heads[:4]) == INDUCTION_HEADS
    assert result.metrics["head_set_effect"] > 0.5  # redundant heads: together they restore the behaviour
    assert result.metrics["head_set_effect"] > 3 * result.metrics["head_top_effect"]


def test_run_writes_figures_and_tensors(tiny, tmp_path: Path, universal_prompts: Path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file

    result = run_impl("activation-patching", model=tiny, prompts_file=universal_prompts, n=2, noise_samples=2,
                      out_dir=tmp_path)  # fmt: skip
    names = {Path(p).name for p in result.figures}
    assert {"activation_patching_custom_resid.svg", "activation_patching_custom_heads.csv"} <= names
    assert "heads" in load_file(str(tmp_path / "activation_patching.safetensors"))
    assert (tmp_path / "activation-patching.json").is_file()
