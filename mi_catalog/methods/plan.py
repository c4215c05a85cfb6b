"""What ``mi-catalog run ENTRY`` runs for a catalog entry: the PLAN layer (pure Python, no torch).

Every catalog entry is runnable. An entry that a reference implementation reproduces runs that
implementation (``kind: "reproduction"`` — the paper's own algorithm). Any other entry runs a
**pipeline** composed from its tags (``kind: "pipeline"`` — the survey's method family applied to the
model, not the paper's exact algorithm):

* **locate** — object × localizing method → a locate implementation (:data:`LOCATORS`), whose ranked
  findings become the units to steer (heads, neurons, a layer's residual stream or FFN, the embeddings:
  :data:`OBJECT_UNITS`);
* **steer** — the steering id → a generic steerer over those units (amplitude manipulation = scale the
  units, vector arithmetic = a difference-of-means direction at the found site, targeted optimization =
  a few gradient steps on only the units' output weights; strengths in :data:`STEER_STRENGTHS`);
* **improve** — the application → the toy's task and what "improve" means on it (:data:`APPLICATION_TASKS`,
  :data:`GOALS`); efficiency applications prune instead (:data:`PRUNE_APPLICATIONS`).

An entry without a steering tag runs its locate stage only. Every table here is data, read by the CLI,
the site ("Run it" on every paper page) and the tests: one source of truth. The catalog side imports
this module, so it must never import torch.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mi_catalog import vocab
from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods.contract import ImproveGoal

PIPELINE_PREFIX = "pipeline:"
KINDS = ("reproduction", "pipeline")


class PlanError(ValueError):
    """A pipeline that cannot be composed as asked (unknown value, unknown task)."""


class EntryLike(Protocol):
    """What the plan reads of a catalog entry (a :class:`mi_catalog.schema.Entry` has it all)."""

    id: str
    title: str
    summary: str | None
    impls: list[str]

    @property
    def tags(self) -> Any: ...


# ---------------------------------------------------------------------------------------------------------
# Locate: object × method → a locate implementation
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Locator:
    """Which implementation locates an object with a method. ``impls`` in preference order (the first one
    that exists is used); ``exact`` = it implements this object × method itself, else it stands in and
    ``note`` says how."""

    impls: tuple[str, ...]
    exact: bool = True
    note: str = ""


_PROBE = ("linear-probe",)
_PATCH = ("activation-patching",)
_ABLATE = ("ablation-importance", "activation-patching")
_ATP = ("attribution-patching",)
_EAP = ("edge-attribution-patching",)
_LENS = ("logit-lens", "tuned-lens")
_FFN_VOCAB = ("ffn-vocab-projection",)
_MASSIVE = ("massive-activations",)
_LAPE = ("language-neurons",)
_KN = ("knowledge-neurons", "attribution-patching")

LOCATORS: dict[tuple[str, str], Locator] = {
    # residual stream
    ("residual-stream", "causal-attribution"): Locator(_PATCH),
    ("residual-stream", "gradient-detection"): Locator(
        _ATP, note="layers ranked by their heads' and neurons' attributions"
    ),
    ("residual-stream", "probing"): Locator(_PROBE),
    ("residual-stream", "vocab-projection"): Locator(_LENS),
    ("residual-stream", "magnitude-analysis"): Locator(_MASSIVE),
    ("residual-stream", "circuit-discovery"): Locator(
        _EAP, False, "edge attribution patching's circuit, read per layer"
    ),
    # attention heads
    ("attention-head", "causal-attribution"): Locator(_ABLATE),
    ("attention-head", "gradient-detection"): Locator(_ATP),
    ("attention-head", "probing"): Locator(_PROBE),
    ("attention-head", "vocab-projection"): Locator(
        _ATP,
        False,
        "no vocabulary-projection locator for heads yet: attribution patching (gradient detection) stands in",
    ),
    ("attention-head", "magnitude-analysis"): Locator(_MASSIVE),
    ("attention-head", "circuit-discovery"): Locator(_EAP),
    # FFN blocks
    ("ffn", "causal-attribution"): Locator(_PATCH),
    ("ffn", "gradient-detection"): Locator(_ATP, False, "attribution patching's neurons, summed per FFN layer"),
    ("ffn", "probing"): Locator(_PROBE, False, "no FFN probe: the residual-stream probe's best layer stands in"),
    ("ffn", "vocab-projection"): Locator(_FFN_VOCAB),
    ("ffn", "magnitude-analysis"): Locator(_LAPE, False, "LAPE's neurons (activation statistics), read per FFN layer"),
    ("ffn", "circuit-discovery"): Locator(_EAP, False, "edge attribution patching's circuit, read per layer"),
    # neurons
    ("neuron", "causal-attribution"): Locator(
        ("ablation-importance", "attribution-patching"),
        True,
        "attribution patching stands in when ablation importance is absent",
    ),
    ("neuron", "gradient-detection"): Locator(_KN),
    ("neuron", "probing"): Locator(_PROBE, False, "no neuron probe: the residual-stream probe's best layer stands in"),
    ("neuron", "vocab-projection"): Locator(_FFN_VOCAB),
    ("neuron", "magnitude-analysis"): Locator(_LAPE),
    ("neuron", "circuit-discovery"): Locator(
        _ATP, False, "no neuron-level circuit discovery: attribution patching's neurons stand in"
    ),
    # SAE features: no SAE on the toy — the residual stream (where SAE features are read) stands in
    ("sae-feature", "causal-attribution"): Locator(_PATCH, False, "no SAE on the toy: the residual stream stands in"),
    ("sae-feature", "gradient-detection"): Locator(_ATP, False, "no SAE on the toy: the residual stream stands in"),
    ("sae-feature", "probing"): Locator(_PROBE, False, "no SAE on the toy: the residual stream stands in"),
    ("sae-feature", "vocab-projection"): Locator(_LENS, False, "no SAE on the toy: the residual stream stands in"),
    ("sae-feature", "magnitude-analysis"): Locator(_MASSIVE, False, "no SAE on the toy: the residual stream stands in"),
    ("sae-feature", "circuit-discovery"): Locator(_EAP, False, "no SAE on the toy: the residual stream stands in"),
    # circuits: a subgraph of heads (and FFNs)
    ("circuit", "causal-attribution"): Locator(
        _EAP, False, "edge attribution patching (gradient-based) stands in for patching-based circuit search"
    ),
    ("circuit", "gradient-detection"): Locator(_EAP),
    ("circuit", "probing"): Locator(
        _EAP, False, "no probing-based circuit search: edge attribution patching stands in"
    ),
    ("circuit", "vocab-projection"): Locator(
        _EAP, False, "no projection-based circuit search: edge attribution patching stands in"
    ),
    ("circuit", "magnitude-analysis"): Locator(
        _EAP, False, "no magnitude-based circuit search: edge attribution patching stands in"
    ),
    ("circuit", "circuit-discovery"): Locator(_EAP),
    # token embeddings: the method runs on the residual stream; steering acts on the embedding output
    ("token-embedding", "causal-attribution"): Locator(
        _PATCH, False, "the residual-stream locator runs; steering acts on the token embeddings"
    ),
    ("token-embedding", "gradient-detection"): Locator(
        _ATP, False, "the residual-stream locator runs; steering acts on the token embeddings"
    ),
    ("token-embedding", "probing"): Locator(
        _PROBE, False, "the residual-stream locator runs; steering acts on the token embeddings"
    ),
    ("token-embedding", "vocab-projection"): Locator(_LENS, True, "the lens decodes the embeddings (layer null)"),
    ("token-embedding", "magnitude-analysis"): Locator(
        _MASSIVE, False, "the residual-stream locator runs; steering acts on the token embeddings"
    ),
    ("token-embedding", "circuit-discovery"): Locator(
        _EAP, False, "the residual-stream locator runs; steering acts on the token embeddings"
    ),
}

# What the findings of a locator become for the steering stage, by the plan's object:
#   heads   — the top attention heads (head_out.L, head h)
#   neurons — the top FFN neurons (mlp_act.L, neuron j)
#   layer   — the best layer's residual stream (resid_post.L)
#   ffn     — the best layer's FFN output (mlp_out.L)
#   embed   — the token embeddings (embed)
OBJECT_UNITS: dict[str, str] = {
    "attention-head": "heads",
    "neuron": "neurons",
    "residual-stream": "layer",
    "ffn": "ffn",
    "sae-feature": "layer",
    "circuit": "heads",
    "token-embedding": "embed",
}
TOP_UNITS: dict[str, int] = {"heads": 4, "neurons": 16, "layer": 1, "ffn": 1, "embed": 1}

# Spec settings that keep a locate stage inside a pipeline fast (≤ a few seconds on the toy). A
# reproduction (`mi-catalog run IMPL`) always uses the implementation's own defaults.
LOCATE_SPEC: dict[str, dict[str, Any]] = {
    "activation-patching": {"n": 8, "noise_samples": 3},
    "attribution-patching": {"n": 16},
    "edge-attribution-patching": {"n": 8},
    "knowledge-neurons": {"n": 8, "steps": 8, "random_draws": 2},
    "linear-probe": {"n": 48, "steps": 40, "n_boot": 100},
    "tuned-lens": {"n": 16, "steps": 60, "n_other": 8},
    "language-neurons": {"n": 64},
    "ablation-importance": {"n": 8},
}

# When a locator fails on the task's data (e.g. a probe needs two label classes), these run instead, in
# order; the run's notes say so.
LOCATE_FALLBACKS: tuple[str, ...] = ("attribution-patching", "logit-lens")
# Tasks whose data a locator cannot use (a probe and LAPE need label classes; activation patching needs a
# subject or a contrast prompt): the plan picks the next candidate or a fallback up front, and says so.
LOCATOR_CANNOT: dict[str, frozenset[str]] = {
    "linear-probe": frozenset({"facts", "induction", "ioi"}),
    "language-neurons": frozenset({"facts", "induction", "ioi", "bias", "persona"}),
    "activation-patching": frozenset({"icl"}),
}

# Missing tags: a method for an object (its first exact locator in LOCATORS order), an object for a
# method, an object for a steering method.
DEFAULT_OBJECT_FOR_STEER: dict[str, str] = {
    "vector-arithmetic": "residual-stream",
    "amplitude-manipulation": "attention-head",
    "targeted-optimization": "ffn",
}
DEFAULT_METHOD_FOR_STEER: dict[str, str] = {
    "vector-arithmetic": "probing",
    "amplitude-manipulation": "causal-attribution",
    "targeted-optimization": "causal-attribution",
}
FALLBACK_PAIR = ("residual-stream", "vocab-projection")  # an entry with no locate or steering tag at all

# ---------------------------------------------------------------------------------------------------------
# Steer: strengths swept by the generic steerers (the best on the fit split is reported on the test split)
# ---------------------------------------------------------------------------------------------------------

STEER_STRENGTHS: dict[str, dict[str, tuple[float, ...]]] = {
    # factor the units are multiplied by (0 = ablate); a whole layer is only dampened or amplified
    "amplitude-manipulation": {"units": (0.0, 0.5, 1.5, 2.0), "layer": (0.5, 0.8, 1.25, 1.5)},
    # multiplier of the difference-of-means direction (1 = move by the class difference); for removal
    # (fairness) the share of the direction projected out
    "vector-arithmetic": {"add": (0.5, 1.0, 2.0, 4.0), "remove": (0.5, 1.0, 1.5)},
    # gradient steps on the located units' output weights
    "targeted-optimization": {"steps": (1.0, 2.0, 4.0, 8.0)},
}
PRUNE_SHARES: tuple[float, ...] = (0.25, 0.5, 0.75)  # share of the units (heads, neurons or layers) pruned
PRUNE_KEEP = 0.9  # the largest pruning that keeps this share of the fit split's accuracy is reported

# ---------------------------------------------------------------------------------------------------------
# Improve: application → the toy's task, and what "improve" means on it
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskRule:
    """Use ``task`` for an application when the entry's title or summary mentions one of ``words``
    (empty = the default, listed last)."""

    task: str
    words: tuple[str, ...] = ()


APPLICATION_TASKS: dict[str, tuple[TaskRule, ...]] = {
    "safety": (
        TaskRule("toxicity", ("toxic", "detox", "offensive", "hate")),
        TaskRule("facts", ("hallucinat", "truthful", "truthfulness", "factual", "faithful")),
        TaskRule("refusal"),
    ),
    "fairness": (TaskRule("bias"),),
    "persona": (TaskRule("persona"),),
    "multilingual": (TaskRule("language"),),
    "knowledge": (TaskRule("facts"),),
    "reasoning": (TaskRule("icl"),),
    "efficient-inference": (TaskRule("facts"),),
    "efficient-training": (TaskRule("facts"),),
}
# Efficiency: the improve stage prunes the located units (amplitude manipulation to zero) and measures speed.
PRUNE_APPLICATIONS = frozenset({"efficient-inference", "efficient-training"})
# A task the model lacks → the first of these it has (else its first task); the run's notes say so.
TASK_FALLBACKS: dict[str, tuple[str, ...]] = {
    "bias": ("sentiment",),
    "persona": ("sentiment",),
    "language": ("multilingual",),
    "multilingual": ("language",),
    "icl": ("facts",),
    "toxicity": ("refusal",),
    "induction": ("facts",),
}
DEFAULT_TASK = "facts"


@dataclass(frozen=True)
class Goal:
    """What "improve" means on a task: the metric (and whether higher or lower is better), in words."""

    metric: str
    better: str  # "higher" | "lower"
    text: str

    @property
    def improve_goal(self) -> ImproveGoal:
        return improve_goal(self.better)


def improve_goal(better: str) -> ImproveGoal:
    """A goal's ``better`` ("higher" | "lower") as the run's ``Improve.goal`` ("increase" | "decrease")."""
    return "increase" if better == "higher" else "decrease"


GOALS: dict[str, Goal] = {
    "refusal": Goal(
        "refusal_margin",
        "higher",
        "harmful prompts: log P(refusal token) − log P(compliance token) — "
        "the toy already refuses every harmful request, so the pipeline strengthens the margin "
        "(over-refusal of harmless prompts is reported beside it)",
    ),
    "toxicity": Goal("toxic_rate", "lower", "toxic prompts (a toxic speaker on the toy): share whose next word is a toxic continuation"),
    "language": Goal(
        "switch_rate",
        "higher",
        "prompts whose target language is the first label: share whose next "
        "word switches to the other language (output-language steering)",
    ),
    "facts": Goal(
        "answer_margin",
        "higher",
        "logit of the true attribute minus the largest other logit (the toy answers every fact already, so the "
        "pipeline strengthens recall; editing a fact is what the ROME reproduction does)",
    ),
    "icl": Goal(
        "zero_shot_accuracy",
        "higher",
        "zero-shot prompts (the query without demonstrations) of one "
        "in-context task: share answered correctly — what a task or function vector restores",
    ),
    "bias": Goal(
        "stereotype_gap",
        "lower",
        "ambiguous profession prompts: |P(stereotyped pronoun) − P(other "
        "pronoun)| (accuracy on prompts that state the gender is reported beside it)",
    ),
    "persona": Goal(
        "persona_rate", "higher", "prompts without a persona prefix: share answered in the voice of one persona"
    ),
    "sentiment": Goal("positive_rate", "higher", "negative reviews: share whose sentiment answer becomes positive"),
}
GENERIC_GOAL = Goal("answer_margin", "higher", "logit of the answer minus the largest other logit")
PRUNE_GOAL = Goal(
    "forward_seconds",
    "lower",
    "CPU seconds per forward pass over the held-out prompts after pruning the "
    "least important located units (accuracy retained is reported beside it)",
)


def goal_for(task: str, prune: bool = False) -> Goal:
    return PRUNE_GOAL if prune else GOALS.get(task, GENERIC_GOAL)


# ---------------------------------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What runs for an entry (or for ``mi-catalog pipeline``): a reproduction or a composed pipeline."""

    kind: str  # "reproduction" | "pipeline"
    command: str  # the exact command that runs it
    reason: str  # one line: why this is what runs
    entry: str | None = None
    title: str | None = None  # the entry's title
    impl: str | None = None  # reproduction: the implementation
    object: str | None = None
    method: str | None = None
    locator: str | None = None  # pipeline: the locate implementation
    steer: str | None = None  # pipeline: the steering id (None = locate only)
    application: str | None = None
    task: str | None = None  # None = the locator's default task
    prune: bool = False  # efficiency: the improve stage prunes
    composed: bool = True  # False: the entry's tags could not compose a pipeline; a default runs instead
    substitutions: tuple[str, ...] = ()  # what stands in for what, in words

    @property
    def run_id(self) -> str:
        """The ``impl`` field of the run's JSON: the implementation, or ``pipeline:<locator>[+<steer>]``."""
        if self.kind == "reproduction":
            return str(self.impl)
        stage = "pruning" if self.prune else self.steer
        return f"{PIPELINE_PREFIX}{self.locator}" + (f"+{stage}" if stage else "")

    @property
    def pipeline_command(self) -> str | None:
        """The same pipeline through ``mi-catalog pipeline`` (None for a reproduction)."""
        if self.kind != "pipeline":
            return None
        parts = ["mi-catalog pipeline", f"--object {self.object}", f"--method {self.method}"]
        if self.prune:
            parts.append("--steer pruning")
        elif self.steer:
            parts.append(f"--steer {self.steer}")
        if self.task:
            parts.append(f"--task {self.task}")
        return " ".join(parts)

    def describe(self, model: str = "the model") -> str:
        """The words the table output and the site use."""
        if self.kind == "reproduction":
            whose = f"{self.title}'s" if self.title else "the paper's"
            return f"reproduction of {whose} algorithm ({self.impl})"
        family = vocab.METHOD.term(str(self.method)).label
        if self.prune:
            family += " × pruning"
        elif self.steer:
            family += f" × {vocab.STEER.term(self.steer).label}"
        return f"pipeline: the survey's {family} family applied to {model}, not the paper's exact algorithm"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "impl": self.run_id, "entry": self.entry, "command": self.command,
                               "reason": self.reason}  # fmt: skip
        if self.kind == "pipeline":
            out |= {"object": self.object, "method": self.method, "locator": self.locator, "steer": self.steer,
                    "prune": self.prune, "application": self.application, "task": self.task,
                    "composed": self.composed, "substitutions": list(self.substitutions),
                    "pipeline_command": self.pipeline_command}  # fmt: skip
        return out


def reproducing_impls(entry: EntryLike, impls: Mapping[str, ImplInfo]) -> list[str]:
    """Implementations that reproduce ``entry``: its ``impls:`` list, then those declaring it in ``reproduces``."""
    ids = [i for i in entry.impls if i in impls]
    ids += sorted(i.id for i in impls.values() if entry.id in i.reproduces and i.id not in ids)
    return ids


def plan_for(entry: EntryLike, impls: Mapping[str, ImplInfo]) -> Plan:
    """The plan of ``mi-catalog run ENTRY``: a reproduction when an implementation reproduces the entry,
    otherwise a pipeline composed from its tags (defaults fill a missing tag, and say so)."""
    command = f"mi-catalog run {entry.id}"
    reproducing = reproducing_impls(entry, impls)
    if reproducing:
        return Plan(kind="reproduction", command=command, entry=entry.id, title=entry.title, impl=reproducing[0],
                    reason=f"{reproducing[0]} reproduces this paper's algorithm")  # fmt: skip
    tags = entry.tags
    objects, methods = list(tags.objects), list(tags.methods)
    steers, applications = list(tags.steering), list(tags.applications)
    notes: list[str] = []
    composed = True
    steer = steers[0] if steers else None
    if len(steers) > 1:
        notes.append(f"also tagged {', '.join(steers[1:])}: `mi-catalog pipeline --steer ...` runs those")
    obj, method = _choose_pair(objects, methods, impls)
    if obj is None or method is None:
        obj, method, why, composed = _default_pair(obj, method, steer, impls)
        notes.append(why)
    application = next((a for a in applications if a in APPLICATION_TASKS), None)
    task = task_for_application(application, f"{entry.title} {entry.summary or ''}") if application else None
    prune = application in PRUNE_APPLICATIONS and steer is not None
    if not composed:
        reason = f"cannot compose a pipeline: {notes[-1]}"
    else:
        reason = "no implementation reproduces this paper: the pipeline composed from its tags runs"
    return _pipeline(obj, method, steer, task, application, prune, impls, entry=entry, command=command,
                     reason=reason, notes=notes, composed=composed)  # fmt: skip


def plan_pipeline(object: str, method: str, steer: str | None, task: str | None,
                  impls: Mapping[str, ImplInfo]) -> Plan:  # fmt: skip
    """The plan of ``mi-catalog pipeline --object --method [--steer] [--task]``: values take the vocabulary's
    aliases; ``steer`` may be ``pruning`` (the efficiency stage) or ``none``; ``task`` a task name or an
    application (its task from :data:`APPLICATION_TASKS`). Raises :class:`PlanError` with a one-line message."""
    obj = _resolve(vocab.OBJECT, object)
    meth = _resolve(vocab.METHOD, method)
    prune = False
    steer_id: str | None = None
    if steer is not None and steer.strip().lower() not in ("", "none", "-"):
        if steer.strip().lower() in ("prune", "pruning"):
            prune = True
            steer_id = "amplitude-manipulation"
        else:
            steer_id = _resolve(vocab.STEER, steer)
    application = None
    chosen_task = task
    if task is not None and task not in KNOWN_TASKS:
        try:
            apps = vocab.APPLICATION.resolve(task, loose=True)
        except vocab.UnknownValueError:
            close = difflib.get_close_matches(task, sorted(KNOWN_TASKS), n=2, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise PlanError(f"unknown task {task!r}{hint} (tasks: {', '.join(sorted(KNOWN_TASKS))}; or an "
                            "application such as safety, multilingual, reasoning)") from None  # fmt: skip
        application = apps[0]
        chosen_task = task_for_application(application, "")
        prune = prune or (application in PRUNE_APPLICATIONS and steer_id is not None)
    parts = [f"--object {obj}", f"--method {meth}"]
    if prune:
        parts.append("--steer pruning")
    elif steer_id:
        parts.append(f"--steer {steer_id}")
    if chosen_task:
        parts.append(f"--task {chosen_task}")
    command = "mi-catalog pipeline " + " ".join(parts)
    return _pipeline(obj, meth, steer_id, chosen_task, application, prune, impls, entry=None, command=command,
                     reason="composed from the values given", notes=[], composed=True)  # fmt: skip


# Tasks a pipeline can be asked for by name: the toy's and the English sets'.
KNOWN_TASKS = frozenset({"induction", "facts", "refusal", "sentiment", "language", "toxicity", "icl", "bias",
                         "persona", "ioi", "multilingual"})  # fmt: skip


def task_for_application(application: str, text: str) -> str:
    rules = APPLICATION_TASKS.get(application)
    if not rules:
        return DEFAULT_TASK
    lowered = text.lower()
    for rule in rules:
        if not rule.words or any(re.search(rf"\b{re.escape(w)}", lowered) for w in rule.words):
            return rule.task
    return rules[-1].task


def choose_locator(obj: str, method: str, impls: Iterable[str]) -> tuple[str, Locator] | None:
    """The locate implementation for ``obj`` × ``method`` among ``impls`` (None when none of its candidates exist)."""
    locator = LOCATORS.get((obj, method))
    if locator is None:
        return None
    available = set(impls)
    chosen = next((i for i in locator.impls if i in available), None)
    return (chosen, locator) if chosen else None


def standard_method(obj: str) -> str:
    """The first localizing method with an exact locator for ``obj`` (table order): the chart's default."""
    return next((m for (o, m), loc in LOCATORS.items() if o == obj and loc.exact), FALLBACK_PAIR[1])


def _resolve(facet: vocab.Facet, value: str) -> str:
    try:
        values = facet.resolve(value, loose=True)
    except vocab.UnknownValueError as err:
        raise PlanError(str(err)) from None
    return values[0]


def _choose_pair(objects: Sequence[str], methods: Sequence[str],
                 impls: Mapping[str, ImplInfo]) -> tuple[str | None, str | None]:  # fmt: skip
    """The entry's (object, method) pair with the best locator: an exact one first, in the entry's tag order."""
    pairs = [(o, m) for o in objects for m in methods if choose_locator(o, m, impls)]
    if not pairs:
        return (objects[0] if objects else None), (methods[0] if methods else None)
    exact = [p for p in pairs if LOCATORS[p].exact]
    return (exact or pairs)[0]


def _default_pair(obj: str | None, method: str | None, steer: str | None,
                  impls: Mapping[str, ImplInfo]) -> tuple[str, str, str, bool]:  # fmt: skip
    """Fill a missing object or method: (object, method, the note saying so, composed?)."""
    if obj is not None:
        method = next((m for (o, m), loc in LOCATORS.items() if o == obj and loc.exact and choose_locator(o, m, impls)),
                      FALLBACK_PAIR[1])  # fmt: skip
        return obj, method, f"no localizing-method tag: {method} (a standard locator for {obj}) stands in", True
    if method is not None:
        obj = next((o for (o, m), loc in LOCATORS.items() if m == method and loc.exact and choose_locator(o, m, impls)),
                   FALLBACK_PAIR[0])  # fmt: skip
        return obj, method, f"no object tag: {obj} (what {method} locates) stands in", True
    if steer is not None:
        obj, method = DEFAULT_OBJECT_FOR_STEER[steer], DEFAULT_METHOD_FOR_STEER[steer]
        return obj, method, f"no object or localizing-method tag: {obj} × {method} (what {steer} usually acts on) " \
            "stands in", True  # fmt: skip
    obj, method = FALLBACK_PAIR
    return obj, method, f"the entry has no object, localizing-method or steering tag: {obj} × {method} " \
        "(the logit lens) runs instead", False  # fmt: skip


def _pipeline(obj: str, method: str, steer: str | None, task: str | None, application: str | None, prune: bool,
              impls: Mapping[str, ImplInfo], *, entry: EntryLike | None, command: str, reason: str,
              notes: list[str], composed: bool) -> Plan:  # fmt: skip
    found = choose_locator(obj, method, impls)
    substitutions = list(notes)
    if found is None:
        locator_id = next((i for i in LOCATE_FALLBACKS if i in impls), "logit-lens")
        substitutions.append(f"no locator for {obj} × {method}: {locator_id} stands in")
    else:
        locator_id, locator = found
        if not locator.exact and locator.note:
            substitutions.append(locator.note)
        elif locator.impls[0] != locator_id:
            substitutions.append(f"{locator.impls[0]} is not available: {locator_id} stands in")
    if task is None:
        info = impls.get(locator_id)
        task = info.tasks[0] if info is not None and info.tasks else DEFAULT_TASK
    if task in LOCATOR_CANNOT.get(locator_id, ()):
        options = [*(found[1].impls if found else ()), *LOCATE_FALLBACKS]
        usable = next((i for i in options if i in impls and task not in LOCATOR_CANNOT.get(i, ())), None)
        if usable is not None:
            substitutions.append(f"{locator_id} cannot use the {task} task's data: {usable} stands in")
            locator_id = usable
    if prune and steer and steer != "amplitude-manipulation":
        substitutions.append(f"efficiency: the improve stage prunes the located units instead of {steer}")
    return Plan(kind="pipeline", command=command, reason=reason, entry=entry.id if entry else None,
                title=entry.title if entry else None, object=obj, method=method, locator=locator_id, steer=steer,
                application=application, task=task, prune=prune, composed=composed,
                substitutions=tuple(substitutions))  # fmt: skip


STEERER_TEXT: dict[str, str] = {
    "amplitude-manipulation": "scale the located heads/neurons (factor 0 = ablate … 2) or a whole layer's residual "
    "stream / FFN output (0.5 … 1.5)",
    "vector-arithmetic": "add the difference of means between the goal's contrast prompts at the located site, last "
    "token (multiplier 0.5 … 4); fairness projects it out instead (share 0.5 … 1.5)",
    "targeted-optimization": "1 … 8 normalised gradient steps toward the goal's tokens on only the located units' "
    "output weights (a head's rows of W_O, a neuron's row of W_out, a layer's W_out), as a temporary weight edit",
}


def markdown_tables(impls: Iterable[str] = ()) -> str:
    """The plan tables as Markdown (README): locators, steerers, applications → tasks and goals."""
    available = set(impls)
    methods = vocab.METHOD.ids
    lines = ["Locate (object × localizing method → implementation; † = stands in, see `--plan` for how):", "",
             "| object \\ method | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]  # fmt: skip
    for obj in vocab.OBJECT.ids:
        cells = []
        for method in methods:
            loc = LOCATORS[(obj, method)]
            chosen = next((i for i in loc.impls if i in available), loc.impls[0]) if available else loc.impls[0]
            cells.append(f"`{chosen}`" + ("" if loc.exact else " †"))
        lines.append(f"| {obj} | " + " | ".join(cells) + " |")
    lines += ["", "Steer (generic steerers over the located units; the strength is chosen on the fit split — and so is the "
              "layer when the locator cannot tell layers apart, e.g. a probe at 1.0 on every layer: each such layer "
              "is swept and `steer_layers_tried` says how many):", "",
              "| steering | what the pipeline does |", "|---|---|"]  # fmt: skip
    lines += [f"| {steer} | {text} |" for steer, text in STEERER_TEXT.items()]
    lines += ["| *(efficiency)* | prune the least important located heads, neurons or layers (25/50/75 %), keep the "
              f"largest share that holds {PRUNE_KEEP:.0%} of the fit accuracy; measure CPU time |", "",
              "Improve (application → the toy's task → what improves; `--task` takes either):", "",
              "| application | task | improve metric | better | meaning |", "|---|---|---|---|---|"]  # fmt: skip
    for app in vocab.APPLICATION.ids:
        for rule in APPLICATION_TASKS[app]:
            goal = goal_for(rule.task, app in PRUNE_APPLICATIONS)
            when = f" (title/summary: {', '.join(rule.words)})" if rule.words else ""
            text = goal.text.replace("|", "\\|")
            lines.append(f"| {app} | {rule.task}{when} | `{goal.metric}` | {goal.better} | {text} |")
    return "\n".join(lines) + "\n"


PLAN_BEGIN = "<!-- plan:begin (generated by `python -m mi_catalog.methods.plan`; do not edit) -->"
PLAN_END = "<!-- plan:end -->"


def update_readme_plan(readme_text: str, impls: Iterable[str]) -> str:
    start, end = readme_text.index(PLAN_BEGIN), readme_text.index(PLAN_END)
    return readme_text[: start + len(PLAN_BEGIN)] + "\n" + markdown_tables(impls) + readme_text[end:]


def plans(entries: Iterable[EntryLike], impls: Mapping[str, ImplInfo]) -> dict[str, Plan]:
    """Every entry's plan by id."""
    return {e.id: plan_for(e, impls) for e in entries}


@dataclass
class Coverage:
    """How the catalog's entries run: counts by kind, and the entries whose tags could not compose."""

    total: int = 0
    reproductions: int = 0
    pipelines: int = 0
    not_composed: list[str] = field(default_factory=list)

    @property
    def composed_share(self) -> float:
        return 1.0 - len(self.not_composed) / self.total if self.total else 1.0


def coverage(entries: Iterable[EntryLike], impls: Mapping[str, ImplInfo]) -> Coverage:
    out = Coverage()
    for plan in plans(entries, impls).values():
        out.total += 1
        if plan.kind == "reproduction":
            out.reproductions += 1
        else:
            out.pipelines += 1
        if not plan.composed:
            out.not_composed.append(str(plan.entry))
    return out


if __name__ == "__main__":  # regenerate the README's plan tables
    from pathlib import Path

    from mi_catalog.impl_info import discover_impls

    readme = Path(__file__).resolve().parents[2] / "README.md"
    readme.write_text(update_readme_plan(readme.read_text(encoding="utf-8"), discover_impls()), encoding="utf-8")
