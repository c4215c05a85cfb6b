"""Run a plan's pipeline on a model: locate → steer → improve (the survey's method family, not a paper's algorithm).

:mod:`.plan` decides *what* runs (pure Python); this module runs it:

1. **Locate** — the plan's locate implementation runs on the task (with the fast settings of
   :data:`~.plan.LOCATE_SPEC`; a locator that cannot use the task's data falls back to
   :data:`~.plan.LOCATE_FALLBACKS`, and the notes say so). Its ranked findings become :class:`Located`
   units by the plan's object (:data:`~.plan.OBJECT_UNITS`).
2. **Steer** — a generic steerer builds an intervention on those units and sweeps its strength
   (:data:`~.plan.STEER_STRENGTHS`): amplitude manipulation scales them (:class:`UnitScaling` /
   :class:`SiteScaling`); vector arithmetic adds the difference of means between the goal's contrast
   classes at the located site (:class:`SteeringVector`; fairness projects it out, :class:`Projection`);
   targeted optimization takes a few normalised gradient steps on only the units' output weights toward
   the goal's desired tokens (:class:`WeightEdit` — the model is never left changed). The strength is
   chosen on the fit split and reported on the held-out test split. When the locator cannot tell layers
   apart (a probe that is 1.0 at every layer; :func:`_tied_layers`), the steered layer is chosen on the fit
   split too, by the same sweep at each tied layer — a probe's ties say where a concept is readable, not where
   adding or removing it works.
3. **Improve** — the goal of the task (:data:`~.plan.GOALS`) measured before/after with its interval,
   plus the cost (:func:`~.steering.side_effects`: the other tasks' accuracy and KL on neutral prompts).
   Efficiency plans prune the least important located units instead and measure forward-pass time.

Shapes: per-prompt measurements are float tensors ``[n]``; activations at the last position ``[n, ...]``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from mi_catalog.methods import plan as P
from mi_catalog.methods import steering as S
from mi_catalog.methods.contract import Finding, ImproveGoal, Output
from mi_catalog.methods.data import Progress, RunData, no_progress
from mi_catalog.methods.runner import (
    RunError,
    RunResult,
    _check_vocabulary,
    _formatted,
    make_spec,
    registry,
)
from mi_catalog.models.hooks import ForwardState, capture, edit, run_with_grads, scale
from mi_catalog.models.loading import Batch, LoadedModel
from mi_catalog.models.weights import W_out, layer_module, layer_submodule
from mi_catalog.tasks import TaskDataError, TaskExample, split_fit_test

SIDE_EFFECT_N = 16  # prompts per other task for the side effects
TIMING_REPEATS = 7  # forward passes timed before and after pruning
OPT_STEP = 0.1  # targeted optimization: each step changes the units' weights by this share of their norm


class PipelineError(ValueError):
    """A pipeline that cannot run on this model (no usable task data)."""


# ---------------------------------------------------------------------------------------------------------
# Extra artifacts: a whole site scaled, a direction projected out partly, blocks skipped
# ---------------------------------------------------------------------------------------------------------


@dataclass
class SiteScaling:
    """Amplitude manipulation of a whole site (a layer's residual stream, an FFN output, the embeddings)."""

    site: str
    factor: float

    def apply(self, lm: LoadedModel) -> AbstractContextManager[Any]:
        return scale(lm, self.site, self.factor)


@dataclass
class Projection:
    """x ← x − alpha (x·û) û at ``site``; for per-head sites ``direction`` is [n_heads, d_head] and each head is
    projected on its own (a zero row leaves that head alone)."""

    site: str
    direction: torch.Tensor  # [d] or [n_heads, d_head]
    alpha: float = 1.0

    def apply(self, lm: LoadedModel) -> AbstractContextManager[Any]:
        norm = self.direction.float().norm(dim=-1, keepdim=True).clamp(min=1e-8)
        unit = self.direction.float() / norm
        alpha = self.alpha

        def fn(act: torch.Tensor, _state: ForwardState) -> torch.Tensor:
            u = unit.to(device=act.device, dtype=act.dtype)
            coef = (act * u).sum(-1, keepdim=True)
            return act - alpha * coef * u

        return edit(lm, [(self.site, fn)])


@dataclass
class SkipLayers:
    """Layer pruning: the listed decoder blocks are skipped (their input passes through unchanged), so the
    forward pass really is cheaper. The block's ``forward`` is replaced on the instance for the ``with`` block
    and restored after, also when the body raises."""

    layers: tuple[int, ...]

    def apply(self, lm: LoadedModel) -> AbstractContextManager[Any]:
        return _skip_layers(lm, self.layers)


@contextlib.contextmanager
def _skip_layers(lm: LoadedModel, layers: Sequence[int]) -> Iterator[None]:
    if not layers:
        yield
        return
    tuple_output = _block_returns_tuple(lm)
    saved: list[tuple[torch.nn.Module, bool, Any]] = []
    try:
        for layer in sorted(set(layers)):
            block = layer_module(lm, layer)
            had = "forward" in block.__dict__
            saved.append((block, had, block.__dict__.get("forward")))

            def identity(*args: Any, **kwargs: Any) -> Any:
                hidden = args[0] if args else kwargs["hidden_states"]
                return (hidden,) if tuple_output else hidden

            block.forward = identity  # type: ignore[method-assign]
        yield
    finally:
        for block, had, old in saved:
            if had:
                block.forward = old  # type: ignore[method-assign]
            else:
                del block.forward


def _block_returns_tuple(lm: LoadedModel) -> bool:
    """Whether decoder blocks return a tuple (older transformers) or a tensor: read off one tiny forward."""
    seen: list[bool] = []
    handle = layer_module(lm, 0).register_forward_hook(lambda _m, _a, out: seen.append(isinstance(out, tuple)))
    try:
        one = torch.ones(1, 1, dtype=torch.long, device=lm.device)
        lm.logits(Batch(one, one))
    finally:
        handle.remove()
    return bool(seen and seen[0])


# ---------------------------------------------------------------------------------------------------------
# Located units
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Located:
    """What the locate stage hands to the steer stage."""

    kind: str  # "heads" | "neurons" | "layer" | "ffn" | "embed"
    units: tuple[S.Unit, ...] = ()  # heads / neurons, best first
    layer: int | None = None  # layer / ffn: the best layer; heads / neurons: the best unit's layer
    ranking: dict[tuple[int | None, int | None], float] = field(default_factory=dict)  # (layer, index) → importance
    note: str = ""
    # layer / ffn: the layers the locator cannot tell apart from its best (``layer`` first, then the locator's
    # order); with more than one, the steer stage chooses among them on the fit split (:func:`_steer`)
    layers: tuple[int, ...] = ()

    @property
    def site(self) -> str:
        if self.kind == "embed":
            return "embed"
        if self.kind == "ffn":
            return f"mlp_out.{self.layer}"
        return f"resid_post.{self.layer}"

    def describe(self) -> str:
        if self.kind in ("heads", "neurons"):
            return f"{len(self.units)} {self.kind} ({', '.join(_unit_label(u) for u in self.units[:6])}" + \
                ("…)" if len(self.units) > 6 else ")")  # fmt: skip
        return {"embed": "the token embeddings", "ffn": f"the FFN of layer {self.layer}"}.get(
            self.kind, f"the residual stream after layer {self.layer}")  # fmt: skip


def _unit_label(unit: S.Unit) -> str:
    name, layer = unit.site.split(".")
    return f"L{layer}{'H' if name == 'head_out' else 'N'}{unit.index}"


def locate_units(lm: LoadedModel, findings: Sequence[Finding], obj: str) -> Located:
    """Turn a locator's ranked findings into units of the plan's object (falling back to a layer, and saying so)."""
    kind = P.OBJECT_UNITS.get(obj, "layer")
    top = P.TOP_UNITS.get(kind, 1)
    ranked = list(findings)
    per_layer: dict[int, float] = {}
    for rank, f in enumerate(ranked):
        if f.layer is not None and 0 <= f.layer < lm.n_layers:
            per_layer[f.layer] = per_layer.get(f.layer, 0.0) + float(len(ranked) - rank)
    best_layer = max(per_layer, key=lambda k: (per_layer[k], -k)) if per_layer else lm.n_layers // 2
    note = "" if per_layer else f"the locator found no layer: layer {best_layer} (the middle) is used"
    if kind in ("heads", "neurons"):
        wanted = "attention-head" if kind == "heads" else "neuron"
        limit = lm.n_heads if kind == "heads" else None
        site = "head_out" if kind == "heads" else "mlp_act"
        picked: list[S.Unit] = []
        ranking: dict[tuple[int | None, int | None], float] = {}
        for rank, f in enumerate(ranked):
            if f.object != wanted or f.layer is None or f.index is None or not 0 <= f.layer < lm.n_layers:
                continue
            if limit is not None and not 0 <= f.index < limit:
                continue
            ranking.setdefault((f.layer, f.index), float(len(ranked) - rank))
            unit = S.Unit(f"{site}.{f.layer}", int(f.index))
            if unit not in picked and len(picked) < top:
                picked.append(unit)
        if picked:
            layer = int(picked[0].site.split(".")[1])
            return Located(kind, tuple(picked), layer, ranking, note)
        kind = "layer" if kind == "heads" else "ffn"
        note = f"the locator reported no {wanted} findings: {'the residual stream' if kind == 'layer' else 'the FFN'}" \
            f" of its best layer ({best_layer}) is steered instead"  # fmt: skip
    if kind == "embed":
        return Located("embed", (), None, {(None, None): 1.0}, note)
    ranking = {(layer, None): score for layer, score in per_layer.items()}
    return Located(kind, (), best_layer, ranking, note, _tied_layers(lm, ranked, obj, best_layer, per_layer))


def _tied_layers(lm: LoadedModel, findings: Sequence[Finding], obj: str, best_layer: int,
                 per_layer: dict[int, float]) -> tuple[int, ...]:  # fmt: skip
    """The layers whose best finding scores at least the lower end of the top finding's interval (its score
    when it has none): those the locator cannot tell apart. ``best_layer`` comes first, then the locator's order.

    A saturated locator — a probe that is 1.0 at every layer — ranks its ties by layer number, which says
    nothing about where steering works; these layers are then compared by steering instead. Findings of the
    plan's object are used (all findings with a layer when there are none of it)."""
    usable = [f for f in findings if f.layer is not None and 0 <= f.layer < lm.n_layers]
    own = [f for f in usable if f.object == obj] or usable
    if not own:
        return (best_layer,)
    best: dict[int, float] = {}
    for f in own:
        assert f.layer is not None
        best[f.layer] = max(best.get(f.layer, float("-inf")), float(f.score))
    top = max(own, key=lambda f: float(f.score))
    floor = float(top.score) if top.interval is None else min(float(top.score), float(top.interval[0]))
    order = sorted(best, key=lambda layer: (-per_layer.get(layer, 0.0), layer))
    return (best_layer, *(layer for layer in order if layer != best_layer and best[layer] >= floor))


# ---------------------------------------------------------------------------------------------------------
# Goals: what "improve" means on each task
# ---------------------------------------------------------------------------------------------------------

Measure = Callable[[LoadedModel, Sequence[TaskExample], "S.Intervention | None"], torch.Tensor]


@dataclass
class GoalData:
    """The steered prompts (fit/test), how to measure the goal per prompt, the contrast for a direction and the
    tokens targeted optimization pushes toward."""

    task: str
    metric: str
    better: str  # "higher" | "lower"
    text: str
    fit: list[TaskExample]
    test: list[TaskExample]
    measure: Measure
    positive: list[str]  # prompts showing the desired behaviour (fit only)
    negative: list[str]  # prompts showing the behaviour to move away from (fit only)
    desired: list[list[int]]  # per fit example: token ids whose probability targeted optimization raises
    vector_mode: str = "add"  # "add" the direction, or "remove" it (fairness)
    extras: Callable[[LoadedModel, S.Intervention | None], dict[str, float]] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def improve_goal(self) -> ImproveGoal:
        return P.improve_goal(self.better)

    def best(self, values: Sequence[float]) -> int:
        """Index of the best value (first on ties)."""
        sign = 1.0 if self.better == "higher" else -1.0
        return max(range(len(values)), key=lambda i: (sign * values[i], -i))


def _ids(lm: LoadedModel, answers: Sequence[str]) -> list[int]:
    return sorted({lm.token_id(a) for a in answers if a})


def _draw(lm: LoadedModel, task: str, n: int, seed: int) -> list[TaskExample]:
    """``n`` examples of ``task``, formatted for the model; examples with words a word-level tokenizer does not know
    are left out (an error when more than half are)."""
    examples = [_formatted(lm, ex) for ex in lm.tasks.examples(task, n, seed)]
    known = [ex for ex in examples if not lm.unknown_words(f"{ex.prompt} {ex.answer}")]
    if not examples or len(known) < max(1, len(examples) // 2):
        _check_vocabulary(lm, examples, lm.tasks.name)  # raises with the unknown words
        raise TaskDataError(f"no usable examples for task {task!r}")
    return known


def _split(examples: list[TaskExample]) -> tuple[list[TaskExample], list[TaskExample]]:
    """Held-out split, stratified by label (one example: fit and test are the same, too few to split)."""
    return split_fit_test(examples) if len(examples) > 1 else (list(examples), list(examples))


def _token_rate(ids: Sequence[int]) -> Measure:
    def measure(lm: LoadedModel, examples: Sequence[TaskExample], iv: S.Intervention | None) -> torch.Tensor:
        return S.token_rate(lm, [ex.prompt for ex in examples], ids, iv)

    return measure


def _answer_margin(lm: LoadedModel, examples: Sequence[TaskExample], iv: S.Intervention | None) -> torch.Tensor:
    """Logit of the answer minus the largest other logit, per prompt (> 0: the answer is the greedy token)."""
    logits = S.next_token_logits(lm, [ex.prompt for ex in examples], iv).cpu()
    answers = S.first_token_ids(lm, [ex.answer for ex in examples])
    rows = torch.arange(len(examples))
    own = logits[rows, answers]
    others = logits.clone()
    others[rows, answers] = float("-inf")
    return own - others.max(-1).values


def _correct(lm: LoadedModel, examples: Sequence[TaskExample], iv: S.Intervention | None) -> torch.Tensor:
    return S.correct(lm, examples, iv)


def _by_label(examples: Sequence[TaskExample]) -> dict[str, list[TaskExample]]:
    out: dict[str, list[TaskExample]] = {}
    for ex in examples:
        if ex.label is not None:
            out.setdefault(ex.label, []).append(ex)
    return out


def _contrast_goal(lm: LoadedModel, task: str, pool: list[TaskExample], steered: str, toward: str,
                   goal: P.Goal, rate_of: str) -> GoalData:  # fmt: skip
    """Steer the ``steered`` class toward the ``toward`` class; the metric is the greedy rate of the
    ``rate_of`` class's answers ("steered" or "toward") on the steered prompts."""
    groups = _by_label(pool)
    fit, test = _split(groups[steered])
    toward_ids = _ids(lm, [ex.answer for ex in groups[toward]])
    rate_ids = toward_ids if rate_of == "toward" else _ids(lm, [ex.answer for ex in groups[steered]])
    toward_fit, _ = _split(groups[toward])
    return GoalData(task, goal.metric, goal.better, goal.text, fit, test, _token_rate(rate_ids),
                    positive=[ex.prompt for ex in toward_fit], negative=[ex.prompt for ex in fit],
                    desired=[toward_ids for _ in fit])  # fmt: skip


def _generic_goal(lm: LoadedModel, task: str, pool: list[TaskExample], why: str = "") -> GoalData:
    """Raise the answer's margin; the direction contrasts the fit prompts where it is highest vs lowest."""
    goal = P.GENERIC_GOAL
    fit, test = _split(pool)
    margins = _answer_margin(lm, fit, None)
    order = torch.argsort(margins, descending=True).tolist()
    half = max(1, len(order) // 2)
    notes = [why] if why else []
    return GoalData(task, goal.metric, goal.better, goal.text, fit, test, _answer_margin,
                    positive=[fit[i].prompt for i in order[:half]], negative=[fit[i].prompt for i in order[half:]]
                    or [fit[i].prompt for i in order[-1:]], desired=[[lm.token_id(ex.answer)] for ex in fit],
                    notes=notes)  # fmt: skip


def _refusal_goal(lm: LoadedModel, task: str, pool: list[TaskExample]) -> GoalData:
    groups = _by_label(pool)
    goal = P.GOALS["refusal"]
    fit, test = _split(groups["harmful"])
    refuse = _ids(lm, [ex.answer for ex in groups["harmful"]])
    comply = [i for i in _ids(lm, [ex.answer for ex in groups["harmless"]]) if i not in refuse]
    harmless_fit, harmless_test = _split(groups["harmless"])

    def margin(lm: LoadedModel, examples: Sequence[TaskExample], iv: S.Intervention | None) -> torch.Tensor:
        logp = S.next_token_logits(lm, [ex.prompt for ex in examples], iv).log_softmax(-1).cpu()
        return logp[:, refuse].logsumexp(-1) - logp[:, comply].logsumexp(-1)

    def extras(lm: LoadedModel, iv: S.Intervention | None) -> dict[str, float]:
        return {"steer_over_refusal": float(S.token_rate(lm, [ex.prompt for ex in harmless_test], refuse, iv).mean())}

    return GoalData(task, goal.metric, goal.better, goal.text, fit, test, margin,
                    positive=[ex.prompt for ex in fit], negative=[ex.prompt for ex in harmless_fit],
                    desired=[refuse for _ in fit], extras=extras)  # fmt: skip


def _language_goal(lm: LoadedModel, task: str, pool: list[TaskExample]) -> GoalData:
    labels = sorted(_by_label(pool))
    steered, toward = labels[0], labels[1]
    data = _contrast_goal(lm, task, pool, steered, toward, P.GOALS["language"], "toward")
    planted = getattr(lm.tasks, "planted", None)
    words = getattr(planted, "languages", {}).get(toward) if planted is not None else None
    if words:  # every word of the other language counts as a switch, not only the answers drawn
        ids = _ids(lm, list(words))
        data.measure = _token_rate(ids)
        data.desired = [ids for _ in data.fit]
    data.notes.append(f"steers prompts whose target language is {steered!r} toward {toward!r}")
    return data


def _icl_goal(lm: LoadedModel, task: str, pool: list[TaskExample]) -> GoalData:
    goal = P.GOALS["icl"]
    groups = {k: [ex for ex in v if " , " in ex.prompt and "->" in ex.prompt] for k, v in _by_label(pool).items()}
    groups = {k: v for k, v in groups.items() if len(v) >= 4}
    if not groups:
        raise TaskDataError("in-context prompts without demonstrations to remove")

    def zero_shot(examples: list[TaskExample]) -> list[TaskExample]:
        return [replace(ex, prompt=ex.prompt.rsplit(" , ", 1)[-1]) for ex in examples]

    # The in-context task the model is worst at without demonstrations: where a task vector has room to help.
    accuracy = {k: float(S.correct(lm, zero_shot(v)).mean()) for k, v in sorted(groups.items())}
    name = min(accuracy, key=lambda k: (accuracy[k], -len(groups[k]), k))
    full = groups[name]
    fit, test = _split(zero_shot(full))
    full_fit, full_test = _split(full)

    def extras(lm: LoadedModel, iv: S.Intervention | None) -> dict[str, float]:
        return {"steer_few_shot_accuracy": float(S.correct(lm, full_test, iv).mean())}

    return GoalData(task, goal.metric, goal.better, goal.text, fit, test, _correct,
                    positive=[ex.prompt for ex in full_fit], negative=[ex.prompt for ex in fit],
                    desired=[[lm.token_id(ex.answer)] for ex in fit], extras=extras,
                    notes=[f"in-context task {name!r} (the lowest zero-shot accuracy): zero-shot prompts are its "
                           "queries without demonstrations"])  # fmt: skip


def _bias_goal(lm: LoadedModel, task: str, pool: list[TaskExample]) -> GoalData:
    goal = P.GOALS["bias"]
    ambiguous = [ex for ex in pool if ex.meta.get("kind") == "ambiguous" and ex.meta.get("stereotyped_pronoun")]
    stated = [ex for ex in pool if ex.meta.get("kind") == "unambiguous"]
    pronouns = sorted({str(ex.meta["stereotyped_pronoun"]) for ex in ambiguous})
    if len(pronouns) != 2 or len(ambiguous) < 4:
        raise TaskDataError("bias prompts need ambiguous mentions of both stereotypes")
    pid = {p: lm.token_id(p) for p in pronouns}

    def other(ex: TaskExample) -> str:
        return next(p for p in pronouns if p != ex.meta["stereotyped_pronoun"])

    fit, test = _split(ambiguous)

    def gap(lm: LoadedModel, examples: Sequence[TaskExample], iv: S.Intervention | None) -> torch.Tensor:
        probs = S.next_token_logits(lm, [ex.prompt for ex in examples], iv).softmax(-1).cpu()
        rows = torch.arange(len(examples))
        st = torch.tensor([pid[str(ex.meta["stereotyped_pronoun"])] for ex in examples])
        ot = torch.tensor([pid[other(ex)] for ex in examples])
        return (probs[rows, st] - probs[rows, ot]).abs()

    _, stated_test = _split(stated) if len(stated) > 1 else ([], stated)

    def extras(lm: LoadedModel, iv: S.Intervention | None) -> dict[str, float]:
        return {"steer_stated_accuracy": float(S.correct(lm, stated_test, iv).mean())} if stated_test else {}

    groups = _by_label(fit)
    labels = sorted(groups)
    return GoalData(task, goal.metric, goal.better, goal.text, fit, test, gap,
                    positive=[ex.prompt for ex in groups[labels[0]]], negative=[ex.prompt for ex in groups[labels[-1]]],
                    desired=[[pid[other(ex)]] for ex in fit], vector_mode="remove", extras=extras)  # fmt: skip


def _persona_goal(lm: LoadedModel, task: str, pool: list[TaskExample]) -> GoalData:
    goal = P.GOALS["persona"]
    groups = _by_label(pool)
    neutral = next((k for k in ("none", "neutral") if k in groups), None)
    personas = sorted(k for k in groups if k != neutral)
    prefixed = [ex for ex in pool if " . " in ex.prompt and ex.prompt.startswith("persona")]
    if neutral is None or not personas or not prefixed:
        raise TaskDataError("persona prompts need a neutral label and a prefix to remove")
    persona = personas[0]
    # Bare prompts: the user turn with no persona prefix (and "persona : none ." ones): the neutral voice.
    bare = [replace(ex, prompt=ex.prompt.split(" . ", 1)[1], label=None) for ex in prefixed]
    bare += [replace(ex, label=None) for ex in groups[neutral]]
    fit, test = _split(bare)
    voice = _ids(lm, [ex.answer for ex in groups[persona]])
    persona_fit, _ = _split(groups[persona])
    return GoalData(task, goal.metric, goal.better, goal.text, fit, test, _token_rate(voice),
                    positive=[ex.prompt for ex in persona_fit], negative=[ex.prompt for ex in fit],
                    desired=[voice for _ in fit],
                    notes=[f"persona {persona!r}: its replies to prompts that carry no persona prefix"])  # fmt: skip


def build_goal(lm: LoadedModel, task: str, n: int, seed: int) -> GoalData:
    """The goal data of ``task`` (falling back to raising the answer's probability when the task's data lacks what
    its goal needs, with a note)."""
    pool = _draw(lm, task, max(4 * n, 64), seed + 104_729)  # a different draw than the locate stage's
    builders: dict[str, Callable[[LoadedModel, str, list[TaskExample]], GoalData]] = {
        "refusal": _refusal_goal,
        "language": _language_goal,
        "icl": _icl_goal,
        "bias": _bias_goal,
        "persona": _persona_goal,
        "toxicity": lambda lm, t, p: _contrast_goal(lm, t, p, "toxic", "nice", P.GOALS["toxicity"], "steered"),
        "sentiment": lambda lm, t, p: _contrast_goal(lm, t, p, "negative", "positive", P.GOALS["sentiment"], "toward"),
    }
    builder = builders.get(task)
    if builder is None:
        return _generic_goal(lm, task, pool)
    try:
        return builder(lm, task, pool)
    except (KeyError, IndexError, TaskDataError, ValueError, StopIteration) as err:
        why = f"the {task} data lacks what its goal needs ({err}): the goal is the answer's margin instead"
        return _generic_goal(lm, task, pool, why)


# ---------------------------------------------------------------------------------------------------------
# Steerers
# ---------------------------------------------------------------------------------------------------------


def _last_acts(lm: LoadedModel, prompts: Sequence[str], site: str) -> torch.Tensor:
    """Activations at each prompt's last position → [n, ...] float."""
    chunks = []
    for start in range(0, len(prompts), S.BATCH):
        with torch.inference_mode(), capture(lm, [site]) as cache:
            lm.logits(lm.encode(list(prompts[start : start + S.BATCH])))
        chunks.append(cache[site][:, -1].float())
    return torch.cat(chunks)


def _grouped(units: Sequence[S.Unit]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for u in units:
        out.setdefault(u.site, []).append(u.index)
    return out


def amplitude_candidates(located: Located) -> tuple[list[float], Callable[[float], S.Intervention], str]:
    if located.kind in ("heads", "neurons"):
        strengths = list(P.STEER_STRENGTHS["amplitude-manipulation"]["units"])
        return strengths, lambda f: S.UnitScaling(located.units, f), "factor"
    strengths = list(P.STEER_STRENGTHS["amplitude-manipulation"]["layer"])
    return strengths, lambda f: SiteScaling(located.site, f), "factor"


def vector_candidates(lm: LoadedModel, located: Located, goal: GoalData,
                      tensors: dict[str, torch.Tensor]) -> tuple[list[float], Callable[[float], S.Intervention], str]:  # fmt: skip
    """Difference of means (desired − undesired prompts) at the located site(s), added with a multiplier (or, for
    fairness, projected out by a share)."""
    parts: list[tuple[str, torch.Tensor, list[int] | None]] = []  # (site, direction, heads)
    if located.kind in ("heads", "neurons"):
        for site, indices in sorted(_grouped(located.units).items()):
            diff = S.diff_of_means(_last_acts(lm, goal.positive, site), _last_acts(lm, goal.negative, site))
            mask = torch.zeros(diff.shape[0], dtype=torch.bool)
            mask[indices] = True
            shaped = mask.view(-1, *([1] * (diff.dim() - 1)))
            parts.append((site, diff * shaped, indices if located.kind == "heads" else None))
    else:
        site = located.site
        diff = S.diff_of_means(_last_acts(lm, goal.positive, site), _last_acts(lm, goal.negative, site))
        parts.append((site, diff, None))
    for i, (_site, vec, _heads) in enumerate(parts):
        tensors[f"steering_vector_{i}"] = vec.detach().clone()
    if goal.vector_mode == "remove":

        def removal(alpha: float) -> S.Intervention:
            return S.Combined([Projection(site, vec, alpha) for site, vec, _ in parts])

        return list(P.STEER_STRENGTHS["vector-arithmetic"]["remove"]), removal, "share projected out"

    def addition(coeff: float) -> S.Intervention:
        return S.Combined([S.SteeringVector(site, vec, coeff, positions=-1, heads=heads) for site, vec, heads in parts])

    return list(P.STEER_STRENGTHS["vector-arithmetic"]["add"]), addition, "multiplier"


def _out_param(lm: LoadedModel, layer: int, head_site: bool) -> tuple[str, bool]:
    """(parameter name of a layer's attention or FFN output projection, stored as [in, out]?)."""
    fam = lm.family
    path = fam.attn_out_proj if head_site else fam.mlp_out_proj
    return f"{fam.layers}.{layer}.{path}.weight", bool(fam.conv1d)


def optimization_candidates(lm: LoadedModel, located: Located, goal: GoalData,
                            progress: Progress) -> tuple[list[float], Callable[[float], S.Intervention], str]:  # fmt: skip
    """A few normalised gradient-ascent steps on log P(desired tokens) over the fit prompts, on only the located
    units' output weights (a head's rows of W_O, a neuron's row of W_out, a layer's whole W_out)."""
    # Rows of [in, out]-oriented output weights that may change, per (layer, attention?).
    rows: dict[tuple[int, bool], list[int]] = {}
    if located.kind == "heads":
        for u in located.units:
            layer, h = int(u.site.split(".")[1]), u.index
            rows.setdefault((layer, True), []).extend(range(h * lm.d_head, (h + 1) * lm.d_head))
    elif located.kind == "neurons":
        for u in located.units:
            rows.setdefault((int(u.site.split(".")[1]), False), []).append(u.index)
    else:
        layer = located.layer if located.layer is not None else 0
        rows[(layer, False)] = []  # every row
    params = dict(lm.model.named_parameters())
    originals: dict[tuple[int, bool], torch.Tensor] = {}
    for key in rows:
        name, conv1d = _out_param(lm, *key)
        w = params[name].detach().float()
        originals[key] = (w if conv1d else w.T).clone()  # [in, out]
    deltas = {key: torch.zeros_like(w) for key, w in originals.items()}
    vocab = None
    batch = lm.encode([ex.prompt for ex in goal.fit])
    desired = goal.desired

    def edit_for(ds: dict[tuple[int, bool], torch.Tensor]) -> S.WeightEdit:
        updates = {}
        for key, d in ds.items():
            name, conv1d = _out_param(lm, *key)
            new = originals[key] + d
            updates[name] = (new if conv1d else new.T).to(params[name].dtype).contiguous()
        return S.WeightEdit(updates)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        nonlocal vocab
        logp = logits[:, -1].float().log_softmax(-1)
        if vocab is None:
            vocab = torch.zeros_like(logp, dtype=torch.bool)
            for i, ids in enumerate(desired):
                vocab[i, ids] = True
        return logp.masked_fill(~vocab, float("-inf")).logsumexp(-1).mean()

    steps = [int(s) for s in P.STEER_STRENGTHS["targeted-optimization"]["steps"]]
    snapshots: dict[float, dict[tuple[int, bool], torch.Tensor]] = {}
    for step in range(1, max(steps) + 1):
        progress("targeted optimization", step - 1, max(steps))
        sites = []
        for layer, attn in rows:
            sites += [f"head_out.{layer}", f"attn_out.{layer}"] if attn else [f"mlp_act.{layer}", f"mlp_out.{layer}"]
        with edit_for(deltas).apply(lm):
            run = run_with_grads(lm, batch, sites, metric)
        for (layer, attn), allowed in rows.items():
            a = run.acts[f"head_out.{layer}" if attn else f"mlp_act.{layer}"].float()
            g = run.grads[f"attn_out.{layer}" if attn else f"mlp_out.{layer}"].float()
            a = a.flatten(2) if attn else a  # [b, pos, in]
            grad = torch.einsum("bpi,bpo->io", a, g)  # d metric / d W[in, out]
            if allowed:
                mask = torch.zeros(grad.shape[0], 1)
                mask[allowed] = 1.0
                grad = grad * mask
            w = originals[(layer, attn)]
            size = (w[allowed] if allowed else w).norm()
            deltas[(layer, attn)] = deltas[(layer, attn)] + OPT_STEP * size * grad / grad.norm().clamp(min=1e-12)
        if step in steps:
            snapshots[float(step)] = {k: v.clone() for k, v in deltas.items()}
    progress("targeted optimization", max(steps), max(steps))
    return [float(s) for s in steps], lambda s: edit_for(snapshots[s]), "gradient steps"


# ---------------------------------------------------------------------------------------------------------
# Running a plan
# ---------------------------------------------------------------------------------------------------------


def usable_tasks(lm: LoadedModel) -> list[str]:
    """The model's tasks whose prompts its tokenizer knows (a toy checkpoint older than its task list lacks words)."""
    out = []
    for task in lm.tasks.tasks():
        try:
            _draw(lm, task, 16, 0)
        except (TaskDataError, ValueError):
            continue
        out.append(task)
    return out


def resolve_task(lm: LoadedModel, task: str | None, fallback_default: str) -> tuple[str, str]:
    """(the task to run, a note when it differs from the one asked for)."""
    wanted = task or fallback_default
    available = usable_tasks(lm)
    if wanted in available:
        return wanted, ""
    why = "does not know the words of the" if wanted in lm.tasks.tasks() else "has no"
    for alt in (*P.TASK_FALLBACKS.get(wanted, ()), P.DEFAULT_TASK):
        if alt in available:
            return alt, f"model {lm.name!r} {why} {wanted!r} task: {alt!r} runs instead"
    if not available:
        raise PipelineError(f"model {lm.name!r} has no usable task data")
    return available[0], f"model {lm.name!r} {why} {wanted!r} task: {available[0]!r} runs instead"


def _locate(lm: LoadedModel, plan: P.Plan, task: str, seed: int, progress: Progress,
            notes: list[str]) -> tuple[str, Output]:  # fmt: skip
    reg = registry()
    candidates = [str(plan.locator), *(f for f in P.LOCATE_FALLBACKS if f != plan.locator)]
    errors: list[str] = []
    for impl_id in candidates:
        if impl_id not in reg:
            continue
        module = reg[impl_id].module
        spec = make_spec(module, seed, **P.LOCATE_SPEC.get(impl_id, {}))
        try:
            examples = _draw(lm, task, int(getattr(spec, "n", 16)), seed)
            data = RunData(task=task, examples=examples, source=lm.tasks, seed=seed, progress=progress,
                           planted=getattr(lm.tasks, "planted", None))  # fmt: skip
            output = module.run(lm, spec, data)
        except (TaskDataError, ValueError, KeyError, IndexError, RuntimeError) as err:
            errors.append(f"{impl_id}: {err}")
            continue
        if errors:
            notes.append(f"locate stage: {'; '.join(errors)} — {impl_id} stands in")
        return impl_id, output
    raise PipelineError(f"no locator could run on task {task!r}: {'; '.join(errors)}")


def run_pipeline(lm: LoadedModel, plan: P.Plan, *, seed: int = 0, n: int | None = None, task: str | None = None,
                 progress: Progress = no_progress) -> RunResult:  # fmt: skip
    """Run ``plan`` (kind "pipeline") on ``lm``: locate, then steer and measure the improvement with its cost."""
    if plan.kind != "pipeline":
        raise RunError(f"{plan.run_id} is a reproduction: run it with run_impl")
    torch.manual_seed(seed)
    start = time.perf_counter()
    notes: list[str] = []
    chosen, task_note = resolve_task(lm, task or plan.task, P.DEFAULT_TASK)
    if task_note:
        notes.append(task_note)
    locator_id, located_output = _locate(lm, plan, chosen, seed, progress, notes)
    located = locate_units(lm, located_output.findings, str(plan.object))
    if located.note:
        notes.append(located.note)
    output = Output(metrics=dict(located_output.metrics), intervals=dict(located_output.intervals),
                    findings=list(located_output.findings), tensors=dict(located_output.tensors),
                    figures=list(located_output.figures))  # fmt: skip
    stage = "pruning" if plan.prune else plan.steer
    run_id = f"{P.PIPELINE_PREFIX}{locator_id}" + (f"+{stage}" if stage else "")
    what = plan.describe(lm.name or "the model")
    lead = f"{what[0].upper()}{what[1:]}: {locator_id} located {located.describe()} on task {chosen!r}"
    if plan.steer is None:
        output.notes = [f"{lead}; no steering tag, so only the locate stage ran.", *plan.substitutions, *notes,
                        *(f"locate stage: {note}" for note in located_output.notes)]  # fmt: skip
    else:
        count = n if n is not None else 24
        if plan.prune:
            summary = _prune(lm, located, chosen, count, seed, output, progress)
        else:
            summary = _steer(lm, plan, located, chosen, count, seed, output, progress)
        output.notes = [f"{lead}; {summary}", *plan.substitutions, *notes,
                        *(f"locate stage: {note}" for note in located_output.notes)]  # fmt: skip
    result = RunResult(impl=run_id, model=lm.name, task=chosen, output=output, entry=plan.entry, kind="pipeline",
                       seed=seed, seconds=time.perf_counter() - start, data_source=lm.tasks.name,
                       plan=plan.to_dict(), backend=lm.backend)  # fmt: skip
    return result


def _steer(lm: LoadedModel, plan: P.Plan, located: Located, task: str, n: int, seed: int, output: Output,
           progress: Progress) -> str:  # fmt: skip
    """Build the goal, sweep the steerer's strengths (at each tied layer) on the fit split, report the best on the
    test split with its side effects; returns the summary note."""
    goal = build_goal(lm, task, n, seed)
    steer = str(plan.steer)

    def candidates(
        at: Located, tensors: dict[str, torch.Tensor]
    ) -> tuple[list[float], Callable[[float], S.Intervention], str, str]:
        if steer == "amplitude-manipulation":
            return (*amplitude_candidates(at), f"amplitude manipulation scales {at.describe()}")
        if steer == "vector-arithmetic":
            if goal.vector_mode == "remove":
                how = f"the difference-of-means (stereotype) direction projected out of {at.describe()} — fairness " \
                    "removes the direction instead of adding it"  # fmt: skip
            else:
                how = f"a difference-of-means direction added at {at.describe()}"
            return (*vector_candidates(lm, at, goal, tensors), how)
        return (*optimization_candidates(lm, at, goal, progress),
                f"a few gradient steps on only the output weights of {at.describe()}")  # fmt: skip

    # A layer the locator cannot single out (tied layers, see _tied_layers): every tied layer is swept and the
    # (layer, strength) best on the fit split is kept — ties go to the locator's order, then the lower strength.
    tried = [located] if len(located.layers) < 2 else [replace(located, layer=layer) for layer in located.layers]
    best_value: float | None = None
    strengths: list[float] = []
    for at in tried:
        scratch: dict[str, torch.Tensor] = {}
        at_strengths, at_make, at_label, at_how = candidates(at, scratch)
        fit_values = []
        for i, s in enumerate(at_strengths):
            progress("strength sweep", i, len(at_strengths))
            fit_values.append(float(goal.measure(lm, goal.fit, at_make(s)).mean()))
        progress("strength sweep", len(at_strengths), len(at_strengths))
        at_best = goal.best(fit_values)
        if best_value is None or goal.best([best_value, fit_values[at_best]]) == 1:
            best_value, best, located = fit_values[at_best], at_best, at
            strengths, make, label, how, chosen_tensors = at_strengths, at_make, at_label, at_how, scratch
    output.tensors.update(chosen_tensors)
    if len(tried) > 1:
        how += (f" (the locator ranks layers {', '.join(str(at.layer) for at in tried)} alike, so the layer was "
                f"chosen with the strength on the fit split)")  # fmt: skip
    chosen = make(strengths[best])
    before = goal.measure(lm, goal.test, None)
    per_strength = [goal.measure(lm, goal.test, make(s)) for s in strengths]
    after = per_strength[best]
    output.improve = S.improve(task, goal.metric, before, after, seed, goal=goal.improve_goal)
    data = RunData(task=task, examples=goal.test, source=lm.tasks, seed=seed)
    output.side_effects = S.side_effects(lm, data, chosen, n=SIDE_EFFECT_N,
                                         tasks=[t for t in usable_tasks(lm) if t != task])  # fmt: skip
    points = sorted(zip([1.0 if label == "factor" else 0.0, *strengths], [before, *per_strength], strict=True),
                    key=lambda p: p[0])  # fmt: skip
    output.figures.append(S.sweep_curve("pipeline_sweep", f"{goal.metric} on held-out prompts by {label}",
                                        [x for x, _ in points], {goal.metric: [v for _, v in points]}, label,
                                        goal.metric, seed))  # fmt: skip
    output.metrics.update({
        "steer_strength": float(strengths[best]),
        "steer_units": len(located.units) if located.units else 1,
        "steer_layer": located.layer if located.layer is not None else -1,
        "steer_layers_tried": len(tried),
        "steer_n_fit": len(goal.fit),
        "steer_n_test": len(goal.test),
        "steer_before": output.improve.before,
        "steer_after": output.improve.after,
    })  # fmt: skip
    output.intervals["steer_after"] = output.improve.interval
    if goal.extras is not None:
        for name, value in goal.extras(lm, None).items():
            output.metrics[f"{name}_before"] = value
        for name, value in goal.extras(lm, chosen).items():
            output.metrics[f"{name}_after"] = value
    direction = "higher" if goal.better == "higher" else "lower"
    summary = (f"{how}, {label} {strengths[best]:g} chosen on {len(goal.fit)} fit prompts ({direction} "
               f"{goal.metric} is better); improve = {goal.text}, on {len(goal.test)} held-out prompts.")  # fmt: skip
    return " ".join([summary, *goal.notes])


def _prune_units(lm: LoadedModel, located: Located) -> tuple[str, list[tuple[int | None, int | None]]]:
    """(granularity, every unit least important first): heads, neurons or layers by the locator's ranking."""
    if located.kind == "heads":
        units: list[tuple[int | None, int | None]] = [
            (layer, h) for layer in range(lm.n_layers) for h in range(lm.n_heads)
        ]
        gran = "heads"
    elif located.kind == "neurons":
        units = [(layer, j) for layer in range(lm.n_layers) for j in range(_d_mlp(lm))]
        gran = "neurons"
    else:
        units = [(layer, None) for layer in range(lm.n_layers)]
        gran = "layers"
    order = sorted(range(len(units)), key=lambda i: (located.ranking.get(units[i], 0.0), -i))
    return gran, [units[i] for i in order]


def _pruning(gran: str, units: Sequence[tuple[int | None, int | None]]) -> S.Intervention:
    if gran == "layers":
        return SkipLayers(tuple(int(u[0]) for u in units if u[0] is not None))
    site = "head_out" if gran == "heads" else "mlp_act"
    return S.UnitScaling(tuple(S.Unit(f"{site}.{u[0]}", int(u[1])) for u in units if u[1] is not None), 0.0)


def _forward_seconds(lm: LoadedModel, prompts: Sequence[str], iv: S.Intervention | None) -> torch.Tensor:
    """CPU seconds of one forward pass, ``TIMING_REPEATS`` times, on one thread (robust to other programs sharing
    the cores, unlike wall time) → [TIMING_REPEATS]."""
    batch = lm.encode(list(prompts))
    steer = iv or S.NoIntervention()
    samples = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode(), steer.apply(lm):
            lm.logits(batch)  # warm-up
            for _ in range(TIMING_REPEATS):
                t = time.process_time()
                lm.logits(batch)
                samples.append(time.process_time() - t)
    finally:
        torch.set_num_threads(threads)
    return torch.tensor(samples)


def _params_of(lm: LoadedModel, gran: str) -> tuple[float, float]:
    """(parameters of one unit, all parameters): a head's share of its attention block, a neuron's of its FFN."""
    total = float(sum(p.numel() for p in lm.model.parameters()))
    block = layer_module(lm, 0)
    if gran == "layers":
        return float(sum(p.numel() for p in block.parameters())), total
    path = lm.family.attn if gran == "heads" else lm.family.mlp
    module = layer_submodule(lm, 0, path)
    count = float(sum(p.numel() for p in module.parameters()))
    per = lm.n_heads if gran == "heads" else _d_mlp(lm)
    return count / per, total


def _d_mlp(lm: LoadedModel) -> int:
    return int(W_out(lm, 0).shape[0])


def _prune(lm: LoadedModel, located: Located, task: str, n: int, seed: int, output: Output,
           progress: Progress) -> str:  # fmt: skip
    gran, order = _prune_units(lm, located)
    fit, test = _split(_draw(lm, task, max(2 * n, 32), seed + 104_729))
    base_fit = float(S.correct(lm, fit).mean())
    shares = list(P.PRUNE_SHARES)
    chosen_share, chosen_units = shares[0], order[: max(1, round(shares[0] * len(order)))]
    kept_any = False
    for i, share in enumerate(shares):
        progress("pruning sweep", i, len(shares))
        units = order[: max(1, round(share * len(order)))]
        if len(units) >= len(order):
            break
        acc = float(S.correct(lm, fit, _pruning(gran, units)).mean())
        if acc >= P.PRUNE_KEEP * base_fit:
            chosen_share, chosen_units, kept_any = share, units, True
    progress("pruning sweep", len(shares), len(shares))
    pruning = _pruning(gran, chosen_units)
    acc_before = S.correct(lm, test)
    acc_after = S.correct(lm, test, pruning)
    prompts = [ex.prompt for ex in test]
    before = _forward_seconds(lm, prompts, None)
    after = _forward_seconds(lm, prompts, pruning)
    output.improve = S.improve(task, P.PRUNE_GOAL.metric, before, after, seed, goal=P.PRUNE_GOAL.improve_goal)
    output.side_effects = S.side_effects(lm, RunData(task=task, examples=test, source=lm.tasks, seed=seed), pruning,
                                         n=SIDE_EFFECT_N, tasks=[t for t in usable_tasks(lm) if t != task])  # fmt: skip
    per_unit, total = _params_of(lm, gran)
    kept = float(acc_after.mean()) / float(acc_before.mean()) if float(acc_before.mean()) > 0 else 0.0
    output.metrics.update({
        "prune_units": len(chosen_units),
        "prune_share": float(chosen_share),
        "prune_params_share": per_unit * len(chosen_units) / total,
        "prune_accuracy_before": float(acc_before.mean()),
        "prune_accuracy_after": float(acc_after.mean()),
        "prune_accuracy_retained": kept,
        "prune_speedup": float(before.median() / after.median().clamp(min=1e-12)),
    })  # fmt: skip
    speed = "skipping whole blocks, so the forward pass is really cheaper" if gran == "layers" else \
        f"masking {gran} (zeroing them does not make a dense forward pass faster; prune_params_share is what a " \
        "structured implementation would remove)"  # fmt: skip
    why = f"the largest share keeping ≥ {P.PRUNE_KEEP:.0%} of the fit split's accuracy" if kept_any else \
        f"no share kept {P.PRUNE_KEEP:.0%} of the fit split's accuracy, so the smallest is reported"  # fmt: skip
    return (f"pruning removes the {len(chosen_units)} least important {gran} ({chosen_share:.0%}) by the locator's "
            f"ranking — {why} — {speed}; improve = {P.PRUNE_GOAL.text}.")  # fmt: skip
