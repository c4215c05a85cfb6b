"""Architecture families as data: where each of the survey's objects lives in a model.

One :class:`Family` per architecture maps the objects of *Locate, Steer, and
Improve* (token embedding, residual stream, attention head, FFN, neuron) to
module paths inside a Hugging Face model. A model is matched to its family by
its **class** (``type(model).__name__`` and its bases) — never by a substring
of its name — so a checkpoint of an unsupported architecture fails loudly
instead of being half-hooked.

Pure data, no torch: the CLI can list supported families without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """Module paths of one architecture family (relative paths are inside one decoder layer)."""

    name: str
    model_classes: tuple[str, ...]  # the *ForCausalLM / *LMHeadModel classes of this family
    # Model-level paths.
    layers: str  # the ModuleList of decoder blocks
    embed: str  # token embedding W_E (x^0 = W_E[t], before any positional embedding)
    final_norm: str  # ln_final
    unembed: str  # W_U (lm_head)
    # Per-layer paths.
    attn: str  # attention module; its forward returns (attn_out, attn_pattern)
    attn_out_proj: str  # W_O: its *input* is the concatenated per-head outputs z
    mlp: str  # FFN module; its output is mlp_out
    mlp_in: str  # W_in (up projection)
    mlp_out_proj: str  # W_out: its *input* is the neuron activations s^l
    mlp_gate: str | None = None  # W_gate of a gated FFN (SwiGLU)
    qkv_fused: str | None = None  # one fused QKV projection (GPT-2 c_attn, NeoX query_key_value)
    qkv_layout: str = "separate"  # "separate" | "blocked" (GPT-2: [Q|K|V]) | "per_head" (NeoX: [q_h k_h v_h]...)
    q_proj: str | None = None
    k_proj: str | None = None
    v_proj: str | None = None
    conv1d: bool = False  # GPT-2's Conv1D stores weights as [in, out], transposed w.r.t. nn.Linear
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"
    parallel_residual_attr: str | None = None  # config flag: attention and FFN read the same residual
    pos_embed: str | None = None  # learned absolute position embedding (GPT-2 wpe); RoPE families have none


GPT2 = Family(
    name="gpt2",
    model_classes=("GPT2LMHeadModel",),
    layers="transformer.h",
    embed="transformer.wte",
    pos_embed="transformer.wpe",
    final_norm="transformer.ln_f",
    unembed="lm_head",
    attn="attn",
    attn_out_proj="attn.c_proj",
    mlp="mlp",
    mlp_in="mlp.c_fc",
    mlp_out_proj="mlp.c_proj",
    qkv_fused="attn.c_attn",
    qkv_layout="blocked",
    conv1d=True,
)

GPT_NEOX = Family(
    name="gpt-neox",
    model_classes=("GPTNeoXForCausalLM",),
    layers="gpt_neox.layers",
    embed="gpt_neox.embed_in",
    final_norm="gpt_neox.final_layer_norm",
    unembed="lm_head",
    attn="attention",
    attn_out_proj="attention.dense",
    mlp="mlp",
    mlp_in="mlp.dense_h_to_4h",
    mlp_out_proj="mlp.dense_4h_to_h",
    qkv_fused="attention.query_key_value",
    qkv_layout="per_head",
    parallel_residual_attr="use_parallel_residual",
)

LLAMA = Family(
    name="llama",
    model_classes=("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"),
    layers="model.layers",
    embed="model.embed_tokens",
    final_norm="model.norm",
    unembed="lm_head",
    attn="self_attn",
    attn_out_proj="self_attn.o_proj",
    mlp="mlp",
    mlp_in="mlp.up_proj",
    mlp_gate="mlp.gate_proj",
    mlp_out_proj="mlp.down_proj",
    q_proj="self_attn.q_proj",
    k_proj="self_attn.k_proj",
    v_proj="self_attn.v_proj",
    norm="rmsnorm",
)

FAMILIES: tuple[Family, ...] = (GPT2, GPT_NEOX, LLAMA)


class UnsupportedModelError(ValueError):
    """The model's class is in no family table."""


def supported_classes() -> dict[str, str]:
    """Model class name → family name."""
    return {cls: fam.name for fam in FAMILIES for cls in fam.model_classes}


def describe_supported() -> str:
    return "; ".join(f"{fam.name}: {', '.join(fam.model_classes)}" for fam in FAMILIES)


def family_for_class_names(class_names: list[str]) -> Family:
    """The family of the first class name (a model's class, then its bases) that a table lists."""
    by_class = {cls: fam for fam in FAMILIES for cls in fam.model_classes}
    for name in class_names:
        if name in by_class:
            return by_class[name]
    raise UnsupportedModelError(
        f"unsupported model class {class_names[0]!r}; supported families and classes — {describe_supported()}"
    )


def family_for_model(model: object) -> Family:
    return family_for_class_names([cls.__name__ for cls in type(model).__mro__])
