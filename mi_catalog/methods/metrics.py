"""Metrics shared by every implementation, defined once.

Shapes: ``logits`` [batch, pos, d_vocab] (left-padded, so the last position is every prompt's end),
``answers`` [batch] token ids. Intervals are percentile bootstraps over prompts (or over any per-unit
samples), with a fixed generator so the same seed gives the same interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def last_logits(logits: torch.Tensor) -> torch.Tensor:
    """[batch, pos, d_vocab] → [batch, d_vocab] at the last position."""
    return logits[:, -1].float()


def answer_prob(logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """p(answer) at the last position → [batch]."""
    probs = last_logits(logits).softmax(dim=-1)
    return probs.gather(1, answers.to(probs.device).long()[:, None])[:, 0]


def answer_logprob(logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """log p(answer) at the last position → [batch] (differentiable)."""
    logp = last_logits(logits).log_softmax(dim=-1)
    return logp.gather(1, answers.to(logp.device).long()[:, None])[:, 0]


def logit_diff(logits: torch.Tensor, answers: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """logit(answer) − logit(other) at the last position → [batch] (differentiable)."""
    last = last_logits(logits)
    idx = torch.arange(last.shape[0], device=last.device)
    return last[idx, answers.to(last.device).long()] - last[idx, others.to(last.device).long()]


def top1_correct(logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """Whether the greedy next token is the answer → bool [batch]."""
    return last_logits(logits).argmax(dim=-1) == answers.to(logits.device)


def normalised_effect(patched: torch.Tensor | float, clean: torch.Tensor | float, corrupt: torch.Tensor | float,
                      eps: float = 1e-6) -> torch.Tensor:  # fmt: skip
    """(patched − corrupt) / (clean − corrupt): 0 = no effect, 1 = the whole clean behaviour restored.

    Broadcasts; where the clean and corrupt values are equal (nothing to restore) the effect is 0.
    """
    patched_t, clean_t, corrupt_t = (torch.as_tensor(x, dtype=torch.float32) for x in (patched, clean, corrupt))
    gap = clean_t - corrupt_t
    safe = torch.where(gap.abs() > eps, gap, torch.ones_like(gap))
    return torch.where(gap.abs() > eps, (patched_t - corrupt_t) / safe, torch.zeros_like(gap))


def kl_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean KL(P ‖ Q) between next-token distributions, over the real tokens (mask [batch, pos]) → scalar.

    P is the reference (unsteered) model, Q the intervened one: the cost of an intervention on neutral text.
    """
    logp = logits_p.float().log_softmax(dim=-1)
    logq = logits_q.float().log_softmax(dim=-1)
    kl = (logp.exp() * (logp - logq)).sum(dim=-1)  # [batch, pos]
    if mask is None:
        return kl.mean()
    m = mask.to(kl.device).float()
    return (kl * m).sum() / m.sum().clamp(min=1)


def bootstrap_ci(samples: Sequence[float] | torch.Tensor, seed: int = 0, n_boot: int = 1000,
                 level: float = 0.95) -> tuple[float, float]:  # fmt: skip
    """Percentile bootstrap interval of the mean of ``samples`` (1-D). One sample → (x, x)."""
    x = torch.as_tensor(samples, dtype=torch.float64).flatten()
    if x.numel() == 0:
        return (float("nan"), float("nan"))
    if x.numel() == 1:
        return (float(x[0]), float(x[0]))
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, x.numel(), (n_boot, x.numel()), generator=gen)
    means = x[idx].mean(dim=1)
    alpha = (1 - level) / 2
    lo, hi = torch.quantile(means, torch.tensor([alpha, 1 - alpha], dtype=torch.float64))
    return (round(float(lo), 6), round(float(hi), 6))


def mean_ci(samples: Sequence[float] | torch.Tensor, seed: int = 0) -> tuple[float, tuple[float, float]]:
    """(mean, 95 % bootstrap interval) of ``samples``."""
    x = torch.as_tensor(samples, dtype=torch.float64).flatten()
    return round(float(x.mean()), 6), bootstrap_ci(x, seed=seed)


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (1 = positive), ties counted half."""
    s = scores.double().flatten()
    y = labels.bool().flatten()
    pos, neg = s[y], s[~y]
    if pos.numel() == 0 or neg.numel() == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).double().sum()
    ties = (pos[:, None] == neg[None, :]).double().sum()
    return float((greater + 0.5 * ties) / (pos.numel() * neg.numel()))
