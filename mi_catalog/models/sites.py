"""Named activation sites, after the survey's notation and TransformerLens' hook names.

========================  =============================  ===============================
site                      survey object / notation        shape
========================  =============================  ===============================
``embed``                 token embedding x^0 = W_E[t]   [batch, pos, d_model]
``resid_pre.l``           residual stream x^{l} (input)  [batch, pos, d_model]
``resid_mid.l``           after attention, before FFN    [batch, pos, d_model]
``resid_post.l``          residual stream x^{l+1}        [batch, pos, d_model]
``attn_pattern.l``        attention pattern A^{l,h}      [batch, n_heads, q_pos, k_pos]
``q.l`` / ``k.l`` / ``v.l``  queries, keys, values          [batch, pos, n_heads (k, v: n_kv_heads), d_head]
``head_out.l`` (``z``)    per-head output h^{l,h}        [batch, pos, n_heads, d_head]
``attn_out.l``            attention block output          [batch, pos, d_model]
``mlp_pre.l``             FFN pre-activation (gate)       [batch, pos, d_mlp]
``mlp_act.l`` (neurons)   FFN neuron activations s^l     [batch, pos, d_mlp]
``mlp_out.l``             FFN block output                [batch, pos, d_model]
``ln_final``              final norm output               [batch, pos, d_model]
========================  =============================  ===============================

``head_out`` is the input of the output projection W_O (before it mixes the
heads); ``mlp_act`` is the input of W_out (``c_proj``/``dense_4h_to_h``/``down_proj``);
``mlp_pre`` is the input of the activation function (for a gated FFN, the gate projection's output).
``q``/``k`` are the projections' outputs before rotary embeddings (TransformerLens ``hook_q``/``hook_k``).

**Layer numbering (one convention everywhere):** layer ``l`` is decoder block ``l`` (0-based).
``resid_pre.l`` is the input of block ``l`` and ``resid_post.l`` its output, so ``resid_pre.0`` is the
embedding sum x^0 and ``resid_post.l`` = ``resid_pre.(l+1)``. Findings on the embeddings have layer ``None``.
Pure Python: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

SITE_NAMES: tuple[str, ...] = (
    "embed",
    "resid_pre",
    "resid_mid",
    "resid_post",
    "attn_pattern",
    "q",
    "k",
    "v",
    "head_out",
    "attn_out",
    "mlp_pre",
    "mlp_act",
    "mlp_out",
    "ln_final",
)
LAYERLESS_SITES = frozenset({"embed", "ln_final"})
READ_ONLY_SITES = frozenset({"attn_pattern"})  # the pattern is already used when our hook sees it
SITE_ALIASES = {
    "z": "head_out",
    "head": "head_out",
    "heads": "head_out",
    "neurons": "mlp_act",
    "neuron": "mlp_act",
    "mlp_post": "mlp_act",
    "hook_q": "q",
    "hook_k": "k",
    "hook_v": "v",
    "pre": "mlp_pre",
    "pattern": "attn_pattern",
    "x0": "embed",
    "hook_embed": "embed",
    "resid": "resid_post",
    "ln_f": "ln_final",
}


class SiteError(ValueError):
    pass


@dataclass(frozen=True)
class Site:
    """One hook point: a site name and (except ``embed``/``ln_final``) a layer index."""

    name: str
    layer: int | None = None

    def __post_init__(self) -> None:
        if self.name not in SITE_NAMES:
            valid = f"{', '.join(SITE_NAMES)} (aliases: {', '.join(SITE_ALIASES)})"
            raise SiteError(f"unknown site {self.name!r}; valid: {valid}")
        if (self.layer is None) != (self.name in LAYERLESS_SITES):
            need = "takes no layer" if self.name in LAYERLESS_SITES else "needs a layer index"
            raise SiteError(f"site {self.name!r} {need}")

    @property
    def key(self) -> str:
        return self.name if self.layer is None else f"{self.name}.{self.layer}"

    def __str__(self) -> str:
        return self.key


def site(name: str | Site, layer: int | None = None) -> Site:
    """Build a :class:`Site` from ``("resid_post", 3)``, ``"resid_post.3"``, an alias (``"z.1"``) or a Site."""
    if isinstance(name, Site):
        return name
    base, _, layer_text = name.partition(".")
    if layer_text:
        if layer is not None:
            raise SiteError(f"layer given twice in {name!r}")
        try:
            layer = int(layer_text)
        except ValueError:
            raise SiteError(f"bad layer in site {name!r}") from None
    return Site(SITE_ALIASES.get(base, base), layer)
