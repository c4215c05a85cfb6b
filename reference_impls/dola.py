"""DoLa — Chuang et al., *DoLa: Decoding by Contrasting Layers Improves Factuality in Large Language Models*
(ICLR 2024).

The paper decodes every layer j of the residual stream through the model's own final norm and
unembedding (early exit, the logit lens): q_j = softmax(φ(h_j)). At each decoding step it picks the
*premature* layer M among a bucket of candidate early layers J as the one whose distribution differs most
from the final layer N's, ``M = argmax_{j∈J} JSD(q_N ‖ q_j)``, and decodes from the contrast

    F(x) = log q_N(x) − log q_M(x)   if q_N(x) ≥ α · max_w q_N(w)   (adaptive plausibility, α = 0.1)
    F(x) = −∞                        otherwise,

p̂ = softmax(F). The bucket (e.g. layers [0, 16) or [16, 32) of LLaMA-7B) is chosen on a validation set.
Factual knowledge "emerges" in later layers, so the contrast amplifies it (TruthfulQA +12–17 points).

What we do: exactly that rule at the next token of each prompt: the early exits are the embeddings
(``resid_pre.0``, skipped when the embeddings are tied to the unembedding — the early exit is then close to
the identity, as Hugging Face's DoLa does) and every block's output through ``ln_final`` + ``W_U``; the last
block's exit is the model's own output q_N. The bucket — the lower or the upper half of the candidate
layers — is chosen by accuracy on the *fit* split; the held-out split scores greedy decoding against DoLa
decoding (accuracy, with bootstrap intervals), and the model's other tasks are decoded both ways too (the
side effects are DoLa's own decodes, not a weight or activation intervention). A sweep over α shows the
plausibility constraint's role (α = 1 keeps only the top token: greedy decoding again).

Parity with the public code (voidism/DoLa, dola.py ``lm_score``/``get_relative_top_filter``): the
relative-top filter (min_tokens_to_keep = 1, on the final layer's log-softmax) and the post-softmax of the
difference are the same; the code's "JSD" is 0.5·(KL(M‖q_N) + KL(M‖q_j)) averaged over the vocabulary (a
reversed KL and a constant factor), ours the paper's JSD = 0.5·(KL(q_N‖M) + KL(q_j‖M)). Simplified: next-token
decoding only (no multi-token generation, so no repetition penalty), buckets are halves of the candidates.
Survey tags (catalog ``dola``): residual stream, vocab projection, and *vector arithmetic* as the steering
kind — the contrast is arithmetic on vocabulary projections of two residual-stream states at decode time;
no activation or weight of the model is changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods import steering
from mi_catalog.methods.contract import Bars, Finding, Output, SideEffect, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import mean_ci
from mi_catalog.models.hooks import capture
from mi_catalog.models.loading import LoadedModel
from mi_catalog.models.weights import W_E, W_U, unembed
from mi_catalog.tasks import TaskExample
from reference_impls._common import answer_ids
from reference_impls.logit_lens import lens_sites

IMPL = ImplInfo(
    id="dola",
    title="DoLa: decode by contrasting the final layer with a dynamically chosen premature layer",
    objects=("residual-stream",),
    methods=("vocab-projection",),
    steering=("vector-arithmetic",),
    reproduces=("dola",),
    tasks=("facts", "induction", "icl", "sentiment", "language", "refusal", "toxicity", "ioi", "multilingual"),
    needs=(),
    metrics=(
        "n_fit", "n_test", "dola_alpha", "dola_bucket_low", "dola_top_premature_layer", "dola_accuracy_base",
        "dola_accuracy", "dola_answer_prob_base", "dola_answer_prob", "dola_changed_rate",
        "dola_side_accuracy_drop", "dola_top1_changed_neutral",
    ),
)  # fmt: skip


@dataclass
class Spec:
    n: int = 32
    seed: int = 0
    alpha: float = 0.1  # adaptive plausibility constraint (the paper: 0.1)
    bucket: str = "auto"  # "low" | "high" | "all" | "auto" (the better half on the fit split)
    side_n: int = 24  # prompts per other task decoded both ways


# ---------------------------------------------------------------------------------------------------------
# The decoding rule
# ---------------------------------------------------------------------------------------------------------


def exit_logprobs(lm: LoadedModel, prompts: Sequence[str], batch_size: int = steering.BATCH) -> torch.Tensor:
    """Early-exit log-probabilities at each prompt's next token → [n_layers + 1, n, d_vocab]: exit 0 is the
    embeddings, exit j the output of block j − 1, exit n_layers the model's own output (the logit lens)."""
    sites = lens_sites(lm)
    chunks = []
    for start in range(0, len(prompts), batch_size):
        batch = lm.encode(list(prompts[start : start + batch_size]))
        with torch.no_grad(), capture(lm, sites) as cache:
            lm.logits(batch)
            resid = torch.stack([cache[s][:, -1] for s in sites])  # [L+1, b, d_model]
            chunks.append(unembed(lm, resid).float().log_softmax(-1).cpu())
    return torch.cat(chunks, dim=1)


def tied_embeddings(lm: LoadedModel) -> bool:
    """Whether the unembedding is the embedding matrix (the embeddings' early exit is then ≈ the identity)."""
    e, u = W_E(lm), W_U(lm)
    return e.shape == u.T.shape and (e.data_ptr() == u.data_ptr() or bool(torch.equal(e, u.T)))


def candidate_layers(lm: LoadedModel) -> list[int]:
    """Premature-layer candidates: every exit before the last, without the embeddings when they are tied."""
    first = 1 if tied_embeddings(lm) else 0
    return list(range(first, lm.n_layers)) or [0]


def buckets(candidates: list[int]) -> dict[str, list[int]]:
    half = max(1, len(candidates) // 2)
    low, high = candidates[:half], candidates[half:] or candidates[:half]
    return {"low": low, "high": high, "all": candidates}


def jsd(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon divergence along the last dim (natural log) of two log-distributions (broadcasting)."""
    p, q = logp.exp(), logq.exp()
    log_m = (0.5 * (p + q)).clamp(min=1e-30).log()
    return 0.5 * (p * (logp - log_m)).sum(-1) + 0.5 * (q * (logq - log_m)).sum(-1)


@dataclass
class Decoded:
    scores: torch.Tensor  # [n, d_vocab] DoLa's log p̂ (−inf outside the plausible head)
    premature: torch.Tensor  # [n] the chosen premature exit per prompt


def dola_scores(exits: torch.Tensor, candidates: list[int], alpha: float) -> Decoded:
    """DoLa's next-token log-distribution from early-exit log-probs [L+1, n, vocab] (paper Eq. 2–4)."""
    final = exits[-1]  # [n, vocab]
    cands = exits[candidates]  # [c, n, vocab]
    divergence = jsd(final[None], cands)  # [c, n]
    chosen = divergence.argmax(0)  # [n]
    premature = cands[chosen, torch.arange(final.shape[0])]  # [n, vocab]
    contrast = (final - premature).log_softmax(-1)
    threshold = final.max(-1, keepdim=True).values + torch.log(torch.tensor(alpha)) if alpha > 0 else None
    if threshold is not None:
        contrast = contrast.masked_fill(final < threshold, float("-inf"))
        contrast = contrast.log_softmax(-1)
    return Decoded(contrast, torch.tensor(candidates)[chosen])


# ---------------------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Scored:
    base_correct: torch.Tensor  # [n] greedy top-1 == answer
    dola_correct: torch.Tensor  # [n] DoLa top-1 == answer
    base_prob: torch.Tensor  # [n] p(answer) under the model
    dola_prob: torch.Tensor  # [n] p̂(answer) under DoLa
    changed: torch.Tensor  # [n] DoLa's top-1 differs from greedy
    premature: torch.Tensor  # [n]


def score(lm: LoadedModel, examples: list[TaskExample], candidates: list[int], alpha: float,
          exits: torch.Tensor | None = None) -> Scored:  # fmt: skip
    exits = exit_logprobs(lm, [ex.prompt for ex in examples]) if exits is None else exits
    answers = answer_ids(lm, examples).cpu()
    decoded = dola_scores(exits, candidates, alpha)
    rows = torch.arange(len(examples))
    base_top, dola_top = exits[-1].argmax(-1), decoded.scores.argmax(-1)
    return Scored(
        base_correct=(base_top == answers).float(), dola_correct=(dola_top == answers).float(),
        base_prob=exits[-1][rows, answers].exp(), dola_prob=decoded.scores[rows, answers].exp(),
        changed=(base_top != dola_top).float(), premature=decoded.premature,
    )  # fmt: skip


def choose_bucket(lm: LoadedModel, fit: list[TaskExample], candidates: list[int], spec: Spec) -> tuple[str, list[int]]:
    """The paper picks the bucket on a validation set: here the half with the better fit accuracy (then the
    higher mean p̂(answer); ties → low)."""
    options = buckets(candidates)
    if spec.bucket != "auto":
        return spec.bucket, options[spec.bucket]
    exits = exit_logprobs(lm, [ex.prompt for ex in fit])
    best = max(("low", "high"), key=lambda name: (
        float(score(lm, fit, options[name], spec.alpha, exits).dola_correct.mean()),
        float(score(lm, fit, options[name], spec.alpha, exits).dola_prob.mean()), name == "low"))  # fmt: skip
    return best, options[best]


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    if spec.bucket not in ("auto", "low", "high", "all"):
        raise ValueError(f"bucket must be auto, low, high or all, not {spec.bucket!r}")
    if not 0.0 <= spec.alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], not {spec.alpha}")
    fit, test = data.fit_test()
    if not fit or not test:
        fit = test = data.examples
    candidates = candidate_layers(lm)
    name, bucket = choose_bucket(lm, fit, candidates, spec)
    exits = exit_logprobs(lm, [ex.prompt for ex in test])
    held = score(lm, test, bucket, spec.alpha, exits)
    counts = torch.bincount(held.premature, minlength=lm.n_layers + 1)[: lm.n_layers + 1].float()
    metrics: dict[str, int | float] = {
        "n_fit": len(fit), "n_test": len(test), "dola_alpha": spec.alpha, "dola_bucket_low": int(name == "low"),
        "dola_top_premature_layer": int(counts.argmax()),
    }  # fmt: skip
    intervals: dict[str, tuple[float, float]] = {}
    for metric, samples in (("dola_accuracy_base", held.base_correct), ("dola_accuracy", held.dola_correct),
                            ("dola_answer_prob_base", held.base_prob), ("dola_answer_prob", held.dola_prob),
                            ("dola_changed_rate", held.changed)):  # fmt: skip
        metrics[metric], intervals[metric] = mean_ci(samples, seed=spec.seed)
    side = _side_effects(lm, data, bucket, spec)
    drops = [s.before - s.after for s in side if s.is_task]
    if drops:
        metrics["dola_side_accuracy_drop"] = round(sum(drops) / len(drops), 6)
    metrics.update({f"dola_{s.name}": round(s.after, 6) for s in side if s.name == "top1_changed_neutral"})
    # α sweep on the held-out prompts (α = 1: only the top token is plausible → greedy decoding).
    alphas = [0.0, 0.01, 0.05, 0.1, 0.3, 1.0]
    sweep = steering.sweep_curve(
        "alpha", f"DoLa on {data.task}: held-out accuracy vs the plausibility threshold α", alphas,
        {"DoLa": [score(lm, test, bucket, a, exits).dola_correct for a in alphas],
         "greedy": [held.base_correct for _ in alphas]},
        x_label="α", y_label="accuracy", seed=spec.seed)  # fmt: skip
    static = [score(lm, test, [j], spec.alpha, exits).dola_correct for j in candidates]
    exit_label = ["embed" if j == 0 else f"L{j - 1}" for j in range(lm.n_layers + 1)]
    findings = [Finding("token-embedding" if j == 0 else "residual-stream", None if j == 0 else j - 1, None,
                        float(counts[j]) / len(test), f"premature exit {exit_label[j]}") for j in candidates]  # fmt: skip
    word = "improves" if metrics["dola_accuracy"] > metrics["dola_accuracy_base"] else "does not improve"
    return Output(
        metrics=metrics,
        intervals=intervals,
        findings=ranked(findings),
        tensors={"premature_counts": counts, "dola_correct": held.dola_correct, "base_correct": held.base_correct},
        figures=[
            Bars("premature", f"DoLa on {data.task}: how often each exit is the premature layer (held-out, {name} bucket)",
                 labels=[exit_label[j] for j in candidates], values=[float(counts[j]) / len(test) for j in candidates],
                 y_label="share of prompts"),
            Bars("static", f"{data.task}: held-out accuracy contrasting with one fixed premature exit (static DoLa)",
                 labels=["greedy", *(exit_label[j] for j in candidates), "dynamic"],
                 values=[float(held.base_correct.mean()), *(float(s.mean()) for s in static),
                         float(held.dola_correct.mean())],
                 intervals=[mean_ci(s, seed=spec.seed)[1] for s in (held.base_correct, *static, held.dola_correct)],
                 y_label="accuracy"),
            sweep,
        ],
        improve=steering.improve(data.task, "accuracy", held.base_correct, held.dola_correct, seed=spec.seed,
                                   goal="increase"),
        side_effects=side,
        notes=[f"Reproduces DoLa's decoding rule (dynamic premature layer by max JSD within the {name} bucket "
               f"{[exit_label[j] for j in bucket]}, chosen on the fit split; adaptive plausibility α = {spec.alpha}) "
               f"at the next token; on {data.task} it {word} held-out accuracy over greedy decoding.",
               "Side effects are DoLa's own decodes of the model's other tasks (no model weight or activation is "
               "changed); the survey's steering tag for DoLa is vector arithmetic (a contrast of two layers' vocabulary "
               "projections)."],
    )  # fmt: skip


def _side_effects(lm: LoadedModel, data: RunData, bucket: list[int], spec: Spec) -> list[SideEffect]:
    """Each other task decoded greedily and with DoLa (same prompts), and the share of neutral prompts whose
    next token DoLa changes."""
    out: list[SideEffect] = []
    for task in [t for t in (data.source.tasks() if data.source else ()) if t != data.task]:
        examples = [ex for ex in data.other(task, spec.side_n) if ex.answer]
        if not examples:
            continue
        scored = score(lm, examples, bucket, spec.alpha)
        out.append(SideEffect(task, float(scored.base_correct.mean()), float(scored.dola_correct.mean())))
    neutral = steering.neutral_prompts(data, spec.side_n)
    if neutral:
        exits = exit_logprobs(lm, neutral)
        changed = (exits[-1].argmax(-1) != dola_scores(exits, bucket, spec.alpha).scores.argmax(-1)).float()
        out.append(SideEffect("top1_changed_neutral", 0.0, float(changed.mean()), is_task=False))
    return out
