"""FFN value vectors in the vocabulary — Geva et al. 2022, *Transformer Feed-Forward Layers Build Predictions by
Promoting Concepts in the Vocabulary Space* (EMNLP).

The paper reads an FFN layer's output as a sum of sub-updates ``m_j · v_j``: neuron j's activation m_j (the
input of W_out) times its value vector v_j (row j of W_out). Projecting v_j to the vocabulary (``E v_j``) shows
which tokens the sub-update promotes; the top tokens of a value vector often form a human-readable concept,
and a few strongly activated sub-updates dominate a prediction. They use this to find, e.g., neurons that
promote toxic words and turn them off to detoxify generation.

What we do: project every value vector through the final norm's gain and W_U (TransformerLens' fold_ln; set
``fold_ln=False`` for the raw ``W_U v_j``) and centre each projection over the vocabulary (softmax ignores
a constant shift); list each neuron's top promoted tokens (oriented by the sign of its mean activation on the
task's prompts: a gated SwiGLU neuron can be negative, and then its sub-update promotes the bottom of
``W_U v_j``); score neuron j on the task by its activation-weighted
promotion of the prompt's answer at the last position, ``mean_prompts m_j · (W_U v_j)[answer]`` (centred), with
a bootstrap interval over prompts; sum a layer's neurons for the FFN's direct promotion of the answer.
``label`` restricts the scoring to examples of one class (e.g. ``toxic``). Simplifications: the last position
only; direct (logit) effects only, no later-layer mediation; no human concept annotation (the tests check
promoted tokens against the toy's planted word lists instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods.contract import Bars, Finding, Heatmap, Output, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import mean_ci
from mi_catalog.models.hooks import capture
from mi_catalog.models.loading import LoadedModel
from mi_catalog.models.weights import W_U, W_out, get_module
from mi_catalog.tasks import TaskDataError
from reference_impls._common import answer_ids, neuron_label

IMPL = ImplInfo(
    id="ffn-vocab-projection",
    title="FFN value vectors projected to the vocabulary; neurons ranked by promoting the answer",
    objects=("ffn", "neuron"),
    methods=("vocab-projection",),
    steering=(),
    reproduces=("ffn-promoting-concepts",),
    tasks=("toxicity", "language", "sentiment", "refusal", "facts", "induction", "icl"),
    needs=(),
    metrics=(
        "n_prompts",
        "ffn_top_neuron_score",
        "ffn_top_layer",
        "ffn_top_layer_score",
        "ffn_topk_size",
        "ffn_topk_answer_in_top_tokens",
    ),
)


@dataclass
class Spec:
    n: int = 32
    seed: int = 0
    top_k: int = 10  # neurons listed and summarised
    top_tokens: int = 8  # promoted tokens shown per neuron
    fold_ln: bool = True  # fold the final norm's gain (and LayerNorm's centring) into W_U
    label: str | None = None  # score only examples with this label (e.g. "toxic"); None = all
    chunk: int = 1024  # neurons projected at a time (bounds memory on large vocabularies)


def value_projection(lm: LoadedModel, layer: int, fold_ln: bool = True, neurons: slice | None = None) -> torch.Tensor:
    """Centred vocabulary projection of the value vectors v_j (rows of W_out) → [n_neurons, d_vocab] float32."""
    values = W_out(lm, layer).detach().float()  # [d_mlp, d_model]
    if neurons is not None:
        values = values[neurons]
    if fold_ln:
        norm = get_module(lm.model, lm.family.final_norm)
        if isinstance(norm, nn.LayerNorm):
            values = values - values.mean(dim=-1, keepdim=True)
        gain = getattr(norm, "weight", None)
        if isinstance(gain, torch.Tensor):
            values = values * gain.detach().float()
    logits = values @ W_U(lm).detach().float()  # [n, d_vocab]
    return logits - logits.mean(dim=-1, keepdim=True)


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    examples = [ex for ex in data.examples if spec.label is None or ex.label == spec.label]
    if not examples:
        raise TaskDataError(f"no {data.task!r} examples with label {spec.label!r}; labels present: {data.labels()}")
    answers = answer_ids(lm, examples).cpu()  # [B]
    sites = [f"mlp_act.{layer}" for layer in range(lm.n_layers)]
    batch = lm.encode([ex.prompt for ex in examples])
    with capture(lm, sites) as cache:
        lm.logits(batch)
    acts = torch.stack([cache[s][:, -1] for s in sites]).float().cpu()  # [L, B, d_mlp] at the last position
    d_mlp = acts.shape[-1]
    per_prompt = torch.empty(lm.n_layers, len(examples), d_mlp)  # m_j · proj_j[answer] per prompt
    top_ids = torch.empty(lm.n_layers, d_mlp, spec.top_tokens, dtype=torch.long)
    top_vals = torch.empty(lm.n_layers, d_mlp, spec.top_tokens)
    k = min(spec.top_tokens, int(W_U(lm).shape[1]))
    for layer in range(lm.n_layers):
        data.progress("project", layer, lm.n_layers)
        for start in range(0, d_mlp, spec.chunk):
            part = slice(start, min(start + spec.chunk, d_mlp))
            proj = value_projection(lm, layer, spec.fold_ln, part).cpu()  # [chunk, vocab]
            per_prompt[layer, :, part] = acts[layer, :, part] * proj[:, answers].T  # [B, chunk]
            # A gated (SwiGLU) neuron can be negative: list what its sub-update m_j v_j promotes on this task.
            sign = torch.where(acts[layer, :, part].mean(dim=0) < 0, -1.0, 1.0)  # [chunk]
            vals, ids = (proj * sign[:, None]).topk(k, dim=-1)
            top_ids[layer, part, :k], top_vals[layer, part, :k] = ids, vals
    scores = per_prompt.mean(dim=1)  # [L, d_mlp]
    flat = scores.flatten()
    order = torch.argsort(flat, descending=True, stable=True)[: spec.top_k]
    answer_set = set(answers.tolist())
    top_units = [divmod(int(i), d_mlp) for i in order]

    def tokens(layer: int, neuron: int) -> list[str]:
        return [lm.tokenizer.decode([int(t)]).strip() for t in top_ids[layer, neuron, :k]]

    findings = []
    cis: dict[tuple[int, int], tuple[float, float]] = {}
    for layer, neuron in top_units:
        cis[(layer, neuron)] = mean_ci(per_prompt[layer, :, neuron], seed=spec.seed)[1]
    for layer in range(lm.n_layers):
        for neuron in range(d_mlp):
            words = ", ".join(tokens(layer, neuron)[:3]) if (layer, neuron) in cis else ""
            label = f"{neuron_label(layer, neuron)} → {words}" if words else neuron_label(layer, neuron)
            findings.append(
                Finding("neuron", layer, neuron, float(scores[layer, neuron]), label, cis.get((layer, neuron)))
            )
    layer_totals = per_prompt.sum(dim=2)  # [L, B]: the FFN's direct promotion of the answer (bias excluded)
    for layer in range(lm.n_layers):
        mean, ci = mean_ci(layer_totals[layer], seed=spec.seed)
        findings.append(Finding("ffn", layer, None, mean, f"mlp_out.{layer}", ci))
    best_layer = int(torch.argmax(layer_totals.mean(dim=1)))
    best = top_units[0]
    best_mean, best_ci = mean_ci(per_prompt[best[0], :, best[1]], seed=spec.seed)
    layer_mean, layer_ci = mean_ci(layer_totals[best_layer], seed=spec.seed)
    hit = [bool(answer_set & set(top_ids[layer, neuron, :k].tolist())) for layer, neuron in top_units]
    grid_vals = [top_vals[layer, neuron, :k].tolist() for layer, neuron in top_units]
    grid_text = [tokens(layer, neuron) for layer, neuron in top_units]
    which = f"{data.task}" + (f" ({spec.label})" if spec.label else "")
    return Output(
        metrics={
            "n_prompts": len(examples),
            "ffn_top_neuron_score": best_mean,
            "ffn_top_layer": best_layer,
            "ffn_top_layer_score": layer_mean,
            "ffn_topk_size": len(top_units),
            "ffn_topk_answer_in_top_tokens": round(sum(hit) / max(len(hit), 1), 6),
        },
        intervals={"ffn_top_neuron_score": best_ci, "ffn_top_layer_score": layer_ci},
        findings=ranked(findings),
        tensors={"neuron_scores": scores, "top_token_ids": top_ids[:, :, :k], "top_token_logits": top_vals[:, :, :k]},
        figures=[
            Bars(
                "neurons",
                f"{which}: top neurons by activation-weighted promotion of the answer (m_j · W_U v_j)",
                labels=[neuron_label(layer, neuron) for layer, neuron in top_units],
                values=[float(scores[layer, neuron]) for layer, neuron in top_units],
                intervals=[cis[u] for u in top_units],
                y_label="mean centred logit contribution",
            ),
            Heatmap(
                "tokens",
                f"{which}: top promoted tokens of the top neurons' value vectors (centred logit)",
                values=grid_vals,
                row_labels=[neuron_label(layer, neuron) for layer, neuron in top_units],
                col_labels=[str(i + 1) for i in range(k)],
                cell_text=grid_text,
            ),
        ],
        notes=[
            "Reproduces the paper's value-vector projection and sub-update scoring (m_j · v_j through the unembedding), "
            "with the final norm's gain folded in; the concepts are checked against planted word lists, not annotated.",
        ],
    )
