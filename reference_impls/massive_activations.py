"""Massive activations and head output norms — Sun et al. 2024, *Massive Activations in Large Language Models* (COLM).

The paper finds a handful of residual-stream activations whose magnitude is enormous — larger than 100 and
about 1,000 times the median magnitude of their hidden state — in fixed feature dimensions, at the starting
token and delimiter tokens, appearing abruptly at one early layer and staying roughly constant after it; they act
as input-independent biases and make attention concentrate on those tokens.

What we do: capture the residual stream after every block (``resid_post.l``) at every real token of the task's
prompts; per token, the median |activation| over the model dimension; an activation is *massive* when
``|a| ≥ ratio × median`` and ``|a| ≥ floor`` (the paper's 1,000× and 100 by default). We report, per layer, the
largest magnitude and ratio, the massive activations found (layer, dimension, token) and the first layer where
they appear — honestly none on small models, which have none. The head-magnitude analysis ranks attention heads
by the norm of their output written into the residual stream, ``‖z_h W_O^h‖`` (head_out through its slice of
W_O), averaged over real positions and prompts. Simplifications: the task's prompts instead of the paper's
RedPajama samples; no attention-sink or bias-replacement experiments.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods.contract import Curve, Finding, Heatmap, Output, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import mean_ci
from mi_catalog.models.hooks import capture
from mi_catalog.models.loading import LoadedModel
from mi_catalog.models.weights import W_O
from reference_impls._common import head_label

IMPL = ImplInfo(
    id="massive-activations",
    title="Massive activations in the residual stream, and attention heads ranked by output norm",
    objects=("residual-stream", "attention-head"),
    methods=("magnitude-analysis",),
    steering=(),
    reproduces=("massive-activations-in-large-language-models",),
    tasks=("facts", "induction", "icl", "sentiment", "language", "refusal", "toxicity"),
    needs=(),
    metrics=(
        "n_prompts",
        "massive_count",
        "massive_first_layer",
        "massive_max_abs",
        "massive_max_ratio",
        "massive_max_layer",
        "head_norm_top",
        "head_norm_median",
    ),
)


@dataclass
class Spec:
    n: int = 16
    seed: int = 0
    ratio: float = 1000.0  # |a| ≥ ratio × the token's median |activation| (the paper: about 1,000)
    floor: float = 100.0  # and |a| ≥ floor (the paper: 100)
    top_k: int = 10  # residual dimensions listed as findings


def head_output_norms(lm: LoadedModel, z: torch.Tensor, layer: int) -> torch.Tensor:
    """‖z_h W_O^h‖ per position and head: z [batch, pos, n_heads, d_head] → [batch, pos, n_heads]."""
    w = W_O(lm, layer).detach().float()  # [n_heads, d_head, d_model]
    return torch.einsum("bphd,hde->bphe", z.float(), w).norm(dim=-1)


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    batch = lm.encode(data.prompts)
    sites = [f"{name}.{layer}" for layer in range(lm.n_layers) for name in ("resid_post", "head_out")]
    with capture(lm, sites) as cache:
        lm.logits(batch)
    real = batch.attention_mask.bool().cpu()  # [B, T]
    resid = torch.stack([cache[f"resid_post.{layer}"].float().cpu() for layer in range(lm.n_layers)])  # [L, B, T, d]
    mag = resid.abs()
    median = mag.median(dim=-1, keepdim=True).values.clamp(min=1e-12)  # [L, B, T, 1] per token
    ratio = (mag / median) * real[None, :, :, None]  # padding never counts
    massive = (ratio >= spec.ratio) & (mag >= spec.floor)  # [L, B, T, d]

    per_layer_max = (mag * real[None, :, :, None]).amax(dim=(1, 2, 3))  # [L]
    per_layer_ratio = ratio.amax(dim=(1, 2, 3))  # [L]
    per_layer_median = torch.stack([median[layer, real].median() for layer in range(lm.n_layers)])  # [L]
    count_by_layer = massive.sum(dim=(1, 2, 3))
    first = [layer for layer in range(lm.n_layers) if int(count_by_layer[layer]) > 0]
    max_layer = int(per_layer_ratio.argmax())

    # Residual dimensions ranked by their largest ratio (massive or not), with where it happens.
    dim_ratio = ratio.amax(dim=(1, 2))  # [L, d]
    order = torch.argsort(dim_ratio.flatten(), descending=True, stable=True)[: spec.top_k]
    findings: list[Finding] = []
    d_model = resid.shape[-1]
    for flat in order.tolist():
        layer, dim = divmod(flat, d_model)
        where = ratio[layer, :, :, dim]  # [B, T]
        b, t = divmod(int(where.flatten().argmax()), where.shape[1])
        token = lm.tokenizer.decode([int(batch.input_ids[b, t])]).strip() or "∅"
        value = float(resid[layer, b, t, dim])
        is_massive = bool(massive[layer, :, :, dim].any())
        label = (
            f"resid_post.{layer} dim {dim}: {value:.3g} = {float(dim_ratio[layer, dim]):.0f}× median at "
            f"{token!r} (pos {t - int(real[b].int().argmax())}){' — massive' if is_massive else ''}"
        )
        findings.append(Finding("residual-stream", layer, dim, float(dim_ratio[layer, dim]), label))

    # Heads ranked by the norm of what they write into the residual stream.
    norms = torch.stack(
        [head_output_norms(lm, cache[f"head_out.{layer}"].cpu(), layer) for layer in range(lm.n_layers)]
    )  # [L, B, T, H]
    weights = real[None, :, :, None].float()
    per_prompt = (norms * weights).sum(dim=2) / weights.sum(dim=2).clamp(min=1)  # [L, B, H] mean over real positions
    head_mean = per_prompt.mean(dim=1)  # [L, H]
    head_findings = []
    for layer in range(lm.n_layers):
        for h in range(lm.n_heads):
            ci = mean_ci(per_prompt[layer, :, h], seed=spec.seed)[1]
            head_findings.append(
                Finding("attention-head", layer, h, float(head_mean[layer, h]), head_label(layer, h), ci)
            )
    top_head = ranked(head_findings)[0]
    top_mean, top_ci = mean_ci(per_prompt[top_head.layer, :, top_head.index], seed=spec.seed)

    massive_list = massive.nonzero().tolist()  # [layer, b, t, dim]
    x = [float(layer) for layer in range(lm.n_layers)]
    return Output(
        metrics={
            "n_prompts": len(data.examples),
            "massive_count": len(massive_list),
            "massive_first_layer": first[0] if first else -1,
            "massive_max_abs": round(float(per_layer_max.max()), 6),
            "massive_max_ratio": round(float(per_layer_ratio.max()), 6),
            "massive_max_layer": max_layer,
            "head_norm_top": top_mean,
            "head_norm_median": round(float(head_mean.median()), 6),
        },
        intervals={"head_norm_top": top_ci},
        findings=ranked(findings + head_findings),  # ratios (dimensionless) and norms share one ranking
        tensors={
            "max_abs_by_layer": per_layer_max,
            "max_ratio_by_layer": per_layer_ratio,
            "median_abs_by_layer": per_layer_median,
            "massive_count_by_layer": count_by_layer.float(),
            "dim_max_ratio": dim_ratio,
            "head_norm": head_mean,
        },
        figures=[
            Curve(
                "residual_magnitude",
                f"{data.task}: largest |activation| and the median per layer (resid_post)",
                x=x,
                series={
                    "max |a|": per_layer_max.tolist(),
                    "median |a|": per_layer_median.tolist(),
                    "max |a| / median": per_layer_ratio.tolist(),
                },
                x_label="layer",
                y_label="magnitude",
            ),
            Heatmap.per_head("head_norms", f"{data.task}: mean ‖z_h W_O^h‖ per head (real positions)", head_mean.tolist()),
        ],
        notes=[
            f"Applies the paper's criterion (|a| ≥ {spec.ratio:g} × the token's median and ≥ {spec.floor:g}): "
            + (
                f"{len(massive_list)} massive activations, first at layer {first[0]}."
                if first
                else f"none here (largest ratio {float(per_layer_ratio.max()):.0f}×, largest |a| "
                f"{float(per_layer_max.max()):.3g}); the findings list the largest ratios instead."
            ),
            "Heads are ranked by the norm of their output through W_O (head-magnitude analysis).",
        ],
    )
