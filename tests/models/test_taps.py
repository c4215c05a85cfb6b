"""A detached capture of our native Llama is recorded from the model's own taps, without a torch hook.

The taps must hold exactly what the family table's hook points would see (bit-identical, every site, padded
grouped-query batches), and the capture must switch to hooks whenever a hook could change what it should see:
an intervention entered inside it, a foreign torch hook registered during it, a hook present when it starts.
The reference everywhere is the same capture served by hooks (forced by a no-op torch hook on ``lm_head``,
which changes no activation).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

torch = pytest.importorskip("torch")

from mi_catalog.models import load_model  # noqa: E402
from mi_catalog.models.hooks import (  # noqa: E402
    Cache,
    add_vector,
    all_sites,
    capture,
    edit,
    hook_snapshot,
    run_with_grads,
)
from mi_catalog.models.loading import LoadedModel  # noqa: E402
from mi_catalog.models.native import TAPPED_SITES  # noqa: E402
from mi_catalog.models.sites import SITE_NAMES  # noqa: E402
from mi_catalog.models.tiny import tiny_model  # noqa: E402

PROMPTS = ["the cat sat on the mat", "a dog", "the bird and the fish swam"]


@pytest.fixture(scope="module")
def native() -> LoadedModel:
    lm = tiny_model("llama-native", seed=5)  # 4 query heads over 2 K/V heads
    assert lm.backend == "native" and lm.n_kv_heads < lm.n_heads
    return lm


@contextlib.contextmanager
def _hooks_forced(lm: LoadedModel) -> Iterator[None]:
    """A torch hook that changes nothing, so a capture entered now is served by hooks."""
    handle = lm.model.lm_head.register_forward_hook(lambda _m, _a, _o: None)
    try:
        yield
    finally:
        handle.remove()


def _hooked_capture(lm: LoadedModel, batch: object, sites: list | None = None) -> Cache:
    with _hooks_forced(lm), capture(lm, sites) as cache:
        assert not lm.model.tap_recorders  # served by hooks
        lm.logits(batch)
    return cache


def _assert_identical(mine: Cache, reference: Cache) -> None:
    assert mine.keys() and set(mine.keys()) == set(reference.keys())
    for key in sorted(reference.keys()):
        assert mine[key].shape == reference[key].shape, key
        assert torch.equal(mine[key], reference[key]), key
    assert torch.equal(mine.attention_mask, reference.attention_mask)


def test_taps_cover_every_site_of_the_table(native: LoadedModel) -> None:
    """Drift guard: a site added to the table but not tapped would silently fall back to hooks."""
    assert TAPPED_SITES | {"embed", "ln_final"} == set(SITE_NAMES) == set(native.family.sites)


def test_tap_capture_registers_no_hook_and_equals_the_hooked_capture(native: LoadedModel) -> None:
    batch = native.encode(PROMPTS)  # left-padded
    before = hook_snapshot(native.model)
    with capture(native) as cache:
        assert hook_snapshot(native.model) == before == frozenset()
        assert len(native.model.tap_recorders) == 1
        native.logits(batch)
    assert native.model.tap_recorders == []
    assert set(cache.keys()) == {s.key for s in all_sites(native)}
    _assert_identical(cache, _hooked_capture(native, batch))
    assert cache["q.0"].shape[-2:] == (native.n_heads, native.d_head)
    assert cache["k.1"].shape[-2:] == (native.n_kv_heads, native.d_head)


def test_toy_checkpoint_tapped_equals_hooked() -> None:
    toy = load_model("toy", backend="native")
    prompts = [ex.prompt for ex in toy.tasks.examples("facts", n=5, seed=1)]
    batch = toy.encode(prompts)
    with capture(toy) as cache:
        toy.logits(batch)
    _assert_identical(cache, _hooked_capture(toy, batch))


def test_named_sites_record_only_those(native: LoadedModel) -> None:
    sites = ["resid_post.1", "q.0", "mlp_act.1", "ln_final", "attn_pattern.0"]
    batch = native.encode(PROMPTS)
    with capture(native, sites) as cache:
        assert native.model.tap_recorders
        native.logits(batch)
    assert sorted(cache.keys()) == sorted(sites)
    _assert_identical(cache, _hooked_capture(native, batch, sites))


def test_last_forward_wins_and_embed_is_absent_when_embeddings_are_passed(native: LoadedModel) -> None:
    first, second = native.encode(PROMPTS[:1]), native.encode(PROMPTS[1:2])
    with capture(native) as cache:
        native.logits(first)
        native.logits(second)
    _assert_identical(cache, _hooked_capture(native, second))
    embeds = native.model.model.embed_tokens(first.input_ids)
    with torch.no_grad():
        with capture(native) as tapped:
            native.model(inputs_embeds=embeds, attention_mask=first.attention_mask)
        with _hooks_forced(native), capture(native) as hooked:
            native.model(inputs_embeds=embeds, attention_mask=first.attention_mask)
    assert "embed" not in tapped and "embed" not in hooked
    _assert_identical(tapped, hooked)


def test_an_intervention_entered_inside_switches_to_hooks_in_order(native: LoadedModel) -> None:
    """capture, then add_vector at resid_pre.1: a hooked capture sees resid_pre.1 before the addition (its hook
    runs first) and every later site after it; the tapped capture must record exactly that."""
    batch = native.encode(PROMPTS)
    vector = torch.randn(native.d_model, generator=torch.Generator().manual_seed(0))
    with capture(native) as tapped, add_vector(native, "resid_pre.1", vector, positions=None):
        assert native.model.tap_recorders == []  # switched before the addition's hooks
        native.logits(batch)
    with _hooks_forced(native), capture(native) as reference, add_vector(native, "resid_pre.1", vector):
        native.logits(batch)
    _assert_identical(tapped, reference)
    with capture(native) as plain:
        native.logits(batch)
    assert torch.equal(tapped["resid_pre.1"], plain["resid_pre.1"])  # seen before the edit
    assert not torch.equal(tapped["resid_post.1"], plain["resid_post.1"])  # downstream of it


def test_an_intervention_entered_first_is_seen_by_the_taps(native: LoadedModel) -> None:
    batch = native.encode(PROMPTS)
    vector = torch.randn(native.d_model, generator=torch.Generator().manual_seed(1))
    with add_vector(native, "resid_pre.1", vector, positions=None), capture(native) as cache:
        assert not native.model.tap_recorders  # a hook is present: hooked from the start
        native.logits(batch)
    with capture(native) as plain:
        native.logits(batch)
    torch.testing.assert_close(cache["resid_pre.1"], plain["resid_pre.1"] + vector)


def test_a_foreign_hook_registered_during_the_capture_switches_at_the_next_pass(native: LoadedModel) -> None:
    batch = native.encode(PROMPTS)

    def double(_module: object, _args: object, output: torch.Tensor) -> torch.Tensor:
        return output * 2

    with capture(native) as cache:
        native.logits(batch)
        handle = native.model.model.layers[0].mlp.register_forward_hook(double)
        try:
            native.logits(batch)
            assert native.model.tap_recorders == []
        finally:
            handle.remove()
    handle = native.model.model.layers[0].mlp.register_forward_hook(double)
    try:
        with capture(native) as reference:  # hooked from the start, after the foreign hook
            native.logits(batch)
    finally:
        handle.remove()
    _assert_identical(cache, reference)


def test_nested_tapped_captures_both_record(native: LoadedModel) -> None:
    batch = native.encode(PROMPTS)
    with capture(native, ["resid_post.0"]) as outer, capture(native) as inner:
        assert len(native.model.tap_recorders) == 2
        native.logits(batch)
    assert native.model.tap_recorders == []
    assert torch.equal(outer["resid_post.0"], inner["resid_post.0"])


def test_tapped_activations_are_detached_under_grad(native: LoadedModel) -> None:
    batch = native.encode(PROMPTS)
    with torch.enable_grad(), capture(native) as cache:
        native.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits.sum().backward()
    native.model.zero_grad(set_to_none=True)
    assert all(not cache[key].requires_grad for key in sorted(cache.keys()))


def test_attached_capture_and_gradients_are_hooked(native: LoadedModel) -> None:
    batch = native.encode(PROMPTS)
    run = run_with_grads(native, batch, ["resid_post.0", "q.1"], lambda logits: logits[:, -1].sum())
    assert native.model.tap_recorders == [] and hook_snapshot(native.model) == frozenset()
    assert run.grads["q.1"].abs().sum() > 0 and run.grads["resid_post.0"].abs().sum() > 0


def test_an_error_inside_the_capture_leaves_the_model_as_found(native: LoadedModel) -> None:
    with pytest.raises(RuntimeError, match="boom"), capture(native):
        raise RuntimeError("boom")
    assert native.model.tap_recorders == [] and hook_snapshot(native.model) == frozenset()
    batch = native.encode(PROMPTS)
    with capture(native) as cache, edit(native, [("resid_post.0", lambda act, state: None)]):
        native.logits(batch)  # switched to hooks; both removed on exit
    assert cache.keys() and hook_snapshot(native.model) == frozenset() and native.model.tap_recorders == []


def test_output_attentions_patterns_equal_the_attn_pattern_site(native: LoadedModel) -> None:
    batch = native.encode(PROMPTS)
    with torch.no_grad(), capture(native, [f"attn_pattern.{i}" for i in range(native.n_layers)]) as cache:
        out = native.forward(batch, output_attentions=True)
    for layer, pattern in enumerate(out.attentions):
        assert torch.equal(pattern, cache[f"attn_pattern.{layer}"])
