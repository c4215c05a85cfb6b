"""massive-activations: a planted huge activation is found at its layer, dimension and token; head output norms are
what each head writes into the residual stream (checked by ablating the other heads)."""

from __future__ import annotations

import pytest
import torch

from mi_catalog.methods.data import RunData
from mi_catalog.models.hooks import ablate, add_vector, capture
from reference_impls import massive_activations as ma


def _data(lm, task: str = "facts", n: int = 4) -> RunData:  # type: ignore[no-untyped-def]
    return RunData(task=task, examples=lm.tasks.examples(task, n, 0))


def test_small_models_have_none_and_the_output_is_complete(tiny) -> None:  # type: ignore[no-untyped-def]
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    out = ma.run(tiny, ma.Spec(), _data(tiny))
    for k, v in tiny.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert out.metrics["massive_count"] == 0 and out.metrics["massive_first_layer"] == -1
    heads = [f for f in out.findings if f.object == "attention-head"]
    assert len(heads) == tiny.n_layers * tiny.n_heads
    assert out.metrics["head_norm_top"] == pytest.approx(max(f.score for f in heads), abs=1e-5)


@pytest.mark.parametrize("position", [0, 2])
def test_a_planted_huge_activation_is_found_where_it_was_put(tiny, position: int) -> None:  # type: ignore[no-untyped-def]
    dim = 5
    vector = torch.zeros(tiny.d_model)
    vector[dim] = 1e5
    with add_vector(tiny, "resid_post.0", vector, positions=position):
        out = ma.run(tiny, ma.Spec(), _data(tiny))
    assert out.metrics["massive_first_layer"] == 0
    assert out.metrics["massive_count"] >= 4  # every prompt, from layer 0 on
    top = out.findings[0]
    assert (top.object, top.index) == ("residual-stream", dim)  # it persists: layer 0 or the next one may rank first
    assert float(out.tensors["dim_max_ratio"][0, dim]) >= 1000
    assert f"(pos {position})" in top.label and "massive" in top.label


def test_a_planted_activation_in_a_later_layer_of_the_toy(toy) -> None:  # type: ignore[no-untyped-def]
    vector = torch.zeros(toy.d_model)
    vector[17] = -2e5
    with add_vector(toy, "resid_post.2", vector, positions=-1):
        out = ma.run(toy, ma.Spec(), _data(toy, "induction", 8))
    assert out.metrics["massive_first_layer"] == 2
    assert (out.findings[0].layer, out.findings[0].index) in {(2, 17), (3, 17)}
    assert out.tensors["massive_count_by_layer"][:2].sum() == 0


def test_head_norm_is_what_the_head_writes(tiny) -> None:  # type: ignore[no-untyped-def]
    layer, head = tiny.n_layers - 1, 1
    batch = tiny.encode([tiny.tasks.examples("facts", 1, 0)[0].prompt])
    others = [h for h in range(tiny.n_heads) if h != head]
    with (
        ablate(tiny, f"head_out.{layer}", "zero", heads=others),
        capture(tiny, [f"attn_out.{layer}", f"head_out.{layer}"]) as one,
    ):
        tiny.logits(batch)
    with ablate(tiny, f"head_out.{layer}", "zero"), capture(tiny, [f"attn_out.{layer}"]) as none:
        tiny.logits(batch)
    written = (one[f"attn_out.{layer}"] - none[f"attn_out.{layer}"]).float().norm(dim=-1)  # [1, pos]
    norms = ma.head_output_norms(tiny, one[f"head_out.{layer}"], layer)[..., head]  # [1, pos]
    torch.testing.assert_close(norms, written, atol=1e-4, rtol=1e-3)
