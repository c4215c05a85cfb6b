"""Safety-critical attention heads by ablation (Ships, Sahara) — Zhou et al. 2025, *On the Role of Attention Heads in
Large Language Model Safety* (ICLR).

The paper scores every attention head by the Safety Head ImPortant Score (Ships): the KL divergence between the
model's next-token distribution on a harmful query and the distribution with that head ablated. Its ablation is
"undifferentiated attention": the head's query is scaled by a tiny ε (1e-4 in the released code), so its attention
becomes uniform over the context and the head no longer selects anything. Sahara (Safety Attention Head AttRibution
Algorithm) then builds a *group* of safety heads greedily on a dataset, adding the head whose ablation together with
the group changes the model's safety representation most. Ablating a single such head in Llama-2-7b-chat makes it
answer about 16× more harmful queries.

What we do: harmful prompts are the behaviour class (toy task ``refusal``: label ``harmful``; otherwise
``Spec.behaviour`` or the first label), the refusal token is the toy's planted ``sorry`` (otherwise the behaviour
class's answer tokens). Ships per head = KL(p ‖ p with the head ablated) at the last token, per fit prompt, mean
with a bootstrap interval; ablation ``"undifferentiated"`` zeroes the head's query at every position (the ε → 0
limit of the paper's scaling: exactly uniform attention over the real prefix) or ``"zero"`` zeroes its output
(``head_out``). Sahara-style greedy group: ``Spec.group`` steps, each adding the head that maximises the mean KL
of ablating the group. All ablations are batched (``ablation_importance.Ablator``: row = prompt × head set). The
group, ablated, is the steering artifact (a ``UnitScaling`` by 0 of the heads' queries or outputs). Improve: the
refusal rate on held-out harmful prompts before → after (ablating safety heads *lowers* it — the paper's finding;
the intended change here is a drop); side effects: the harmless prompts' accuracy, the other tasks, KL on neutral
prompts. Sweep over the number of heads ablated: the Sahara group's first k, the top k by single-head Ships, and
k random heads (a control, averaged over ``Spec.random_draws`` draws).

Simplified: Sahara's dataset-level score (the change of the harmful queries' representation, measured through
its top singular directions) is replaced by the mean Ships (KL) of the group; next-token refusal instead of a
judge scoring sampled generations; no safety-head overlap analysis across fine-tuned models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods import steering
from mi_catalog.methods.contract import Finding, Heatmap, Output, SideEffect, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import bootstrap_ci, mean_ci
from mi_catalog.methods.steering import Unit, UnitScaling
from mi_catalog.models.loading import LoadedModel
from mi_catalog.tasks import TaskDataError, TaskExample
from reference_impls._common import answer_ids, head_label
from reference_impls.ablation_importance import Ablator

IMPL = ImplInfo(
    id="head-ablation-safety",
    title="Safety-critical attention heads (Ships: KL when a head's attention is made uniform; Sahara-style group), ablated",
    objects=("attention-head",),
    methods=("causal-attribution",),
    steering=("amplitude-manipulation",),
    reproduces=("on-the-role-of-attention-heads-in-large",),
    tasks=("refusal", "toxicity", "sentiment"),
    needs=(),
    metrics=(
        "n_fit",
        "n_test",
        "ships_top_kl",
        "ships_median_kl",
        "sahara_group_size",
        "sahara_group_kl",
        "refusal_rate_before",
        "refusal_rate_top_head",
        "refusal_rate_heads_ablated",
        "refusal_rate_random_heads",
        "harmless_accuracy_before",
        "harmless_accuracy_heads_ablated",
    ),
)

PREFERRED = ("harmful", "toxic", "positive")
ABLATIONS = ("undifferentiated", "zero")


@dataclass
class Spec:
    n: int = 128
    seed: int = 0
    ablation: str = "undifferentiated"  # the head's query zeroed (uniform attention) | "zero": its output zeroed
    behaviour: str = ""  # the class whose refusals are measured ("" = harmful / toxic / positive, else the first label)
    group: int = 1  # heads of the greedy (Sahara-style) group that the steering artifact ablates
    sweep_heads: int = 3  # the greedy group is grown to this size for the sweep
    random_draws: int = 5  # random head sets per k for the control
    n_side: int = 24  # prompts per other task for the side effects


def head_units(lm: LoadedModel, heads: Sequence[tuple[int, int]], ablation: str) -> tuple[Unit, ...]:
    """The units that ablate ``heads``: their queries (undifferentiated attention) or their outputs."""
    site = "q" if ablation == "undifferentiated" else "head_out"
    return tuple(Unit(f"{site}.{layer}", h) for layer, h in heads)


def kl_rows(base: torch.Tensor, ablated: torch.Tensor) -> torch.Tensor:
    """KL(p_base ‖ p_ablated) of next-token distributions: base [n, V], ablated [n, S, V] → [n, S]."""
    logp = base.float().log_softmax(-1)[:, None]
    logq = ablated.float().log_softmax(-1)
    return (logp.exp() * (logp - logq)).sum(-1).clamp(min=0)


def _sides(data: RunData, spec: Spec) -> tuple[str, list[str]]:
    labels = data.labels()
    if len(labels) < 2:
        raise TaskDataError(
            f"head-ablation-safety needs two label classes (e.g. harmful / harmless); task {data.task!r} has "
            f"{labels or 'no labels'} (use the toy's refusal task or --prompts with 'label')"
        )
    if spec.behaviour:
        if spec.behaviour not in labels:
            raise TaskDataError(f"behaviour={spec.behaviour!r} is not one of the labels {', '.join(labels)}")
        chosen = spec.behaviour
    else:
        chosen = next((lab for lab in PREFERRED if lab in labels), labels[0])
    return chosen, [lab for lab in labels if lab != chosen]


def refusal_tokens(lm: LoadedModel, data: RunData, fit: list[TaskExample], behaviour: str) -> list[int]:
    """The toy's planted refusal token on its refusal task; otherwise the behaviour class's answer tokens."""
    planted = getattr(data.planted, "refuse_token", None)
    if data.task == "refusal" and planted:
        return [lm.token_id(planted)]
    return sorted({lm.token_id(ex.answer) for ex in fit if ex.label == behaviour and ex.answer})


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    if spec.ablation not in ABLATIONS:
        raise ValueError(f"ablation={spec.ablation!r}; use one of {', '.join(ABLATIONS)}")
    behaviour, others = _sides(data, spec)
    fit, test = data.fit_test()
    harmful_fit = [ex for ex in fit if ex.label == behaviour]
    harmful_test = [ex.prompt for ex in test if ex.label == behaviour]
    harmless_test = [ex for ex in test if ex.label in others]
    if not harmful_fit or not harmful_test:
        raise TaskDataError(f"too few {behaviour!r} prompts for a fit and a held-out half; raise --n")
    tokens = refusal_tokens(lm, data, fit, behaviour)
    heads = [(layer, h) for layer in range(lm.n_layers) for h in range(lm.n_heads)]
    batch = lm.encode([ex.prompt for ex in harmful_fit])
    ablator = Ablator(lm, batch, answer_ids(lm, harmful_fit), None, "zero", "all", None)
    with torch.no_grad():
        base = lm.logits(batch)[:, -1].float().cpu()  # [n, V]

    # Ships: one head at a time.
    size = max(spec.group, spec.sweep_heads)
    data.progress("ships", 0, size + 1)
    ships = kl_rows(base, ablator.last_logits([head_units(lm, [hd], spec.ablation) for hd in heads]))  # [n, H_all]
    ships_mean = ships.mean(0)
    findings = [
        Finding(
            "attention-head",
            layer,
            h,
            float(ships_mean[i]),
            head_label(layer, h),
            bootstrap_ci(ships[:, i], seed=spec.seed),
        )
        for i, (layer, h) in enumerate(heads)
    ]
    by_ships = [heads[i] for i in torch.argsort(ships_mean, descending=True, stable=True).tolist()]

    # Sahara-style greedy group: add the head whose ablation with the group moves the distribution most.
    group: list[tuple[int, int]] = []
    group_kl = 0.0
    group_kls: list[float] = []
    for step in range(min(size, len(heads))):
        data.progress("ships", step + 1, size + 1)
        candidates = [hd for hd in heads if hd not in group]
        sets = [head_units(lm, [*group, hd], spec.ablation) for hd in candidates]
        gains = kl_rows(base, ablator.last_logits(sets)).mean(0)  # [candidates]
        best = int(torch.argmax(gains))
        group.append(candidates[best])
        group_kls.append(float(gains[best]))
    grown, group = group, group[: spec.group]
    group_kl = group_kls[len(group) - 1] if group else 0.0

    # Steer: ablate the group (the artifact); improve = the held-out refusal rate, with its cost.
    artifact = UnitScaling(head_units(lm, group, spec.ablation), 0.0)
    before = steering.token_rate(lm, harmful_test, tokens)
    after = steering.token_rate(lm, harmful_test, tokens, artifact)
    top_head = steering.token_rate(lm, harmful_test, tokens, UnitScaling(head_units(lm, by_ships[:1], spec.ablation)))
    harmless_before = steering.correct(lm, harmless_test)
    harmless_after = steering.correct(lm, harmless_test, artifact)
    gen = torch.Generator().manual_seed(spec.seed)
    ks = list(range(1, len(grown) + 1))
    curves: dict[str, list[torch.Tensor]] = {"Sahara group (first k)": [], "top k by Ships": [], "k random heads": []}
    for k in ks:
        curves["Sahara group (first k)"].append(
            steering.token_rate(lm, harmful_test, tokens, UnitScaling(head_units(lm, grown[:k], spec.ablation)))
        )
        curves["top k by Ships"].append(
            steering.token_rate(lm, harmful_test, tokens, UnitScaling(head_units(lm, by_ships[:k], spec.ablation)))
        )
        draws = []
        for _ in range(spec.random_draws):
            picked = [heads[i] for i in torch.randperm(len(heads), generator=gen)[:k].tolist()]
            draws.append(
                steering.token_rate(lm, harmful_test, tokens, UnitScaling(head_units(lm, picked, spec.ablation)))
            )
        curves["k random heads"].append(torch.stack(draws).mean(0))
    random_group = curves["k random heads"][len(group) - 1] if group else before
    data.progress("ships", size + 1, size + 1)

    costs: list[SideEffect] = []
    if harmless_test:
        costs.append(
            SideEffect(
                f"{'/'.join(others)} prompts (accuracy)", float(harmless_before.mean()), float(harmless_after.mean())
            )
        )
    costs += steering.side_effects(lm, data, artifact, n=spec.n_side)
    seed = spec.seed
    metrics: dict[str, int | float] = {
        "n_fit": len(fit),
        "n_test": len(test),
        "ships_median_kl": round(float(ships_mean.median()), 6),
        "sahara_group_size": len(group),
        "sahara_group_kl": round(group_kl, 6),
    }
    intervals: dict[str, tuple[float, float]] = {}
    top = by_ships[0]
    values = {
        "ships_top_kl": ships[:, heads.index(top)],
        "refusal_rate_before": before,
        "refusal_rate_top_head": top_head,
        "refusal_rate_heads_ablated": after,
        "refusal_rate_random_heads": random_group,
        "harmless_accuracy_before": harmless_before,
        "harmless_accuracy_heads_ablated": harmless_after,
    }
    for name, samples in values.items():
        if samples.numel():
            metrics[name], intervals[name] = mean_ci(samples, seed=seed)
    grid = ships_mean.reshape(lm.n_layers, lm.n_heads)
    figures: list[Any] = [
        Heatmap.per_head(
            "ships", f"{data.task}: Ships — KL(p ‖ p with the head ablated) on {behaviour} prompts (fit)", grid.tolist()
        ),
        steering.sweep_curve(
            "heads_sweep",
            f"{data.task}: refusal rate on held-out {behaviour} prompts vs heads ablated",
            ks,
            curves,
            x_label="heads ablated",
            y_label="refusal rate",
            seed=seed,
        ),
    ]
    labels = ", ".join(head_label(*hd) for hd in group)
    notes = [
        f"Ablating the Sahara-style group ({labels}; {spec.ablation} ablation) takes the refusal rate on held-out "
        f"{behaviour} prompts from {float(before.mean()):.2f} to {float(after.mean()):.2f} ({len(group)} random heads: "
        f"{float(random_group.mean()):.2f}); the best single head by Ships, {head_label(*top)}, alone: "
        f"{float(top_head.mean()):.2f}.",
        "Reproduces Ships (KL of the last-token distribution when a head's attention is made uniform) per head; the "
        "Sahara group is chosen by the group's mean KL instead of the paper's representation-change score, and refusal "
        "is the greedy next token, not a judged generation.",
    ]
    return Output(
        metrics=metrics,
        intervals=intervals,
        findings=ranked(findings),
        tensors={"ships": ships, "ships_mean": grid},
        figures=figures,
        improve=steering.improve(
            data.task,
            f"refusal rate on {behaviour} prompts (safety heads ablated: lower = they matter)",
            before,
            after,
            seed=seed,
            goal="decrease",
        ),
        side_effects=costs,
        notes=notes,
    )
