"""Attribution patching — Nanda, *Attribution patching: activation patching at industrial scale* (2023);
Syed, Rager & Conmy, *Attribution patching outperforms automated circuit discovery* (2023).

Activation patching asks, for every activation a, how much the task metric recovers when a's clean value
is patched into the corrupt run — one forward pass per activation. Attribution patching replaces each of
those passes by the first-order Taylor estimate ``(a_clean − a_corrupt) · ∂metric/∂a`` taken at the corrupt
run, so *every* activation is scored from one clean forward and one corrupt forward + backward.

What we do: exactly that, in 2 forward + 1 backward passes in total (``run_with_grads``), for every
attention head (``head_out`` = z, summed over d_head; over all positions or only the last, ``Spec.positions``),
every FFN neuron (``mlp_act``) and every residual-stream point (``resid_pre.0 … resid_pre.L-1`` and the last
``resid_post``) at every position. Heads and neurons are scored at the last position by default (where the
metric is read); with ``positions="all"`` a unit's attribution is summed over positions, and on the toy's
induction task the layer-0 current-token heads L0H2/L0H0 then rank with or above the induction heads —
correctly: their output at the corrupted token carries its identity to the induction heads' values, and exact
patching of L0H2 at all positions restores 0.48-0.65 of the gap versus 0.24-0.34 for L1H0 (recipe-v3 toy,
n=8, seeds 0-9; ``tests/impls/test_attribution_patching.py``). The estimate ranks the 16 heads like exact
patching (Spearman 0.935-0.997) but, being the slope at the corrupt run, sees only 0.16-0.38 of L0H2's effect
(the metric grows convexly in it), so at seeds 0 and 8 it ties L0H2 with L1H0 and puts L1H0 first. The
metric is the logit difference answer − corrupt answer (log p(answer) when the task names no corrupt answer);
contrast prompts come from the task (the toy's own pairs; see
``_contrast``), and when a task has none (English facts) the subject embeddings are noised instead;
``Spec.corruption="shuffle"`` permutes each prompt's tokens instead (metric: answer − the shuffled run's top token).
Scores are reported normalised by the mean clean − corrupt metric gap (1 ≈ "restoring this alone would
recover the whole gap, to first order"), with bootstrap intervals over prompts.

Simplifications: no comparison with exact activation patching in the output (the papers' validation; the
tests make it on the toy), and no AtP* corrections (QK-saturation fix, GradDrop); the residual attribution is only the linear estimate, which
Nanda notes is poor for large activations such as the residual stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods.contract import Bars, Finding, Heatmap, Output, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import bootstrap_ci, mean_ci
from mi_catalog.models.hooks import capture, run_with_grads
from mi_catalog.models.loading import LoadedModel
from reference_impls._common import head_label, neuron_label
from reference_impls._contrast import Contrast, make_contrast

IMPL = ImplInfo(
    id="attribution-patching",
    title="Attribution patching: gradient × activation difference for every head, neuron and residual position",
    objects=("attention-head", "neuron", "residual-stream"),
    methods=("gradient-detection",),
    steering=(),
    reproduces=("attribution-patching", "attribution-patching-outperforms-automated-circuit-discovery"),
    tasks=("induction", "facts", "sentiment", "refusal", "ioi"),
    needs=("gradients",),
    metrics=(
        "n_prompts",
        "n_skipped",
        "clean_metric",
        "corrupt_metric",
        "attr_top_head",
        "attr_heads_total",
        "attr_top_neuron",
        "attr_neurons_total",
        "attr_resid_peak",
        "forward_passes",
        "backward_passes",
    ),
)


@dataclass
class Spec:
    n: int = 16
    seed: int = 0
    positions: str = "last"  # "last": the last token (where the metric is read); "all": summed over positions
    top_neurons: int = 20  # neurons reported as findings
    corruption: str = "task"  # "task": the examples' contrast prompts (noise without them); "shuffle": permuted prompts
    noise_scale: float = 3.0  # only when the task has no contrast prompts (subject-embedding noise, × std(W_E))


@dataclass
class Attributions:
    """Per-prompt attributions (un-normalised, in metric units) and the metric on both runs."""

    heads: torch.Tensor  # [batch, n_layers, n_heads]
    neurons: torch.Tensor  # [batch, n_layers, d_mlp]
    resid: torch.Tensor  # [batch, n_layers + 1, pos]: resid_pre.0 … resid_pre.L-1, resid_post.L-1
    clean: torch.Tensor  # [batch] metric on the clean run
    corrupt: torch.Tensor  # [batch] metric on the corrupt run


def resid_sites(lm: LoadedModel) -> list[str]:
    return [*(f"resid_pre.{layer}" for layer in range(lm.n_layers)), f"resid_post.{lm.n_layers - 1}"]


def attribute(lm: LoadedModel, pair: Contrast, positions: str = "all") -> Attributions:
    """One clean forward (capture) + one corrupt forward and backward (run_with_grads)."""
    layers = range(lm.n_layers)
    sites = [*(f"head_out.{layer}" for layer in layers), *(f"mlp_act.{layer}" for layer in layers), *resid_sites(lm)]
    with capture(lm, sites) as clean_cache:
        clean_logits = lm.logits(pair.clean)
    with pair.corrupted(lm):
        grad_run = run_with_grads(lm, pair.corrupt, sites, lambda logits: pair.metric(logits).sum())
    acts, grads = grad_run.acts, grad_run.grads

    def score(site: str) -> torch.Tensor:  # (clean − corrupt) · grad, summed over the feature dim(s) → [b, pos, …]
        delta = clean_cache[site].float() - acts[site].float()
        return delta * grads[site].float()

    def over_positions(x: torch.Tensor) -> torch.Tensor:  # [b, pos, k] → [b, k]
        return x[:, -1] if positions == "last" else x.sum(dim=1)

    heads = torch.stack([over_positions(score(f"head_out.{layer}").sum(-1)) for layer in layers], dim=1)
    neurons = torch.stack([over_positions(score(f"mlp_act.{layer}")) for layer in layers], dim=1)
    resid = torch.stack([score(s).sum(-1) for s in resid_sites(lm)], dim=1)  # [b, L+1, pos]
    with torch.no_grad():
        clean_metric = pair.metric(clean_logits).float()
        corrupt_metric = pair.metric(grad_run.logits).float()
    return Attributions(heads.cpu(), neurons.cpu(), resid.cpu(), clean_metric.cpu(), corrupt_metric.cpu())


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    if spec.positions not in ("all", "last"):
        raise ValueError(f"positions={spec.positions!r}; use 'all' or 'last'")
    pair = make_contrast(lm, data.examples, spec.seed, spec.noise_scale, spec.corruption)
    data.progress("attribution patching", 0, 1)
    attr = attribute(lm, pair, spec.positions)
    data.progress("attribution patching", 1, 1)
    n = attr.heads.shape[0]
    gap = float((attr.clean - attr.corrupt).mean())
    norm = gap if abs(gap) > 1e-6 else 1.0
    heads = attr.heads / norm  # [b, L, H], normalised per prompt by the mean gap
    neurons = attr.neurons / norm
    resid = attr.resid / norm
    head_mean = heads.mean(0)  # [L, H]
    neuron_mean = neurons.mean(0)  # [L, d_mlp]
    resid_mean = resid.mean(0)  # [L+1, pos] (positions aligned at the end by left padding)
    seed = spec.seed

    def ci(samples: torch.Tensor) -> tuple[float, float]:
        return bootstrap_ci(samples, seed=seed)

    findings = [
        Finding(
            "attention-head",
            layer,
            head,
            float(head_mean[layer, head]),
            head_label(layer, head),
            ci(heads[:, layer, head]),
        )
        for layer in range(lm.n_layers)
        for head in range(lm.n_heads)
    ]
    top_n = torch.topk(neuron_mean.flatten(), k=min(spec.top_neurons, neuron_mean.numel())).indices.tolist()
    d_mlp = neuron_mean.shape[1]
    for flat in top_n:
        layer, idx = divmod(int(flat), d_mlp)
        findings.append(
            Finding(
                "neuron",
                layer,
                idx,
                float(neuron_mean[layer, idx]),
                neuron_label(layer, idx),
                ci(neurons[:, layer, idx]),
            )
        )
    top_head = ranked([f for f in findings if f.object == "attention-head"])[0]
    top_neuron = ranked([f for f in findings if f.object == "neuron"])[0]
    heads_total = heads.sum(dim=(1, 2))
    neurons_total = neurons.sum(dim=(1, 2))
    clean_mean, clean_ci = mean_ci(attr.clean, seed=seed)
    corrupt_mean, corrupt_ci = mean_ci(attr.corrupt, seed=seed)
    heads_total_mean, heads_total_ci = mean_ci(heads_total, seed=seed)
    neurons_total_mean, neurons_total_ci = mean_ci(neurons_total, seed=seed)
    peak = float(resid_mean.max())
    metrics: dict[str, int | float] = {
        "n_prompts": n,
        "n_skipped": pair.n_skipped,
        "clean_metric": clean_mean,
        "corrupt_metric": corrupt_mean,
        "attr_top_head": round(top_head.score, 6),
        "attr_heads_total": heads_total_mean,
        "attr_top_neuron": round(top_neuron.score, 6),
        "attr_neurons_total": neurons_total_mean,
        "attr_resid_peak": round(peak, 6),
        "forward_passes": 2 + pair.forwards,
        "backward_passes": 1,
    }
    intervals = {
        "clean_metric": clean_ci,
        "corrupt_metric": corrupt_ci,
        "attr_heads_total": heads_total_ci,
        "attr_neurons_total": neurons_total_ci,
    }
    if top_head.interval is not None:
        intervals["attr_top_head"] = top_head.interval
    if top_neuron.interval is not None:
        intervals["attr_top_neuron"] = top_neuron.interval
    n_pos = resid_mean.shape[1]
    resid_rows = [*(f"resid_pre.{layer}" for layer in range(lm.n_layers)), f"resid_post.{lm.n_layers - 1}"]
    where = "all positions" if spec.positions == "all" else "the last position"
    corruption = pair.describe(spec.noise_scale)
    top_neuron_findings = [f for f in findings if f.object == "neuron"]
    return Output(
        metrics=metrics,
        intervals=intervals,
        findings=ranked(findings),
        tensors={
            "head_attr": head_mean,
            "neuron_attr": neuron_mean,
            "resid_attr": resid_mean,
            "head_attr_per_prompt": heads,
        },
        figures=[
            Heatmap.per_head(
                "heads",
                f"attribution patching on {data.task}: heads ({where}), ÷ clean−corrupt gap",
                head_mean.tolist(),
            ),
            Heatmap(
                "resid",
                f"attribution patching on {data.task}: residual stream by position (mean over prompts)",
                values=resid_mean.tolist(),
                row_labels=resid_rows,
                col_labels=[str(p - n_pos) for p in range(n_pos)],
            ),
            Bars(
                "neurons",
                f"attribution patching on {data.task}: top neurons",
                labels=[f.label for f in top_neuron_findings],
                values=[f.score for f in top_neuron_findings],
                intervals=[f.interval or (f.score, f.score) for f in top_neuron_findings],
                y_label="attribution ÷ gap",
            ),
        ],
        notes=[
            f"Reproduces attribution patching (Nanda 2023; Syed et al. 2023): (a_clean − a_corrupt)·∂metric/∂a at the "
            f"corrupt run, metric = {pair.metric_name}, corruption = {corruption}, in {2 + pair.forwards} forward + 1 "
            "backward passes. "
            "Scores are first-order estimates normalised by the clean − corrupt gap; not checked against exact "
            "patching here.",
        ],
    )
