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

from collections.abc import Mapping
from dataclasses import dataclass, field

# How a hook presents the tensor it sees as the site's canonical activation (and writes an edit back):
#   "full"      — as is
#   "heads"     — split the last dim into [n_heads, d_head]
#   "kv_heads"  — split the last dim into [n_kv_heads, d_head] (grouped-query attention K/V)
#   "fused:q|k|v" — the Q, K or V part of one fused QKV projection output, split into heads
#                   (layout from ``Family.qkv_layout``: GPT-2 blocked [Q|K|V], GPT-NeoX per head [q_h k_h v_h])
VIEWS = ("full", "heads", "kv_heads", "fused:q", "fused:k", "fused:v")
# Where on the module the tensor is: its (first) output, its first input, the attention pattern it returns
# (read-only), or resid_mid (no module outputs it: read at the block input, edited through attn_out).
HOOK_KINDS = ("output", "input", "pattern", "resid_mid")


@dataclass(frozen=True)
class HookPoint:
    """One site in one family: a module path (``{layer}`` = the decoder block path), a hook kind and a view."""

    module: str
    kind: str = "output"
    view: str = "full"

    def __post_init__(self) -> None:
        if self.kind not in HOOK_KINDS:
            raise ValueError(f"hook kind {self.kind!r} not in {HOOK_KINDS}")
        if self.view not in VIEWS:
            raise ValueError(f"view {self.view!r} not in {VIEWS}")


def _block(path: str) -> str:
    return "{layer}" + (f".{path}" if path else "")


def site_table(
    *, embed: str, final_norm: str, attn: str, attn_out_proj: str, mlp: str, mlp_out_proj: str, act_fn: str,
    q: HookPoint, k: HookPoint, v: HookPoint,
) -> dict[str, HookPoint]:  # fmt: skip
    """The hook points of one family, as data (pyvene's per-architecture mapping, in TransformerLens names)."""
    return {
        "embed": HookPoint(embed, "output"),
        "resid_pre": HookPoint(_block(""), "input"),
        "resid_mid": HookPoint(_block(attn), "resid_mid"),
        "resid_post": HookPoint(_block(""), "output"),
        "attn_pattern": HookPoint(_block(attn), "pattern"),
        "q": q,
        "k": k,
        "v": v,
        "head_out": HookPoint(_block(attn_out_proj), "input", "heads"),
        "attn_out": HookPoint(_block(attn), "output"),
        "mlp_pre": HookPoint(_block(act_fn), "input"),
        "mlp_act": HookPoint(_block(mlp_out_proj), "input"),
        "mlp_out": HookPoint(_block(mlp), "output"),
        "ln_final": HookPoint(final_norm, "output"),
    }


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
    # Site name → hook point (module path relative to the model, "{layer}" = the decoder block).
    sites: Mapping[str, HookPoint] = field(default_factory=dict)


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
    sites=site_table(
        embed="transformer.wte", final_norm="transformer.ln_f", attn="attn", attn_out_proj="attn.c_proj",
        mlp="mlp", mlp_out_proj="mlp.c_proj", act_fn="mlp.act",
        q=HookPoint("{layer}.attn.c_attn", "output", "fused:q"),
        k=HookPoint("{layer}.attn.c_attn", "output", "fused:k"),
        v=HookPoint("{layer}.attn.c_attn", "output", "fused:v"),
    ),
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
    sites=site_table(
        embed="gpt_neox.embed_in", final_norm="gpt_neox.final_layer_norm", attn="attention",
        attn_out_proj="attention.dense", mlp="mlp", mlp_out_proj="mlp.dense_4h_to_h", act_fn="mlp.act",
        q=HookPoint("{layer}.attention.query_key_value", "output", "fused:q"),
        k=HookPoint("{layer}.attention.query_key_value", "output", "fused:k"),
        v=HookPoint("{layer}.attention.query_key_value", "output", "fused:v"),
    ),
)

LLAMA = Family(
    name="llama",
    model_classes=("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM", "NativeLlamaForCausalLM"),
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
    sites=site_table(
        embed="model.embed_tokens", final_norm="model.norm", attn="self_attn", attn_out_proj="self_attn.o_proj",
        mlp="mlp", mlp_out_proj="mlp.down_proj", act_fn="mlp.act_fn",
        q=HookPoint("{layer}.self_attn.q_proj", "output", "heads"),
        k=HookPoint("{layer}.self_attn.k_proj", "output", "kv_heads"),
        v=HookPoint("{layer}.self_attn.v_proj", "output", "kv_heads"),
    ),
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
