"""Function vectors and task vectors — Todd et al. 2024, *Function Vectors in Large Language Models* (ICLR 2024,
arXiv 2310.15213), and Hendel et al. 2023, *In-Context Learning Creates Task Vectors* (Findings of EMNLP 2023,
arXiv 2310.15916).

Hendel et al.: run the demonstrations (with a dummy query) and take the residual stream at the last ("->")
position at layer L — the *task vector* θ; run the zero-shot query "x ->" and *patch* (replace) its state at
layer L, last position, with θ: the model then applies the task to x. Accuracy by layer peaks in the middle
layers. Todd et al.: the mean output of every attention head at the last position over k-shot prompts of a
task, ā_lh; each head's *causal indirect effect* is the gain in p(correct answer) when ā_lh is patched into
prompts whose demonstrations have *shuffled labels*; the heads with the highest effect averaged over tasks
(10 in GPT-J) form a set A, and the *function vector* of a task is the sum of their mean outputs projected
into the residual stream, FV = Σ_{(l,h)∈A} ā_lh W_O^{lh}; *added* to the residual stream at one layer (last
position) it makes zero-shot and shuffled-label prompts perform the task.

What we do, on the toy's ``icl`` task (5 mappings — antonym, capital, successor, predecessor, translate —
as label classes; 4-shot "x -> y , … , q ->" prompts): per mapping, on the fit half, the task vector at
``resid_post.l`` (every layer) and the mean head outputs; the heads' indirect effects on shuffled-label fit
prompts (labels rotated among the demonstrations), averaged over mappings; FV = the top ``n_heads`` heads'
ā W_O. The layer for each vector is chosen on the fit prompts' zero-shot queries; on the held-out half we
report zero-shot accuracy unsteered, with the task vector patched, and with the FV added — by layer
(curves with bands) and per mapping — and shuffled-label accuracy with the FV. The toy's zero-shot queries
are unambiguous except for numbers: successor and predecessor share inputs and were trained equally often, so
zero-shot "seven ->" is a near coin flip (p 0.35-0.65 for each answer on every shared number); the recipe-v3 toy
reads 6 of the 10 shared numbers as predecessor (v2: 3), and the numbers it reads as the other mapping are where
a vector has to carry the task. On the recipe-v3 toy (``tests/impls/test_function_vectors.py``, n=150, seeds
0-9) the FV answers every one of the 11-18 held-out zero-shot queries a seed the unsteered toy gets wrong
(v2: 9-19 a seed, also all), pooled zero-shot accuracy 0.76-0.85 → 0.99-1.00.

Simplifications: one demonstration count (the toy's 4-shot prompts) and the prompts' own queries rather than
a dummy query for the task vector; task vectors are means over fit prompts (Hendel average over prompts too);
labels are shuffled by rotation (a derangement) rather than at random; the head set is chosen on the fit
prompts of the same mappings it is evaluated on (Todd use held-out tasks too); no FV decoding / vocabulary
analysis. On data that are not "x -> y" lists (``--prompts`` files, the registry's test rows) the "zero-shot"
prompt is the prompt's last word and the corrupt prompt stands in for the shuffled one — it runs, but only
ICL-shaped data make the numbers meaningful.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods import steering as st
from mi_catalog.methods.contract import Bars, Curve, Finding, Heatmap, Output, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import mean_ci
from mi_catalog.models.hooks import ForwardState, edit
from mi_catalog.models.loading import LoadedModel
from mi_catalog.models.weights import W_O
from mi_catalog.tasks import TaskExample
from reference_impls._common import answer_ids, head_label
from reference_impls._steer import last_acts

IMPL = ImplInfo(
    id="function-vectors",
    title="Function vectors (top heads by causal effect) and task vectors (patched residual) for in-context tasks",
    objects=("attention-head", "residual-stream"),
    methods=("causal-attribution",),
    steering=("vector-arithmetic",),
    reproduces=("function-vectors", "icl-task-vectors"),
    tasks=("icl",),
    needs=(),
    metrics=(
        "n_prompts",
        "n_fit",
        "n_test",
        "icl_n_tasks",
        "icl_accuracy",
        "zero_shot_before",
        "zero_shot_tv",
        "tv_layer",
        "zero_shot_fv",
        "fv_layer",
        "shuffled_before",
        "shuffled_fv",
        "fv_n_heads",
        "fv_top_head_aie",
    ),
)


@dataclass
class Spec:
    n: int = 200
    seed: int = 0
    fit_fraction: float = 0.5
    n_heads: int = 4  # heads in the function vector's set A (Todd: 10 of GPT-J's 448)
    arrow: str = "->"  # separates x from y in a demonstration
    sep: str = ","  # separates demonstrations
    n_side: int = 24


# ---------------------------------------------------------------------------------------------------------
# Prompt forms: k-shot (as given), zero-shot ("q ->"), shuffled labels (demonstrations' y rotated)
# ---------------------------------------------------------------------------------------------------------


def parse_icl(prompt: str, arrow: str, sep: str) -> tuple[list[tuple[str, str]], str] | None:
    """ "x1 -> y1 , … , q ->" → ([(x1, y1), …], "q"); None when the prompt is not such a list."""
    parts = [p.strip() for p in prompt.split(f" {sep} ")]
    last = parts[-1]
    if not last.endswith(arrow) or len(parts) < 2:
        return None
    demos = []
    for part in parts[:-1]:
        pieces = part.split(f" {arrow} ")
        if len(pieces) != 2:
            return None
        demos.append((pieces[0], pieces[1]))
    return demos, last[: -len(arrow)].strip()


@dataclass
class Forms:
    """One example in the three forms the method runs (all answered by ``example.answer``)."""

    example: TaskExample
    zero_shot: str
    shuffled: str

    @property
    def k_shot(self) -> str:
        return self.example.prompt


def forms(ex: TaskExample, spec: Spec, rng: random.Random) -> Forms:
    parsed = parse_icl(ex.prompt, spec.arrow, spec.sep)
    if parsed is None:  # not ICL-shaped: the last word, and the corrupt prompt as the "shuffled" one
        return Forms(ex, ex.prompt.split()[-1], ex.corrupt_prompt or ex.prompt)
    demos, query = parsed
    ys = [y for _, y in demos]
    shift = rng.randrange(1, len(ys)) if len(ys) > 1 else 0
    rotated = ys[shift:] + ys[:shift]  # every demonstration gets another's label
    shuffled = f" {spec.sep} ".join(f"{x} {spec.arrow} {y}" for (x, _), y in zip(demos, rotated, strict=True))
    return Forms(ex, f"{query} {spec.arrow}", f"{shuffled} {spec.sep} {query} {spec.arrow}")


def with_prompt(ex: TaskExample, prompt: str) -> TaskExample:
    return replace(ex, prompt=prompt, corrupt_prompt=None, corrupt_answer=None)


# ---------------------------------------------------------------------------------------------------------
# Interventions: patch the last position (task vector), set one head's last-position output (indirect effect)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class LastPositionPatch:
    """Hendel et al.'s patch: replace the activation at ``site`` at every prompt's last position with ``vector``."""

    site: str
    vector: torch.Tensor  # [d_model]

    def apply(self, lm: LoadedModel) -> contextlib.AbstractContextManager[Any]:
        vector = self.vector

        def fn(act: torch.Tensor, _state: ForwardState) -> torch.Tensor:
            out = act.clone()
            out[:, -1] = vector.to(device=act.device, dtype=act.dtype)
            return out

        return edit(lm, [(self.site, fn)])


@dataclass
class HeadPatch:
    """Set head ``head``'s output (head_out, before W_O) at the last position to ``value`` [d_head]."""

    layer: int
    head: int
    value: torch.Tensor

    @contextlib.contextmanager
    def apply(self, lm: LoadedModel) -> Iterator[None]:
        value, head = self.value, self.head

        def fn(act: torch.Tensor, _state: ForwardState) -> torch.Tensor:
            out = act.clone()
            out[:, -1, head] = value.to(device=act.device, dtype=act.dtype)
            return out

        with edit(lm, [(f"head_out.{self.layer}", fn)]):
            yield


def accuracy(
    lm: LoadedModel, items: list[Forms], form: str, intervention: st.Intervention | None = None
) -> torch.Tensor:
    """0/1 per example [n]: the greedy next token of the ``form`` prompt is the example's answer."""
    return st.correct(lm, [with_prompt(f.example, getattr(f, form)) for f in items], intervention)


def answer_p(
    lm: LoadedModel, items: list[Forms], form: str, intervention: st.Intervention | None = None
) -> torch.Tensor:
    """p(answer) per example [n] for the ``form`` prompt."""
    if not items:
        return torch.zeros(0)
    probs = st.next_token_logits(lm, [getattr(f, form) for f in items], intervention).softmax(-1).cpu()
    ids = answer_ids(lm, [f.example for f in items]).cpu()
    return probs[torch.arange(len(items)), ids]


@dataclass
class Vectors:
    theta: dict[str, torch.Tensor]  # task → task vectors [L, d_model] (resid_post.l, last position)
    head_mean: dict[str, torch.Tensor]  # task → mean head outputs ā [L, H, d_head]
    aie: torch.Tensor  # [L, H] mean indirect effect over tasks
    heads: list[tuple[int, int]]  # the function vector's head set A, best first
    fv: dict[str, torch.Tensor]  # task → function vector [d_model]


def function_vector(lm: LoadedModel, head_mean: torch.Tensor, heads: list[tuple[int, int]]) -> torch.Tensor:
    """Σ_{(l,h) ∈ heads} ā_lh W_O^{lh} → [d_model] (the heads' mean contribution to the residual stream)."""
    out = torch.zeros(lm.d_model)
    with torch.no_grad():
        for layer, h in heads:
            out = out + head_mean[layer, h] @ W_O(lm, layer)[h].float().cpu()
    return out


def fit_vectors(lm: LoadedModel, spec: Spec, fit: dict[str, list[Forms]], tasks: list[str],
                data: RunData | None = None) -> Vectors:  # fmt: skip
    """Task vectors, mean head outputs, indirect effects, the head set and the function vectors, on ``fit``."""
    n_layers, n_heads = lm.n_layers, lm.n_heads
    resid_sites = [f"resid_post.{layer}" for layer in range(n_layers)]
    head_sites = [f"head_out.{layer}" for layer in range(n_layers)]
    theta: dict[str, torch.Tensor] = {}
    head_mean: dict[str, torch.Tensor] = {}
    for t in tasks:
        prompts = [f.k_shot for f in fit[t]]
        theta[t] = last_acts(lm, prompts, resid_sites)[:, :, 0].mean(dim=1)
        head_mean[t] = last_acts(lm, prompts, head_sites)[:, :, 0].mean(dim=1)

    # Indirect effect of each head: p(answer) gain on shuffled-label fit prompts when its mean output is patched in.
    aie = torch.zeros(n_layers, n_heads)  # mean over tasks
    for i, t in enumerate(tasks):
        if data is not None:
            data.progress("indirect effects", i, len(tasks))
        base = answer_p(lm, fit[t], "shuffled")
        for layer in range(n_layers):
            for h in range(n_heads):
                patched = answer_p(lm, fit[t], "shuffled", HeadPatch(layer, h, head_mean[t][layer, h]))
                aie[layer, h] += float((patched - base).mean()) / len(tasks)
    flat = aie.flatten()
    k = max(1, min(spec.n_heads, n_layers * n_heads))
    top = sorted(range(flat.numel()), key=lambda s: (-float(flat[s]), s))[:k]
    heads = [divmod(s, n_heads) for s in top]
    fv = {t: function_vector(lm, head_mean[t], heads) for t in tasks}
    return Vectors(theta, head_mean, aie, heads, fv)


def split_forms(data: RunData, spec: Spec) -> tuple[list[str], dict[str, list[Forms]], dict[str, list[Forms]]]:
    """Tasks (label classes with examples in both halves) and each half's examples in their three forms."""
    rng = random.Random(f"function-vectors/{spec.seed}")
    fit_ex, test_ex = data.fit_test(spec.fit_fraction)
    tasks = sorted({ex.label or "all" for ex in data.examples})
    fit = {t: [forms(ex, spec, rng) for ex in fit_ex if (ex.label or "all") == t] for t in tasks}
    test = {t: [forms(ex, spec, rng) for ex in test_ex if (ex.label or "all") == t] for t in tasks}
    return [t for t in tasks if fit[t] and test[t]], fit, test


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    tasks, fit, test = split_forms(data, spec)
    n_layers, n_heads = lm.n_layers, lm.n_heads
    resid_sites = [f"resid_post.{layer}" for layer in range(n_layers)]

    vecs = fit_vectors(lm, spec, fit, tasks, data)
    theta, fv, aie, chosen = vecs.theta, vecs.fv, vecs.aie, vecs.heads
    k = len(chosen)

    def tv_at(t: str, layer: int) -> st.Intervention:
        return LastPositionPatch(resid_sites[layer], theta[t][layer])

    def fv_at(t: str, layer: int) -> st.Intervention:
        return st.SteeringVector(resid_sites[layer], fv[t], 1.0, positions=-1)

    def pooled(split: dict[str, list[Forms]], form: str, make: Any = None, layer: int = 0) -> torch.Tensor:
        """0/1 over every task's examples (each task steered by its own vector) → [n]."""
        parts = [accuracy(lm, split[t], form, make(t, layer) if make else None) for t in tasks]
        return torch.cat(parts) if parts else torch.zeros(0)

    # Layers chosen on the fit half's zero-shot queries; curves and headline numbers on the held-out half.
    tv_fit = [float(pooled(fit, "zero_shot", tv_at, layer).mean()) for layer in range(n_layers)]
    fv_fit = [float(pooled(fit, "zero_shot", fv_at, layer).mean()) for layer in range(n_layers)]
    tv_layer = max(range(n_layers), key=lambda i: (tv_fit[i], -i))
    fv_layer = max(range(n_layers), key=lambda i: (fv_fit[i], -i))
    tv_test = [pooled(test, "zero_shot", tv_at, layer) for layer in range(n_layers)]
    fv_test = [pooled(test, "zero_shot", fv_at, layer) for layer in range(n_layers)]
    zero_before = pooled(test, "zero_shot")
    shuffled_before = pooled(test, "shuffled")
    shuffled_fv = pooled(test, "shuffled", fv_at, fv_layer)
    icl = torch.cat([accuracy(lm, test[t], "k_shot") for t in tasks]) if tasks else torch.zeros(0)

    per_task_before = [float(accuracy(lm, test[t], "zero_shot").mean()) for t in tasks]
    per_task_tv = [float(accuracy(lm, test[t], "zero_shot", tv_at(t, tv_layer)).mean()) for t in tasks]
    per_task_fv = [float(accuracy(lm, test[t], "zero_shot", fv_at(t, fv_layer)).mean()) for t in tasks]
    gains = [a - b for a, b in zip(per_task_fv, per_task_before, strict=True)]
    side_task = tasks[max(range(len(tasks)), key=lambda i: (gains[i], -i))] if tasks else None

    s = spec.seed
    n_fit = sum(len(v) for v in fit.values())
    metrics: dict[str, int | float] = {
        "n_prompts": len(data.examples),
        "n_fit": n_fit,
        "n_test": len(zero_before),
        "icl_n_tasks": len(tasks),
        "icl_accuracy": mean_ci(icl, seed=s)[0],
        "zero_shot_before": mean_ci(zero_before, seed=s)[0],
        "zero_shot_tv": mean_ci(tv_test[tv_layer], seed=s)[0],
        "tv_layer": tv_layer,
        "zero_shot_fv": mean_ci(fv_test[fv_layer], seed=s)[0],
        "fv_layer": fv_layer,
        "shuffled_before": mean_ci(shuffled_before, seed=s)[0],
        "shuffled_fv": mean_ci(shuffled_fv, seed=s)[0],
        "fv_n_heads": k,
        "fv_top_head_aie": round(float(aie[chosen[0]]), 6),
    }
    intervals = {
        name: mean_ci(values, seed=s)[1]
        for name, values in (("icl_accuracy", icl), ("zero_shot_before", zero_before),
                             ("zero_shot_tv", tv_test[tv_layer]), ("zero_shot_fv", fv_test[fv_layer]),
                             ("shuffled_before", shuffled_before), ("shuffled_fv", shuffled_fv))
    }  # fmt: skip
    findings = [
        Finding("attention-head", layer, h, round(float(aie[layer, h]), 6),
                head_label(layer, h) + (" (in FV)" if (layer, h) in chosen else ""))
        for layer in range(n_layers) for h in range(n_heads)
    ]  # fmt: skip
    x = [float(layer) for layer in range(n_layers)]
    chosen_labels = ", ".join(head_label(layer, h) for layer, h in chosen)
    zero_series = [zero_before] * n_layers
    return Output(
        metrics=metrics,
        intervals=intervals,
        findings=ranked(findings),
        tensors={
            "aie": aie,
            "fv_heads": torch.tensor(chosen),
            "task_vectors": torch.stack([theta[t] for t in tasks]),
            "function_vectors": torch.stack([fv[t] for t in tasks]),
        },
        figures=[
            st.sweep_curve(
                "by_layer",
                f"zero-shot accuracy on {data.task} (held-out) with each task's vector at a layer",
                x,
                {
                    "task vector patched (Hendel)": tv_test,
                    "function vector added (Todd)": fv_test,
                    "unsteered": zero_series,
                },
                x_label="layer (resid_post)",
                y_label="zero-shot accuracy",
                seed=s,
            ),
            Heatmap.per_head(
                "indirect_effect",
                "mean indirect effect of each head's mean output on shuffled-label prompts (Δ p(answer))",
                aie.tolist(),
                digits=3,
            ),
            Bars(
                "per_task",
                f"zero-shot accuracy per mapping: unsteered, its task vector at layer {tv_layer}, its FV at layer {fv_layer}",
                labels=[f"{t} before" for t in tasks] + [f"{t} TV" for t in tasks] + [f"{t} FV" for t in tasks],
                values=per_task_before + per_task_tv + per_task_fv,
                y_label="zero-shot accuracy (held-out)",
            ),
            Curve(
                "fit_layers",
                "layer choice on the fit half's zero-shot queries",
                x=x,
                series={"task vector": tv_fit, "function vector": fv_fit},
                x_label="layer (resid_post)",
                y_label="zero-shot accuracy (fit)",
            ),
        ],
        improve=st.improve(data.task, "zero_shot_accuracy", zero_before, fv_test[fv_layer], seed=s, goal="increase"),
        side_effects=st.side_effects(lm, data, fv_at(side_task, fv_layer), n=spec.n_side) if side_task else [],
        notes=[
            f"Reproduces Todd et al.'s function vectors (heads by mean indirect effect on shuffled-label prompts, "
            f"FV = Σ ā W_O over {chosen_labels}, added at layer {fv_layer}) and Hendel et al.'s task vectors "
            f"(last-position residual patched at layer {tv_layer}) on {len(tasks)} in-context mappings, "
            "with one demonstration count and the simplifications in the module docstring.",
            f"Side effects are of the {side_task!r} function vector (the largest zero-shot gain) added at layer "
            f"{fv_layer} on other tasks' prompts.",
        ],
    )
