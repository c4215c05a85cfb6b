"""Steer and Improve: fitted interventions, and the effect-with-cost measurement every steering run reports.

**The fitted artifact is the intervention** (as in the ``steering-vectors`` library): a steering
implementation fits a :class:`SteeringVector`, a :class:`DirectionAblation`, a :class:`UnitScaling` or a
:class:`WeightEdit` on the fit split, and ``with artifact.apply(lm): ...`` runs the model steered; on exit
the model is exactly as it was (every ``apply`` is one of the model layer's restoring context managers).
Artifacts compose with :class:`Combined` and are plain data (tensors + site names), so a run can return
them in ``Output.tensors`` and a pipeline can hand a located unit set from a locator to a steerer.

**Improve, always with its cost.** :func:`improve` turns per-prompt before/after samples of the intended
change into :class:`~mi_catalog.methods.contract.Improve` (the interval is a bootstrap over prompts of the
*after* mean); :func:`side_effects` measures what the same intervention does elsewhere: accuracy on each
of the model's other tasks (same prompts before and after) and the KL divergence of next-token
distributions on neutral prompts (``kl_neutral``). A steering result without its cost is half a result.

Shapes: prompts are strings; per-prompt results are 1-D tensors ``[n]`` in prompt order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from mi_catalog.methods.contract import Curve, Improve, ImproveGoal, SideEffect
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import mean_ci
from mi_catalog.models.hooks import Components, Positions, add_vector, edit_weights, project_out, scale
from mi_catalog.models.loading import LoadedModel
from mi_catalog.tasks import TaskExample

BATCH = 64  # prompts per forward pass when measuring; tiny models are fast, real ones need chunks


class Intervention(Protocol):
    """Anything that can steer a model for the length of a ``with`` block and restore it afterwards."""

    def apply(self, lm: LoadedModel) -> AbstractContextManager[Any]: ...


@dataclass
class NoIntervention:
    """The unsteered model (the 'before' of every measurement)."""

    def apply(self, lm: LoadedModel) -> AbstractContextManager[Any]:
        return contextlib.nullcontext()


@dataclass
class SteeringVector:
    """Vector arithmetic: add ``coeff * vector`` at ``site`` (CAA, ActAdd, ITI per head, function vectors).

    ``vector``: [d_model] for residual sites; [d_head] or [n_heads, d_head] for ``head_out`` (with ``heads``).
    """

    site: str
    vector: torch.Tensor
    coeff: float = 1.0
    positions: Positions = None
    heads: Components = None

    def apply(self, lm: LoadedModel) -> AbstractContextManager[Any]:
        return add_vector(lm, self.site, self.vector, self.coeff, positions=self.positions, heads=self.heads)

    def with_coeff(self, coeff: float) -> SteeringVector:
        """The same direction at another strength (for multiplier sweeps)."""
        return SteeringVector(self.site, self.vector, coeff, self.positions, self.heads)


@dataclass
class DirectionAblation:
    """Directional ablation x ← x − (x·û)û at every listed site (Arditi et al. 2024 ablate every layer)."""

    direction: torch.Tensor  # [d_model]
    sites: tuple[str, ...]
    positions: Positions = None

    def apply(self, lm: LoadedModel) -> AbstractContextManager[Any]:
        return _stacked([project_out(lm, s, self.direction, positions=self.positions) for s in self.sites])


@dataclass(frozen=True)
class Unit:
    """One located unit: a head (``site='head_out.L'``) or a neuron (``site='mlp_act.L'``) and its index."""

    site: str
    index: int


@dataclass
class UnitScaling:
    """Amplitude manipulation: multiply the listed heads/neurons by ``factor`` (0 = ablate, <1 = dampen)."""

    units: tuple[Unit, ...]
    factor: float = 0.0
    positions: Positions = None

    def apply(self, lm: LoadedModel) -> AbstractContextManager[Any]:
        by_site: dict[str, list[int]] = {}
        for unit in self.units:
            by_site.setdefault(unit.site, []).append(unit.index)
        managers = []
        for where, indices in sorted(by_site.items()):
            kind = "heads" if where.startswith(("head_out", "q.", "k.", "v.")) else "neurons"
            managers.append(scale(lm, where, self.factor, positions=self.positions, **{kind: sorted(indices)}))
        return _stacked(managers)

    def with_factor(self, factor: float) -> UnitScaling:
        return UnitScaling(self.units, factor, self.positions)


@dataclass
class WeightEdit:
    """Targeted optimisation's result: new values for some parameters (ROME's rank-one update, a fine-tuned
    subset), swapped in for the ``with`` block and restored after."""

    updates: dict[str, torch.Tensor]

    def apply(self, lm: LoadedModel) -> AbstractContextManager[Any]:
        return edit_weights(lm, self.updates)


@dataclass
class Combined:
    """Several interventions at once (applied in order, removed in reverse)."""

    parts: list[Intervention] = field(default_factory=list)

    def apply(self, lm: LoadedModel) -> AbstractContextManager[Any]:
        return _stacked([p.apply(lm) for p in self.parts])


@contextlib.contextmanager
def _stacked(managers: Sequence[AbstractContextManager[Any]]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for manager in managers:
            stack.enter_context(manager)
        yield


# ---------------------------------------------------------------------------------------------------------
# Measuring: next-token predictions under an intervention
# ---------------------------------------------------------------------------------------------------------


def next_token_logits(lm: LoadedModel, prompts: Sequence[str], intervention: Intervention | None = None,
                      batch_size: int = BATCH) -> torch.Tensor:  # fmt: skip
    """Next-token logits at each prompt's end → float [n, d_vocab], in chunks, under ``intervention``."""
    steer = intervention or NoIntervention()
    chunks: list[torch.Tensor] = []
    with torch.inference_mode(), steer.apply(lm):
        for start in range(0, len(prompts), batch_size):
            batch = lm.encode(list(prompts[start : start + batch_size]))
            chunks.append(lm.logits(batch)[:, -1].float())
    return torch.cat(chunks) if chunks else torch.empty(0)


def first_token_ids(lm: LoadedModel, texts: Sequence[str]) -> torch.Tensor:
    """First token of each answer text → long [n]."""
    return torch.tensor([lm.token_id(t) for t in texts], dtype=torch.long)


def correct(lm: LoadedModel, examples: Sequence[TaskExample], intervention: Intervention | None = None) -> torch.Tensor:
    """Whether the greedy next token is each example's answer → float [n] of 0/1."""
    if not examples:
        return torch.empty(0)
    logits = next_token_logits(lm, [ex.prompt for ex in examples], intervention)
    answers = first_token_ids(lm, [ex.answer for ex in examples]).to(logits.device)
    return (logits.argmax(-1) == answers).float().cpu()


def token_rate(lm: LoadedModel, prompts: Sequence[str], token_ids: Sequence[int] | torch.Tensor,
               intervention: Intervention | None = None) -> torch.Tensor:  # fmt: skip
    """Whether the greedy next token is one of ``token_ids`` (e.g. the refusal token, toxic words) → float [n]."""
    if not prompts:
        return torch.empty(0)
    logits = next_token_logits(lm, prompts, intervention)
    wanted = torch.as_tensor(list(token_ids) if not isinstance(token_ids, torch.Tensor) else token_ids)
    return torch.isin(logits.argmax(-1).cpu(), wanted.cpu()).float()


def set_prob(lm: LoadedModel, prompts: Sequence[str], token_ids: Sequence[int] | torch.Tensor,
             intervention: Intervention | None = None) -> torch.Tensor:  # fmt: skip
    """Total next-token probability of ``token_ids`` → float [n] (a smooth companion of :func:`token_rate`)."""
    if not prompts:
        return torch.empty(0)
    probs = next_token_logits(lm, prompts, intervention).softmax(-1).cpu()
    idx = torch.as_tensor(list(token_ids) if not isinstance(token_ids, torch.Tensor) else token_ids).cpu()
    return probs[:, idx].sum(-1)


def kl_per_prompt(lm: LoadedModel, prompts: Sequence[str], intervention: Intervention,
                  batch_size: int = BATCH) -> torch.Tensor:  # fmt: skip
    """KL(unsteered ‖ steered) of next-token distributions, averaged over each prompt's real tokens → [n]."""
    out: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = lm.encode(list(prompts[start : start + batch_size]))
            ref = lm.logits(batch).float().log_softmax(-1)
            with intervention.apply(lm):
                new = lm.logits(batch).float().log_softmax(-1)
            kl = (ref.exp() * (ref - new)).sum(-1)  # [b, pos]
            mask = batch.attention_mask.to(kl.device).float()
            out.append(((kl * mask).sum(-1) / mask.sum(-1).clamp(min=1)).cpu())
    return torch.cat(out) if out else torch.empty(0)


# ---------------------------------------------------------------------------------------------------------
# The Improve stage
# ---------------------------------------------------------------------------------------------------------


def improve(task: str, metric: str, before: torch.Tensor | Sequence[float], after: torch.Tensor | Sequence[float],
            seed: int = 0, *, goal: ImproveGoal) -> Improve:  # fmt: skip
    """Before/after means over prompts; ``interval`` = 95 % bootstrap interval of the after mean.

    ``goal`` ("increase" | "decrease") is required: every steerer states which way it means to move ``metric``.
    """
    before_t = torch.as_tensor(before, dtype=torch.float32)
    after_mean, interval = mean_ci(torch.as_tensor(after, dtype=torch.float32), seed=seed)
    return Improve(task=task, metric=metric, before=float(before_t.mean()), after=after_mean, interval=interval,
                   goal=goal)  # fmt: skip


def neutral_prompts(data: RunData, n: int = 24) -> list[str]:
    """Prompts unrelated to the steered task, for the KL cost: the source's ``neutral`` task when it has one,
    otherwise an even mix of its other tasks."""
    source = data.source
    if source is None:
        return []
    tasks = source.tasks()
    if "neutral" in tasks:
        return [ex.prompt for ex in data.other("neutral", n)]
    others = [t for t in tasks if t != data.task]
    if not others:
        return []
    per = max(1, n // len(others))
    return [ex.prompt for t in others for ex in data.other(t, per)][:n]


def side_effects(lm: LoadedModel, data: RunData, intervention: Intervention, n: int = 24,
                 tasks: Sequence[str] | None = None) -> list[SideEffect]:  # fmt: skip
    """What ``intervention`` costs: accuracy on each other task (same prompts before/after; only tasks with
    answers the model can score) and ``kl_neutral``, the mean KL on :func:`neutral_prompts`."""
    out: list[SideEffect] = []
    chosen = tasks if tasks is not None else [t for t in (data.source.tasks() if data.source else ()) if t != data.task]
    for task in chosen:
        examples = [ex for ex in data.other(task, n) if ex.answer]
        if not examples:
            continue
        before = correct(lm, examples)
        after = correct(lm, examples, intervention)
        out.append(SideEffect(name=task, before=float(before.mean()), after=float(after.mean())))
    neutral = neutral_prompts(data, n)
    if neutral:
        kl = kl_per_prompt(lm, neutral, intervention)
        out.append(SideEffect(name="kl_neutral", before=0.0, after=float(kl.mean()), is_task=False))
    return out


def sweep_curve(name: str, title: str, x: Sequence[float], samples: dict[str, list[torch.Tensor]],
                x_label: str, y_label: str, seed: int = 0) -> Curve:  # fmt: skip
    """A strength sweep as a curve with 95 % bands: ``samples[series][i]`` = per-prompt values at ``x[i]``."""
    series: dict[str, list[float]] = {}
    bands: dict[str, tuple[list[float], list[float]]] = {}
    for label, per_x in samples.items():
        stats = [mean_ci(values, seed=seed) for values in per_x]
        series[label] = [m for m, _ in stats]
        bands[label] = ([lo for _, (lo, _hi) in stats], [hi for _, (_lo, hi) in stats])
    return Curve(name=name, title=title, x=[float(v) for v in x], series=series, x_label=x_label,
                 y_label=y_label, bands=bands)  # fmt: skip


def diff_of_means(acts_a: torch.Tensor, acts_b: torch.Tensor) -> torch.Tensor:
    """mean(a) − mean(b) over the first dim: [n_a, ...], [n_b, ...] → [...] (the CAA / refusal direction)."""
    return acts_a.float().mean(0) - acts_b.float().mean(0)
