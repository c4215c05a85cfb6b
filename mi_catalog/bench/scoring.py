"""Scores: how well a method's ranked findings recover a ground-truth unit set, and how good a steering run was.

A *unit* is ``(kind, layer, index)`` — ``("head", 1, 0)``, ``("neuron", 2, 17)``, ``("resid", 1, None)``.
A method's *ranking* is its distinct units of one kind, best first, in the order of its findings (the
contract ranks findings best first). Units it does not list are tied below every listed unit.

Locate metrics (``truth`` = the true units, ``universe`` = every unit of that kind in the model):

* ``precision_at_k`` — share of the top-k ranked units that are true, k = |truth| (unlisted slots count as wrong);
* ``true_rank`` — mean 1-based rank of the true units (lower is better; unlisted units share the tied rank
  after the listed ones; the best possible value is (|truth| + 1) / 2);
* ``auroc`` — area under the ROC curve of rank-derived scores over the universe (ties count half;
  :func:`mi_catalog.methods.metrics.auroc`);
* ``faithfulness`` — share of the task metric lost when the method's top-k units are ablated together:
  the answer margin (:func:`margin_faithfulness`) or a rate such as refusals (:func:`faithfulness`).

Steering (per run, from ``Output.improve`` and ``Output.side_effects``), see :func:`steer_scores`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mi_catalog.methods.contract import Finding, Improve, SideEffect

# Finding.object → unit kind (layer-level residual findings collapse positions and dimensions).
OBJECT_KIND = {"attention-head": "head", "neuron": "neuron", "residual-stream": "resid"}
KIND_OBJECT = {kind: obj for obj, kind in OBJECT_KIND.items()}


@dataclass(frozen=True, order=True)
class Unit:
    kind: str  # "head" | "neuron" | "resid"
    layer: int
    index: int | None = None  # head or neuron number; None for a whole layer

    @property
    def label(self) -> str:
        if self.kind == "head":
            return f"L{self.layer}H{self.index}"
        if self.kind == "neuron":
            return f"L{self.layer}N{self.index}"
        return f"resid L{self.layer}"


def finding_unit(finding: Finding) -> Unit | None:
    """The unit a finding names, or None (an edge, an FFN block, the embeddings, an SAE feature)."""
    kind = OBJECT_KIND.get(finding.object)
    if kind is None or finding.layer is None:
        return None
    if kind == "resid":
        return Unit("resid", int(finding.layer))  # a position or a dimension of layer l → the layer
    if finding.index is None:
        return None
    return Unit(kind, int(finding.layer), int(finding.index))


def ranking(findings: Iterable[Finding], kind: str) -> list[Unit]:
    """Distinct units of ``kind``, best first, in the findings' order (the first mention counts)."""
    out: list[Unit] = []
    seen: set[Unit] = set()
    for f in findings:
        unit = finding_unit(f)
        if unit is not None and unit.kind == kind and unit not in seen:
            seen.add(unit)
            out.append(unit)
    return out


def precision_at_k(ranked: Sequence[Unit], truth: Iterable[Unit], k: int | None = None) -> float:
    """Share of the top-k of ``ranked`` that is true (k defaults to |truth|; missing slots count as wrong)."""
    true = set(truth)
    k = len(true) if k is None else k
    if k <= 0:
        raise ValueError("precision@k needs k ≥ 1 (an empty truth set cannot be scored)")
    return sum(1 for u in ranked[:k] if u in true) / k


def true_rank(ranked: Sequence[Unit], truth: Iterable[Unit], universe_size: int) -> float:
    """Mean 1-based rank of the true units; unlisted units share the average rank of the unlisted block."""
    true = set(truth)
    if not true:
        raise ValueError("true_rank needs at least one true unit")
    position = {u: i + 1 for i, u in enumerate(ranked)}
    listed = len(position)
    tied = listed + (universe_size - listed + 1) / 2  # average rank of the unlisted units
    return sum(position.get(u, tied) for u in true) / len(true)


def rank_scores(ranked: Sequence[Unit], universe: Sequence[Unit]) -> list[float]:
    """A score per universe unit from the ranking: n, n−1, … for listed units, 0 for unlisted ones."""
    position = {u: i for i, u in enumerate(ranked)}
    n = len(ranked)
    return [float(n - position[u]) if u in position else 0.0 for u in universe]


def auroc(ranked: Sequence[Unit], truth: Iterable[Unit], universe: Sequence[Unit]) -> float:
    """AUROC of the ranking over the universe (nan when the truth set is empty or covers the universe)."""
    import torch

    from mi_catalog.methods.metrics import auroc as roc

    true = set(truth)
    scores = torch.tensor(rank_scores(ranked, universe), dtype=torch.float64)
    labels = torch.tensor([u in true for u in universe])
    return roc(scores, labels)


def faithfulness(clean: float, ablated: float) -> float:
    """Share of the clean task metric lost when the units are ablated: (clean − ablated) / clean (0 when clean is 0)."""
    return (clean - ablated) / clean if clean > 0 else 0.0


def margin_faithfulness(clean: Sequence[float] | Any, ablated: Sequence[float] | Any) -> float:
    """Share of the answer margin lost, averaged over the prompts with a positive clean margin (answered right):
    ``(m_clean − max(m_ablated, 0)) / m_clean`` per prompt — a flipped answer loses all of it, an ablation that
    widens the margin counts negative. 0 when no prompt is answered right."""
    pairs = [(float(c), float(a)) for c, a in zip(clean, ablated, strict=True) if float(c) > 0]
    if not pairs:
        return 0.0
    return sum((c - max(a, 0.0)) / c for c, a in pairs) / len(pairs)


# ---------------------------------------------------------------------------------------------------------
# Steering
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SteerScores:
    success: float  # share of the possible change achieved, in [0, 1]
    accuracy_loss: float  # mean relative accuracy loss over the other tasks the model can do, in [0, 1]
    kl_neutral: float  # KL(unsteered ‖ steered) on neutral prompts (nats); 0 when not measured
    combined: float  # success × (1 − accuracy_loss) × exp(−kl_neutral)


def success(improve: Improve) -> float:
    """The share of the possible change achieved in the run's declared direction (``improve.goal``), in [0, 1].

    For a rate in [0, 1]: the gain over the headroom — ``(after − before) / (1 − before)`` when raising,
    ``(before − after) / before`` when lowering (refusal 1.0 → 0.1 is 0.9; a behaviour rate 0 → 0.36 is 0.36).
    For other metrics (a speed-up): ``gain / max(|before|, 1)``. A change the wrong way counts 0.
    """
    before, after = float(improve.before), float(improve.after)
    if not (math.isfinite(before) and math.isfinite(after)):
        return 0.0
    direction = improve.direction
    gain = (after - before) * direction
    if 0.0 <= before <= 1.0 and 0.0 <= after <= 1.0:
        headroom = (1.0 - before) if direction >= 0 else before
        return max(0.0, min(1.0, gain / headroom)) if headroom > 1e-9 else 0.0
    return max(0.0, min(1.0, gain / max(abs(before), 1.0)))


def accuracy_loss(effects: Sequence[SideEffect]) -> float:
    """Mean over the other tasks (``is_task``, accuracy before > 0) of max(0, before − after) / before."""
    losses = [max(0.0, (s.before - s.after) / s.before) for s in effects if s.is_task and s.before > 0]
    return min(1.0, sum(losses) / len(losses)) if losses else 0.0


def kl_neutral(effects: Sequence[SideEffect]) -> float:
    for s in effects:
        if not s.is_task and s.name == "kl_neutral" and math.isfinite(s.after):
            return max(0.0, float(s.after))
    return 0.0


def steer_scores(improve: Improve, effects: Sequence[SideEffect]) -> SteerScores:
    """The AxBench-style combined score: the change achieved, discounted by what it broke elsewhere."""
    s, loss, kl = success(improve), accuracy_loss(effects), kl_neutral(effects)
    return SteerScores(success=s, accuracy_loss=loss, kl_neutral=kl, combined=s * (1.0 - loss) * math.exp(-kl))
