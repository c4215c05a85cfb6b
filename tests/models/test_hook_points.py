"""Invariants of the shared hook points (one torch hook per module and phase serving every site on it).

The interventions must behave exactly as one torch hook per site and intervention did: the registration
order holds, also across sites that share a module and across hooks other code puts between ours; an
intervention exited out of order removes only its own entries; a capture changes nothing and is the same
in a padded batch as for each prompt alone; an attached capture is the tensor the forward pass uses.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import pickle
from typing import Any

import pytest
import torch

from mi_catalog.models import W_O, all_sites, capture, edit, hook_snapshot, scale
from mi_catalog.models import hooks as hooks_module
from mi_catalog.models.hooks import run_with_grads
from mi_catalog.models.weights import layer_module

EXACT: dict[str, Any] = {"atol": 0.0, "rtol": 0.0}
CLOSE: dict[str, Any] = {"atol": 1e-5, "rtol": 1e-5}


def _first(output: object) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output[0]  # type: ignore[index,return-value]


def _no_entries_left(lm) -> bool:  # type: ignore[no-untyped-def]
    return all(not hooks_module._TAILS.get(module) for module in lm.model.modules())


def test_one_torch_hook_per_module_and_phase_serves_every_site(lm, batch) -> None:  # type: ignore[no-untyped-def]
    before = hook_snapshot(lm.model)
    sites = all_sites(lm)
    with capture(lm) as cache, edit(lm, [(s, lambda act, state: None) for s in sites]):
        added = hook_snapshot(lm.model) - before
        lm.logits(batch)
    per_point = collections.Counter((path, kind) for path, kind, _ in added)
    assert per_point.pop(("", "forward_pre")) == 2  # the two interventions' attention-mask trackers
    assert set(per_point.values()) == {1}, per_point  # two interventions × 50 sites, one hook per module and phase
    assert len(cache) == len(sites)
    assert hook_snapshot(lm.model) == before
    assert _no_entries_left(lm)


def test_nested_interventions_on_one_module_run_in_registration_order(lm, batch) -> None:  # type: ignore[no-untyped-def]
    with capture(lm, ["resid_post.0"]) as bare:
        lm.logits(batch)
    with (
        capture(lm, ["resid_post.0"]) as outer,
        scale(lm, "resid_post.0", 2.0),
        capture(lm, ["resid_post.0"]) as middle,
        scale(lm, "resid_post.0", 3.0),
        capture(lm, ["resid_post.0"]) as inner,
    ):
        lm.logits(batch)
    x = bare["resid_post.0"]
    torch.testing.assert_close(outer["resid_post.0"], x, **EXACT)
    torch.testing.assert_close(middle["resid_post.0"], x * 2.0, **EXACT)
    torch.testing.assert_close(inner["resid_post.0"], x * 2.0 * 3.0, **EXACT)


def test_sites_sharing_the_attention_output_keep_their_order(lm, batch) -> None:  # type: ignore[no-untyped-def]
    """attn_out and resid_mid both live on the attention module's output: a resid_mid capture registered
    before an attn_out ablation sees the unablated sum, one registered after sees resid_pre + 0."""
    if lm.parallel_residual:
        pytest.skip("no resid_mid with a parallel residual")
    with capture(lm, ["resid_pre.0", "attn_out.0"]) as bare:
        lm.logits(batch)
    with (
        capture(lm, ["resid_mid.0"]) as before_ablation,
        scale(lm, "attn_out.0", 0.0),
        capture(lm, ["resid_mid.0", "attn_out.0"]) as after_ablation,
    ):
        lm.logits(batch)
    resid_pre = bare["resid_pre.0"]
    torch.testing.assert_close(before_ablation["resid_mid.0"], resid_pre + bare["attn_out.0"], **EXACT)
    assert float(after_ablation["attn_out.0"].abs().max()) == 0.0
    torch.testing.assert_close(after_ablation["resid_mid.0"], resid_pre, **EXACT)


def test_a_foreign_hook_between_two_interventions_runs_between_them(lm, batch) -> None:  # type: ignore[no-untyped-def]
    """A hook registered by other code after our first intervention and before our second must see the first
    one's edit and not the second's — as with one torch hook per intervention."""
    block = layer_module(lm, 0)
    seen: list[torch.Tensor] = []
    with capture(lm, ["resid_post.0"]) as bare:
        lm.logits(batch)
    with scale(lm, "resid_post.0", 2.0):
        handle = block.register_forward_hook(lambda _m, _a, out: seen.append(_first(out).clone()))
        try:
            with scale(lm, "resid_post.0", 3.0), capture(lm, ["resid_post.0"]) as last:
                lm.logits(batch)
        finally:
            handle.remove()
    x = bare["resid_post.0"]
    torch.testing.assert_close(seen[0], x * 2.0, **EXACT)
    torch.testing.assert_close(last["resid_post.0"], x * 2.0 * 3.0, **EXACT)
    assert _no_entries_left(lm)


def test_block_output_edits_reach_the_next_blocks_input_whatever_the_order(lm, batch) -> None:  # type: ignore[no-untyped-def]
    """resid_pre.(l+1) is block l's output after *every* hook on it: a capture at resid_pre.1 sees an edit at
    resid_post.0 even when registered first, and a capture at resid_post.0 never sees an edit at resid_pre.1
    (both would break if resid_pre.(l+1) were served from block l's output hook in registration order)."""
    with (
        capture(lm, ["resid_pre.1"]) as early,
        scale(lm, "resid_post.0", 2.0),
        capture(lm, ["resid_post.0", "resid_pre.1"]) as late,
    ):
        lm.logits(batch)
    torch.testing.assert_close(late["resid_pre.1"], late["resid_post.0"], **EXACT)
    torch.testing.assert_close(early["resid_pre.1"], late["resid_post.0"], **EXACT)
    with capture(lm, ["resid_post.0"]) as bare:
        lm.logits(batch)
    torch.testing.assert_close(late["resid_post.0"], bare["resid_post.0"] * 2.0, **EXACT)
    with scale(lm, "resid_pre.1", 0.5), capture(lm, ["resid_post.0", "resid_pre.1"]) as cache:
        lm.logits(batch)
    torch.testing.assert_close(cache["resid_post.0"], bare["resid_post.0"], **EXACT)
    torch.testing.assert_close(cache["resid_pre.1"], bare["resid_post.0"] * 0.5, **EXACT)


def test_interventions_exited_out_of_order_remove_only_their_own_entries(lm, batch) -> None:  # type: ignore[no-untyped-def]
    before = hook_snapshot(lm.model)
    with capture(lm, ["resid_post.0", "head_out.0"]) as bare:
        lm.logits(batch)
    outer = scale(lm, "resid_post.0", 2.0)
    inner = capture(lm, ["resid_post.0", "head_out.0"])
    outer.__enter__()
    cache = inner.__enter__()
    outer.__exit__(None, None, None)  # the outer one first: the inner capture must keep working, unscaled
    lm.logits(batch)
    torch.testing.assert_close(cache["resid_post.0"], bare["resid_post.0"], **EXACT)
    with scale(lm, "resid_post.0", 3.0), capture(lm, ["resid_post.0"]) as later:
        lm.logits(batch)
    torch.testing.assert_close(cache["resid_post.0"], bare["resid_post.0"], **EXACT)
    torch.testing.assert_close(later["resid_post.0"], bare["resid_post.0"] * 3.0, **EXACT)
    inner.__exit__(None, None, None)
    assert hook_snapshot(lm.model) == before
    assert _no_entries_left(lm)


def test_captures_of_a_padded_batch_equal_each_prompt_alone(lm, batch, prompts) -> None:  # type: ignore[no-untyped-def]
    with capture(lm) as batched:
        lm.logits(batch)
    for row, prompt in enumerate(prompts):
        with capture(lm) as alone:
            lm.logits(lm.encode([prompt]))
        real = batch.attention_mask[row].bool()
        assert alone.keys() == batched.keys()
        for key, act in alone.acts.items():
            if key.startswith("attn_pattern"):  # [batch, n_heads, q_pos, k_pos]: the real queries and keys
                got = batched.acts[key][row][:, real][:, :, real]
            else:
                got = batched.acts[key][row][real]
            torch.testing.assert_close(got, act[0], **CLOSE, msg=key)


def test_no_op_interventions_stacked_on_every_site_leave_the_logits_identical(lm, batch) -> None:  # type: ignore[no-untyped-def]
    base = lm.logits(batch)
    sites = all_sites(lm)
    identity = [(s, lambda act, state: act) for s in sites if s.name != "attn_pattern"]
    with (
        capture(lm, detach=False) as attached,
        edit(lm, identity),
        edit(lm, [(s, lambda act, state: None) for s in sites]),
        capture(lm) as detached,
    ):
        logits = lm.logits(batch)
    torch.testing.assert_close(logits, base, **EXACT)
    assert attached.keys() == detached.keys()
    for key in detached.acts:
        torch.testing.assert_close(attached.acts[key], detached.acts[key], **EXACT, msg=key)


def test_captures_under_autograd_are_detached(lm, batch) -> None:  # type: ignore[no-untyped-def]
    track = [("embed", lambda act, state: act.detach().requires_grad_(True))]
    with torch.enable_grad(), edit(lm, track), capture(lm) as cache:
        logits = lm.forward(batch).logits
    assert logits.requires_grad  # so every site's activation was in the graph
    assert not any(act.requires_grad for act in cache.acts.values())


def test_an_attached_head_capture_is_the_tensor_the_forward_pass_uses(lm, batch) -> None:  # type: ignore[no-untyped-def]
    """run_with_grads captures with detach=False: the per-head view of W_O's input must be in the graph, so
    d(metric)/d(z) = W_O · d(metric)/d(attn_out) (zeros if the capture handed back a copy)."""
    run = run_with_grads(lm, batch, ["head_out.0", "attn_out.0"], lambda logits: logits[:, -1].logsumexp(-1).sum())
    grad_z = run.grads["head_out.0"]  # [batch, pos, n_heads, d_head]
    expected = torch.einsum("bpm,hdm->bphd", run.grads["attn_out.0"], W_O(lm, 0))
    assert float(grad_z.abs().max()) > 0
    torch.testing.assert_close(grad_z, expected, **CLOSE)


def test_an_error_inside_a_shared_hook_removes_every_entry(lm, batch) -> None:  # type: ignore[no-untyped-def]
    before = hook_snapshot(lm.model)

    def boom(act: torch.Tensor, state: object) -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"), capture(lm), edit(lm, [("mlp_out.0", boom)]), capture(lm):
        lm.logits(batch)
    assert hook_snapshot(lm.model) == before
    assert _no_entries_left(lm)
    with contextlib.suppress(KeyError), edit(lm, [("resid_post.0", boom)]):
        lm.logits(batch)
    assert hook_snapshot(lm.model) == before


def test_deferred_views_and_sums_read_as_the_eager_values(lm, batch) -> None:  # type: ignore[no-untyped-def]
    """A detached capture makes per-head views and resid_mid when first read; every way of reading (indexing,
    ``.acts``, a copy, a pickle) gives the values an attached capture holds."""
    sites = [s for s in all_sites(lm) if s.name in ("q", "k", "v", "head_out", "resid_mid")]
    with capture(lm, sites, detach=False) as eager, capture(lm, sites) as lazy:
        lm.logits(batch)
    copied = copy.deepcopy(lazy)
    assert copied.keys() == lazy.keys() == eager.keys()
    pickled = pickle.loads(pickle.dumps(lazy))
    for s in sites:
        for cache in (lazy, copied, pickled):
            torch.testing.assert_close(cache[s], eager.acts[s.key], **EXACT, msg=s.key)
    with capture(lm, sites) as fresh:
        lm.logits(batch)
    for key, act in fresh.acts.items():  # .acts without any indexing first
        assert isinstance(act, torch.Tensor)
        torch.testing.assert_close(act, eager.acts[key], **EXACT, msg=key)


def test_a_resid_mid_summand_changed_in_place_after_capture_is_an_error(lm, batch) -> None:  # type: ignore[no-untyped-def]
    if lm.parallel_residual:
        pytest.skip("no resid_mid with a parallel residual")

    def in_place(act: torch.Tensor, state: object) -> torch.Tensor:
        return act.mul_(2.0)  # outside the edit contract (return a new tensor), but must not go unnoticed

    with capture(lm, ["resid_mid.0", "resid_post.0"]) as cache, edit(lm, [("attn_out.0", in_place)]):
        lm.logits(batch)
    assert cache["resid_post.0"].shape[0] == batch.shape[0]
    with pytest.raises(RuntimeError, match="in place"):
        cache["resid_mid.0"]
