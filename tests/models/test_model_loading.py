"""Family resolution, loading errors and weight accessors."""

from __future__ import annotations

import sys

import pytest
import torch

from mi_catalog.models import (
    W_E,
    W_QKV,
    W_U,
    UnsupportedModelError,
    W_in,
    W_out,
    capture,
    neuron_key,
    neuron_value,
    unembed,
    wrap_model,
)
from mi_catalog.models.families import FAMILIES, family_for_class_names, supported_classes
from mi_catalog.models.weights import layer_submodule


def test_unsupported_model_is_a_clear_error_listing_the_families() -> None:
    import transformers as tf

    config = tf.OPTConfig(num_hidden_layers=1, hidden_size=16, ffn_dim=32, num_attention_heads=2, vocab_size=20,
                          word_embed_proj_dim=16, max_position_embeddings=32)  # fmt: skip
    with pytest.raises(UnsupportedModelError) as err:
        wrap_model(tf.OPTForCausalLM(config))
    message = str(err.value)
    assert "OPTForCausalLM" in message
    for fam in FAMILIES:
        assert fam.name in message
    assert "LlamaForCausalLM" in message and "GPT2LMHeadModel" in message


def test_family_is_resolved_by_class_never_by_name_substring() -> None:
    assert family_for_class_names(["Qwen2ForCausalLM"]).name == "llama"
    with pytest.raises(UnsupportedModelError):
        family_for_class_names(["MyLlamaForCausalLMv2"])  # contains "Llama" but is not a listed class
    assert set(supported_classes()) >= {"GPT2LMHeadModel", "GPTNeoXForCausalLM", "LlamaForCausalLM",
                                        "Qwen2ForCausalLM", "MistralForCausalLM"}  # fmt: skip


def test_missing_run_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import mi_catalog.models as models

    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` raise ImportError
    with pytest.raises(models.RunExtraMissing, match=r"pip install 'mi-catalog\[run\]'"):
        models.require_run_extra()
    with pytest.raises(models.RunExtraMissing):
        models.load_model  # noqa: B018  (attribute access triggers the check)


def test_models_package_import_is_light() -> None:
    import subprocess

    code = "import sys, mi_catalog.models, mi_catalog.models.sites, mi_catalog.models.families; " \
           "print('torch' in sys.modules)"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_weight_orientation(lm) -> None:  # type: ignore[no-untyped-def]
    d_vocab = len(lm.tokenizer)
    assert W_E(lm).shape == (d_vocab, lm.d_model)
    assert W_U(lm).shape == (lm.d_model, d_vocab)
    w_in, w_out = W_in(lm, 0), W_out(lm, 0)
    assert w_in.shape[0] == lm.d_model and w_out.shape == (w_in.shape[1], lm.d_model)
    assert torch.equal(neuron_key(lm, 0, 3), w_in[:, 3])
    assert torch.equal(neuron_value(lm, 0, 3), w_out[3])
    qkv = W_QKV(lm, 1)
    assert qkv["W_Q"].shape == (lm.n_heads, lm.d_model, lm.d_head)
    assert qkv["W_K"].shape == qkv["W_V"].shape == (lm.n_kv_heads, lm.d_model, lm.d_head)


def test_per_head_value_matrices_reproduce_head_outputs(lm, batch) -> None:  # type: ignore[no-untyped-def]
    """z[q, h] = Σ_k A[h, q, k] · (x_k W_V[g(h)] + b_V): checks the QKV layout (GPT-2 blocked, NeoX per head, GQA)."""
    attn = layer_submodule(lm, 0, lm.family.attn)
    seen: dict[str, torch.Tensor] = {}
    handle = attn.register_forward_pre_hook(
        lambda _m, args, kwargs: seen.update(x=args[0] if args else kwargs["hidden_states"]), with_kwargs=True
    )
    try:
        with capture(lm, ["attn_pattern.0", "head_out.0"]) as cache:
            lm.logits(batch)
    finally:
        handle.remove()
    x = seen["x"]  # [batch, pos, d_model], the normalised attention input
    w_v = W_QKV(lm, 0)["W_V"]  # [n_kv_heads, d_model, d_head]
    v_bias = _value_bias(lm, x, w_v)  # [n_kv_heads, d_head]
    group = lm.n_heads // lm.n_kv_heads
    v = torch.einsum("bpm,gmd->bpgd", x, w_v) + v_bias  # [batch, pos, n_kv_heads, d_head]
    v = v.repeat_interleave(group, dim=2)  # [batch, pos, n_heads, d_head]
    z = torch.einsum("bhqk,bkhd->bqhd", cache["attn_pattern.0"], v)
    torch.testing.assert_close(z, cache["head_out.0"], atol=1e-5, rtol=1e-5)


def _value_bias(lm, x: torch.Tensor, w_v: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The value bias per head, read off the projection's output at x = 0 with the family's layout."""
    fam = lm.family
    zero = torch.zeros(1, 1, lm.d_model)
    if fam.v_proj:
        return layer_submodule(lm, 0, fam.v_proj)(zero).reshape(lm.n_kv_heads, lm.d_head)
    fused = layer_submodule(lm, 0, fam.qkv_fused)(zero).reshape(-1)  # [3 * n_heads * d_head]
    if fam.qkv_layout == "blocked":
        return fused.split(lm.n_heads * lm.d_head)[2].reshape(lm.n_heads, lm.d_head)
    return fused.reshape(lm.n_heads, 3, lm.d_head)[:, 2]


def test_unembed_of_the_last_residual_equals_the_logits(lm, batch) -> None:  # type: ignore[no-untyped-def]
    last = f"resid_post.{lm.n_layers - 1}"
    with capture(lm, [last]) as cache:
        logits = lm.logits(batch)
    with torch.no_grad():
        torch.testing.assert_close(unembed(lm, cache[last]), logits, atol=1e-5, rtol=1e-5)
