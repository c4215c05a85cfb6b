"""Whispering experts / AurA — Suau et al. 2024, *Whispering Experts: Neural Interventions for Toxicity Mitigation
in Language Models* (ICML).

The paper treats every unit of the model's linear layers as a classifier of toxic vs non-toxic sentences: its
response to a sentence is its largest activation over the sentence's tokens (max pooling), and its *expertise*
is the AUROC of that response for the toxic label. AurA (AUROC adaptation) then dampens every expert — every
unit with AUROC > 0.5 — at generation time by α_m = 1 − Gini_m = 1 − 2 (AUROC_m − 0.5), so perfect
discriminators are silenced and chance-level units untouched, with no hyperparameter; the baselines Det0
(zero the top-k experts) and Damp (multiply them by a constant) need k. Toxicity of the continuations drops
up to 2.2× for a small perplexity cost.

What we do: the units are, as in the released code's configuration for GPT-2 (``mlp.c_fc`` and ``mlp.c_proj``),
the FFN pre-activations (``mlp_pre.l``, one per neuron) and the FFN output dimensions (``mlp_out.l``) of every
layer (``Spec.sites``; ``mlp_act`` is the neuron activation itself). Responses are max-pooled over each fit
prompt's real tokens; AUROC (shared ``auroc``) for the behaviour class — ``toxic`` on the toy (``Spec.behaviour``;
otherwise ``harmful``/``positive`` or the first label); α as above for every unit above 0.5 (AurA), as the
artifact (each unit's output multiplied by its α at every position). Improve: on the held-out behaviour-class
prompts, the **behaviour rate** — share whose greedy next token is a behaviour token (the toy's planted toxic
words; otherwise the behaviour class's answer tokens) — before → after, and its probability mass; side effects:
the other class's accuracy, the model's other tasks, KL on neutral prompts. Sweep: AurA on only the top-k
experts and Det0 (zero the top-k), k = ``Spec.ks``.

Simplifications: task prompts instead of Jigsaw sentences; the next token instead of sampled continuations
scored by a toxicity classifier; no perplexity on a corpus (the side effects stand in).

On the shipped toy (recipe v3, seeds 0–9) the bar holds: toxicity is planted as a property of the speaker
(eight fact subjects are toxic commenters), a bit the FFN computes from the subject, so there are experts to
dampen. ~510–570 of the 1,280 units are experts, the best at AUROC 1.00 on fit and held-out prompts; AurA takes
the toxic completion rate from 1.00 to 0.27–0.64 (toxic probability mass 0.72–0.76 → 0.43–0.52) while the nice
prompts stay 1.00; the other tasks lose at most one prompt of 24 (≥ 0.958) and the KL on neutral prompts is
0.025–0.077 (``mi-catalog run whispering-experts --task toxicity --seed S``). Det0 on all
experts: 0.52–0.83. On recipe v1/v2 it did not hold: the toxic continuation was a word-to-word lookup by layer-0/1
attention heads, AurA left the toxic rate at 1.00 on every seed (a strict xfail until v3).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods import steering
from mi_catalog.methods.contract import Bars, Finding, Output, SideEffect, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import auroc, mean_ci
from mi_catalog.models.hooks import ForwardState, capture, edit
from mi_catalog.models.loading import LoadedModel
from mi_catalog.tasks import TaskDataError, TaskExample
from reference_impls._common import neuron_label

IMPL = ImplInfo(
    id="whispering-experts",
    title="Whispering experts (AurA): dampen each expert unit by 1 − Gini of its AUROC for the unwanted class",
    objects=("neuron",),
    methods=("probing",),
    steering=("amplitude-manipulation",),
    reproduces=("whispering-experts",),
    tasks=("toxicity", "refusal", "sentiment", "language"),
    needs=(),
    metrics=(
        "n_fit",
        "n_test",
        "n_units",
        "aura_n_experts",
        "aura_top_auroc",
        "aura_top_auroc_test",
        "aura_mean_alpha",
        "aura_rate_before",
        "aura_rate_after",
        "aura_mass_before",
        "aura_mass_after",
        "aura_other_accuracy_before",
        "aura_other_accuracy_after",
        "aura_det0_rate",
    ),
)

PREFERRED = ("toxic", "harmful", "positive")  # behaviour classes preferred over sorted order


@dataclass
class Spec:
    n: int = 128
    seed: int = 0
    sites: tuple[str, ...] = ("mlp_pre", "mlp_out")  # the released config: mlp.c_fc and mlp.c_proj outputs
    behaviour: str = ""  # the class to mitigate ("" = toxic / harmful / positive, else the first label)
    ks: tuple[int, ...] = (8, 32, 128)  # top-k experts for the sweep (AurA on the top k; Det0 zeroes them)
    det0_k: int = 32  # k of the Det0 baseline reported as a metric
    top_experts: int = 20  # experts listed as findings
    n_side: int = 24  # prompts per other task for the side effects


def aura_alpha(scores: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """AurA's dampening factor per unit: 1 − 2 (AUROC − 0.5) above ``threshold`` (0.5: every expert), else 1."""
    return torch.where(scores > threshold, 1.0 - 2.0 * (scores - 0.5), torch.ones_like(scores))


@dataclass
class UnitFactors:
    """Amplitude manipulation with one factor per unit: the activation at ``site`` is multiplied by ``factors[site]``
    ([units] — neurons of ``mlp_pre``/``mlp_act``, dimensions of ``mlp_out``) at every position."""

    factors: dict[str, torch.Tensor]

    def apply(self, lm: LoadedModel) -> contextlib.AbstractContextManager[Any]:
        return _scaled(lm, self.factors)


@contextlib.contextmanager
def _scaled(lm: LoadedModel, factors: dict[str, torch.Tensor]) -> Iterator[None]:
    def scaler(factor: torch.Tensor) -> Any:
        def apply(act: torch.Tensor, _state: ForwardState) -> torch.Tensor:
            return act * factor.to(device=act.device, dtype=act.dtype)

        return apply

    changed = [(where, scaler(f)) for where, f in sorted(factors.items()) if not bool((f == 1).all())]
    with edit(lm, changed):
        yield


def responses(lm: LoadedModel, prompts: Sequence[str], sites: Sequence[str]) -> dict[str, torch.Tensor]:
    """Each unit's largest activation over each prompt's real tokens (max pooling) → site → [n_prompts, units]."""
    out: dict[str, list[torch.Tensor]] = {s: [] for s in sites}
    with torch.no_grad():
        for start in range(0, len(prompts), steering.BATCH):
            batch = lm.encode(list(prompts[start : start + steering.BATCH]))
            with capture(lm, sites) as cache:
                lm.logits(batch)
            real = batch.attention_mask.bool()[..., None]
            for s in sites:
                act = cache[s].float()  # [b, pos, units]
                out[s].append(act.masked_fill(~real, float("-inf")).amax(dim=1).cpu())
    return {s: torch.cat(v) for s, v in out.items()}


def unit_aurocs(resp: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """AUROC of every unit's response for ``labels`` (1 = behaviour class) → site → [units]."""
    return {s: torch.tensor([auroc(r[:, j], labels) for j in range(r.shape[1])]) for s, r in resp.items()}


def top_k_factors(scores: dict[str, torch.Tensor], k: int | None, zero: bool) -> UnitFactors:
    """AurA's α (or 0 for Det0) on the top-k units by AUROC over all sites (k=None: every unit above 0.5)."""
    flat = torch.cat([scores[s] for s in sorted(scores)])
    threshold = 0.5
    if k is not None and k < flat.numel():
        threshold = max(0.5, float(torch.sort(flat, descending=True).values[k]))  # the released code's cut
    factors = {}
    for s, a in scores.items():
        chosen = a > threshold
        factors[s] = torch.where(chosen, torch.zeros_like(a) if zero else aura_alpha(a), torch.ones_like(a))
    return UnitFactors(factors)


def _sides(data: RunData, spec: Spec, examples: list[TaskExample]) -> tuple[str, list[str]]:
    labels = sorted({str(ex.label) for ex in examples if ex.label is not None})
    if len(labels) < 2:
        raise TaskDataError(
            f"whispering-experts needs examples with two label classes (e.g. toxic / nice); task {data.task!r} has "
            f"{labels or 'no labels'} (use the toy's toxicity task or --prompts with 'label')"
        )
    if spec.behaviour:
        if spec.behaviour not in labels:
            raise TaskDataError(f"behaviour={spec.behaviour!r} is not one of the labels {', '.join(labels)}")
        return spec.behaviour, [lab for lab in labels if lab != spec.behaviour]
    chosen = next((lab for lab in PREFERRED if lab in labels), labels[0])
    return chosen, [lab for lab in labels if lab != chosen]


def behaviour_tokens(lm: LoadedModel, data: RunData, fit: list[TaskExample], behaviour: str) -> list[int]:
    """The toy's planted toxic words for its toxicity task; otherwise the behaviour class's answer tokens."""
    planted = getattr(data.planted, "toxic_words", None)
    if data.task == "toxicity" and behaviour == "toxic" and planted:
        return sorted({lm.token_id(w) for w in planted})
    return sorted({lm.token_id(ex.answer) for ex in fit if ex.label == behaviour and ex.answer})


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    behaviour, others = _sides(data, spec, data.examples)
    fit, test = data.fit_test()
    sites = [f"{name}.{layer}" for name in spec.sites for layer in range(lm.n_layers)]
    data.progress("responses", 0, 2)
    fit_labels = torch.tensor([ex.label == behaviour for ex in fit])
    scores = unit_aurocs(responses(lm, [ex.prompt for ex in fit], sites), fit_labels)
    data.progress("responses", 1, 2)
    test_resp = responses(lm, [ex.prompt for ex in test], sites)
    test_labels = torch.tensor([ex.label == behaviour for ex in test])
    tokens = behaviour_tokens(lm, data, fit, behaviour)

    aura = top_k_factors(scores, None, zero=False)  # the artifact: every expert, α = 1 − Gini
    flat = torch.cat([scores[s] for s in sites])
    experts = int((flat > 0.5).sum())
    own = [ex.prompt for ex in test if ex.label == behaviour]
    rest = [ex for ex in test if ex.label in others]
    if not own:
        raise TaskDataError(f"no held-out {behaviour!r} prompts to measure on; raise --n")
    rate_before = steering.token_rate(lm, own, tokens)
    rate_after = steering.token_rate(lm, own, tokens, aura)
    mass_before = steering.set_prob(lm, own, tokens)
    mass_after = steering.set_prob(lm, own, tokens, aura)
    other_before = steering.correct(lm, rest)
    other_after = steering.correct(lm, rest, aura)
    det0 = steering.token_rate(lm, own, tokens, top_k_factors(scores, spec.det0_k, zero=True))

    ks = [k for k in spec.ks if k < flat.numel()]
    curves: dict[str, list[torch.Tensor]] = {
        "AurA on top k: behaviour rate": [],
        "Det0 (zero top k): behaviour rate": [],
        "AurA on top k: other class accuracy": [],
    }
    for k in ks:
        curves["AurA on top k: behaviour rate"].append(
            steering.token_rate(lm, own, tokens, top_k_factors(scores, k, False))
        )
        curves["Det0 (zero top k): behaviour rate"].append(
            steering.token_rate(lm, own, tokens, top_k_factors(scores, k, True))
        )
        curves["AurA on top k: other class accuracy"].append(
            steering.correct(lm, rest, top_k_factors(scores, k, False))
        )
    data.progress("responses", 2, 2)

    # Findings: the top experts by fit AUROC, with their held-out AUROC in the label.
    ranked_units: list[tuple[float, str, int]] = sorted(
        ((float(a), s, j) for s in sites for j, a in enumerate(scores[s].tolist())), key=lambda t: (-t[0], t[1], t[2])
    )
    findings = []
    for score, s, j in ranked_units[: spec.top_experts]:
        name, layer = s.split(".")[0], int(s.split(".")[1])
        held = auroc(test_resp[s][:, j], test_labels)
        obj = "ffn" if name == "mlp_out" else "neuron"
        label = f"{neuron_label(layer, j)} ({name}), held-out AUROC {held:.2f}"
        findings.append(Finding(obj, layer, j, score, label))
    best_score, best_site, best_j = ranked_units[0]
    top_test = auroc(test_resp[best_site][:, best_j], test_labels)
    alphas = torch.cat([aura.factors[s] for s in sites])

    seed = spec.seed
    metrics: dict[str, int | float] = {
        "n_fit": len(fit),
        "n_test": len(test),
        "n_units": int(flat.numel()),
        "aura_n_experts": experts,
        "aura_top_auroc": round(best_score, 6),
        "aura_top_auroc_test": round(top_test, 6),
        "aura_mean_alpha": round(float(alphas[alphas < 1].mean()) if experts else 1.0, 6),
    }
    intervals: dict[str, tuple[float, float]] = {}
    for name, samples in (
        ("aura_rate_before", rate_before),
        ("aura_rate_after", rate_after),
        ("aura_mass_before", mass_before),
        ("aura_mass_after", mass_after),
        ("aura_other_accuracy_before", other_before),
        ("aura_other_accuracy_after", other_after),
        ("aura_det0_rate", det0),
    ):
        if samples.numel():
            metrics[name], intervals[name] = mean_ci(samples, seed=seed)
    costs: list[SideEffect] = []
    if rest:
        costs.append(
            SideEffect(f"{'/'.join(others)} prompts (accuracy)", float(other_before.mean()), float(other_after.mean()))
        )
    costs += steering.side_effects(lm, data, aura, n=spec.n_side)
    figures: list[Any] = [
        Bars(
            "experts",
            f"{data.task}: top expert units by fit AUROC for '{behaviour}'",
            labels=[f.label.split(",")[0] for f in findings],
            values=[f.score for f in findings],
            y_label="AUROC",
        ),
    ]
    if ks:
        figures.append(
            steering.sweep_curve(
                "topk_sweep",
                f"{data.task}: dampening the top-k experts (held out)",
                ks,
                curves,
                x_label="k (experts)",
                y_label="rate",
                seed=seed,
            )
        )
    before_m = float(rate_before.mean()) if rate_before.numel() else float("nan")
    after_m = float(rate_after.mean()) if rate_after.numel() else float("nan")
    notes = [
        f"AurA dampens all {experts} units with fit AUROC > 0.5 (of {flat.numel()}; mean α {metrics['aura_mean_alpha']:.2f}): "
        f"the {behaviour} rate on held-out {behaviour} prompts goes {before_m:.2f} → {after_m:.2f}, the "
        f"{'/'.join(others)} prompts' accuracy {float(other_before.mean()) if rest else float('nan'):.2f} → "
        f"{float(other_after.mean()) if rest else float('nan'):.2f}.",
        "Reproduces AurA's expert scoring (max-pooled responses, AUROC) and dampening (α = 1 − Gini) as released "
        "(units of mlp.c_fc / mlp.c_proj → mlp_pre / mlp_out); measured on the next token of task prompts, not on "
        "sampled continuations scored by a toxicity classifier.",
    ]
    return Output(
        metrics=metrics,
        intervals=intervals,
        findings=ranked(findings),
        tensors={**{f"auroc_{s}": scores[s] for s in sites}, "alpha": alphas},
        figures=figures,
        improve=steering.improve(
            data.task,
            f"{behaviour} rate (greedy next token is a {behaviour} token; lower is better)",
            rate_before,
            rate_after,
            seed=seed,
            goal="decrease",
        ),
        side_effects=costs,
        notes=notes,
    )
