"""Inference-Time Intervention (ITI) — Li et al. 2023, *Inference-Time Intervention: Eliciting Truthful
Answers from a Language Model* (NeurIPS 2023, arXiv 2306.03341).

The paper: collect every attention head's output (before W_O) at the last token of true and false
question–answer pairs (TruthfulQA); fit a logistic-regression probe per head on a 4:1 train/validation
split and rank the heads by validation accuracy; for the top K heads (K = 48 of LLaMA-7B's 1,024) take a
direction θ — the mass-mean shift mean(true) − mean(false) works best, the probe's weight is the other
option — and at inference add α · σ · θ̂ to each chosen head's output, σ being the standard deviation of the
head's activations along θ̂ (α = 15 in the paper). The shift is added at every generated token; heads not
chosen are untouched. Truthfulness goes up with α, at a cost in KL/cross-entropy.

What we do: the same on the task's two label classes (``reference_impls/_steer.py``; behaviour class toy
sentiment ``positive``, refusal ``harmful``, toxicity ``toxic``): head_out per head at the last token,
per-head probes with ``linear-probe``'s logistic regression (standardised features, L2) fitted on the
train part of ``data.fit_test()``'s fit half and ranked by validation accuracy (ties: AUROC), the top
``top_k`` heads shifted along their mass-mean (or probe) direction × α × σ at the last position; α is
chosen on the validation prompts from ``alphas`` (the smallest α with the highest behaviour rate on the
other class) unless ``alpha`` is set; the held-out test half measures the behaviour rate before → after
(Improve), the α sweep (curve with bands), each head's probe accuracy (findings) and the side effects.

Simplifications and differences: "truthfulness" does not exist on the toy — this applies ITI's pipeline to
another binary property (sentiment by default), so it is the method family, not a TruthfulQA reproduction;
the shift is added at the last prompt position (the one that predicts the answer; we do not generate);
K defaults to 4 of the toy's 16 heads; α is chosen on validation (the paper tunes α and K by a sweep).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods import steering as st
from mi_catalog.methods.contract import Finding, Heatmap, Output, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import mean_ci
from mi_catalog.models.loading import LoadedModel
from reference_impls import linear_probe
from reference_impls._common import head_label
from reference_impls._steer import ContrastSides, answer_token_set, contrast_sides, last_acts, rate, split_sides

IMPL = ImplInfo(
    id="iti",
    title="Inference-time intervention: per-head probes, shift the top-K heads along their direction × α × σ",
    objects=("attention-head",),
    methods=("probing",),
    steering=("vector-arithmetic",),
    reproduces=("inference-time-intervention",),
    tasks=("sentiment", "refusal", "toxicity"),
    needs=(),
    metrics=(
        "n_prompts",
        "n_fit",
        "n_val",
        "n_test",
        "probe_majority_rate",
        "probe_best_head_accuracy",
        "iti_top_k",
        "iti_alpha",
        "iti_heads_val_accuracy",
        "iti_heads_test_accuracy",
        "behaviour_rate_before",
        "behaviour_rate_steered",
    ),
)


@dataclass
class Spec:
    n: int = 128
    seed: int = 0
    fit_fraction: float = 0.5
    val_fraction: float = 0.2  # the paper's 4:1 train/validation split of the probing data
    top_k: int = 4  # heads to shift (the paper: 48 of 1,024)
    direction: str = "mass_mean"  # "mass_mean" (the paper's best) or "probe"
    alpha: float = 0.0  # > 0: use this α; 0: choose from ``alphas`` on the validation prompts
    alphas: tuple[float, ...] = field(default_factory=lambda: (0.0, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0))
    l2: float = 1e-2  # probe weight decay (features standardised), as linear-probe
    steps: int = 100
    n_side: int = 24


def head_features(lm: LoadedModel, prompts: list[str]) -> torch.Tensor:
    """head_out at the last token, one row per head → [n_layers * n_heads, n, d_head] (head s = layer·H + h)."""
    sites = [f"head_out.{layer}" for layer in range(lm.n_layers)]
    acts = last_acts(lm, prompts, sites)[:, :, 0]  # [L, n, n_heads, d_head]
    return acts.permute(0, 2, 1, 3).reshape(lm.n_layers * lm.n_heads, len(prompts), lm.d_head)


def side_features(lm: LoadedModel, sides: ContrastSides) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of both sides and labels (1 = behaviour) → ([S, n, d_head], [n])."""
    prompts = [ex.prompt for ex in sides.behaviour + sides.other]
    y = torch.tensor([1.0] * len(sides.behaviour) + [0.0] * len(sides.other))
    return head_features(lm, prompts), y


@dataclass
class HeadShift:
    """ITI's intervention: per chosen head, the unit direction θ̂ and σ (std of activations along θ̂)."""

    heads: list[tuple[int, int]]  # (layer, head)
    theta: torch.Tensor  # [K, d_head] unit directions
    sigma: torch.Tensor  # [K]

    def at(self, lm: LoadedModel, alpha: float) -> st.Combined:
        """Add α · σ · θ̂ to each chosen head's output at the last position (one SteeringVector per layer)."""
        parts: list[st.Intervention] = []
        for layer in sorted({layer for layer, _ in self.heads}):
            vec = torch.zeros(lm.n_heads, lm.d_head)  # [n_heads, d_head]; rows of unchosen heads stay 0
            chosen = []
            for k, (l_k, h) in enumerate(self.heads):
                if l_k == layer:
                    vec[h] = self.sigma[k] * self.theta[k]
                    chosen.append(h)
            parts.append(st.SteeringVector(f"head_out.{layer}", vec, alpha, positions=-1, heads=sorted(chosen)))
        return st.Combined(parts)


def head_directions(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, std: torch.Tensor, kind: str) -> torch.Tensor:
    """Unit direction per head [S, d_head]: mass-mean shift (behaviour − other) or the probe's weight mapped
    back from standardised to raw features (w / std), sign towards the behaviour class."""
    if kind == "mass_mean":
        d = x[:, y.bool()].mean(dim=1) - x[:, ~y.bool()].mean(dim=1)  # [S, d_head]
    elif kind == "probe":
        d = (w / std[:, 0].double()).float()
    else:
        raise ValueError(f"iti direction={kind!r}; use 'mass_mean' or 'probe'")
    return d / d.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def behaviour_prob(lm: LoadedModel, prompts: list[str], b_tokens: list[int], o_tokens: list[int],
                   intervention: st.Intervention) -> torch.Tensor:  # fmt: skip
    """p(behaviour) / (p(behaviour) + p(other)) of the next token → [n]."""
    if not prompts:
        return torch.zeros(0)
    probs = st.next_token_logits(lm, prompts, intervention).softmax(-1).cpu()  # [n, d_vocab]
    pb = probs[:, torch.tensor(b_tokens)].sum(-1)
    po = probs[:, torch.tensor(o_tokens)].sum(-1) if o_tokens else torch.zeros_like(pb)
    return pb / (pb + po).clamp(min=1e-12)


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    sides = contrast_sides(data.examples)
    fit, test = split_sides(sides, spec.fit_fraction)
    train, val = split_sides(fit, 1.0 - spec.val_fraction)
    b_tokens = answer_token_set(lm, sides.behaviour)
    o_tokens = [t for t in answer_token_set(lm, sides.other) if t not in b_tokens]
    data.progress("probes", 0, 2)
    x_tr, y_tr = side_features(lm, train)
    x_va, y_va = side_features(lm, val)
    x_te, y_te = side_features(lm, test)
    probe_spec = linear_probe.Spec(l2=spec.l2, steps=spec.steps)
    val_scores = linear_probe.score_sites(x_tr, y_tr, x_va, y_va, probe_spec)
    test_scores = linear_probe.score_sites(x_tr, y_tr, x_te, y_te, probe_spec)
    data.progress("probes", 1, 2)
    w, _, _, std = linear_probe.fit_probes(x_tr, y_tr, spec.l2, spec.steps)

    n_heads_total = lm.n_layers * lm.n_heads
    k = max(1, min(spec.top_k, n_heads_total))
    rank_key = val_scores.accuracy + 1e-3 * torch.nan_to_num(val_scores.auroc, nan=0.5)
    order = sorted(range(n_heads_total), key=lambda s: (-float(rank_key[s]), s))[:k]
    x_fit, y_fit = torch.cat([x_tr, x_va], dim=1), torch.cat([y_tr, y_va])
    theta = head_directions(x_fit, y_fit, w, std, spec.direction)  # [S, d_head]
    sigma = torch.einsum("snd,sd->sn", x_fit, theta).std(dim=1)  # [S]
    shift = HeadShift([divmod(s, lm.n_heads) for s in order], theta[order], sigma[order])
    data.progress("probes", 2, 2)

    # α: given, or the grid's α with the highest mean normalised p(behaviour) on the validation other-class
    # prompts (a smooth score: the greedy rate saturates and ties on a few prompts); ties → the smaller α.
    if spec.alpha > 0:
        alpha = spec.alpha
    else:
        val_other = [ex.prompt for ex in val.other]
        val_p = [rate(behaviour_prob(lm, val_other, b_tokens, o_tokens, shift.at(lm, a))) for a in spec.alphas]
        alpha = spec.alphas[max(range(len(spec.alphas)), key=lambda i: (round(val_p[i], 6), -spec.alphas[i]))]

    others = [ex.prompt for ex in test.other]
    before = st.token_rate(lm, others, b_tokens)
    after = st.token_rate(lm, others, b_tokens, shift.at(lm, alpha))
    alphas = sorted(set(spec.alphas) | {alpha})
    sweep_greedy = [st.token_rate(lm, others, b_tokens, shift.at(lm, a)) for a in alphas]
    sweep_prob = [behaviour_prob(lm, others, b_tokens, o_tokens, shift.at(lm, a)) for a in alphas]

    s = spec.seed
    val_ci = [mean_ci(c.double(), seed=s)[1] for c in val_scores.correct]
    findings = [
        Finding("attention-head", i // lm.n_heads, i % lm.n_heads, round(float(val_scores.accuracy[i]), 6),
                head_label(i // lm.n_heads, i % lm.n_heads) + (" (shifted)" if i in order else ""), val_ci[i])
        for i in range(n_heads_total)
    ]  # fmt: skip
    grid = val_scores.accuracy.reshape(lm.n_layers, lm.n_heads).float()
    majority = max(float(y_va.mean()), 1 - float(y_va.mean()))
    chosen_labels = ", ".join(head_label(layer, h) for layer, h in shift.heads)
    metrics: dict[str, int | float] = {
        "n_prompts": len(sides.behaviour) + len(sides.other),
        "n_fit": len(train.behaviour) + len(train.other),
        "n_val": len(val.behaviour) + len(val.other),
        "n_test": len(test.behaviour) + len(test.other),
        "probe_majority_rate": round(majority, 6),
        "probe_best_head_accuracy": round(float(val_scores.accuracy[order[0]]), 6),
        "iti_top_k": k,
        "iti_alpha": float(alpha),
        "iti_heads_val_accuracy": round(float(val_scores.accuracy[order].mean()), 6),
        "iti_heads_test_accuracy": round(float(test_scores.accuracy[order].mean()), 6),
        "behaviour_rate_before": mean_ci(before, seed=s)[0],
        "behaviour_rate_steered": mean_ci(after, seed=s)[0],
    }
    intervals = {
        "probe_best_head_accuracy": val_ci[order[0]],
        "behaviour_rate_before": mean_ci(before, seed=s)[1],
        "behaviour_rate_steered": mean_ci(after, seed=s)[1],
    }
    b_name, o_name = sides.behaviour_name, sides.other_name
    return Output(
        metrics=metrics,
        intervals=intervals,
        findings=ranked(findings),
        tensors={
            "head_val_accuracy": grid,
            "head_test_accuracy": test_scores.accuracy.reshape(lm.n_layers, lm.n_heads).float(),
            "heads": torch.tensor(shift.heads),
            "theta": shift.theta,
            "sigma": shift.sigma,
        },
        figures=[
            Heatmap.per_head(
                "head_probes",
                f"ITI probes on {data.task} ({b_name} vs {o_name}): validation accuracy per head (head_out, last token)",
                grid.tolist(),
                vmin=0.0,
                vmax=1.0,
            ),
            st.sweep_curve(
                "alpha_sweep",
                f"ITI on {data.task}: held-out {o_name} prompts answered as {b_name!r} vs α (heads {chosen_labels})",
                alphas,
                {"greedy rate": sweep_greedy, "p(behaviour) normalised": sweep_prob},
                x_label="α (× σ along the head's direction)",
                y_label="behaviour",
                seed=s,
            ),
        ],
        improve=st.improve(data.task, "behaviour_rate", before, after, seed=s, goal="increase"),
        side_effects=st.side_effects(lm, data, shift.at(lm, alpha), n=spec.n_side),
        notes=[
            f"Applies ITI's algorithm (per-head probes on head_out at the last token, top-{k} heads by validation "
            f"accuracy, shift α·σ·θ̂ along the {spec.direction.replace('_', '-')} direction) to {data.task} "
            f"({b_name} vs {o_name}): the toy has no truthfulness data, so this is the method family on another "
            "binary property, not a TruthfulQA reproduction; the shift is added at the last prompt position.",
            f"Shifted heads: {chosen_labels}; α = {alpha:g} "
            + ("(given)." if spec.alpha > 0 else "(chosen on the validation prompts from the grid)."),
        ],
    )
