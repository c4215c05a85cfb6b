"""The contract every reference implementation follows.

An implementation is one module in ``reference_impls/`` that declares

* ``IMPL = ImplInfo(...)`` — metadata, a literal (read with :mod:`ast` by the catalog side, no torch):
  id, title, survey vocabulary ids (``objects``, ``methods``, ``steering``), the catalog entries it
  ``reproduces``, the ``tasks`` it supports (first = default), what it ``needs`` (gradients, generation,
  weight-edits, training) and the ``metrics`` it reports (every name defined in :mod:`.glossary`);
* ``Spec`` — a dataclass of its settings (every field has a default; ``seed`` is set by the runner);
* ``run(model, spec, data) -> Output`` — no file I/O, no printing: the runner renders figures and writes files.

``data`` is a :class:`~mi_catalog.methods.data.RunData`: the task's examples, chosen by the runner from the
model's own task source or a user's ``--prompts`` file, plus a progress callback.

Layer numbering is one convention everywhere (see :mod:`mi_catalog.models.sites`): layer ``l`` = decoder
block ``l``, 0-based; a finding on the embeddings has layer ``None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Number = int | float
ImproveGoal = Literal["increase", "decrease"]
IMPROVE_GOALS: tuple[ImproveGoal, ...] = ("increase", "decrease")


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Finding:
    """One located unit, ranked by ``score`` (higher = more implicated); ``index`` = head or neuron number."""

    object: str  # a canonical object id: attention-head, neuron, residual-stream, ffn, sae-feature, circuit, ...
    layer: int | None
    index: int | None
    score: float
    label: str = ""  # readable name, e.g. "L1H0", "L2N17", "resid L1 @ subject_last", "edge L0H3→L1H0"
    interval: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"object": self.object, "layer": self.layer, "index": self.index,
                               "score": _finite(float(self.score))}  # fmt: skip
        if self.label:
            out["label"] = self.label
        if self.interval is not None:
            out["interval"] = [float(self.interval[0]), float(self.interval[1])]
        return out


def ranked(findings: list[Finding], top: int | None = None) -> list[Finding]:
    """Best first (ties broken by layer, index: deterministic)."""
    out = sorted(findings, key=lambda f: (-f.score, f.layer if f.layer is not None else -1, f.index or 0))
    return out if top is None else out[:top]


@dataclass
class Heatmap:
    """A grid of numbers, row 0 at the top (layers × positions, layers × heads)."""

    name: str  # file stem
    title: str
    values: list[list[float]]
    row_labels: list[str]
    col_labels: list[str]
    cell_text: list[list[str]] | None = None
    vmin: float | None = None
    vmax: float | None = None
    kind: Literal["heatmap"] = "heatmap"

    @classmethod
    def per_head(cls, name: str, title: str, values: list[list[float]], digits: int | None = 2,
                 vmin: float | None = None, vmax: float | None = None) -> Heatmap:  # fmt: skip
        """A layer × head grid ``values[layer][head]``: rows ``L0…``, columns ``H0…``, cells printed to ``digits``
        decimals (None: no cell text)."""
        n_heads = len(values[0]) if values else 0
        text = [[f"{v:.{digits}f}" for v in row] for row in values] if digits is not None else None
        return cls(name, title, values=values, row_labels=[f"L{layer}" for layer in range(len(values))],
                   col_labels=[f"H{h}" for h in range(n_heads)], cell_text=text, vmin=vmin, vmax=vmax)  # fmt: skip


@dataclass
class Curve:
    """One or more series over a shared x axis (layers, strength, k), optionally with interval bands."""

    name: str
    title: str
    x: list[float]
    series: dict[str, list[float]]
    x_label: str = ""
    y_label: str = ""
    bands: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)  # series → (lo, hi)
    kind: Literal["curve"] = "curve"


@dataclass
class Bars:
    """Labelled values, optionally with intervals (per-head scores, per-task accuracies)."""

    name: str
    title: str
    labels: list[str]
    values: list[float]
    intervals: list[tuple[float, float]] | None = None
    y_label: str = ""
    kind: Literal["bars"] = "bars"


Figure = Heatmap | Curve | Bars


@dataclass(frozen=True)
class Improve:
    """The Improve stage: the intended change on the task, with its interval.

    ``goal`` says which way the intervention means to move ``metric`` ("increase": accuracy, efficacy, a
    behaviour rate, a speed-up; "decrease": refusal bypassed, a language or concept suppressed), so a
    benchmark scores success without guessing from the metric's name.
    """

    task: str
    metric: str
    before: float
    after: float
    interval: tuple[float, float]
    goal: ImproveGoal = "increase"

    def __post_init__(self) -> None:
        if self.goal not in IMPROVE_GOALS:
            raise ValueError(f"Improve.goal must be one of {', '.join(IMPROVE_GOALS)}, not {self.goal!r}")

    @property
    def direction(self) -> int:
        """+1 when the intended change raises ``metric``, −1 when it lowers it."""
        return 1 if self.goal == "increase" else -1

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "metric": self.metric, "goal": self.goal, "before": self.before,
                "after": self.after, "interval": [self.interval[0], self.interval[1]]}  # fmt: skip


@dataclass(frozen=True)
class SideEffect:
    """What the intervention cost elsewhere: another task's accuracy, or a measure such as KL on neutral text."""

    name: str
    before: float
    after: float
    is_task: bool = True  # False: a measure (e.g. "kl_neutral")

    def to_dict(self) -> dict[str, Any]:
        key = "task" if self.is_task else "measure"
        return {key: self.name, "before": self.before, "after": self.after}


@dataclass
class Output:
    """What ``run`` returns. Only plain numbers, typed findings, tensors and figure specs — no files."""

    metrics: dict[str, Number] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # metric → 95 % interval
    findings: list[Finding] = field(default_factory=list)  # ranked best first
    tensors: dict[str, Any] = field(default_factory=dict)  # name → torch.Tensor (saved as safetensors)
    figures: list[Figure] = field(default_factory=list)
    improve: Improve | None = None
    side_effects: list[SideEffect] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what this run did and did not reproduce, in words
