"""Tuned lens — Belrose et al. 2023, *Eliciting Latent Predictions from Transformers with the Tuned Lens*.

The paper trains, for every layer l, an affine "translator" ``h ↦ A_l h + b_l`` (initialised to the identity
and zero) so that decoding the translated residual with the model's own final norm and unembedding matches
the model's final next-token distribution: it minimises KL(p_final ‖ p_lens^l) over the tokens of a training
corpus, with the model frozen. Compared with the logit lens (no translator), the tuned lens is less biased and
its predictions converge smoothly to the final one; the paper reports much lower KL at every layer.

What we do: the same objective on the embeddings (``resid_pre.0``) and every block output but the last
(``resid_post.l``; the last layer's translator is the identity by definition), all real token positions, fit
full-batch with Adam on the run task's fit split plus prompts of the model's other tasks (a mixed corpus; for
a ``--prompts`` file, its fit split alone). We report, on the held-out split of the run's task, the KL of
logit lens and tuned lens per layer (mean over all positions) and p(answer)/top-1 at the last position side by
side. Simplifications: a small task-prompt corpus instead of the Pile, Adam instead of the paper's SGD with
Nesterov momentum, a few hundred steps, no bias-only ablations or causal-basis analysis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods.contract import Curve, Finding, Output, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import kl_divergence, mean_ci
from mi_catalog.models.hooks import capture
from mi_catalog.models.loading import LoadedModel
from mi_catalog.models.weights import W_U, unembed
from mi_catalog.tasks import TaskExample
from reference_impls._common import answer_ids

IMPL = ImplInfo(
    id="tuned-lens",
    title="Tuned lens: per-layer affine translators trained to match the final distribution",
    objects=("residual-stream",),
    methods=("vocab-projection",),
    steering=(),
    reproduces=("eliciting-latent-predictions-with-the-tuned-lens",),
    tasks=("facts", "induction", "icl", "sentiment", "language", "refusal", "toxicity"),
    needs=(),
    metrics=(
        "n_prompts",
        "n_fit",
        "n_test",
        "lens_kl_logit_mean",
        "lens_kl_tuned_mean",
        "lens_kl_reduction",
        "first_top1_layer",
        "tuned_first_top1_layer",
        "answer_prob_mid",
        "tuned_answer_prob_mid",
        "final_top1_rate",
    ),
)


@dataclass
class Spec:
    n: int = 32  # examples of the run's task (half fit, half held out)
    seed: int = 0
    n_other: int = 24  # prompts of each other task of the model added to the fit corpus
    steps: int = 200
    lr: float = 3e-3
    batch_tokens: int = 512  # tokens per Adam step, drawn at random from the fit corpus
    max_logits: int = 20_000_000  # cap on lens points × tokens × vocabulary per step (memory on large vocabularies)
    majority: float = 0.5  # "the answer is top-1 at layer l" when it is for at least this share of prompts


def lens_sites(lm: LoadedModel) -> list[str]:
    """The embeddings, then every block's output: n_layers + 1 points; the last is the model's own output."""
    return ["resid_pre.0", *(f"resid_post.{layer}" for layer in range(lm.n_layers))]


def residuals(lm: LoadedModel, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual stream at every lens point → ([n_points, batch, pos, d_model] float, attention mask [batch, pos])."""
    batch = lm.encode(prompts)
    sites = lens_sites(lm)
    with capture(lm, sites) as cache:
        lm.logits(batch)
    return torch.stack([cache[s] for s in sites]).float(), batch.attention_mask.bool()


@dataclass
class Translators:
    """A_l [n, d, d] and b_l [n, d] for the first n = n_layers lens points (the last point is the identity)."""

    A: torch.Tensor
    b: torch.Tensor

    def apply(self, resid: torch.Tensor) -> torch.Tensor:
        """Translate [n_points, ..., d] (the last point passes through unchanged)."""
        n = self.A.shape[0]
        head = resid[:n]
        shape = head.shape
        flat = head.reshape(n, -1, shape[-1])
        out = torch.einsum("npd,nde->npe", flat, self.A.to(flat.dtype)) + self.b.to(flat.dtype)[:, None]
        return torch.cat([out.reshape(shape), resid[n:]])


def _decode(lm: LoadedModel, resid: torch.Tensor) -> torch.Tensor:
    """Logits through the model's own ln_final and W_U (float32)."""
    param = next(lm.model.parameters())
    return unembed(lm, resid.to(dtype=param.dtype)).float()


def train_translators(lm: LoadedModel, resid: torch.Tensor, mask: torch.Tensor, spec: Spec) -> Translators:
    """Minimise the mean over lens points of KL(p_final ‖ p_lens) over the real tokens of the fit corpus.

    ``torch.autograd.grad`` w.r.t. the translators only: the model is frozen and no parameter's ``.grad`` moves.
    """
    n, d = resid.shape[0] - 1, resid.shape[-1]
    real = resid[:, mask]  # [n_points, tokens, d]
    A = torch.eye(d).repeat(n, 1, 1).requires_grad_(True)  # the paper's notation
    b = torch.zeros(n, d, requires_grad=True)
    opt = torch.optim.Adam([A, b], lr=spec.lr)
    source, last = real[:-1].clone(), real[-1].clone()
    gen = torch.Generator().manual_seed(spec.seed)
    n_tokens = source.shape[1]
    vocab = int(W_U(lm).shape[1])
    per_step = max(1, min(spec.batch_tokens, spec.max_logits // max(1, n * vocab)))  # bound [n, tokens, vocab]
    for _step in range(spec.steps):
        idx = torch.randint(0, n_tokens, (min(per_step, n_tokens),), generator=gen)
        with (
            torch.no_grad()
        ):  # the model's own distribution at these tokens (decoded per step: no [tokens, vocab] table)
            target = _decode(lm, last[idx]).log_softmax(dim=-1)  # [tokens, vocab]
        with torch.enable_grad():
            translated = torch.einsum("ntd,nde->nte", source[:, idx], A) + b[:, None]
            logq = _decode(lm, translated).log_softmax(dim=-1)  # [n, tokens, vocab]
            loss = (target.exp() * (target - logq)).sum(dim=-1).mean()  # KL(final ‖ lens), mean over points, tokens
            grads = torch.autograd.grad(loss, [A, b])
        for param, grad in zip((A, b), grads, strict=True):
            param.grad = grad
        opt.step()
    return Translators(A.detach(), b.detach())


def _fit_corpus(data: RunData, fit: list[TaskExample], n_other: int) -> list[str]:
    prompts = [ex.prompt for ex in fit]
    if data.source is not None:
        for task in data.source.tasks():
            if task != data.task:
                prompts.extend(ex.prompt for ex in data.other(task, n_other))
    return prompts


def _per_prompt_kl(final: torch.Tensor, lens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(final ‖ lens) averaged over each prompt's real tokens → [n_points, batch]."""
    return torch.tensor(
        [
            [float(kl_divergence(final[i : i + 1], lens[p, i : i + 1], mask[i : i + 1])) for i in range(final.shape[0])]
            for p in range(lens.shape[0])
        ]
    )


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    fit, test = data.fit_test()
    corpus = _fit_corpus(data, fit, spec.n_other)
    data.progress("capture", 0, 2)
    fit_resid, fit_mask = residuals(lm, corpus)
    data.progress("train", 0, spec.steps)
    translators = train_translators(lm, fit_resid, fit_mask, spec)
    data.progress("evaluate", 1, 2)

    test_resid, test_mask = residuals(lm, [ex.prompt for ex in test])  # [P, B, T, d]
    answers = answer_ids(lm, test).cpu()
    rows = torch.arange(len(test))
    translated = translators.apply(test_resid)
    kl: dict[str, list[torch.Tensor]] = {"logit": [], "tuned": []}
    probs: dict[str, list[torch.Tensor]] = {"logit": [], "tuned": []}
    top1: dict[str, list[torch.Tensor]] = {"logit": [], "tuned": []}
    with torch.inference_mode():
        final = _decode(lm, test_resid[-1])  # [B, T, vocab]: the model's own output
        for point in range(test_resid.shape[0]):  # one lens point at a time: [B, T, vocab] in memory, not [P, ...]
            for name, resid in (("logit", test_resid[point]), ("tuned", translated[point])):
                logits = _decode(lm, resid)
                kl[name].append(_per_prompt_kl(final, logits[None], test_mask)[0])  # [B]
                last = logits[:, -1].softmax(dim=-1)  # [B, vocab]; left padding: every prompt ends here
                probs[name].append(last[rows, answers])
                top1[name].append((last.argmax(dim=-1) == answers).float())
    kl_logit, kl_tuned = torch.stack(kl["logit"]), torch.stack(kl["tuned"])  # [P, B]
    curves = {name: {"prob": torch.stack(probs[name]), "top1": torch.stack(top1[name])} for name in probs}

    def first_top1(name: str) -> int:
        rate = curves[name]["top1"].mean(dim=1)
        reached = [layer for layer in range(lm.n_layers) if float(rate[layer + 1]) >= spec.majority]
        return reached[0] if reached else -1

    inner = slice(0, lm.n_layers)  # every lens point but the last (where both lenses are the model itself)
    logit_mean, logit_ci = mean_ci(kl_logit[inner].mean(dim=0), seed=spec.seed)
    tuned_mean, tuned_ci = mean_ci(kl_tuned[inner].mean(dim=0), seed=spec.seed)
    mid = lm.n_layers // 2
    mid_logit, mid_logit_ci = mean_ci(curves["logit"]["prob"][mid + 1], seed=spec.seed)
    mid_tuned, mid_tuned_ci = mean_ci(curves["tuned"]["prob"][mid + 1], seed=spec.seed)
    reduction = 1.0 - tuned_mean / logit_mean if logit_mean > 0 else 0.0
    tuned_prob = curves["tuned"]["prob"]
    cis = [mean_ci(tuned_prob[p], seed=spec.seed)[1] for p in range(tuned_prob.shape[0])]
    means = tuned_prob.mean(dim=1)
    findings = [
        Finding("residual-stream", layer, None, float(means[layer + 1]), f"tuned resid_post.{layer}", cis[layer + 1])
        for layer in range(lm.n_layers)
    ]
    findings.append(Finding("token-embedding", None, None, float(means[0]), "tuned embed", cis[0]))
    x = [float(v) for v in range(-1, lm.n_layers)]  # -1 = the embeddings
    kl_ci = {
        name: [mean_ci(k[p], seed=spec.seed)[1] for p in range(k.shape[0])]
        for name, k in (("logit lens", kl_logit), ("tuned lens", kl_tuned))
    }
    return Output(
        metrics={
            "n_prompts": len(data.examples),
            "n_fit": len(corpus),
            "n_test": len(test),
            "lens_kl_logit_mean": logit_mean,
            "lens_kl_tuned_mean": tuned_mean,
            "lens_kl_reduction": round(reduction, 6),
            "first_top1_layer": first_top1("logit"),
            "tuned_first_top1_layer": first_top1("tuned"),
            "answer_prob_mid": mid_logit,
            "tuned_answer_prob_mid": mid_tuned,
            "final_top1_rate": round(float(curves["logit"]["top1"][-1].mean()), 6),
        },
        intervals={
            "lens_kl_logit_mean": logit_ci,
            "lens_kl_tuned_mean": tuned_ci,
            "answer_prob_mid": mid_logit_ci,
            "tuned_answer_prob_mid": mid_tuned_ci,
        },
        findings=ranked(findings),
        tensors={
            "kl_logit_lens": kl_logit.mean(dim=1),
            "kl_tuned_lens": kl_tuned.mean(dim=1),
            "answer_prob_logit_lens": curves["logit"]["prob"].mean(dim=1),
            "answer_prob_tuned_lens": means,
            "translator_A": translators.A,
            "translator_b": translators.b,
        },
        figures=[
            Curve(
                "kl",
                f"KL(final ‖ lens) by layer on held-out {data.task} prompts, all positions (-1 = embeddings)",
                x=x,
                series={"logit lens": kl_logit.mean(dim=1).tolist(), "tuned lens": kl_tuned.mean(dim=1).tolist()},
                x_label="layer",
                y_label="KL (nats)",
                bands={k: ([c[0] for c in v], [c[1] for c in v]) for k, v in kl_ci.items()},
            ),
            Curve(
                "answer",
                f"p(answer) and top-1 rate at the last token by layer, {data.task} (held out)",
                x=x,
                series={
                    "logit lens p(answer)": curves["logit"]["prob"].mean(dim=1).tolist(),
                    "tuned lens p(answer)": means.tolist(),
                    "logit lens top-1": curves["logit"]["top1"].mean(dim=1).tolist(),
                    "tuned lens top-1": curves["tuned"]["top1"].mean(dim=1).tolist(),
                },
                x_label="layer",
                y_label="probability / rate",
                bands={"tuned lens p(answer)": ([c[0] for c in cis], [c[1] for c in cis])},
            ),
        ],
        notes=[
            f"Reproduces the tuned lens objective (affine translators, identity init, KL to the final layer) on a small "
            f"mixed task corpus ({len(corpus)} prompts, {spec.steps} Adam steps) instead of the paper's Pile training; "
            "scored on held-out prompts of the task.",
        ],
    )
