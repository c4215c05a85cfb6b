"""Contrastive Activation Addition (CAA) — Rimsky et al. 2024, *Steering Llama 2 via Contrastive Activation
Addition* (ACL 2024, arXiv 2312.06681).

The paper: a dataset of contrastive pairs — the same multiple-choice question followed once by the answer
letter that shows a behaviour (sycophancy, refusal, hallucination, a persona trait …) and once by the letter
that does not. The steering vector at layer L is the mean over pairs of the difference of the residual
stream (the output of decoder block L) at the answer-letter position. At inference the vector, times a
multiplier (−1 … +1 and beyond), is added to the output of block L at every position after the user's prompt;
the behaviour's probability (normalised over the two answer letters) moves with the multiplier, and a sweep
over layers shows where the vector works.

What we do: pairs from the task's contrast prompts — an example and its own ``corrupt_prompt`` when the
corruption flips the label (toy sentiment: "good" ↔ "bad"; refusal: harmful ↔ harmless word; toxicity: a
toxic ↔ nice speaker); without such pairs the two label classes' means (``reference_impls/_steer.py``).
Activations at the last prompt token at ``resid_post.l`` for every layer on the fit half; the layer is
chosen on a validation part of it (largest p(behaviour) gap between multipliers +m and −m); on the held-out
test half we sweep the multiplier (default −3 … +3) and report the behaviour's normalised probability
p(b) / (p(b) + p(other)) and the greedy rate, per class and overall, with bootstrap bands; the Improve stage
is the other class's behaviour rate before → after adding the vector at +m, and its side effects.

Simplifications: the "behaviour" is the first answer token of one class (toy: ``positive``, the toxic
continuations, ``sorry``) rather than an A/B letter; the vector is added at the last prompt position only
(``positions="last"``, the position that predicts the answer — our measurement has no generated
positions) or, with ``positions="all"``, at every position; no open-ended generation judged by a model.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods import steering as st
from mi_catalog.methods.contract import Curve, Finding, Output, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import mean_ci
from mi_catalog.models.loading import LoadedModel
from reference_impls._steer import (
    ContrastSides,
    answer_token_set,
    contrast_sides,
    last_acts,
    paired_prompts,
    rate,
    split_sides,
)

IMPL = ImplInfo(
    id="caa",
    title="Contrastive activation addition: mean difference over contrast pairs, added with a multiplier sweep",
    objects=("residual-stream",),
    methods=("causal-attribution",),
    steering=("vector-arithmetic",),
    reproduces=("steering-llama-2-via-contrastive-activation-addition",),
    tasks=("sentiment", "persona", "toxicity", "refusal"),
    needs=(),
    metrics=(
        "n_prompts",
        "n_fit",
        "n_val",
        "n_test",
        "n_pairs",
        "caa_layer",
        "caa_multiplier",
        "direction_norm",
        "behaviour_rate_before",
        "behaviour_rate_steered",
        "behaviour_own_before",
        "behaviour_own_suppressed",
        "sweep_effect_range",
        "sweep_min_step",
    ),
)


@dataclass
class Spec:
    n: int = 128
    seed: int = 0
    fit_fraction: float = 0.5
    val_fraction: float = 0.25  # share of the fit half held out to choose the layer
    multiplier: float = 1.0  # the strength of the Improve stage (and ± of the layer choice)
    multipliers: tuple[float, ...] = field(default_factory=lambda: (-3.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0))
    positions: str = "last"  # "last": the last prompt token; "all": every position
    behaviour: str = ""  # label of the behaviour class ("" = automatic: harmful/positive/toxic, else sorted first)
    other: str = ""  # label of the class to contrast with ("" = automatic: harmless/negative/nice/none, else next)
    n_side: int = 24


@dataclass
class Measured:
    """Per-prompt behaviour under one intervention."""

    prob: torch.Tensor  # [n] p(behaviour) / (p(behaviour) + p(other))
    greedy: torch.Tensor  # [n] 0/1: the greedy next token is a behaviour token


def measure(lm: LoadedModel, prompts: list[str], b_tokens: list[int], o_tokens: list[int],
            intervention: st.Intervention | None = None) -> Measured:  # fmt: skip
    if not prompts:
        return Measured(torch.zeros(0), torch.zeros(0))
    logits = st.next_token_logits(lm, prompts, intervention).cpu()  # [n, d_vocab]
    probs = logits.softmax(-1)
    pb = probs[:, torch.tensor(b_tokens)].sum(-1)
    po = probs[:, torch.tensor(o_tokens)].sum(-1) if o_tokens else torch.zeros_like(pb)
    greedy = torch.isin(logits.argmax(-1), torch.tensor(b_tokens)).float()
    return Measured((pb / (pb + po).clamp(min=1e-12)).float(), greedy)


def caa_vectors(lm: LoadedModel, fit: ContrastSides) -> tuple[torch.Tensor, int]:
    """Mean over contrast pairs of (behaviour − other) at resid_post.l, last token, every layer → ([L, d], n_pairs);
    without pairs, the difference of the two classes' means (n_pairs = 0)."""
    sites = [f"resid_post.{layer}" for layer in range(lm.n_layers)]
    pairs = paired_prompts(lm, fit)
    if pairs:
        a = last_acts(lm, [p for p, _ in pairs], sites)[:, :, 0]  # [L, n_pairs, d_model]
        b = last_acts(lm, [q for _, q in pairs], sites)[:, :, 0]
        return (a - b).mean(dim=1), len(pairs)
    a = last_acts(lm, [ex.prompt for ex in fit.behaviour], sites)[:, :, 0]
    b = last_acts(lm, [ex.prompt for ex in fit.other], sites)[:, :, 0]
    return a.mean(dim=1) - b.mean(dim=1), 0


def vector_at(layer: int, vector: torch.Tensor, coeff: float, positions: str) -> st.SteeringVector:
    return st.SteeringVector(f"resid_post.{layer}", vector, coeff, positions=-1 if positions == "last" else None)


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    if spec.positions not in ("last", "all"):
        raise ValueError(f"caa positions={spec.positions!r}; use 'last' or 'all'")
    sides = contrast_sides(data.examples, behaviour=spec.behaviour or None, other=spec.other or None)
    fit, test = split_sides(sides, spec.fit_fraction)
    train, val = split_sides(fit, 1.0 - spec.val_fraction)
    b_tokens = answer_token_set(lm, sides.behaviour)
    o_tokens = [t for t in answer_token_set(lm, sides.other) if t not in b_tokens]
    vectors, n_pairs = caa_vectors(lm, train)  # [L, d_model]

    # Layer choice on validation: the p(behaviour) gap between +m and −m over both classes.
    val_prompts = [ex.prompt for ex in val.behaviour + val.other]
    effects = []
    for layer in range(lm.n_layers):
        data.progress("layers", layer, lm.n_layers)
        up = measure(
            lm, val_prompts, b_tokens, o_tokens, vector_at(layer, vectors[layer], spec.multiplier, spec.positions)
        )
        down = measure(
            lm, val_prompts, b_tokens, o_tokens, vector_at(layer, vectors[layer], -spec.multiplier, spec.positions)
        )
        effects.append(rate(up.prob) - rate(down.prob))
    data.progress("layers", lm.n_layers, lm.n_layers)
    layer = max(range(lm.n_layers), key=lambda i: (effects[i], -i))
    steer = vector_at(layer, vectors[layer], spec.multiplier, spec.positions)

    # Held-out sweep.
    own, others = [ex.prompt for ex in test.behaviour], [ex.prompt for ex in test.other]
    everyone = own + others
    multipliers = sorted(set(spec.multipliers))
    sweep = {m: measure(lm, everyone, b_tokens, o_tokens, steer.with_coeff(m)) for m in multipliers}
    n_own = len(own)
    before = measure(lm, everyone, b_tokens, o_tokens)
    steered = measure(lm, others, b_tokens, o_tokens, steer)
    suppressed = measure(lm, own, b_tokens, o_tokens, steer.with_coeff(-spec.multiplier))
    means = [rate(sweep[m].prob) for m in multipliers]
    steps = [b - a for a, b in itertools.pairwise(means)]

    s = spec.seed
    other_before, own_before = before.greedy[n_own:], before.greedy[:n_own]
    metrics: dict[str, int | float] = {
        "n_prompts": len(sides.behaviour) + len(sides.other),
        "n_fit": len(train.behaviour) + len(train.other),
        "n_val": len(val_prompts),
        "n_test": len(everyone),
        "n_pairs": n_pairs,
        "caa_layer": layer,
        "caa_multiplier": spec.multiplier,
        "direction_norm": round(float(vectors[layer].norm()), 6),
        "behaviour_rate_before": mean_ci(other_before, seed=s)[0],
        "behaviour_rate_steered": mean_ci(steered.greedy, seed=s)[0],
        "behaviour_own_before": mean_ci(own_before, seed=s)[0],
        "behaviour_own_suppressed": mean_ci(suppressed.greedy, seed=s)[0],
        "sweep_effect_range": round(means[-1] - means[0], 6),
        "sweep_min_step": round(min(steps), 6) if steps else 0.0,
    }
    intervals = {
        "behaviour_rate_before": mean_ci(other_before, seed=s)[1],
        "behaviour_rate_steered": mean_ci(steered.greedy, seed=s)[1],
        "behaviour_own_before": mean_ci(own_before, seed=s)[1],
        "behaviour_own_suppressed": mean_ci(suppressed.greedy, seed=s)[1],
    }
    b_name, o_name = sides.behaviour_name, sides.other_name
    findings = [
        Finding("residual-stream", i, None, round(effects[i], 6), f"resid_post.{i}") for i in range(lm.n_layers)
    ]
    pair_note = (
        f"{n_pairs} contrast pairs (each prompt with its own corrupt prompt of the other class)"
        if n_pairs
        else "no contrast pairs in the data, so the difference of the two classes' means"
    )
    return Output(
        metrics=metrics,
        intervals=intervals,
        findings=ranked(findings),
        tensors={"vector": vectors[layer].float(), "layer_effect": torch.tensor(effects)},
        figures=[
            st.sweep_curve(
                "multiplier_sweep",
                f"CAA on {data.task}: behaviour {b_name!r} vs multiplier (resid_post.{layer}, held-out)",
                multipliers,
                {
                    "p(behaviour), all": [sweep[m].prob for m in multipliers],
                    f"greedy rate, {b_name} prompts": [sweep[m].greedy[:n_own] for m in multipliers],
                    f"greedy rate, {o_name} prompts": [sweep[m].greedy[n_own:] for m in multipliers],
                },
                x_label="multiplier",
                y_label="behaviour",
                seed=s,
            ),
            Curve(
                "layers",
                f"CAA on {data.task}: p(behaviour) at +{spec.multiplier} minus at −{spec.multiplier}, by layer (validation)",
                x=[float(i) for i in range(lm.n_layers)],
                series={"effect": effects},
                x_label="layer (resid_post)",
                y_label="Δ p(behaviour)",
            ),
        ],
        improve=st.improve(data.task, "behaviour_rate", other_before, steered.greedy, seed=s, goal="increase"),
        side_effects=st.side_effects(lm, data, steer, n=spec.n_side),
        notes=[
            f"Reproduces CAA's algorithm (mean activation difference over contrast pairs at a layer's output, added "
            f"with a multiplier; layer chosen by its effect) on {data.task}: behaviour {b_name!r} vs {o_name!r} from "
            f"{pair_note}; the behaviour is the next token (not an A/B letter), added at "
            f"{'the last prompt position' if spec.positions == 'last' else 'every position'}.",
        ],
    )
