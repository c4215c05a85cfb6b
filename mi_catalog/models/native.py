"""Our own Llama: the model code for plain Llama checkpoints, without importing transformers.

Why: a cold ``load_model`` of SmolLM2-135M through transformers costs 3.2–3.5 s, two thirds of it
transformers importing its loading stack (kernels hub, ``torch.distributed.tensor``, ``torch._dynamo``)
before a single weight is read. This module is a few hundred lines of torch; it reads ``config.json``,
``model.safetensors`` (memory-mapped) and ``tokenizer.json`` directly, and loads the same checkpoint in
well under a second — TransformerLens-style, but keeping **Hugging Face's module tree and parameter
names** (``model.layers.3.self_attn.q_proj.weight`` …), so the Llama family's site table, every hook
point and every weight accessor apply unchanged.

It computes exactly what transformers' ``LlamaForCausalLM`` computes with eager attention (RMSNorm in
float32, rotate-half RoPE, additive mask with the dtype's minimum, softmax in float32, SwiGLU): the parity
tests compare logits, attention patterns and every site's activation with transformers on random-init
models and on the shipped checkpoints. A :class:`KVCache` serves the implementations that continue one shared prefix many times. What it does not do:
``generate`` (``LoadedModel.generate`` runs full forwards anyway), RoPE scaling, attention/MLP biases, tensor
parallelism. A checkpoint needing any of those is loaded by transformers (:func:`native_support` says why);
nothing is approximated.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeAlias

import torch
from torch import nn

NATIVE_ARCHITECTURES = ("LlamaForCausalLM",)


class NativeConfigError(ValueError):
    """A config our Llama cannot run exactly (the message says which field)."""


@dataclass
class NativeLlamaConfig:
    """The fields of a Hugging Face ``LlamaConfig`` this implementation reads (same names and meaning)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    architectures: list[str] = field(default_factory=lambda: ["LlamaForCausalLM"])
    model_type: str = "llama"
    _attn_implementation: str = "eager"  # the only one: patterns are always materialised

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> NativeLlamaConfig:
        """Parse a ``config.json``; raises :class:`NativeConfigError` naming the field that needs transformers."""
        reason = native_support(raw)
        if reason:
            raise NativeConfigError(reason)
        heads = int(raw["num_attention_heads"])
        rope = raw.get("rope_parameters") or {}
        return cls(
            vocab_size=int(raw["vocab_size"]),
            hidden_size=int(raw["hidden_size"]),
            intermediate_size=int(raw["intermediate_size"]),
            num_hidden_layers=int(raw["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(raw.get("num_key_value_heads") or heads),
            head_dim=int(raw.get("head_dim") or int(raw["hidden_size"]) // heads),
            max_position_embeddings=int(raw.get("max_position_embeddings", 2048)),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope.get("rope_theta", raw.get("rope_theta", 10000.0))),
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            bos_token_id=raw.get("bos_token_id"),
            eos_token_id=raw.get("eos_token_id"),
            pad_token_id=raw.get("pad_token_id"),
            architectures=list(raw.get("architectures") or ["LlamaForCausalLM"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


def native_support(raw: dict[str, Any]) -> str | None:
    """None when our Llama runs this ``config.json`` exactly, else the reason (one phrase) it cannot."""
    archs = list(raw.get("architectures") or [])
    if archs[:1] != ["LlamaForCausalLM"] or raw.get("model_type", "llama") != "llama":
        return f"architecture {archs[:1] or raw.get('model_type')} is not plain LlamaForCausalLM"
    if raw.get("hidden_act", "silu") != "silu":
        return f"hidden_act {raw.get('hidden_act')!r} (only silu)"
    for flag in ("attention_bias", "mlp_bias"):
        if raw.get(flag):
            return f"{flag} is set (biases are not implemented)"
    if int(raw.get("pretraining_tp", 1) or 1) != 1:
        return "pretraining_tp != 1"
    rope = raw.get("rope_parameters") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default" or raw.get("rope_scaling"):
        return f"RoPE scaling {rope_type if rope_type != 'default' else raw.get('rope_scaling')!r}"
    missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                           "num_attention_heads") if k not in raw]  # fmt: skip
    if missing:
        return f"config.json lacks {', '.join(missing)}"
    return None


# ---------------------------------------------------------------------------
# Modules (Hugging Face's names, so the Llama family table applies)
# ---------------------------------------------------------------------------


class Linear(nn.Linear):
    """``nn.Linear`` whose weights start uninitialised: the model is only ever built to receive a checkpoint's
    weights, and random init (or init on the meta device, which imports torch._dynamo: 1.7 s) would be wasted."""

    def reset_parameters(self) -> None:
        pass


class Embedding(nn.Embedding):
    """``nn.Embedding`` without random init (see :class:`Linear`)."""

    def reset_parameters(self) -> None:
        pass


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.to(torch.float32)  # as transformers: normalise in float32, scale in the input dtype
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x32.to(dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for rotate-half RoPE [batch, pos, head_dim] from position ids [batch, pos]."""

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    inv_freq: torch.Tensor

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        freqs = position_ids[:, :, None].float() * self.inv_freq[None, None, :].float()  # [b, pos, d/2]
        emb = torch.cat((freqs, freqs), dim=-1)  # [b, pos, head_dim]
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [b, heads, pos, d_head]; cos/sin [b, pos, d_head]."""
    return x * cos[:, None] + _rotate_half(x) * sin[:, None]


class KVCache:
    """Keys and values of the positions seen so far, per layer [batch, n_kv_heads, pos, d_head].

    The part of transformers' ``DynamicCache`` the implementations use: returned as ``past_key_values`` by a
    forward with ``use_cache=True``, passed back to continue, and re-batched with ``batch_repeat_interleave`` /
    ``batch_select_indices`` (many interventions continuing one shared prefix). Updated in place, like theirs.
    """

    def __init__(self, n_layers: int) -> None:
        self.keys: list[torch.Tensor | None] = [None] * n_layers
        self.values: list[torch.Tensor | None] = [None] * n_layers

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        old_k, old_v = self.keys[layer], self.values[layer]
        if old_k is not None and old_v is not None:
            k, v = torch.cat([old_k, k], dim=2), torch.cat([old_v, v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v

    def get_seq_length(self) -> int:
        first = self.keys[0]
        return 0 if first is None else int(first.shape[2])

    def _map(self, fn: Any) -> None:
        self.keys = [None if t is None else fn(t) for t in self.keys]
        self.values = [None if t is None else fn(t) for t in self.values]

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._map(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._map(lambda t: t[indices])


# One decoder layer's sites as its forward code computed them, by site name (TAPPED_SITES): the exact tensors a
# torch hook at the family table's hook point would see — a projection's raw output for q/k/v, W_O's input for
# head_out — so a capture served by taps and one served by hooks hold bit-identical values (tested).
Tap: TypeAlias = dict[str, torch.Tensor]
TAPPED_SITES = frozenset({
    "resid_pre", "q", "k", "v", "attn_pattern", "head_out", "attn_out", "resid_mid", "mlp_pre", "mlp_act",
    "mlp_out", "resid_post",
})  # fmt: skip


class Attention(nn.Module):
    """Grouped-query causal self-attention; returns (output [b, pos, d_model], pattern [b, heads, q, k])."""

    def __init__(self, config: NativeLlamaConfig, layer_idx: int = 0) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads, self.n_kv = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = config.head_dim
        self.scaling = self.head_dim**-0.5
        d = config.hidden_size
        self.q_proj = Linear(d, self.n_heads * self.head_dim, bias=False)
        self.k_proj = Linear(d, self.n_kv * self.head_dim, bias=False)
        self.v_proj = Linear(d, self.n_kv * self.head_dim, bias=False)
        self.o_proj = Linear(self.n_heads * self.head_dim, d, bias=False)

    def forward(
        self, hidden_states: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor,
        cache: KVCache | None = None, tap: Tap | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        b, n_pos, _ = hidden_states.shape
        q_raw, k_raw, v_raw = self.q_proj(hidden_states), self.k_proj(hidden_states), self.v_proj(hidden_states)
        if tap is not None:
            tap["q"], tap["k"], tap["v"] = q_raw, k_raw, v_raw
        q = q_raw.view(b, n_pos, self.n_heads, self.head_dim).transpose(1, 2)
        k = k_raw.view(b, n_pos, self.n_kv, self.head_dim).transpose(1, 2)
        v = v_raw.view(b, n_pos, self.n_kv, self.head_dim).transpose(1, 2)
        cos, sin = rope
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:  # keys/values of the earlier positions, then these
            k, v = cache.update(self.layer_idx, k, v)
        if self.n_kv != self.n_heads:  # each K/V head serves n_heads / n_kv query heads
            k = k.repeat_interleave(self.n_heads // self.n_kv, dim=1)
            v = v.repeat_interleave(self.n_heads // self.n_kv, dim=1)
        scores = torch.matmul(q, k.transpose(2, 3)) * self.scaling + mask  # [b, heads, q, k]
        pattern = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        z = torch.matmul(pattern, v).transpose(1, 2).reshape(b, n_pos, self.n_heads * self.head_dim)
        if tap is not None:
            tap["attn_pattern"], tap["head_out"] = pattern, z
        return self.o_proj(z), pattern


class MLP(nn.Module):
    def __init__(self, config: NativeLlamaConfig) -> None:
        super().__init__()
        d, d_mlp = config.hidden_size, config.intermediate_size
        self.gate_proj = Linear(d, d_mlp, bias=False)
        self.up_proj = Linear(d, d_mlp, bias=False)
        self.down_proj = Linear(d_mlp, d, bias=False)
        self.act_fn = nn.SiLU()  # a module, so mlp_pre (its input) is a hook point

    def forward(self, x: torch.Tensor, tap: Tap | None = None) -> torch.Tensor:
        pre = self.gate_proj(x)
        act = self.act_fn(pre) * self.up_proj(x)
        if tap is not None:
            tap["mlp_pre"], tap["mlp_act"] = pre, act
        return self.down_proj(act)


class DecoderLayer(nn.Module):
    def __init__(self, config: NativeLlamaConfig, layer_idx: int = 0) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(
        self, hidden_states: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor,
        cache: KVCache | None = None, tap: Tap | None = None,
    ) -> torch.Tensor:  # fmt: skip
        attn_out = self.self_attn(self.input_layernorm(hidden_states), rope, mask, cache, tap)[0]
        resid_mid = hidden_states + attn_out
        mlp_out = self.mlp(self.post_attention_layernorm(resid_mid), tap)
        resid_post = resid_mid + mlp_out
        if tap is not None:
            tap["resid_pre"], tap["attn_out"], tap["resid_mid"] = hidden_states, attn_out, resid_mid
            tap["mlp_out"], tap["resid_post"] = mlp_out, resid_post
        return resid_post


class LlamaModel(nn.Module):
    def __init__(self, config: NativeLlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.rope_theta)


@dataclass
class CausalLMOutput:
    """What callers read from a forward pass (attribute or ``out["logits"]``, as transformers' outputs)."""

    logits: torch.Tensor  # [batch, pos, d_vocab]
    loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings, then every block's output
    attentions: tuple[torch.Tensor, ...] | None = None  # [batch, heads, q, k] per layer
    past_key_values: KVCache | None = None  # with use_cache=True (or when one was passed in)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)


def causal_mask(attention_mask: torch.Tensor | None, batch: int, n_pos: int, dtype: torch.dtype,
                device: torch.device, past: int = 0) -> torch.Tensor:  # fmt: skip
    """Additive mask [batch, 1, q, past + q]: 0 where a query may attend, the dtype's minimum elsewhere (causal,
    and padding keys masked) — transformers' eager mask, so a fully padded query row is uniform as there.
    ``past`` earlier positions come from a KV cache; ``attention_mask`` [batch, past + q] covers them too."""
    total = past + n_pos
    query_pos = torch.arange(past, total, device=device)[:, None]  # [q, 1]
    allowed = (torch.arange(total, device=device)[None, :] <= query_pos)[None, None]  # [1, 1, q, k]
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, -total:].to(device=device, dtype=torch.bool)[:, None, None, :]
    allowed = allowed.expand(batch, 1, n_pos, total)
    zero = torch.zeros((), dtype=dtype, device=device)
    return torch.where(allowed, zero, torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=device))


class NativeLlamaForCausalLM(nn.Module):
    """A Llama causal LM with Hugging Face's module and parameter names (see the module docstring)."""

    def __init__(self, config: NativeLlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        # Captures that record this model's sites from its own forward code rather than through torch hooks
        # (mi_catalog.models.hooks.capture adds and removes them; each has begin(mask) -> bool,
        # record_layer(index, tap) and record_ends(embed, final)).
        self.tap_recorders: list[Any] = []

    def forward(
        self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None, output_hidden_states: bool = False, output_attentions: bool = False,
        past_key_values: KVCache | None = None, use_cache: bool = False, **_ignored: Any,
    ) -> CausalLMOutput:  # fmt: skip
        # The tap recorders that record this pass (a recorder that has switched to torch hooks declines).
        recorders = [r for r in self.tap_recorders if r.begin(attention_mask)] if self.tap_recorders else None
        embed = None
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("pass input_ids or inputs_embeds")
            inputs_embeds = embed = self.model.embed_tokens(input_ids)
        hidden = inputs_embeds  # [b, pos, d_model]
        b, n_pos = hidden.shape[:2]
        cache = (
            past_key_values if past_key_values is not None else KVCache(len(self.model.layers)) if use_cache else None
        )
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + n_pos, device=hidden.device)[None].expand(b, n_pos)
        rope = self.model.rotary_emb(hidden, position_ids)
        mask = causal_mask(attention_mask, b, n_pos, hidden.dtype, hidden.device, past)
        states: list[torch.Tensor] = [hidden]
        patterns: list[torch.Tensor] = []
        tapping = bool(recorders) or output_attentions  # the pattern is read from the layer's tap
        for index, layer in enumerate(self.model.layers):
            tap: Tap | None = {} if tapping else None
            hidden = layer(hidden, rope, mask, cache, tap)
            if tap is not None:
                # Recorded layer by layer, so the tensors nobody asked for are freed as without taps.
                for recorder in recorders or ():
                    recorder.record_layer(index, tap)
                if output_attentions:
                    patterns.append(tap["attn_pattern"])
            states.append(hidden)
        hidden = self.model.norm(hidden)
        for recorder in recorders or ():
            recorder.record_ends(embed, hidden)
        if output_hidden_states:
            states[-1] = hidden  # transformers' last hidden state is after the final norm
        logits = self.lm_head(hidden)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
            )
        return CausalLMOutput(logits=logits, loss=loss, hidden_states=tuple(states) if output_hidden_states else None,
                              attentions=tuple(patterns) if output_attentions else None,
                              past_key_values=cache)  # fmt: skip


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def read_config(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / "config.json").read_text(encoding="utf-8")))


def load_native(
    folder: Path, device: torch.device | str = "cpu", dtype: torch.dtype | None = None
) -> NativeLlamaForCausalLM:
    """Build the model from ``folder/config.json`` and load ``model.safetensors`` (or its shards) into it.

    Raises :class:`NativeConfigError` when the config needs transformers, ``OSError`` for missing files and
    ``ValueError`` when the tensors do not match the config (a missing, extra or misshapen tensor).
    """
    from safetensors.torch import load_file

    config = NativeLlamaConfig.from_dict(read_config(folder))
    model = NativeLlamaForCausalLM(config)  # uninitialised storage, replaced by the checkpoint's tensors below
    state: dict[str, torch.Tensor] = {}
    for shard in _weight_files(folder):
        state.update(load_file(str(shard), device="cpu"))
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # tied to the embedding: one tensor
    expected = {name: p.shape for name, p in model.named_parameters()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected) - {"model.rotary_emb.inv_freq"})
    if missing or extra:
        raise ValueError(f"{folder}: weights do not match the config (missing {missing[:3]}, unexpected {extra[:3]})")
    for name, shape in expected.items():
        if tuple(state[name].shape) != tuple(shape):
            raise ValueError(
                f"{folder}: {name} has shape {tuple(state[name].shape)}, the config implies {tuple(shape)}"
            )
    target = dtype or state["model.embed_tokens.weight"].dtype
    model.load_state_dict({k: v.to(target) for k, v in state.items() if k in expected}, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.to(device).eval()


def _weight_files(folder: Path) -> list[Path]:
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [folder / s for s in shards]
    raise FileNotFoundError(f"{folder} has no model.safetensors (safetensors only; .bin pickles are never loaded)")


def from_module(module: nn.Module) -> NativeLlamaForCausalLM:
    """A native copy of a transformers ``LlamaForCausalLM`` (same weights; for parity tests and tiny models)."""
    raw = module.config.to_dict()  # type: ignore[union-attr,operator]
    raw["architectures"] = raw.get("architectures") or [type(module).__name__]
    config = NativeLlamaConfig.from_dict(raw)
    model = NativeLlamaForCausalLM(config)
    state = {k: v for k, v in module.state_dict().items() if not k.endswith("rotary_emb.inv_freq")}
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    model.load_state_dict(state, strict=not config.tie_word_embeddings)
    first = next(module.parameters())
    return model.to(device=first.device, dtype=first.dtype).eval()


__all__: Sequence[str] = (
    "NATIVE_ARCHITECTURES",
    "CausalLMOutput",
    "NativeConfigError",
    "NativeLlamaConfig",
    "NativeLlamaForCausalLM",
    "apply_rope",
    "causal_mask",
    "from_module",
    "load_native",
    "native_support",
)  # fmt: skip
