"""Localized fine-tuning — train only located units, compared with full fine-tuning at the same budget.

The method family (survey: *targeted optimization*): locate the few components that carry a behaviour, then
fine-tune only their parameters — pinpoint tuning of the located attention heads against sycophancy (Chen
et al. 2024, ``from-yes-men-to-truth-tellers``), "precise SFT" of the located heads and FFNs for arithmetic
(Zhang et al. 2024, ``interpreting-and-improving-large-language-models``), neuron-level fine-tuning (NeFT,
``let-s-focus-on-neuron``), sparse gradient-selected updates (SIFT, ``sparse-is-enough-in-fine-tuning-pre-trained``),
the located gender-bias components (Chintam et al. 2023). The papers' claim: the targeted update reaches
the goal about as well as full fine-tuning while touching a few percent of the parameters and changing
the rest of the model's behaviour less.

What we do: the target behaviour is a batch of counterfactual fact edits (subject → new object; the new
object is ``meta.target_new`` or the example's corrupt answer), the held-out facts of the run as in
:mod:`reference_impls.rome`. **Locate** on the *fit* split with attribution patching
(:func:`reference_impls.attribution_patching.attribute`, clean vs contrast prompt, gradient × activation
difference at the last token): the ``k`` FFN neurons (or heads) with the largest mean |attribution|.
**Train** with Adam on the edit prompts only (cross-entropy of the new object at the last token), on a
*copy* of the parameters through :func:`torch.func.functional_call` — one trainable δ per touched
parameter tensor, multiplied by a 0/1 mask of the located units' entries (a neuron: its input row(s) of
W_in/W_gate and bias, and its output row of W_out; a head: its slice of the output projection W_O^h) — then
express the result as a :class:`~mi_catalog.methods.steering.WeightEdit`. The same budget (steps, learning
rate, prompts) trains three arms: **located** units, the same number of **random** units (the control:
does locating matter?) and **full** fine-tuning of every parameter. Each arm is scored like CounterFact
(efficacy on the trained prompts, generalisation to untrained paraphrases, specificity on neighbouring
subjects, the subject's other relations), with its side effects (other tasks' accuracy, ``kl_neutral``)
and the number of parameters it changed.

What we simplify: none of the cited papers' own locators (path patching, DiffMask, magnitude or gradient
selection during training) or tasks (sycophancy, arithmetic, GLUE); a head's trainable parameters are only
its W_O slice (its Q/K/V slices sit in fused or grouped projections on some families). Not a reproduction of
one paper: ``reproduces`` is empty and the run says it applies the family.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import functional_call

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods import steering
from mi_catalog.methods.contract import Bars, Curve, Finding, Output, SideEffect, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import mean_ci
from mi_catalog.models.loading import Batch, LoadedModel
from mi_catalog.models.weights import layer_submodule
from mi_catalog.tasks import TaskExample
from reference_impls import rome
from reference_impls._common import head_label, neuron_label
from reference_impls._contrast import make_contrast
from reference_impls.attribution_patching import attribute

IMPL = ImplInfo(
    id="localized-finetuning",
    title="Localized fine-tuning: train only the located neurons or heads vs full fine-tuning (same budget)",
    objects=("neuron", "attention-head"),
    methods=("gradient-detection",),
    steering=("targeted-optimization",),
    reproduces=(),
    tasks=("facts",),
    needs=("gradients", "weight-edits", "training"),
    metrics=(
        "n_edits", "n_fit", "lft_units", "lft_params", "lft_params_share", "lft_steps",
        "efficacy", "efficacy_before", "generalization", "specificity", "relation_specificity", "kl_neutral",
        "full_efficacy", "full_generalization", "full_specificity", "full_relation_specificity", "full_kl_neutral",
        "random_efficacy", "random_generalization", "random_specificity", "train_loss_final", "full_train_loss_final",
        "side_accuracy_drop", "full_side_accuracy_drop",
    ),
)  # fmt: skip

ARMS = ("located", "random", "full")


@dataclass
class Spec:
    n: int = 32  # facts; the fit half locates the units, the held-out half are the edits trained in
    seed: int = 0
    units: str = "neurons"  # "neurons" (FFN neurons, mlp_act) or "heads" (attention heads, head_out)
    k: int = 32  # located units trained
    steps: int = 40  # Adam steps, the same for every arm
    lr: float = 3e-3
    random_control: bool = True  # also train k random units of the same kind
    n_neighbours: int = 4  # neighbouring subjects per edit (toy)
    side_n: int = 16  # prompts per other task for the side effects


# ---------------------------------------------------------------------------------------------------------
# Units → masks over parameter entries
# ---------------------------------------------------------------------------------------------------------


def _param_name(lm: LoadedModel, layer: int, path: str, attr: str = "weight") -> str | None:
    module = layer_submodule(lm, layer, path)
    tensor = getattr(module, attr, None)
    if not isinstance(tensor, torch.Tensor):
        return None
    for name, p in lm.model.named_parameters():
        if p is tensor:
            return name
    return None


def unit_masks(lm: LoadedModel, units: list[tuple[int, int]], kind: str) -> dict[str, torch.Tensor]:
    """0/1 masks (by parameter name) of the entries that belong to ``units`` ((layer, index) pairs).

    A neuron j: row j of W_in (and W_gate) in [in, out] orientation's column j, its input bias, and row j of
    W_out ([d_mlp, d_model]). A head h: rows h·d_head … of W_O ([n_heads·d_head, d_model]). Storage
    orientation handled: nn.Linear keeps [out, in], GPT-2's Conv1D [in, out].
    """
    params = dict(lm.model.named_parameters())
    masks: dict[str, torch.Tensor] = {}

    def mark(name: str | None, index: slice | int, in_dim: bool) -> None:
        """Mark entries along the parameter's *input* (in_dim) or *output* dimension."""
        if name is None:
            return
        p = params[name]
        mask = masks.setdefault(name, torch.zeros_like(p, dtype=torch.bool))
        if p.dim() == 1:
            mask[index] = True
            return
        # nn.Linear [out, in]: input dim = 1; Conv1D [in, out]: input dim = 0
        dim = (0 if lm.family.conv1d else 1) if in_dim else (1 if lm.family.conv1d else 0)
        if dim == 0:
            mask[index] = True
        else:
            mask[:, index] = True

    fam = lm.family
    for layer, index in units:
        if kind == "neurons":
            for path in (fam.mlp_in, fam.mlp_gate):
                if path is None:
                    continue
                mark(_param_name(lm, layer, path), index, in_dim=False)  # the neuron is an output of W_in
                mark(_param_name(lm, layer, path, "bias"), index, in_dim=False)
            mark(_param_name(lm, layer, fam.mlp_out_proj), index, in_dim=True)  # ... and an input of W_out
        else:
            span = slice(index * lm.d_head, (index + 1) * lm.d_head)
            mark(_param_name(lm, layer, fam.attn_out_proj), span, in_dim=True)
    return {name: m.float() for name, m in masks.items()}


def n_units(lm: LoadedModel, kind: str) -> int:
    per_layer = lm.n_heads if kind == "heads" else int(_d_mlp(lm))
    return lm.n_layers * per_layer


def _d_mlp(lm: LoadedModel) -> int:
    name = _param_name(lm, 0, lm.family.mlp_out_proj)
    assert name is not None
    w = dict(lm.model.named_parameters())[name]
    return int(w.shape[0] if lm.family.conv1d else w.shape[1])


def locate(lm: LoadedModel, fit: list[TaskExample], kind: str, seed: int) -> torch.Tensor:
    """Mean |attribution| per unit on the fit split → [n_layers, n_units_per_layer] (attribution patching at
    the last token; the task's contrast prompts, subject noise without them)."""
    pair = make_contrast(lm, fit, seed)
    attr = attribute(lm, pair, positions="last")
    scores = attr.heads if kind == "heads" else attr.neurons  # [b, L, units]
    return scores.abs().mean(0)


def top_units(scores: torch.Tensor, k: int) -> list[tuple[int, int]]:
    flat = torch.topk(scores.flatten(), k=min(k, scores.numel())).indices.tolist()
    width = scores.shape[1]
    return [divmod(int(i), width) for i in flat]


# ---------------------------------------------------------------------------------------------------------
# Training on a copy: functional_call with base + mask · δ
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Trained:
    edit: steering.WeightEdit
    params_trained: int  # parameter entries the arm may change (the mask's ones; every parameter for full)
    losses: list[float]


def finetune(lm: LoadedModel, batch: Batch, targets: torch.Tensor, masks: dict[str, torch.Tensor] | None,
             steps: int, lr: float) -> Trained:  # fmt: skip
    """Adam on δ for the masked parameter entries (``masks=None``: every parameter, full fine-tuning), with the
    model's own weights untouched: the forward runs on ``base + mask · δ`` through ``functional_call``."""
    base = {name: p.detach() for name, p in lm.model.named_parameters()}
    names = list(base) if masks is None else list(masks)
    deltas = {name: torch.zeros_like(base[name], dtype=torch.float32, requires_grad=True) for name in names}
    mask_of: Callable[[str], torch.Tensor | float] = (lambda _n: 1.0) if masks is None else (lambda n: masks[n])
    opt = torch.optim.Adam(list(deltas.values()), lr=lr)
    kwargs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "position_ids": batch.position_ids}
    losses: list[float] = []

    def current() -> dict[str, torch.Tensor]:
        return {n: (base[n].float() + mask_of(n) * deltas[n]).to(base[n].dtype) for n in names}

    for _ in range(steps):
        with torch.enable_grad():
            logits = functional_call(lm.model, current(), args=(), kwargs=kwargs).logits[:, -1].float()
            loss = torch.nn.functional.cross_entropy(logits, targets)
            grads = torch.autograd.grad(loss, list(deltas.values()), allow_unused=True)
        losses.append(float(loss.detach()))
        for delta, grad in zip(deltas.values(), grads, strict=True):
            delta.grad = torch.zeros_like(delta) if grad is None else grad
        opt.step()
    with torch.no_grad():
        final = current()
    trainable = total_params(lm) if masks is None else int(sum(float(m.sum()) for m in masks.values()))
    return Trained(steering.WeightEdit({n: t.detach() for n, t in final.items()}), trainable, losses)


def score_all(lm: LoadedModel, cases: list[rome.Case], intervention: steering.Intervention | None,
              references: list[torch.Tensor]) -> list[rome.Scores]:  # fmt: skip
    """:func:`reference_impls.rome.score` for every case under one intervention, in shared forward passes."""
    prompts = [rome.case_prompts(c) for c in cases]
    logits = steering.next_token_logits(lm, [p for group in prompts for p in group], intervention).cpu()
    out, start = [], 0
    for case, group, ref in zip(cases, prompts, references, strict=True):
        out.append(rome.scores_from_logits(lm, case, logits[start : start + len(group)], ref))
        start += len(group)
    return out


def total_params(lm: LoadedModel) -> int:
    return sum(p.numel() for p in lm.model.parameters())


# ---------------------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ArmResult:
    trained: Trained
    scores: list[rome.Scores]
    side: list[SideEffect]


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    if spec.units not in ("neurons", "heads"):
        raise ValueError(f"units must be 'neurons' or 'heads', not {spec.units!r}")
    gen = random.Random(spec.seed)
    fit, test = data.fit_test()
    if not fit or not test:
        fit = test = data.examples
    data.progress("localized fine-tuning: locate", 0, 1)
    scores = locate(lm, fit, spec.units, spec.seed)  # [L, units]
    located = top_units(scores, spec.k)
    width = scores.shape[1]
    pool = [(layer, i) for layer in range(lm.n_layers) for i in range(width)]
    randoms = random.Random(spec.seed + 1).sample(pool, len(located))
    rome_spec = rome.Spec(seed=spec.seed, n_neighbours=spec.n_neighbours)
    cases = [c for c in (rome.make_case(lm, ex, data, rome_spec, gen) for ex in test) if c is not None]
    metrics: dict[str, int | float] = {"n_edits": len(cases), "n_fit": len(fit), "lft_units": len(located),
                                       "lft_steps": spec.steps}  # fmt: skip
    if not cases:
        return Output(metrics=metrics, notes=["No example could be edited (no subject, or no distinct new object)."])
    batch = lm.encode([c.ex.prompt for c in cases])
    targets = torch.tensor([lm.token_id(c.target) for c in cases], device=lm.device)
    references = [rome.relation_reference(lm, c) for c in cases]
    before = score_all(lm, cases, None, references)
    arms: dict[str, ArmResult] = {}
    chosen = {"located": unit_masks(lm, located, spec.units), "full": None}
    if spec.random_control:
        chosen["random"] = unit_masks(lm, randoms, spec.units)
    for i, (arm, masks) in enumerate(chosen.items()):
        data.progress("localized fine-tuning: train", i, len(chosen))
        trained = finetune(lm, batch, targets, masks, spec.steps, spec.lr)
        after = score_all(lm, cases, trained.edit, references)
        side = steering.side_effects(lm, data, trained.edit, n=spec.side_n) if arm != "random" else []
        arms[arm] = ArmResult(trained, after, side)
    data.progress("localized fine-tuning: train", len(chosen), len(chosen))

    intervals: dict[str, tuple[float, float]] = {}

    def headline(name: str, values: list[float | None]) -> None:
        kept = [v for v in values if v is not None]
        if kept:
            metrics[name], intervals[name] = mean_ci(torch.tensor(kept), seed=spec.seed)

    prefix = {"located": "", "full": "full_", "random": "random_"}
    for arm, result in arms.items():
        p = prefix[arm]
        headline(f"{p}efficacy", [s.efficacy for s in result.scores])
        headline(f"{p}generalization", [s.generalization for s in result.scores])
        headline(f"{p}specificity", [s.specificity for s in result.scores])
        if arm != "random":
            headline(f"{p}relation_specificity", [s.relations for s in result.scores])
            metrics.update({f"{p}kl_neutral": round(s.after, 6) for s in result.side if s.name == "kl_neutral"})
            drops = [s.before - s.after for s in result.side if s.is_task]
            if drops:
                metrics[f"{p}side_accuracy_drop"] = round(sum(drops) / len(drops), 6)
    headline("efficacy_before", [s.efficacy for s in before])
    metrics["lft_params"] = arms["located"].trained.params_trained
    metrics["lft_params_share"] = round(arms["located"].trained.params_trained / total_params(lm), 6)
    metrics["train_loss_final"] = round(arms["located"].trained.losses[-1], 6)
    metrics["full_train_loss_final"] = round(arms["full"].trained.losses[-1], 6)

    obj = "attention-head" if spec.units == "heads" else "neuron"
    label = head_label if spec.units == "heads" else neuron_label
    findings = [Finding(obj, layer, idx, float(scores[layer, idx]), label(layer, idx)) for layer, idx in located]
    full_trained = arms["full"].trained.params_trained
    compare = [n for n in ("efficacy", "generalization", "specificity") if n in metrics]
    bars = Bars(
        "arms", f"{data.task}: {len(cases)} edits trained in, {spec.steps} Adam steps per arm",
        labels=[f"{arm} {n}" for arm in arms for n in compare],
        values=[float(metrics.get(f"{prefix[arm]}{n}", float("nan"))) for arm in arms for n in compare],
        intervals=[intervals.get(f"{prefix[arm]}{n}", (float("nan"), float("nan"))) for arm in arms for n in compare],
        y_label="share of prompts",
    )  # fmt: skip
    curve = Curve("loss", "training loss per step (cross-entropy of the new object)",
                  x=[float(s) for s in range(1, spec.steps + 1)],
                  series={arm: r.trained.losses for arm, r in arms.items()}, x_label="step", y_label="loss")  # fmt: skip
    unit_word = "heads" if spec.units == "heads" else "FFN neurons"
    return Output(
        metrics=metrics,
        intervals=intervals,
        findings=ranked(findings),
        tensors={"unit_scores": scores},
        figures=[bars, curve],
        improve=steering.improve(data.task, "efficacy", [s.efficacy for s in before],
                                 [s.efficacy for s in arms["located"].scores], seed=spec.seed,
                                 goal="increase"),
        side_effects=arms["located"].side,
        notes=[f"Applies the localized fine-tuning family (pinpoint tuning, precise SFT, NeFT): the {len(located)} "
               f"{unit_word} with the largest attribution on the fit split are trained "
               f"({metrics['lft_params']} parameters, {100 * metrics['lft_params_share']:.1f} % of the model) against "
               f"full fine-tuning ({full_trained} parameters) and {len(located)} random {unit_word}, same steps and "
               "learning rate; not a reproduction of one paper (their locators and tasks differ).",
               "improve and side_effects are the located arm's; the full arm's are the full_* metrics."],
    )  # fmt: skip
