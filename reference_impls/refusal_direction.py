"""Refusal direction — Arditi et al. 2024, *Refusal in Language Models Is Mediated by a Single Direction*
(NeurIPS 2024, arXiv 2406.11717).

The paper: for every layer l and every post-instruction token position i, a candidate direction
r_i^l = mean(x_i^l | harmful) − mean(x_i^l | harmless) of the residual stream at the block input, from
128 + 128 training prompts. Each candidate is scored on held-out validation prompts: the *bypass score*
(refusal score on harmful prompts under directional ablation), the *induce score* (refusal score on harmless
prompts under activation addition) and the KL divergence it causes on harmless prompts; candidates whose
ablation moves the harmless distribution too much (KL ≥ 0.1), that do not induce refusal (induce score ≤ 0)
or that sit in the last 20 % of the layers are discarded, and the one with the lowest bypass score wins.
*Directional ablation* projects r̂ out of every residual-stream read and write (each block's input and the
outputs of every attention and FFN block) at every token; *activation addition* adds r^l at layer l at every
token. The refusal score is the log-odds of the refusal tokens at the first generated position.

What we do: exactly that selection, on the two label classes of the task (``harmful`` vs ``harmless`` on the
toy and the English refusal set; any two classes, or prompts vs their corrupt prompts, on other data —
see ``reference_impls/_steer.py``), at the last ``n_positions`` tokens (on the toy "answer :", the tokens
after the request), with ``data.fit_test()``'s fit half split again into train (directions) and validation
(selection), and every reported number measured on the held-out test half: the harmful prompts' refusal rate
before → after ablation (the Improve stage), the harmless prompts' accuracy under ablation (they must still
comply) and their refusal rate under addition, plus a multiplier sweep of the addition.

Simplifications: the refusal tokens are the first answer tokens of the harmful side (the toy's planted
``sorry``; "I" for the English set's "I'm sorry") rather than the paper's hand-picked token list; rates are
of the greedy next token, not of generated completions judged by a classifier (no generation, no
jailbreak-judge); no weight orthogonalisation (the paper's equivalent weight edit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods import steering as st
from mi_catalog.methods.contract import Curve, Finding, Heatmap, Output, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import kl_divergence, mean_ci
from mi_catalog.models.loading import LoadedModel
from reference_impls._steer import (
    ContrastSides,
    answer_token_set,
    contrast_sides,
    last_acts,
    log_odds,
    min_tokens,
    rate,
    residual_write_sites,
    split_sides,
)

IMPL = ImplInfo(
    id="refusal-direction",
    title="Refusal direction: difference of means per layer, chosen by validation; directional ablation and addition",
    objects=("residual-stream",),
    methods=("causal-attribution",),
    steering=("vector-arithmetic",),
    reproduces=("refusal-in-language-models-is-mediated",),
    tasks=("refusal", "toxicity"),
    needs=(),
    metrics=(
        "n_prompts",
        "n_fit",
        "n_val",
        "n_test",
        "direction_layer",
        "direction_position",
        "direction_norm",
        "n_candidates_kept",
        "refusal_rate_before",
        "refusal_rate_ablated",
        "harmless_accuracy_before",
        "harmless_accuracy_ablated",
        "harmless_refusal_before",
        "harmless_refusal_added",
        "kl_harmless_ablated",
    ),
)


@dataclass
class Spec:
    n: int = 256
    seed: int = 0
    fit_fraction: float = 0.5  # the fit half (train + validation); the rest is the held-out test
    val_fraction: float = 0.25  # share of the fit half held out to choose the candidate (the paper: 32 of 160)
    n_positions: int = 2  # candidate positions: the last n_positions tokens of every prompt
    kl_max: float = 0.1  # discard candidates whose ablation has KL ≥ kl_max on harmless validation prompts
    max_layer_fraction: float = 0.8  # discard candidates at layers ≥ this share of the depth
    multipliers: tuple[float, ...] = field(default_factory=lambda: (-1.0, -0.5, 0.0, 0.5, 1.0, 1.5))
    n_side: int = 24  # prompts per other task for the side effects


@dataclass
class Behaviour:
    """Per-prompt behaviour under an intervention: greedy next token is a refusal token (0/1), and the total
    probability of the refusal tokens."""

    refused: torch.Tensor  # [n] 0/1
    prob: torch.Tensor  # [n]
    logits: torch.Tensor  # [n, d_vocab]

    @property
    def score(self) -> float:
        """The paper's refusal score: mean log-odds of the refusal tokens' probability."""
        return float(log_odds(self.prob).mean()) if self.prob.numel() else 0.0


def behaviour(
    lm: LoadedModel, prompts: list[str], tokens: list[int], intervention: st.Intervention | None = None
) -> Behaviour:
    logits = st.next_token_logits(lm, prompts, intervention)  # [n, d_vocab]
    idx = torch.tensor(tokens, dtype=torch.long)
    refused = torch.isin(logits.argmax(-1).cpu(), idx).float()
    prob = logits.softmax(-1).cpu()[:, idx].sum(-1)
    return Behaviour(refused, prob, logits.cpu())


def last_kl(before: torch.Tensor, after: torch.Tensor) -> float:
    """Mean KL(before ‖ after) of next-token distributions at the last position, [n, vocab] each."""
    return float(kl_divergence(before[:, None], after[:, None])) if before.numel() else 0.0


@dataclass
class Candidate:
    layer: int
    position: int  # relative to the end: -1 = last token
    direction: torch.Tensor  # [d_model], unnormalised (the difference of means)
    bypass_rate: float = 1.0
    bypass_score: float = math.inf
    induce_rate: float = 0.0
    induce_score: float = -math.inf
    kl: float = math.inf
    degenerate: bool = False

    def kept(self, spec: Spec, n_layers: int) -> bool:
        return (
            not self.degenerate
            and self.kl < spec.kl_max
            and self.induce_score > 0
            and self.layer < spec.max_layer_fraction * n_layers
        )


def ablation(lm: LoadedModel, direction: torch.Tensor) -> st.DirectionAblation:
    return st.DirectionAblation(direction, residual_write_sites(lm))


def addition(layer: int, direction: torch.Tensor, coeff: float = 1.0) -> st.SteeringVector:
    return st.SteeringVector(f"resid_pre.{layer}", direction, coeff)


def fit_candidates(lm: LoadedModel, train: ContrastSides, k: int) -> list[Candidate]:
    """Difference of means at resid_pre.l, last k positions, for every layer: L × k candidates."""
    sites = [f"resid_pre.{layer}" for layer in range(lm.n_layers)]
    acts_b = last_acts(lm, [ex.prompt for ex in train.behaviour], sites, k)  # [L, n_b, k, d_model]
    acts_o = last_acts(lm, [ex.prompt for ex in train.other], sites, k)  # [L, n_o, k, d_model]
    scale = float(torch.cat([acts_b, acts_o], dim=1).norm(dim=-1).mean())
    out = []
    for layer in range(lm.n_layers):
        for j in range(k):
            direction = st.diff_of_means(acts_b[layer, :, j], acts_o[layer, :, j])  # [d_model]
            # The same token at the same depth (e.g. the embeddings of a shared last token) gives no direction.
            out.append(
                Candidate(layer, j - k, direction, degenerate=float(direction.norm()) <= 1e-4 * max(scale, 1e-12))
            )
    return out


def score_candidates(
    lm: LoadedModel, candidates: list[Candidate], val: ContrastSides, tokens: list[int], data: RunData
) -> Behaviour:
    """Fill in each candidate's bypass/induce scores and KL on the validation prompts → the unsteered
    behaviour on the validation harmful prompts."""
    harmful, harmless = [ex.prompt for ex in val.behaviour], [ex.prompt for ex in val.other]
    base_b = behaviour(lm, harmful, tokens)
    base_o = behaviour(lm, harmless, tokens)
    for i, cand in enumerate(candidates):
        data.progress("candidates", i, len(candidates))
        if cand.degenerate:
            cand.bypass_rate, cand.bypass_score = rate(base_b.refused), base_b.score
            cand.induce_rate, cand.induce_score, cand.kl = rate(base_o.refused), base_o.score, 0.0
            continue
        ablated_b = behaviour(lm, harmful, tokens, ablation(lm, cand.direction))
        ablated_o = behaviour(lm, harmless, tokens, ablation(lm, cand.direction))
        added_o = behaviour(lm, harmless, tokens, addition(cand.layer, cand.direction))
        cand.bypass_rate, cand.bypass_score = rate(ablated_b.refused), ablated_b.score
        cand.induce_rate, cand.induce_score = rate(added_o.refused), added_o.score
        cand.kl = last_kl(base_o.logits, ablated_o.logits)
    data.progress("candidates", len(candidates), len(candidates))
    return base_b


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    sides = contrast_sides(data.examples)
    fit, test = split_sides(sides, spec.fit_fraction)
    train, val = split_sides(fit, 1.0 - spec.val_fraction)
    tokens = answer_token_set(lm, sides.behaviour)
    k = max(1, min(spec.n_positions, min_tokens(lm, [ex.prompt for ex in data.examples])))

    candidates = fit_candidates(lm, train, k)
    base_val = score_candidates(lm, candidates, val, tokens, data)
    kept = [c for c in candidates if c.kept(spec, lm.n_layers)]
    pool = kept or [c for c in candidates if not c.degenerate] or candidates
    best = min(pool, key=lambda c: (c.bypass_score, c.layer, -c.position))
    direction = best.direction
    abl, add = ablation(lm, direction), addition(best.layer, direction)

    # Held-out test: the Improve stage and the harmless side.
    harmful, harmless = [ex.prompt for ex in test.behaviour], [ex.prompt for ex in test.other]
    before_b, after_b = behaviour(lm, harmful, tokens), behaviour(lm, harmful, tokens, abl)
    before_o, ablated_o = behaviour(lm, harmless, tokens), behaviour(lm, harmless, tokens, abl)
    added_o = behaviour(lm, harmless, tokens, add)
    correct_before = st.correct(lm, test.other)
    correct_after = st.correct(lm, test.other, abl)
    kl_test = st.kl_per_prompt(lm, harmless, abl) if harmless else torch.zeros(0)

    sweep_b = [behaviour(lm, harmful, tokens, add.with_coeff(c)).refused for c in spec.multipliers]
    sweep_o = [behaviour(lm, harmless, tokens, add.with_coeff(c)).refused for c in spec.multipliers]

    s = spec.seed
    metrics: dict[str, int | float] = {
        "n_prompts": len(sides.behaviour) + len(sides.other),
        "n_fit": len(train.behaviour) + len(train.other),
        "n_val": len(val.behaviour) + len(val.other),
        "n_test": len(harmful) + len(harmless),
        "direction_layer": best.layer,
        "direction_position": best.position,
        "direction_norm": round(float(direction.norm()), 6),
        "n_candidates_kept": len(kept),
        "refusal_rate_before": mean_ci(before_b.refused, seed=s)[0],
        "refusal_rate_ablated": mean_ci(after_b.refused, seed=s)[0],
        "harmless_accuracy_before": mean_ci(correct_before, seed=s)[0],
        "harmless_accuracy_ablated": mean_ci(correct_after, seed=s)[0],
        "harmless_refusal_before": mean_ci(before_o.refused, seed=s)[0],
        "harmless_refusal_added": mean_ci(added_o.refused, seed=s)[0],
        "kl_harmless_ablated": round(float(kl_test.mean()), 6) if kl_test.numel() else 0.0,
    }
    intervals = {
        "refusal_rate_before": mean_ci(before_b.refused, seed=s)[1],
        "refusal_rate_ablated": mean_ci(after_b.refused, seed=s)[1],
        "harmless_accuracy_ablated": mean_ci(correct_after, seed=s)[1],
        "harmless_refusal_added": mean_ci(added_o.refused, seed=s)[1],
        "kl_harmless_ablated": mean_ci(kl_test, seed=s)[1] if kl_test.numel() else (0.0, 0.0),
    }
    del ablated_o  # its KL is reported per prompt above (all positions), as the side effects do

    baseline_drop = rate(base_val.refused)
    findings = [
        Finding(
            "residual-stream",
            c.layer,
            None,
            round(baseline_drop - c.bypass_rate, 6),
            f"resid_pre.{c.layer} @ {c.position}" + ("" if c.kept(spec, lm.n_layers) else " (filtered)"),
        )
        for c in candidates
    ]

    def grid(attr: str) -> list[list[float]]:  # layer × position
        return [[float(getattr(c, attr)) for c in candidates if c.layer == layer] for layer in range(lm.n_layers)]

    at_pos = [c for c in candidates if c.position == best.position]
    layers_x = [float(c.layer) for c in at_pos]
    notes = [
        f"Reproduces Arditi et al.'s algorithm (difference of means per layer and position, selection on "
        f"validation by bypass score with KL < {spec.kl_max} and induce score > 0, ablation of every residual "
        f"read/write, addition at the chosen layer) on {data.task} ({sides.describe()}); the refusal tokens are "
        f"the {sides.behaviour_name!r} side's first answer tokens ({', '.join(repr(lm.tokenizer.decode([t])) for t in tokens[:4])}) "
        "and rates are of the greedy next token, not of judged generations.",
        f"Chosen: resid_pre.{best.layer} at position {best.position} "
        f"({len(kept)} of {len(candidates)} candidates passed the filters"
        + ("" if kept else "; none did, so the lowest bypass score among all was taken")
        + ").",
    ]
    return Output(
        metrics=metrics,
        intervals=intervals,
        findings=ranked(findings),
        tensors={
            "direction": direction.float(),
            "bypass_rate": torch.tensor(grid("bypass_rate")),
            "induce_rate": torch.tensor(grid("induce_rate")),
            "kl": torch.tensor(grid("kl")),
        },
        figures=[
            Curve(
                "candidates",
                f"refusal direction on {data.task}: validation scores by layer (position {best.position})",
                x=layers_x,
                series={
                    "harmful refused, ablated": [c.bypass_rate for c in at_pos],
                    "harmless refused, added": [c.induce_rate for c in at_pos],
                    "KL harmless, ablated": [min(c.kl, 10.0) for c in at_pos],
                },
                x_label="layer (resid_pre)",
                y_label="rate / KL",
            ),
            Heatmap(
                "bypass",
                "harmful prompts still refused under ablation of each candidate (validation)",
                values=grid("bypass_rate"),
                row_labels=[f"L{layer}" for layer in range(lm.n_layers)],
                col_labels=[str(j - k) for j in range(k)],
                vmin=0.0,
                vmax=1.0,
            ),
            st.sweep_curve(
                "addition_sweep",
                f"activation addition at resid_pre.{best.layer}: refusal rate vs multiplier",
                spec.multipliers,
                {f"{sides.behaviour_name} refused": sweep_b, f"{sides.other_name} refused": sweep_o},
                x_label="multiplier of the direction",
                y_label="refusal rate (held-out)",
                seed=s,
            ),
        ],
        improve=st.improve(data.task, "refusal_rate", before_b.refused, after_b.refused, seed=s, goal="decrease"),
        side_effects=st.side_effects(lm, data, abl, n=spec.n_side),
        notes=notes,
    )
