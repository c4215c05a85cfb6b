"""Ground truth for the locate track: which units of the model *really* implement a behaviour.

The truth is computed by the bench itself, on its own prompts (a draw no method run sees: seed
:data:`TRUTH_SEED`), by construction of the task or causally by ablation — never from what a scored
method reported. It needs a model whose task source carries planted truth (the toy); on any other model
the locate track is skipped. Each mechanism is computed once per run, on first use, and cached in memory.

Mechanisms (``id`` — task, unit kind: definition):

* ``induction-heads`` — induction, heads. **By construction**: an induction prompt repeats a random word
  sequence, so the word to copy sits right after the earlier occurrence of the last word. A head's induction
  score is its mean attention from the last position to that token. True: score ≥ 0.4 and ≥ half the best.
  **Causal check**: zero-ablating the true heads together must remove ≥ 50 % of the induction accuracy.
* ``previous-token-heads`` — induction, heads. **By construction**: mean attention from every position
  (≥ 2) to the one before it, on the same random-word prompts (only position can explain it). True: score ≥ 0.4
  and ≥ half the best. Same causal check.
* ``<task>-heads`` (facts, refusal, sentiment, language, toxicity, icl, …) — heads. **By ablation**: a head's
  effect is the mean drop of the answer's *margin* (its logit minus the largest other logit, at the last position)
  when the head alone is zero-ablated at every position. True: effect ≥ half the largest and ≥ 1 nat.
* ``<task>-neurons`` (every task but language) — FFN neurons (``mlp_act``): the same margin drop when the neuron
  alone is zero-ablated at the last position (where the answer is predicted). True: effect ≥ 0.5 nat (single
  neurons have small, flat effects: an absolute floor, no relative cut; none may pass — then it is invalid).
* ``language-selective-neurons`` — language, neurons. **By ablation, per target language**: the margin drop on
  prompts whose answer is in language L minus the drop on the other language's prompts (last-position
  zero-ablation), maximised over L. True: selectivity ≥ 0.5 nat.
* ``refusal-layers`` — refusal, residual-stream layers. **By ablation of a fitted direction**: at each block
  output ``resid_post.l`` the difference of mean last-token activations (harmful − harmless, on a fit draw) is
  projected out at that one layer; the effect is the drop of the refusal rate on held-out harmful prompts.
  True: effect ≥ half the largest and ≥ 0.05. Causal check: projecting out at the true layers together must
  remove ≥ 50 % of refusals.

An implementation whose algorithm is an ablation-defined mechanism's definition (``ablation-importance``) is not
scored on those mechanisms — it would be scored against itself — only on the by-construction ones.

A mechanism is *invalid* (reported, not scored) when the model does not do the task (clean accuracy < 0.5),
when no unit or every unit is true, or when its causal check fails.

**Faithfulness** of a unit set: zero-ablate the heads (every position) or neurons (last position) together and
measure the share of the answer margin lost on the truth prompts the model gets right (an ablated margin below 0
counts as 0: a flipped answer loses all of it); for refusal layers, project out each layer's direction and measure
the share of refusals lost on held-out harmful prompts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mi_catalog.bench.scoring import Unit, faithfulness, margin_faithfulness
from mi_catalog.methods import steering as st
from mi_catalog.models.hooks import ablate, capture, edit, project_out
from mi_catalog.models.loading import Batch, LoadedModel
from mi_catalog.tasks import TaskExample

TRUTH_SEED = 1_000_003  # far from the seeds a bench gives the methods (0, 1, 2, …)
# A unit is true when its effect is ≥ RELATIVE[kind] × the largest effect and ≥ FLOOR[kind] (margins in nats,
# refusal rates as shares): single neurons have small, flat effects, so they get an absolute floor only.
RELATIVE = {"head": 0.5, "neuron": 0.0, "resid": 0.5}
FLOOR = {"head": 1.0, "neuron": 0.5, "resid": 0.05}
ATTENTION_FLOOR = 0.4  # by-construction attention scores
CHECK = 0.5  # causal check: ablating the true set removes at least this share of the metric
MIN_ACCURACY = 0.5  # below this the model does not do the task: nothing to locate
NEURON_GROUP = 32  # neurons ablated side by side in one batched forward


# Implementations whose algorithm *is* an ablation-defined mechanism's definition: scoring them on it would score
# them against themselves, so they are not scored on those mechanisms (only on the ones defined otherwise).
SAME_ALGORITHM = ("ablation-importance",)


@dataclass(frozen=True)
class Mechanism:
    id: str
    task: str
    kind: str  # unit kind: head | neuron | resid
    title: str
    definition: str
    by_ablation: bool = True  # defined by single-unit ablation (else by construction / a fitted direction)

    def scores(self, impl_id: str) -> bool:
        """Whether ``impl_id`` may be scored against this mechanism (not when its algorithm is the definition)."""
        return not (self.by_ablation and impl_id in SAME_ALGORITHM)


@dataclass
class Truth:
    mechanism: Mechanism
    universe: tuple[Unit, ...]
    effect: dict[Unit, float]  # the defining score of every unit
    true: tuple[Unit, ...]  # best first
    metric: str  # what faithfulness measures: "margin" | "refusal_rate"
    clean: float  # the clean accuracy (refusal rate for refusal layers) on the truth prompts
    faithfulness: float = 0.0  # the true units' own faithfulness (share of the metric lost when all are ablated)
    valid: bool = True
    reason: str = ""
    n_prompts: int = 0

    @property
    def true_set(self) -> frozenset[Unit]:
        return frozenset(self.true)

    def to_dict(self) -> dict[str, Any]:
        top = sorted(self.effect.items(), key=lambda kv: (-kv[1], kv[0]))[: max(8, len(self.true))]
        return {
            "id": self.mechanism.id,
            "task": self.mechanism.task,
            "kind": self.mechanism.kind,
            "title": self.mechanism.title,
            "definition": self.mechanism.definition,
            "valid": self.valid,
            "reason": self.reason,
            "true_units": [u.label for u in self.true],
            "n_units": len(self.universe),
            "n_prompts": self.n_prompts,
            "metric": self.metric,
            "clean": round(self.clean, 6),
            "faithfulness": round(self.faithfulness, 6),
            "top_effects": [[u.label, round(v, 6)] for u, v in top],
        }


INDUCTION_HEADS = Mechanism(
    "induction-heads", "induction", "head", "Induction heads",
    "By construction: mean attention from the last position to the token right after the earlier occurrence "
    f"of the last word (the word to copy); true: score ≥ {ATTENTION_FLOOR} and ≥ half the best. Causal check: "
    f"zero-ablating the true heads together removes ≥ {CHECK:.0%} of induction accuracy.", by_ablation=False,
)  # fmt: skip
PREVIOUS_TOKEN_HEADS = Mechanism(
    "previous-token-heads", "induction", "head", "Previous-token heads",
    "By construction: mean attention from each position to the one before it on random-word prompts; true: "
    f"score ≥ {ATTENTION_FLOOR} and ≥ half the best. Causal check: zero-ablating the true heads together removes "
    f"≥ {CHECK:.0%} of induction accuracy.", by_ablation=False,
)  # fmt: skip
LANGUAGE_NEURONS = Mechanism(
    "language-selective-neurons", "language", "neuron", "Language-selective neurons",
    "By ablation, per target language: the drop of the answer's margin (its logit minus the largest other logit) on "
    "prompts answered in language L minus the drop on the other language's prompts, when the neuron alone is "
    f"zero-ablated at the last position, maximised over L; true: ≥ {FLOOR['neuron']} nat.",
)  # fmt: skip
REFUSAL_LAYERS = Mechanism(
    "refusal-layers", "refusal", "resid", "Refusal-direction layers",
    "By ablation of a fitted direction: the difference of mean last-token activations (harmful − harmless, fit "
    "draw) at resid_post.l, projected out at that layer only; effect = drop of the refusal rate on held-out harmful "
    f"prompts; true: ≥ half the largest and ≥ {FLOOR['resid']}. Causal check: projecting out at the true layers "
    f"together removes ≥ {CHECK:.0%} of refusals.", by_ablation=False,
)  # fmt: skip


def task_heads(task: str) -> Mechanism:
    return Mechanism(
        f"{task}-heads", task, "head", f"{task.capitalize()}-critical heads",
        "By ablation: mean drop of the answer's margin (its logit minus the largest other logit, last position) "
        f"when the head alone is zero-ablated at every position; true: ≥ half the largest drop and ≥ {FLOOR['head']} nat.",
    )  # fmt: skip


def task_neurons(task: str) -> Mechanism:
    return Mechanism(
        f"{task}-neurons", task, "neuron", f"{task.capitalize()}-critical neurons",
        "By ablation: mean drop of the answer's margin (its logit minus the largest other logit) when the FFN "
        f"neuron (mlp_act) alone is zero-ablated at the last position; true: ≥ {FLOOR['neuron']} nat "
        "(no relative cut: single neurons have small, flat effects).",
    )  # fmt: skip


def mechanisms_for(task: str) -> list[Mechanism]:
    """The mechanisms defined on ``task`` (on a model with planted truth)."""
    if task == "induction":
        return [INDUCTION_HEADS, PREVIOUS_TOKEN_HEADS, task_neurons(task)]
    if task == "language":
        return [task_heads(task), LANGUAGE_NEURONS]
    if task == "refusal":
        return [task_heads(task), task_neurons(task), REFUSAL_LAYERS]
    return [task_heads(task), task_neurons(task)]


def has_planted_truth(lm: LoadedModel) -> bool:
    return getattr(lm.tasks, "planted", None) is not None


class Expectations:
    """The ground truth of one model, computed lazily and cached for the run."""

    def __init__(self, lm: LoadedModel, n: int = 48, n_neurons: int = 24, seed: int = TRUTH_SEED) -> None:
        self.lm = lm
        self.n = n
        self.n_neurons = n_neurons
        self.seed = seed
        self._truth: dict[str, Truth] = {}
        self._faith: dict[tuple[str, frozenset[Unit]], float] = {}
        self._directions: dict[int, torch.Tensor] = {}
        self._d_mlp_cache: int | None = None

    # --- which mechanisms exist ------------------------------------------------------------------------

    def mechanisms(self, tasks: Iterable[str] | None = None) -> list[Mechanism]:
        if not has_planted_truth(self.lm):
            return []
        available = list(self.lm.tasks.tasks())
        chosen = [t for t in available if tasks is None or t in set(tasks)]
        return [m for t in chosen for m in mechanisms_for(t)]

    # --- the truth -------------------------------------------------------------------------------------

    def truth(self, mech: Mechanism) -> Truth:
        if mech.id not in self._truth:
            self._truth[mech.id] = self._compute(mech)
        return self._truth[mech.id]

    def computed(self) -> list[Truth]:
        return list(self._truth.values())

    def examples(self, task: str, n: int, offset: int = 0) -> list[TaskExample]:
        """The truth prompts of ``task`` (a draw of its own), without any the tokenizer cannot spell."""
        drawn = self.lm.tasks.examples(task, n, seed=self.seed + offset)
        return [ex for ex in drawn if not self.lm.unknown_words(f"{ex.prompt} {ex.answer}")]

    def universe(self, kind: str) -> tuple[Unit, ...]:
        lm = self.lm
        if kind == "head":
            return tuple(Unit("head", layer, h) for layer in range(lm.n_layers) for h in range(lm.n_heads))
        if kind == "neuron":
            d_mlp = self._d_mlp()
            return tuple(Unit("neuron", layer, j) for layer in range(lm.n_layers) for j in range(d_mlp))
        return tuple(Unit("resid", layer) for layer in range(lm.n_layers))

    def _d_mlp(self) -> int:
        if self._d_mlp_cache is None:
            with capture(self.lm, ["mlp_act.0"]) as cache:  # any text: only the width is read
                self.lm.logits(self.lm.encode(["the"]))
            self._d_mlp_cache = int(cache["mlp_act.0"].shape[-1])
        return self._d_mlp_cache

    def _compute(self, mech: Mechanism) -> Truth:
        universe = self.universe(mech.kind)
        if mech.kind == "resid":
            return self._refusal_layers(mech, universe)
        n = self.n_neurons if mech.kind == "neuron" else self.n
        examples = [ex for ex in self.examples(mech.task, n) if ex.answer]
        clean = float(st.correct(self.lm, examples).mean()) if examples else 0.0
        if clean < MIN_ACCURACY:
            return Truth(mech, universe, {}, (), "margin", clean, valid=False, n_prompts=len(examples),
                         reason=f"the model does not do {mech.task!r} (accuracy {clean:.2f} < {MIN_ACCURACY})")  # fmt: skip
        if mech.id in (INDUCTION_HEADS.id, PREVIOUS_TOKEN_HEADS.id):
            effect = self._attention_scores(examples, previous=mech.id == PREVIOUS_TOKEN_HEADS.id)
            true = _select(effect, RELATIVE["head"], ATTENTION_FLOOR)
        else:
            drops = self._unit_drops(mech.kind, examples)  # [n_units, n_prompts]
            if mech.id == LANGUAGE_NEURONS.id:
                values = _selectivity(drops, [ex.label for ex in examples])
            else:
                values = drops.mean(dim=1)
            effect = {u: round(float(v), 6) for u, v in zip(universe, values.tolist(), strict=True)}
            true = _select(effect, RELATIVE[mech.kind], FLOOR[mech.kind])
        truth = Truth(mech, universe, effect, true, "margin", clean, n_prompts=len(examples))
        truth.faithfulness = self.faithfulness(mech, true)
        _validate(truth, causal=mech.id in (INDUCTION_HEADS.id, PREVIOUS_TOKEN_HEADS.id))
        return truth

    # --- faithfulness ------------------------------------------------------------------------------------

    def faithfulness(self, mech: Mechanism, units: Iterable[Unit]) -> float:
        """Share of the mechanism's metric lost when ``units`` are ablated together, on the truth prompts: the answer
        margin (:func:`mi_catalog.bench.scoring.margin_faithfulness`) for heads and neurons, the refusal rate on
        harmful prompts for refusal layers (:func:`mi_catalog.bench.scoring.faithfulness`). Cached per unit set."""
        chosen = frozenset(u for u in units if u.kind == mech.kind)
        key = (mech.id, chosen)
        if key not in self._faith:
            if mech.kind == "resid":
                harmful = self._harmful_test()
                rate = float(self._refusal_rate(harmful, frozenset()).mean())
                self._faith[key] = faithfulness(rate, float(self._refusal_rate(harmful, chosen).mean()))
            else:
                n = self.n_neurons if mech.kind == "neuron" else self.n
                examples = [ex for ex in self.examples(mech.task, n) if ex.answer]
                batch = self.lm.encode([ex.prompt for ex in examples])
                answers = st.first_token_ids(self.lm, [ex.answer for ex in examples])
                margins = self._margins(batch, answers)
                with self._ablation(chosen):
                    ablated = self._margins(batch, answers)
                self._faith[key] = margin_faithfulness(margins.tolist(), ablated.tolist())
        return self._faith[key]

    @contextlib.contextmanager
    def _ablation(self, units: Iterable[Unit]) -> Iterator[None]:
        by_site: dict[tuple[str, int], list[int]] = {}
        for u in units:
            by_site.setdefault((u.kind, u.layer), []).append(int(u.index or 0))
        for kind, layer in by_site:  # fit every direction on the unablated model, before any ablation starts
            if kind == "resid":
                self._direction(layer)
        with contextlib.ExitStack() as stack:
            for (kind, layer), indices in sorted(by_site.items()):
                if kind == "head":
                    stack.enter_context(ablate(self.lm, f"head_out.{layer}", "zero", heads=sorted(indices)))
                elif kind == "neuron":
                    stack.enter_context(
                        ablate(self.lm, f"mlp_act.{layer}", "zero", neurons=sorted(indices), positions=-1)
                    )
                else:
                    stack.enter_context(project_out(self.lm, f"resid_post.{layer}", self._direction(layer)))
            yield

    # --- by construction: attention patterns ---------------------------------------------------------------

    def _attention_scores(self, examples: list[TaskExample], previous: bool) -> dict[Unit, float]:
        lm = self.lm
        batch = lm.encode([ex.prompt for ex in examples])
        sites = [f"attn_pattern.{layer}" for layer in range(lm.n_layers)]
        with capture(lm, sites) as cache:
            lm.logits(batch)
        ids, mask = batch.input_ids.cpu(), batch.attention_mask.cpu().bool()
        out: dict[Unit, float] = {}
        for layer in range(lm.n_layers):
            pattern = cache[f"attn_pattern.{layer}"].float().cpu()  # [b, h, q, k]
            per_prompt: list[torch.Tensor] = []
            for row in range(ids.shape[0]):
                real = mask[row].nonzero().flatten()  # absolute positions of the real tokens
                first, last = int(real[0]), int(real[-1])
                if previous:
                    queries = torch.arange(first + 2, last + 1)
                    if queries.numel() == 0:
                        continue
                    per_prompt.append(pattern[row, :, queries, queries - 1].mean(dim=-1))  # [h]
                else:
                    target = _copy_position(ids[row], first, last)
                    if target is None:
                        continue
                    per_prompt.append(pattern[row, :, last, target])  # [h]
            scores = torch.stack(per_prompt).mean(dim=0) if per_prompt else torch.zeros(lm.n_heads)
            for h in range(lm.n_heads):
                out[Unit("head", layer, h)] = round(float(scores[h]), 6)
        return out

    # --- by ablation: one unit at a time ----------------------------------------------------------------------

    def _margins(self, batch: Batch, answers: torch.Tensor) -> torch.Tensor:
        """The answer's logit minus the largest other logit at the last position → [rows]."""
        with torch.inference_mode():
            logits = self.lm.logits(batch)[:, -1].float()  # [rows, vocab]
        return _margin(logits, answers.to(logits.device)).cpu()

    def _unit_drops(self, kind: str, examples: list[TaskExample]) -> torch.Tensor:
        """Margin drop for every unit of ``kind`` ablated alone → [n_units, n_prompts]: heads zero-ablated at every
        position, neurons at the last position (``NEURON_GROUP`` neurons per forward, each on its own copy of the batch)."""
        lm = self.lm
        batch = lm.encode([ex.prompt for ex in examples])
        answers = st.first_token_ids(lm, [ex.answer for ex in examples])
        clean = self._margins(batch, answers)  # [n]
        rows: list[torch.Tensor] = []
        if kind == "head":
            for u in self.universe("head"):
                with ablate(lm, f"head_out.{u.layer}", "zero", heads=[int(u.index or 0)]):
                    rows.append(clean - self._margins(batch, answers))
            return torch.stack(rows)
        n, d_mlp = len(examples), self._d_mlp()
        for layer in range(lm.n_layers):
            for start in range(0, d_mlp, NEURON_GROUP):
                group = torch.arange(start, min(start + NEURON_GROUP, d_mlp), device=lm.device)
                g = group.numel()
                big = Batch(batch.input_ids.repeat(g, 1), batch.attention_mask.repeat(g, 1))

                def zero(act: torch.Tensor, _state: Any, group: torch.Tensor = group, g: int = g) -> torch.Tensor:
                    view = act.reshape(g, n, *act.shape[1:]).clone()  # [g, n, pos, d_mlp]; left padded: -1 = last
                    view[torch.arange(g, device=act.device), :, -1, group] = 0.0
                    return view.reshape(act.shape)

                with edit(lm, [(f"mlp_act.{layer}", zero)]):
                    margins = self._margins(big, answers.repeat(g))  # [g · n]
                rows.append(clean[None, :] - margins.reshape(g, n))
        return torch.cat(rows)

    # --- refusal layers ----------------------------------------------------------------------------------------

    def _refusal_split(self) -> tuple[list[TaskExample], list[TaskExample]]:
        examples = self.examples("refusal", 2 * self.n)
        half = len(examples) // 2
        return examples[:half], examples[half:]

    def _harmful_test(self) -> list[str]:
        return [ex.prompt for ex in self._refusal_split()[1] if ex.label == "harmful"]

    def _direction(self, layer: int) -> torch.Tensor:
        if layer not in self._directions:
            fit = self._refusal_split()[0]
            harmful = [ex.prompt for ex in fit if ex.label == "harmful"]
            harmless = [ex.prompt for ex in fit if ex.label == "harmless"]
            acts = []
            for prompts in (harmful, harmless):
                with capture(self.lm, [f"resid_post.{layer}"]) as cache:
                    self.lm.logits(self.lm.encode(prompts))
                acts.append(cache[f"resid_post.{layer}"][:, -1].float())  # [n, d_model] (left padded: -1 = end)
            self._directions[layer] = st.diff_of_means(acts[0], acts[1])
        return self._directions[layer]

    def _refusal_rate(self, prompts: Sequence[str], layers: frozenset[Unit]) -> torch.Tensor:
        refuse = self.lm.token_id(self.lm.tasks.planted.refuse_token)
        with self._ablation(layers):
            return st.token_rate(self.lm, prompts, [refuse])

    def _refusal_layers(self, mech: Mechanism, universe: tuple[Unit, ...]) -> Truth:
        harmful = self._harmful_test()
        clean = float(self._refusal_rate(harmful, frozenset()).mean()) if harmful else 0.0
        if clean < MIN_ACCURACY:
            return Truth(mech, universe, {}, (), "refusal_rate", clean, valid=False, n_prompts=len(harmful),
                         reason=f"the model refuses {clean:.2f} of harmful prompts (< {MIN_ACCURACY})")  # fmt: skip
        effect = {u: round(clean - float(self._refusal_rate(harmful, frozenset([u])).mean()), 6) for u in universe}
        true = _select(effect, RELATIVE["resid"], FLOOR["resid"])
        truth = Truth(mech, universe, effect, true, "refusal_rate", clean, n_prompts=len(harmful))
        truth.faithfulness = self.faithfulness(mech, true)
        _validate(truth, causal=True)
        return truth


def _margin(logits: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """logit(answer) − the largest other logit: [rows, vocab], [rows] → [rows]."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    answer = logits[rows, answers]
    others = logits.clone()
    others[rows, answers] = -torch.inf
    return answer - others.max(dim=-1).values


def _copy_position(ids: torch.Tensor, first: int, last: int) -> int | None:
    """The position right after the earlier occurrence of the last token (the token an induction head copies)."""
    current = ids[last]
    earlier = (ids[first:last] == current).nonzero().flatten()
    if earlier.numel() == 0:
        return None
    target = first + int(earlier[0]) + 1
    return target if target < last else None


def _select(effect: dict[Unit, float], relative: float, floor: float) -> tuple[Unit, ...]:
    """Units with effect ≥ relative × the largest and ≥ floor, best first."""
    if not effect:
        return ()
    best = max(effect.values())
    cut = max(floor, relative * best)
    return tuple(u for u, v in sorted(effect.items(), key=lambda kv: (-kv[1], kv[0])) if v >= cut)


def _selectivity(drops: torch.Tensor, labels: Sequence[str | None]) -> torch.Tensor:
    """max over labels L of (mean drop on L's prompts − mean drop on the others) → [n_units]."""
    names = sorted({lab for lab in labels if lab is not None})
    if len(names) < 2:
        return drops.mean(dim=1)
    out = []
    for name in names:
        own = torch.tensor([lab == name for lab in labels])
        out.append(drops[:, own].mean(dim=1) - drops[:, ~own].mean(dim=1))
    return torch.stack(out).max(dim=0).values


def _validate(truth: Truth, causal: bool) -> None:
    n_true, n_all = len(truth.true), len(truth.universe)
    if n_true == 0:
        truth.valid, truth.reason = False, "no unit passes the threshold"
    elif n_true == n_all:
        truth.valid, truth.reason = False, "every unit passes the threshold (nothing to rank)"
    elif causal and truth.faithfulness < CHECK:
        truth.valid = False
        truth.reason = f"causal check failed: ablating the true units removes {truth.faithfulness:.0%} (< {CHECK:.0%})"
