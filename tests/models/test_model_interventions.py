"""Invariants of the model layer, on a tiny random-init model of every supported family."""

from __future__ import annotations

import contextlib

import pytest
import torch

from mi_catalog.models import (
    W_O,
    Cache,
    W_out,
    ablate,
    add_vector,
    all_sites,
    b_O,
    b_out,
    capture,
    edit,
    hook_snapshot,
    patch,
    project_out,
    scale,
)
from mi_catalog.models.sites import READ_ONLY_SITES, SiteError

EXACT = {"atol": 0.0, "rtol": 0.0}
CLOSE = {"atol": 1e-5, "rtol": 1e-5}


def real_token_logits(logits: torch.Tensor, mask: torch.Tensor, row: int) -> torch.Tensor:
    return logits[row][mask[row].bool()]  # [n_real, d_vocab]


def snapshot(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], frozenset]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, hook_snapshot(model)


def assert_untouched(lm, before: tuple[dict[str, torch.Tensor], frozenset]) -> None:  # type: ignore[no-untyped-def]
    weights, hooks = before
    assert hook_snapshot(lm.model) == hooks
    after = lm.model.state_dict()
    assert after.keys() == weights.keys()
    for key, value in weights.items():
        assert torch.equal(after[key], value), key


def test_capture_and_noop_edit_give_identical_logits(lm, batch) -> None:  # type: ignore[no-untyped-def]
    base = lm.logits(batch)
    sites = all_sites(lm)
    with capture(lm) as cache, edit(lm, [(s, lambda act, state: act) for s in sites]):
        logits = lm.logits(batch)
    torch.testing.assert_close(logits, base, **EXACT)
    assert {s.key for s in sites} == set(cache.keys())


def test_patching_clean_into_clean_changes_nothing(lm, batch) -> None:  # type: ignore[no-untyped-def]
    base = lm.logits(batch)
    with capture(lm) as cache:
        lm.logits(batch)
    for s in all_sites(lm):
        if s.name in READ_ONLY_SITES:
            continue
        with patch(lm, s, cache):
            patched = lm.logits(batch)
        # resid_mid is edited through attn_out (x + (y - x)), which may round in the last bit.
        torch.testing.assert_close(patched, base, **(CLOSE if s.name == "resid_mid" else EXACT), msg=s.key)


def test_patching_a_different_run_changes_the_output(lm, batch) -> None:  # type: ignore[no-untyped-def]
    """The check above would pass for a patch that does nothing; this one would not."""
    other = lm.encode(["apple river chair green music stone paper horse", "Big Ben is in", "apple apple apple"])
    last = f"resid_post.{lm.n_layers - 1}"  # the logits at a position read only its final residual
    with capture(lm, [last]) as cache:
        other_logits = lm.logits(other)
    with patch(lm, last, cache, positions=[-1]):
        patched = lm.logits(batch)
    torch.testing.assert_close(patched[0, -1], other_logits[0, -1], **CLOSE)
    assert not torch.allclose(patched[0, -1], lm.logits(batch)[0, -1])


def test_zero_vector_addition_equals_baseline(lm, batch) -> None:  # type: ignore[no-untyped-def]
    base = lm.logits(batch)
    with add_vector(lm, "resid_post.0", torch.zeros(lm.d_model)), add_vector(lm, "embed", torch.zeros(lm.d_model)):
        steered = lm.logits(batch)
    torch.testing.assert_close(steered, base, **EXACT)
    with add_vector(lm, "resid_post.0", torch.ones(lm.d_model), coeff=5.0):
        assert not torch.allclose(lm.logits(batch), base)


def test_scale_by_one_is_identity_and_zero_ablation_matches_scale_zero(lm, batch) -> None:  # type: ignore[no-untyped-def]
    base = lm.logits(batch)
    with scale(lm, "mlp_act.0", 1.0):
        torch.testing.assert_close(lm.logits(batch), base, **EXACT)
    with scale(lm, "head_out.1", 0.0, heads=[1]):
        scaled = lm.logits(batch)
    with ablate(lm, "head_out.1", "zero", heads=[1]):
        ablated = lm.logits(batch)
    torch.testing.assert_close(scaled, ablated, **EXACT)
    assert not torch.allclose(ablated, base)


def test_batched_left_padded_equals_unbatched(lm, batch, prompts) -> None:  # type: ignore[no-untyped-def]
    """Every real token's logits in a left-padded batch equal the prompt's own run — also under steering
    at positions counted per sequence (first real token, last token)."""
    vector = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(0))
    for intervene in (contextlib.nullcontext, lambda: add_vector(lm, "resid_pre.1", vector, positions=[0, -1])):
        with intervene():
            batched = lm.logits(batch)
            for row, prompt in enumerate(prompts):
                alone = lm.logits(lm.encode([prompt]))[0]
                torch.testing.assert_close(real_token_logits(batched, batch.attention_mask, row), alone, **CLOSE)
    assert bool((batch.attention_mask == 0).any()), "the test batch must contain left padding"


def test_model_is_left_as_found_after_every_intervention(lm, batch) -> None:  # type: ignore[no-untyped-def]
    before = snapshot(lm.model)
    with capture(lm) as cache:
        lm.logits(batch)
    direction = torch.randn(lm.d_model)
    interventions = [
        lambda: capture(lm),
        lambda: patch(lm, "resid_post.0", cache, positions=[-1]),
        lambda: patch(lm, "head_out.0", cache, heads=[0, 2]),
        lambda: ablate(lm, "mlp_act.1", "mean", neurons=[0, 3]),
        lambda: ablate(lm, "attn_out.0", "resample", reference=cache),
        lambda: scale(lm, "mlp_out.1", 2.0),
        lambda: add_vector(lm, "resid_pre.1", direction),
        lambda: project_out(lm, "resid_post.1", direction),
    ]
    if not lm.parallel_residual:
        interventions.append(lambda: patch(lm, "resid_mid.0", cache))
    for make in interventions:
        with make():
            lm.logits(batch)
        assert_untouched(lm, before)
        with pytest.raises(RuntimeError, match="boom"), make():
            lm.logits(batch)
            raise RuntimeError("boom")
        assert_untouched(lm, before)
    # Nested, with the innermost raising.
    with pytest.raises(KeyError), capture(lm), add_vector(lm, "embed", direction), scale(lm, "mlp_out.0", 0.5):
        lm.logits(batch)
        raise KeyError("inner")
    assert_untouched(lm, before)


def test_head_outputs_recombined_through_W_O_equal_attn_out(lm, batch) -> None:  # type: ignore[no-untyped-def]
    with capture(lm) as cache:
        lm.logits(batch)
    for layer in range(lm.n_layers):
        z = cache[f"head_out.{layer}"]  # [batch, pos, n_heads, d_head]
        per_head = torch.einsum("bphd,hdm->bphm", z, W_O(lm, layer))  # [batch, pos, n_heads, d_model]
        bias = b_O(lm, layer)
        recombined = per_head.sum(dim=2) + (bias if bias is not None else 0)
        torch.testing.assert_close(recombined, cache[f"attn_out.{layer}"], **CLOSE)


def test_neuron_activations_times_W_out_equal_mlp_out(lm, batch) -> None:  # type: ignore[no-untyped-def]
    with capture(lm) as cache:
        lm.logits(batch)
    for layer in range(lm.n_layers):
        s = cache[f"mlp_act.{layer}"]  # [batch, pos, d_mlp]
        bias = b_out(lm, layer)
        out = s @ W_out(lm, layer) + (bias if bias is not None else 0)
        torch.testing.assert_close(out, cache[f"mlp_out.{layer}"], **CLOSE)


def test_resid_post_equals_hf_hidden_states(lm, batch) -> None:  # type: ignore[no-untyped-def]
    with capture(lm) as cache, torch.no_grad():
        hidden = lm.forward(batch, output_hidden_states=True).hidden_states
    assert len(hidden) == lm.n_layers + 1
    torch.testing.assert_close(cache["resid_pre.0"], hidden[0], **EXACT)
    for layer in range(lm.n_layers - 1):
        torch.testing.assert_close(cache[f"resid_post.{layer}"], hidden[layer + 1], **EXACT)
        torch.testing.assert_close(cache[f"resid_pre.{layer + 1}"], hidden[layer + 1], **EXACT)
    # HF's last hidden state is taken after the final norm.
    torch.testing.assert_close(cache["ln_final"], hidden[-1], **EXACT)
    if not lm.parallel_residual:
        for layer in range(lm.n_layers):
            mid = cache[f"resid_pre.{layer}"] + cache[f"attn_out.{layer}"]
            torch.testing.assert_close(cache[f"resid_mid.{layer}"], mid, **EXACT)
            torch.testing.assert_close(cache[f"resid_post.{layer}"], mid + cache[f"mlp_out.{layer}"], **CLOSE)


def test_attention_pattern_is_a_causal_distribution_and_read_only(lm, batch) -> None:  # type: ignore[no-untyped-def]
    with capture(lm, ["attn_pattern.0"]) as cache:
        lm.logits(batch)
    pattern = cache["attn_pattern.0"]  # [batch, n_heads, q_pos, k_pos]
    assert pattern.shape == (batch.shape[0], lm.n_heads, batch.shape[1], batch.shape[1])
    torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]), **CLOSE)
    real_queries = batch.attention_mask.bool()[:, None, :, None]  # padding queries attend uniformly
    assert float((pattern.triu(diagonal=1) * real_queries).abs().max()) == 0.0
    padding_keys = ~batch.attention_mask.bool()[:, None, None, :]
    assert float((pattern * real_queries * padding_keys).max()) < 1e-6
    before = snapshot(lm.model)
    with pytest.raises(SiteError, match="read-only"), patch(lm, "attn_pattern.0", cache):
        lm.logits(batch)
    assert_untouched(lm, before)


def test_selection_patches_only_the_selected_head_and_positions(lm, batch) -> None:  # type: ignore[no-untyped-def]
    source = torch.full((1, batch.shape[1], lm.n_heads, lm.d_head), 7.0)
    with patch(lm, "head_out.0", source, positions=[-1], heads=[2]), capture(lm, ["head_out.0"]) as cache:
        lm.logits(batch)
    z = cache["head_out.0"]  # [batch, pos, n_heads, d_head]
    assert bool((z[:, -1, 2] == 7.0).all())
    changed = z == 7.0
    assert int(changed.sum()) == batch.shape[0] * lm.d_head


def test_relative_positions_count_from_each_sequences_real_tokens(lm, batch) -> None:  # type: ignore[no-untyped-def]
    from mi_catalog.models import position_mask

    mask = batch.attention_mask
    sel = position_mask([0], mask)
    first_real = mask.int().argmax(dim=1)
    assert sel.sum().item() == mask.shape[0]
    assert torch.equal(sel.int().argmax(dim=1), first_real)
    assert bool(position_mask(-1, mask)[:, -1].all())
    with pytest.raises(IndexError):
        position_mask([20], mask)


def test_project_out_removes_the_direction(lm, batch) -> None:  # type: ignore[no-untyped-def]
    direction = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(1))
    with project_out(lm, "resid_post.0", direction), capture(lm, ["resid_post.0"]) as cache:
        lm.logits(batch)
    dots = cache["resid_post.0"] @ (direction / direction.norm())
    assert float(dots.abs().max()) < 1e-4


def test_mean_ablation_replaces_with_the_mean_over_real_tokens(lm, batch) -> None:  # type: ignore[no-untyped-def]
    with capture(lm, ["mlp_out.0"]) as clean:
        lm.logits(batch)
    real = batch.attention_mask.bool()
    expected = clean["mlp_out.0"][real].mean(dim=0)  # [d_model]
    with ablate(lm, "mlp_out.0", "mean", reference=clean), capture(lm, ["mlp_out.0"]) as cache:
        lm.logits(batch)
    torch.testing.assert_close(cache["mlp_out.0"][0, -1], expected, **CLOSE)


def test_cache_indexing_accepts_sites_and_aliases(lm, batch) -> None:  # type: ignore[no-untyped-def]
    with capture(lm, ["z.0", "neurons.1"]) as cache:
        lm.logits(batch)
    assert isinstance(cache, Cache)
    assert cache["head_out.0"].shape[2:] == (lm.n_heads, lm.d_head)
    assert "mlp_act.1" in cache


def test_selecting_heads_on_a_residual_site_is_an_error(lm, batch) -> None:  # type: ignore[no-untyped-def]
    before = snapshot(lm.model)
    with pytest.raises(SiteError, match="heads"), scale(lm, "resid_post.0", 0.0, heads=[0]):
        lm.logits(batch)
    assert_untouched(lm, before)


def test_resid_mid_of_a_parallel_residual_model_is_a_clear_error(lm, batch) -> None:  # type: ignore[no-untyped-def]
    if not lm.parallel_residual:
        pytest.skip("only GPT-NeoX with use_parallel_residual has no resid_mid")
    before = snapshot(lm.model)
    with pytest.raises(SiteError, match="parallel residual"), capture(lm, ["resid_mid.0"]):
        lm.logits(batch)
    assert_untouched(lm, before)
    assert all(s.name != "resid_mid" for s in all_sites(lm))


def test_capture_under_inference_mode_equals_a_plain_capture(lm, batch) -> None:  # type: ignore[no-untyped-def]
    """Inference tensors have no version counter; the deferred resid_mid must not ask for one."""
    with capture(lm) as plain:
        lm.logits(batch)
    with torch.inference_mode(), capture(lm) as inferred:
        lm.logits(batch)
    assert set(inferred.keys()) == set(plain.keys())
    for key in sorted(plain.keys()):
        torch.testing.assert_close(inferred[key], plain[key], **EXACT, msg=key)
