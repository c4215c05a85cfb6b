"""Language-specific neurons by LAPE — Tang et al. 2024, *Language-Specific Neurons: The Key to Multilingual
Capabilities in Large Language Models* (ACL).

The paper measures, for every FFN neuron and every language, the activation probability P(act > 0) over the
tokens of that language's text, normalises the probabilities over languages into a distribution and takes its
entropy (language activation probability entropy, LAPE). Neurons with the lowest LAPE (bottom 1 %) whose
activation probability for some language exceeds a high threshold (a percentile of all activation
probabilities) are specific to the languages where they exceed it. Deactivating (zeroing) one language's
neurons sharply degrades that language (perplexity) and barely touches the others.

What we do: the "language" of an example is its label (toy task ``language``: the target language of the
translation; English set ``multilingual``: the language code). A language's tokens are the answer tokens of its
fit examples that no other language answers with; activation probabilities are counted at every position of
the fit texts (prompt + answer) holding one of them — wherever it occurs, so the toy's source sentences count
too. "Active" is the paper's code's criterion, act_fn(gate) > 0, read as ``mlp_pre > 0`` (silu and gelu are
positive exactly for positive inputs); ``site="mlp_act"`` counts the input of W_out instead, which for a
SwiGLU FFN (act_fn(gate) · up) has a sign of its own. Deactivation zeroes the neuron
(``mlp_act``). Selection as in the released ``identify.py``: probability threshold = the ``prob_quantile``
quantile of all activation probabilities; the ``top_rate`` share of all neurons with the lowest LAPE among those
above it (the paper's text says 1 %, the released script uses 5 %); a neuron belongs to every language whose
probability exceeds the threshold. Causal check on the held-out split, as the paper measures it: zero one
language's neurons (all positions) and score every language's *text* by its loss — the mean −log p of the
positions whose next token is one of that language's tokens (and of each example's answer, for the language it
is labelled with), nats per token (perplexity = exp) — with bootstrap intervals over prompts; secondarily p(answer) and accuracy of each language's prompts.
Steer and Improve (issue 8): the deactivation is the steering artifact (a ``UnitScaling`` of one language's
neurons by 0, language ``Spec.suppress``, default the first); ``improve`` is the loss of that language's held-out
text before → after (suppression: a rise is the intended change), the side effects are the other languages' text
loss and accuracy, the model's other tasks and the KL on neutral prompts, and a sweep over ``top_rate`` is the
strength. ``token_side="output"`` counts the positions whose *next* token is the language's instead of those
holding it: in monolingual text the two coincide, in translation data reading a language (the source) and
writing it (the target) happen at different tokens.
Simplifications: the tokens of task prompts instead of monolingual corpora (on the toy, a language's text is
both sides of the translations: the source sentence is free text, the target its translation); no
activation-steering of the output language.

On the shipped toy (recipe v3, seeds 0–9, n = 128, 10 neurons = the paper's 1 %) the claim holds at every seed:
zeroing a language's neurons raises its own text's loss by 0.011–0.092 nats per token (≈ 1–10 % perplexity)
and the other language's by −0.006 to +0.007, intervals disjoint (a test). Accuracy and p(answer) of the
translation prompts do not move: the translations are saturated (p ≈ 1), so the effect is on the free text. On
recipe v1/v2 checkpoints it did not hold: they were trained on translation only, where the neurons LAPE selects
read a language (and translation reads the other one); v3's monolingual continuation gave each language neurons
that write it. v1 figures: at 1 % the drops in p(answer) were ≤ 0.0044; up to 10 % of all neurons, zeroing the
English (input-side) neurons cost the Zulu-target prompts — whose *source* is English — 0.18–0.33 accuracy.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods import steering
from mi_catalog.methods.contract import Bars, Finding, Heatmap, Output, SideEffect, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import answer_prob, mean_ci, top1_correct
from mi_catalog.methods.steering import Unit, UnitScaling
from mi_catalog.models.hooks import ablate, capture
from mi_catalog.models.loading import LoadedModel
from mi_catalog.tasks import TaskDataError, TaskExample
from reference_impls._common import answer_ids, neuron_label

IMPL = ImplInfo(
    id="language-neurons",
    title="Language-specific neurons by activation-probability entropy (LAPE), with the deactivation check",
    objects=("neuron",),
    methods=("magnitude-analysis",),
    steering=("amplitude-manipulation",),
    reproduces=("language-specific-neurons",),
    tasks=("language", "multilingual"),
    needs=(),
    metrics=(
        "n_fit",
        "n_test",
        "lape_n_languages",
        "lape_n_selected",
        "lape_prob_threshold",
        "lape_own_nll_increase",
        "lape_other_nll_increase",
        "lape_nll_selectivity",
        "clean_text_nll",
        "lape_own_drop",
        "lape_other_drop",
        "lape_selectivity",
        "lape_own_accuracy_drop",
        "lape_other_accuracy_drop",
        "clean_prob",
        "clean_accuracy",
        "lape_suppress_own_accuracy",
        "lape_suppress_other_accuracy",
    ),
)


@dataclass
class Spec:
    n: int = 128
    seed: int = 0
    # Where "active" (> 0) is read. The paper's code counts act_fn(gate) > 0, i.e. mlp_pre > 0 (silu and gelu are
    # positive exactly for positive inputs); "mlp_act" (act_fn(gate) · up, the input of W_out) differs for SwiGLU.
    site: str = "mlp_pre"
    prob_quantile: float = 0.95  # activation-probability threshold: this quantile of all probabilities
    top_rate: float = 0.01  # share of all neurons kept: the lowest LAPE among those above the threshold
    min_tokens: int = 1  # token positions each language needs in the fit split (a note warns below 16)
    # Which positions count for a language: "input" — positions holding one of its tokens (the paper: its text);
    # "output" — positions whose NEXT token is one of them (where the language is written; in translation data
    # reading and writing a language happen at different tokens).
    token_side: str = "input"
    suppress: str = ""  # the language whose neurons the Improve stage deactivates ("" = the first language)
    sweep: tuple[float, ...] = (0.005, 0.01, 0.03, 0.1)  # top_rate values of the strength sweep
    n_side: int = 24  # prompts per other task for the side effects


def activation_probability(acts: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """P(act > 0) per group: acts [L, N, d_mlp], groups [N] → [n_groups, L, d_mlp]."""
    active = (acts > 0).float()
    return torch.stack([active[:, groups == g].mean(dim=1) for g in range(n_groups)])


def lape(probs: torch.Tensor) -> torch.Tensor:
    """Entropy of the activation probabilities normalised over languages: [G, L, d] → [L, d] (nan if never active)."""
    total = probs.sum(dim=0)
    dist = probs / total.clamp(min=1e-12)
    ent = -(dist * dist.clamp(min=1e-12).log()).sum(dim=0)
    return torch.where(total > 0, ent, torch.full_like(ent, float("nan")))


def select(probs: torch.Tensor, prob_quantile: float, top_rate: float) -> tuple[torch.Tensor, float, torch.Tensor]:
    """The paper's selection (its ``identify.py``) → (member [G, L, d] bool, threshold, LAPE [L, d]).

    threshold = the ``prob_quantile`` quantile of all activation probabilities; neurons no language activates
    above it are dismissed; of the rest, the ``round(top_rate × all neurons)`` with the lowest LAPE are taken,
    each assigned to the languages whose probability exceeds the threshold.
    """
    threshold = float(torch.quantile(probs.flatten(), prob_quantile))
    entropy = lape(probs)
    above = (probs >= threshold) & (probs > 0)  # ≥: with few tokens many probabilities tie at the threshold
    candidate = above.any(dim=0) & ~entropy.isnan()  # [L, d]
    ranked_entropy = torch.where(candidate, entropy, torch.full_like(entropy, float("inf"))).flatten()
    k = min(max(1, round(top_rate * ranked_entropy.numel())), int(candidate.sum()))
    chosen = torch.zeros(ranked_entropy.numel(), dtype=torch.bool)
    if k > 0:
        chosen[torch.argsort(ranked_entropy, stable=True)[:k]] = True
    member = chosen.reshape(entropy.shape)[None] & above  # [G, L, d]
    return member, threshold, entropy


def deactivation(member: torch.Tensor) -> UnitScaling:
    """Zero the neurons of a membership mask [L, d_mlp] (input of W_out, every position) as a steering artifact."""
    units = tuple(Unit(f"mlp_act.{layer}", int(j)) for layer, j in member.nonzero().tolist())
    return UnitScaling(units, 0.0)


def _text(ex: TaskExample) -> str:
    """Prompt followed by its answer (BPE answers carry their own leading space; word-level ones do not)."""
    return ex.prompt + (ex.answer if ex.answer[:1].isspace() else " " + ex.answer)


def language_tokens(lm: LoadedModel, examples: list[TaskExample], languages: list[str]) -> list[set[int]]:
    """Each language's tokens: the answer tokens of its examples that no other language's examples answer with."""
    found: list[set[int]] = [set() for _ in languages]
    for ex in examples:
        found[languages.index(str(ex.label))].add(lm.token_id(ex.answer))
    return [own - set().union(*(other for j, other in enumerate(found) if j != i)) for i, own in enumerate(found)]


def token_activations(
    lm: LoadedModel,
    examples: list[TaskExample],
    token_sets: list[set[int]],
    site: str,
    side: str = "input",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Activations at every position holding one language's token (``side="input"``) or followed by one
    (``"output"``) → ([L, n_positions, d_mlp], language [n_positions])."""
    sites = [f"{site}.{layer}" for layer in range(lm.n_layers)]
    batch = lm.encode([_text(ex) for ex in examples])
    with capture(lm, sites) as cache:
        lm.logits(batch)
    ids = batch.input_ids.cpu()
    group = torch.full(ids.shape, -1, dtype=torch.long)
    for g, tokens in enumerate(token_sets):
        group[torch.isin(ids, torch.tensor(sorted(tokens), dtype=torch.long))] = g
    group[~batch.attention_mask.bool().cpu()] = -1
    if side == "output":  # the language of the token predicted at each position
        group = torch.cat([group[:, 1:], torch.full_like(group[:, :1], -1)], dim=1)
    keep = group >= 0  # [B, T]
    acts = torch.stack([cache[s].float().cpu()[keep] for s in sites])  # [L, n_positions, d_mlp]
    return acts, group[keep]


@contextlib.contextmanager
def _zeroed(lm: LoadedModel, member: torch.Tensor | None) -> Iterator[None]:
    """Zero the neurons of a membership mask [L, d_mlp] at every position (None: leave the model intact)."""
    with contextlib.ExitStack() as stack:
        for layer in range(lm.n_layers if member is not None else 0):
            assert member is not None
            neurons = member[layer].nonzero()[:, 0].tolist()
            if neurons:
                stack.enter_context(ablate(lm, f"mlp_act.{layer}", "zero", neurons=neurons))
        yield


def _scores(
    lm: LoadedModel, examples: list[TaskExample], member: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """p(answer) and top-1 correctness [B] with the member neurons [L, d] zeroed at every position (None: intact)."""
    batch = lm.encode([ex.prompt for ex in examples])
    answers = answer_ids(lm, examples)
    with _zeroed(lm, member):
        logits = lm.logits(batch)
    return answer_prob(logits, answers).cpu(), top1_correct(logits, answers).float().cpu()


def text_nll(
    lm: LoadedModel,
    examples: list[TaskExample],
    token_sets: list[set[int]],
    member: torch.Tensor | None = None,
    languages: list[str] | None = None,
    chunk: int = 16,
) -> torch.Tensor:
    """Each language's text loss per example: mean −log p(next token) over the positions whose next token is one
    of that language's tokens — and, given ``languages``, the answer's (last) token of an example labelled with
    it — → [B, G] (nats per token; nan where an example has no text of the language), with the member neurons
    [L, d] zeroed (None: intact). exp of a column's mean is that text's perplexity."""
    out = torch.full((len(examples), len(token_sets)), float("nan"))
    sets = [torch.tensor(sorted(tokens), dtype=torch.long) for tokens in token_sets]
    for start in range(0, len(examples), chunk):  # chunks: a real vocabulary makes [B, T, V] log-probs large
        part = examples[start : start + chunk]
        batch = lm.encode([_text(ex) for ex in part])
        with _zeroed(lm, member):
            logits = lm.logits(batch)
        ids = batch.input_ids.cpu()
        mask = batch.attention_mask.bool().cpu()
        logp = logits[:, :-1].float().log_softmax(-1).cpu().gather(-1, ids[:, 1:, None])[..., 0]  # [b, T-1]
        valid = mask[:, 1:] & mask[:, :-1]
        # The position predicting each text's last token (the answer's last token), whichever side pads.
        last = (mask.long() * torch.arange(mask.shape[1])).argmax(dim=1) - 1  # [b]
        is_answer = torch.zeros_like(valid)
        is_answer[torch.arange(len(part)), last.clamp(min=0)] = True
        for g, tokens in enumerate(sets):
            where = torch.isin(ids[:, 1:], tokens) & valid
            if languages is not None:
                labelled = torch.tensor([str(ex.label) == languages[g] for ex in part])
                where |= is_answer & labelled[:, None] & valid
            count = where.sum(dim=1)
            total = -(logp * where).sum(dim=1)
            out[start : start + len(ids), g] = torch.where(count > 0, total / count.clamp(min=1), float("nan"))
    return out


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    languages = data.labels()
    if len(languages) < 2:
        raise TaskDataError(
            f"language-neurons needs examples labelled with at least two languages; task {data.task!r} has "
            f"{languages or 'no labels'} (use task 'language' on the toy, 'multilingual' on English sets, or --prompts with 'label')"
        )
    fit, test = data.fit_test()
    fit = [ex for ex in fit if ex.label is not None]
    data.progress("activation probabilities", 0, 1)
    token_sets = language_tokens(lm, fit, languages)
    if spec.token_side not in ("input", "output"):
        raise ValueError(f"token_side={spec.token_side!r}; use 'input' or 'output'")
    if spec.suppress and spec.suppress not in languages:
        raise TaskDataError(f"suppress={spec.suppress!r} is not one of the languages {', '.join(languages)}")
    acts, groups = token_activations(lm, fit, token_sets, spec.site, spec.token_side)
    counts = torch.bincount(groups, minlength=len(languages))
    if int(counts.min()) < spec.min_tokens:
        raise TaskDataError(
            f"too few tokens per language in the fit split ({dict(zip(languages, counts.tolist(), strict=True))}); raise --n"
        )
    probs = activation_probability(acts, groups, len(languages))  # [G, L, d]
    few = (
        [
            f"Only {int(counts.min())} token positions for some language: the activation probabilities are coarse; "
            "raise --n."
        ]
        if int(counts.min()) < 16
        else []
    )
    member, threshold, entropy = select(probs, spec.prob_quantile, spec.top_rate)

    # Causal check on the held-out prompts, as the paper measures it: zero each language's neurons and score every
    # language's text by its loss (perplexity = exp). Secondary: p(answer) and accuracy of each language's prompts.
    by_lang = {lang: [ex for ex in test if ex.label == lang] for lang in languages}
    base_nll = text_nll(lm, test, token_sets, languages=languages)  # [B, G]
    nll_after = [text_nll(lm, test, token_sets, member[g], languages) for g in range(len(languages))]
    own_nll: list[torch.Tensor] = []
    other_nll: list[torch.Tensor] = []
    nll_grid = torch.full((len(languages), len(languages)), float("nan"))  # NLL increase [ablated, scored]
    nll_labels, nll_values, nll_ci = [], [], []
    for g, ablated in enumerate(languages):
        for h, scored in enumerate(languages):
            delta = nll_after[g][:, h] - base_nll[:, h]
            delta = delta[~delta.isnan()]
            if not len(delta):
                continue
            (own_nll if g == h else other_nll).append(delta)
            mean, ci = mean_ci(delta, seed=spec.seed)
            nll_grid[g, h] = mean
            nll_labels.append(f"zero {ablated} → {scored} text")
            nll_values.append(mean)
            nll_ci.append(ci)
    if not own_nll or not other_nll:
        raise TaskDataError(
            "language-neurons: the held-out split has no text of some language (no example labelled with it and "
            "none of its tokens); raise --n"
        )
    own_nll_increase, own_nll_ci = mean_ci(torch.cat(own_nll), seed=spec.seed)
    other_nll_increase, other_nll_ci = mean_ci(torch.cat(other_nll), seed=spec.seed)
    clean_nll, clean_nll_ci = mean_ci(base_nll[~base_nll.isnan()], seed=spec.seed)

    base = {lang: _scores(lm, exs, None) for lang, exs in by_lang.items() if exs}
    own: list[torch.Tensor] = []
    other: list[torch.Tensor] = []
    own_acc: list[torch.Tensor] = []
    other_acc: list[torch.Tensor] = []
    grid = torch.full((len(languages), len(languages)), float("nan"))
    acc_grid = torch.full((len(languages), len(languages)), float("nan"))  # accuracy drop [ablated, scored]
    correct_after: dict[tuple[int, int], torch.Tensor] = {}  # (ablated, scored) → top-1 correct [B]
    for g, _ablated in enumerate(languages):
        data.progress("deactivate", g, len(languages))
        for h, scored in enumerate(languages):
            if scored not in base:
                continue
            p_after, correct_after[g, h] = _scores(lm, by_lang[scored], member[g])
            drop = base[scored][0] - p_after  # [B]
            (own if g == h else other).append(drop)
            (own_acc if g == h else other_acc).append(base[scored][1] - correct_after[g, h])
            grid[g, h] = mean_ci(drop, seed=spec.seed)[0]
            acc_grid[g, h] = float((base[scored][1] - correct_after[g, h]).mean())
    own_drop, own_ci = mean_ci(torch.cat(own), seed=spec.seed)
    other_drop, other_ci = mean_ci(torch.cat(other), seed=spec.seed)
    clean_p = torch.cat([b[0] for b in base.values()])
    clean_acc = torch.cat([b[1] for b in base.values()])
    clean_mean, clean_ci = mean_ci(clean_p, seed=spec.seed)

    selected = member.any(dim=0)  # [L, d]
    max_entropy = math.log(len(languages))
    findings = []
    for layer, neuron in selected.nonzero().tolist():
        langs = [languages[g] for g in range(len(languages)) if bool(member[g, layer, neuron])]
        score = 1.0 - float(entropy[layer, neuron]) / max_entropy
        findings.append(Finding("neuron", layer, neuron, score, f"{neuron_label(layer, neuron)} ({', '.join(langs)})"))
    per_layer = member.sum(dim=2)  # [G, L]

    # Steer and Improve: deactivate one language's neurons (the fitted artifact). The paper's effect is the loss of
    # that language's text (suppression: it rises); the first costs are the other languages' text loss and
    # accuracy, then the model's other tasks; a sweep over top_rate is the strength.
    target = spec.suppress or next((lang for lang in languages if by_lang.get(lang)), languages[0])
    g_target = languages.index(target)
    artifact = deactivation(member[g_target])
    own_text = ~base_nll[:, g_target].isnan()
    other_cols = [h for h in range(len(languages)) if h != g_target]
    # The artifact zeroes the same neurons as the deactivation check above: its accuracies are that check's.
    scored_other = [h for h in other_cols if languages[h] in base]
    own_after = correct_after.get((g_target, g_target), torch.empty(0))
    other_after = torch.cat([correct_after[g_target, h] for h in scored_other]) if scored_other else torch.empty(0)
    sweep_own: list[torch.Tensor] = []
    sweep_other: list[torch.Tensor] = []
    sizes: list[int] = []
    for rate in spec.sweep:
        swept = select(probs, spec.prob_quantile, rate)[0][g_target]
        sizes.append(int(swept.sum()))
        after = (
            nll_after[g_target]
            if torch.equal(swept, member[g_target])
            else text_nll(lm, test, token_sets, swept, languages)
        )  # the run's own top_rate is in the sweep: measured above
        increase = after - base_nll  # [B, G]
        sweep_own.append(increase[:, g_target][own_text])
        others = increase[:, other_cols].flatten()
        sweep_other.append(others[~others.isnan()])
    costs: list[SideEffect] = []
    other_nll_before = base_nll[:, other_cols].flatten()
    other_nll_now = nll_after[g_target][:, other_cols].flatten()
    kept = ~other_nll_before.isnan()
    costs.append(
        SideEffect(
            "other languages' text NLL",
            float(other_nll_before[kept].mean()),
            float(other_nll_now[kept].mean()),
            is_task=False,
        )
    )
    if scored_other:  # the languages that were not meant to change, by accuracy
        other_before = torch.cat([base[languages[h]][1] for h in scored_other])
        costs.append(SideEffect("other languages", float(other_before.mean()), float(other_after.mean())))
    costs += steering.side_effects(lm, data, artifact, n=spec.n_side)
    supported = own_nll_ci[0] > other_nll_ci[1]
    claim = (
        "Deactivation claim supported here: zeroing a language's neurons raises the loss (perplexity) of its own "
        "held-out text more than the other languages' (intervals disjoint)."
        if supported
        else "Deactivation claim NOT supported in this run: zeroing a language's neurons does not raise its own "
        "text's loss more than the other languages' beyond the intervals."
    )
    return Output(
        metrics={
            "n_fit": len(fit),
            "n_test": len(test),
            "lape_n_languages": len(languages),
            "lape_n_selected": int(selected.sum()),
            "lape_prob_threshold": round(threshold, 6),
            "lape_own_nll_increase": own_nll_increase,
            "lape_other_nll_increase": other_nll_increase,
            "lape_nll_selectivity": round(own_nll_increase - other_nll_increase, 6),
            "clean_text_nll": clean_nll,
            "lape_own_drop": own_drop,
            "lape_other_drop": other_drop,
            "lape_selectivity": round(own_drop - other_drop, 6),
            "lape_own_accuracy_drop": round(float(torch.cat(own_acc).mean()), 6),
            "lape_other_accuracy_drop": round(float(torch.cat(other_acc).mean()), 6),
            "clean_prob": clean_mean,
            "clean_accuracy": round(float(clean_acc.mean()), 6),
            "lape_suppress_own_accuracy": mean_ci(own_after, seed=spec.seed)[0],
            "lape_suppress_other_accuracy": mean_ci(other_after, seed=spec.seed)[0],
        },
        intervals={
            "lape_own_nll_increase": own_nll_ci,
            "lape_other_nll_increase": other_nll_ci,
            "clean_text_nll": clean_nll_ci,
            "lape_own_drop": own_ci,
            "lape_other_drop": other_ci,
            "clean_prob": clean_ci,
            "lape_own_accuracy_drop": mean_ci(torch.cat(own_acc), seed=spec.seed)[1],
            "lape_other_accuracy_drop": mean_ci(torch.cat(other_acc), seed=spec.seed)[1],
            "lape_suppress_own_accuracy": mean_ci(own_after, seed=spec.seed)[1],
            "lape_suppress_other_accuracy": mean_ci(other_after, seed=spec.seed)[1],
        },
        findings=ranked(findings),
        tensors={
            "activation_probability": probs,
            "lape": entropy,
            "members": member.float(),
            "nll_grid": nll_grid,
            "drop_grid": grid,
            "accuracy_grid": acc_grid,
        },
        figures=[
            Bars(
                "deactivation",
                f"{data.task}: rise in each language's text loss when one language's neurons are zeroed (held out)",
                labels=nll_labels,
                values=nll_values,
                intervals=nll_ci,
                y_label="NLL after − before (nats per token)",
            ),
            Heatmap(
                "per_layer",
                "language-specific neurons per layer (LAPE selection)",
                values=per_layer.float().tolist(),
                row_labels=list(languages),
                col_labels=[f"L{layer}" for layer in range(lm.n_layers)],
                cell_text=[[str(int(v)) for v in row] for row in per_layer.tolist()],
            ),
            steering.sweep_curve(
                "suppress_sweep",
                f"{data.task}: text loss rise with {target}'s LAPE neurons zeroed, by top_rate "
                f"({', '.join(map(str, sizes))} neurons)",
                list(spec.sweep),
                {f"{target} text (suppressed)": sweep_own, "other languages' text": sweep_other},
                x_label="top_rate (share of all neurons selected)",
                y_label="NLL after − before (nats per token)",
                seed=spec.seed,
            ),
        ],
        improve=steering.improve(
            data.task,
            f"loss of {target} text, nats per token (perplexity = exp; suppression: higher)",
            base_nll[:, g_target][own_text],
            nll_after[g_target][:, g_target][own_text],
            seed=spec.seed,
            goal="increase",
        ),
        side_effects=costs,
        notes=[
            *few,
            "Reproduces LAPE's selection (activation probability per language over the language's tokens, entropy, "
            "the lowest-entropy share above a probability threshold) on task prompts; damage is measured as the "
            "paper does, by the loss (perplexity) of each language's held-out text — here the positions of the "
            "held-out task texts whose next token is one of the language's tokens, and each example's answer for "
            "its own language — and, secondarily, as "
            "p(answer) and accuracy of each language's prompts.",
            claim,
            f"Steering: zeroing {target}'s {int(member[g_target].sum())} neurons raises the loss of {target} text "
            f"by {float(nll_grid[g_target, g_target]):.4f} nats per token (the other languages' text: "
            f"{float(other_nll_now[kept].mean() - other_nll_before[kept].mean()):.4f}); {target} accuracy "
            f"{float(base[target][1].mean()) if target in base else float('nan'):.2f} → "
            f"{float(own_after.mean()) if len(own_after) else float('nan'):.2f}, the other languages' "
            f"{float(other_after.mean()) if len(other_after) else float('nan'):.2f} (held out).",
        ],
    )
