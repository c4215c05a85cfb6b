"""Weight accessors in TransformerLens orientation (inputs on the left: ``x @ W``).

Hugging Face stores ``nn.Linear`` weights as [out, in], GPT-2's ``Conv1D`` as
[in, out], and GPT-NeoX fuses Q, K and V per head. These functions hide all of
that: every matrix comes back as [in, out] (per head: [n_heads, in, out]) as a
view or copy of the live weights — read them, do not write through them.
"""

from __future__ import annotations

import torch
from torch import nn

from mi_catalog.models.loading import LoadedModel


def get_module(root: nn.Module, path: str) -> nn.Module:
    module = root
    for part in path.split("."):
        module = module[int(part)] if part.isdigit() else getattr(module, part)  # type: ignore[index]
    return module


def layer_module(lm: LoadedModel, layer: int) -> nn.Module:
    layers = get_module(lm.model, lm.family.layers)
    if not 0 <= layer < len(layers):  # type: ignore[arg-type]
        raise IndexError(f"layer {layer} out of range: the model has {len(layers)} layers")  # type: ignore[arg-type]
    return layers[layer]  # type: ignore[index]


def layer_submodule(lm: LoadedModel, layer: int, path: str) -> nn.Module:
    return get_module(layer_module(lm, layer), path)


def _weight(module: nn.Module) -> torch.Tensor:
    weight = module.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def _in_out(lm: LoadedModel, module: nn.Module) -> torch.Tensor:
    """A projection's weight as [in, out]."""
    weight = _weight(module)
    return weight if lm.family.conv1d else weight.T


def _bias(module: nn.Module) -> torch.Tensor | None:
    bias = getattr(module, "bias", None)
    return bias if isinstance(bias, torch.Tensor) else None


def W_E(lm: LoadedModel) -> torch.Tensor:
    """Token embedding matrix [d_vocab, d_model]."""
    return _weight(get_module(lm.model, lm.family.embed))


def W_U(lm: LoadedModel) -> torch.Tensor:
    """Unembedding matrix [d_model, d_vocab]."""
    return _weight(get_module(lm.model, lm.family.unembed)).T


def unembed(lm: LoadedModel, resid: torch.Tensor) -> torch.Tensor:
    """Decode residual-stream vectors [..., d_model] through ln_final and W_U → logits [..., d_vocab]."""
    final_norm = get_module(lm.model, lm.family.final_norm)
    lm_head = get_module(lm.model, lm.family.unembed)
    return lm_head(final_norm(resid))


def W_in(lm: LoadedModel, layer: int) -> torch.Tensor:
    """FFN input (up) projection [d_model, d_mlp]; column j is neuron j's key k_j."""
    return _in_out(lm, layer_submodule(lm, layer, lm.family.mlp_in))


def W_gate(lm: LoadedModel, layer: int) -> torch.Tensor | None:
    """Gate projection [d_model, d_mlp] of a gated (SwiGLU) FFN; None for a plain FFN."""
    path = lm.family.mlp_gate
    return None if path is None else _in_out(lm, layer_submodule(lm, layer, path))


def W_out(lm: LoadedModel, layer: int) -> torch.Tensor:
    """FFN output (down) projection [d_mlp, d_model]; row j is neuron j's value v_j."""
    return _in_out(lm, layer_submodule(lm, layer, lm.family.mlp_out_proj))


def b_out(lm: LoadedModel, layer: int) -> torch.Tensor | None:
    """FFN output bias [d_model] (None for bias-free Llama-family FFNs)."""
    return _bias(layer_submodule(lm, layer, lm.family.mlp_out_proj))


def neuron_key(lm: LoadedModel, layer: int, neuron: int) -> torch.Tensor:
    """k_j: the direction neuron j reads from the residual stream [d_model]."""
    return W_in(lm, layer)[:, neuron]


def neuron_value(lm: LoadedModel, layer: int, neuron: int) -> torch.Tensor:
    """v_j: the direction neuron j writes into the residual stream [d_model]."""
    return W_out(lm, layer)[neuron]


def W_O(lm: LoadedModel, layer: int) -> torch.Tensor:
    """Per-head output projection [n_heads, d_head, d_model]."""
    w = _in_out(lm, layer_submodule(lm, layer, lm.family.attn_out_proj))  # [n_heads*d_head, d_model]
    return w.reshape(lm.n_heads, lm.d_head, -1)


def b_O(lm: LoadedModel, layer: int) -> torch.Tensor | None:
    """Attention output bias [d_model] (None when the projection has no bias)."""
    return _bias(layer_submodule(lm, layer, lm.family.attn_out_proj))


def W_QKV(lm: LoadedModel, layer: int) -> dict[str, torch.Tensor]:
    """Per-head query/key/value matrices: W_Q [n_heads, d_model, d_head], W_K and W_V [n_kv_heads, d_model, d_head].

    Grouped-query attention (Llama-family ``num_key_value_heads``) has fewer K/V heads than query heads:
    query head h uses K/V head ``h // (n_heads // n_kv_heads)``.
    """
    fam, h, kv, dh = lm.family, lm.n_heads, lm.n_kv_heads, lm.d_head

    def per_head(w: torch.Tensor, n: int) -> torch.Tensor:  # [d_model, n*d_head] → [n, d_model, d_head]
        return w.reshape(w.shape[0], n, dh).permute(1, 0, 2)

    if fam.qkv_layout == "separate":
        assert fam.q_proj and fam.k_proj and fam.v_proj
        q, k, v = (_in_out(lm, layer_submodule(lm, layer, p)) for p in (fam.q_proj, fam.k_proj, fam.v_proj))
        return {"W_Q": per_head(q, h), "W_K": per_head(k, kv), "W_V": per_head(v, kv)}
    assert fam.qkv_fused
    w = _in_out(lm, layer_submodule(lm, layer, fam.qkv_fused))  # [d_model, 3*n_heads*d_head]
    if fam.qkv_layout == "blocked":  # GPT-2: [Q | K | V], each [d_model, n_heads*d_head]
        q, k, v = w.split(h * dh, dim=1)
        return {"W_Q": per_head(q, h), "W_K": per_head(k, h), "W_V": per_head(v, h)}
    # GPT-NeoX: per head [q_h | k_h | v_h] — the forward views the output as [..., n_heads, 3*d_head]
    w = w.reshape(w.shape[0], h, 3, dh)  # [d_model, n_heads, 3, d_head]
    q, k, v = (w[:, :, i].permute(1, 0, 2) for i in range(3))
    return {"W_Q": q, "W_K": k, "W_V": v}
