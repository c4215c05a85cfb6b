"""ShortGPT — Men et al. 2025, *ShortGPT: Layers in Large Language Models are More Redundant Than You Expect*
(Findings of ACL).

The paper measures each block's **Block Influence**, BI_l = 1 − E_{x,t}[cos(h_{l,t}, h_{l+1,t})] — one minus the
mean cosine similarity between the hidden state entering block l and the one leaving it, over the tokens of a
calibration set (PG19) — and deletes the blocks with the lowest BI outright (no retraining), so the model gets
smaller and faster. Removing about a quarter of LLaMA-2's layers keeps most of its benchmark accuracy and beats
earlier structured-pruning methods.

What we do: the calibration set is the run's prompts plus, when the model has other tasks, the same number of
prompts from each of them (the toy has no generic corpus); BI_l from ``resid_pre.l`` (block input) and
``resid_post.l`` (block output) at every real token, per prompt, mean with a bootstrap interval. Blocks are removed
in order of increasing BI. Removal as an intervention (the steering artifact, :class:`BlockSkip`): block l's
output is replaced by its input (``resid_post.l`` ← ``resid_pre.l``), which is exactly deleting the block; for the
speed figure the blocks are *actually* skipped — :func:`skipped_blocks` swaps each removed block for an identity
module inside a context manager that puts the original back (a test checks both give the same logits). Sweep:
accuracy on every task with 0 … L−1 blocks removed. Improve (efficiency): tokens/s with ``Spec.remove`` blocks
removed ÷ tokens/s with all blocks, per timing repeat (base and pruned forward passes alternate), mean with a
bootstrap interval over repeats; side effects = accuracy on every task (the run's own first) and the KL on neutral
prompts. ``timing=False`` replaces the measurement by the compute-proportional estimate L / (L − removed) (the
registry's determinism test runs so: wall-clock times are never identical twice).

Simplified: task prompts instead of PG19; next-token accuracy instead of MMLU-style benchmarks; no combination
with quantization; the embedding and unembedding cost is not removed, so a small model gains less than
L / (L − removed).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods import steering
from mi_catalog.methods.contract import Bars, Finding, Output, SideEffect, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import mean_ci
from mi_catalog.models.hooks import ForwardState, capture, edit
from mi_catalog.models.loading import Batch, LoadedModel
from mi_catalog.models.weights import get_module
from mi_catalog.tasks import TaskExample

IMPL = ImplInfo(
    id="shortgpt",
    title="ShortGPT: Block Influence (1 − cos of block input and output) per layer; remove the least influential blocks",
    objects=("residual-stream",),
    methods=("magnitude-analysis",),
    steering=("amplitude-manipulation",),
    reproduces=("shortgpt",),
    tasks=("facts", "induction", "refusal", "sentiment", "language", "toxicity", "icl"),
    needs=(),
    metrics=(
        "n_prompts",
        "bi_min",
        "bi_min_layer",
        "bi_max",
        "bi_max_layer",
        "blocks_removed",
        "tokens_per_second_full",
        "tokens_per_second_pruned",
        "speedup",
        "accuracy_full",
        "accuracy_pruned",
        "mean_accuracy_full",
        "mean_accuracy_pruned",
    ),
)


@dataclass
class Spec:
    n: int = 32
    seed: int = 0
    remove: int = 1  # blocks removed for the Improve stage (lowest BI first)
    timing: bool = True  # measure tokens/s (wall clock); False: the compute-proportional estimate (deterministic)
    repeats: int = 15  # timed forward passes per model (base and pruned alternate)
    time_batch: int = 64  # prompts per timed forward pass
    n_eval: int = 32  # prompts per task for the accuracy sweep and the side effects


# ---------------------------------------------------------------------------------------------------------
# Removing blocks: as an intervention (hooks) and for real (identity modules)
# ---------------------------------------------------------------------------------------------------------


@dataclass
class BlockSkip:
    """Delete decoder blocks: each listed block's output is replaced by its input (resid_post.l ← resid_pre.l)."""

    layers: tuple[int, ...] = field(default_factory=tuple)

    def apply(self, lm: LoadedModel) -> contextlib.AbstractContextManager[Any]:
        return _skip_hooks(lm, self.layers)


@contextlib.contextmanager
def _skip_hooks(lm: LoadedModel, layers: Sequence[int]) -> Iterator[None]:
    inputs: dict[int, torch.Tensor] = {}

    def remember(layer: int) -> Any:
        def fn(act: torch.Tensor, _state: ForwardState) -> None:
            inputs[layer] = act
            return None

        return fn

    def replace(layer: int) -> Any:
        def fn(_act: torch.Tensor, _state: ForwardState) -> torch.Tensor:
            return inputs.pop(layer)

        return fn

    edits = [(f"resid_pre.{layer}", remember(layer)) for layer in sorted(set(layers))]
    edits += [(f"resid_post.{layer}", replace(layer)) for layer in sorted(set(layers))]
    with edit(lm, edits):
        yield


class _Identity(nn.Module):
    """Stands in for a removed block: returns the hidden states it is given, computing nothing. Attributes the
    model's loop reads from a block (e.g. ``attention_type``) are read from the original."""

    def __init__(self, original: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "_original", original)  # not a submodule: parameters stay out of this module

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return hidden_states

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(object.__getattribute__(self, "_original"), name)


@contextlib.contextmanager
def skipped_blocks(lm: LoadedModel, layers: Sequence[int]) -> Iterator[None]:
    """Really remove blocks for the length of the ``with``: swap them for identity modules, put them back after."""
    blocks = get_module(lm.model, lm.family.layers)
    assert isinstance(blocks, nn.ModuleList)
    saved: dict[int, nn.Module] = {}
    try:
        for layer in sorted(set(layers)):
            saved[layer] = blocks[layer]
            blocks[layer] = _Identity(saved[layer])
        yield
    finally:
        for layer, module in saved.items():
            blocks[layer] = module


# ---------------------------------------------------------------------------------------------------------
# Block Influence, accuracy, speed
# ---------------------------------------------------------------------------------------------------------


def block_influence(lm: LoadedModel, prompts: Sequence[str]) -> torch.Tensor:
    """BI per prompt and block: 1 − mean over the prompt's real tokens of cos(resid_pre.l, resid_post.l) → [n, L]."""
    rows = []
    sites = [f"{name}.{layer}" for layer in range(lm.n_layers) for name in ("resid_pre", "resid_post")]
    with torch.no_grad():
        for start in range(0, len(prompts), steering.BATCH):
            batch = lm.encode(list(prompts[start : start + steering.BATCH]))
            with capture(lm, sites) as cache:
                lm.logits(batch)
            real = batch.attention_mask.float().cpu()  # [b, pos]
            per_layer = []
            for layer in range(lm.n_layers):
                cos = torch.cosine_similarity(
                    cache[f"resid_pre.{layer}"].float(), cache[f"resid_post.{layer}"].float(), dim=-1
                )
                per_layer.append(1.0 - (cos.cpu() * real).sum(-1) / real.sum(-1).clamp(min=1))
            rows.append(torch.stack(per_layer, dim=1))
    return torch.cat(rows)


def tokens_per_second(
    lm: LoadedModel, batch: Batch, layers: Sequence[int], repeats: int
) -> tuple[list[float], list[float]]:
    """Wall-clock tokens/s of the full and the pruned model, ``repeats`` alternating forward passes each."""
    tokens = float(batch.attention_mask.sum())
    full: list[float] = []
    pruned: list[float] = []
    with torch.no_grad():
        lm.logits(batch)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            lm.logits(batch)
            full.append(tokens / max(time.perf_counter() - start, 1e-9))
            with skipped_blocks(lm, layers):
                start = time.perf_counter()
                lm.logits(batch)
                pruned.append(tokens / max(time.perf_counter() - start, 1e-9))
    return full, pruned


def _calibration(data: RunData, n: int) -> list[str]:
    prompts = [ex.prompt for ex in data.examples]
    if data.source is not None:
        for task in data.source.tasks():
            if task != data.task:
                prompts += [ex.prompt for ex in data.other(task, n)]
    return prompts


def _eval_sets(data: RunData, n: int) -> dict[str, list[TaskExample]]:
    """The run's own task first (its examples), then every other task of the source that has answers."""
    sets = {data.task: [ex for ex in data.examples if ex.answer][:n]}
    if data.source is not None:
        for task in data.source.tasks():
            if task != data.task:
                chosen = [ex for ex in data.other(task, n) if ex.answer]
                if chosen:
                    sets[task] = chosen
    return {task: exs for task, exs in sets.items() if exs}


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    L, seed = lm.n_layers, spec.seed
    remove = max(0, min(spec.remove, L - 1))
    data.progress("block influence", 0, 3)
    calibration = _calibration(data, spec.n)
    bi = block_influence(lm, calibration)  # [n, L]
    bi_mean = bi.mean(0)
    order = [int(i) for i in torch.argsort(bi_mean, stable=True)]  # lowest influence first: removed first
    findings = [
        Finding(
            "residual-stream",
            layer,
            None,
            float(bi_mean[layer]),
            f"block {layer}: BI {float(bi_mean[layer]):.3f}",
            mean_ci(bi[:, layer], seed=seed)[1],
        )
        for layer in range(L)
    ]

    # Sweep: accuracy on every task with the k least influential blocks removed.
    data.progress("block influence", 1, 3)
    sets = _eval_sets(data, spec.n_eval)
    ks = list(range(L))
    acc: dict[str, list[torch.Tensor]] = {task: [] for task in sets}
    for k in ks:
        skip = BlockSkip(tuple(order[:k]))
        for task, exs in sets.items():
            acc[task].append(steering.correct(lm, exs, skip))
    mean_by_k = [float(torch.stack([acc[t][k].mean() for t in sets]).mean()) for k in ks]

    # Improve: speed with `remove` blocks actually skipped; side effects: accuracy per task, KL on neutral text.
    data.progress("block influence", 2, 3)
    removed = tuple(order[:remove])
    artifact = BlockSkip(removed)
    if spec.timing and remove > 0:
        timed = lm.encode(calibration[: spec.time_batch])
        full, pruned = tokens_per_second(lm, timed, removed, max(2, spec.repeats))
        speedups = torch.tensor([p / f for f, p in zip(full, pruned, strict=True)])
        metric_name = (
            f"speedup: tokens/s with {remove} of {L} blocks removed ÷ with all (wall clock, {len(full)} repeats)"
        )
    else:
        full, pruned = [], []
        speedups = torch.tensor([L / (L - remove)])
        metric_name = f"estimated speedup with {remove} of {L} blocks removed (compute ∝ blocks kept; timing off)"
    own = data.task
    costs = [SideEffect(task, float(acc[task][0].mean()), float(acc[task][remove].mean())) for task in sets]
    neutral = steering.neutral_prompts(data, spec.n_eval)
    if neutral and remove > 0:
        kl = steering.kl_per_prompt(lm, neutral, artifact)
        costs.append(SideEffect("kl_neutral", 0.0, float(kl.mean()), is_task=False))
    data.progress("block influence", 3, 3)

    metrics: dict[str, int | float] = {
        "n_prompts": len(calibration),
        "bi_min": round(float(bi_mean.min()), 6),
        "bi_min_layer": int(bi_mean.argmin()),
        "bi_max": round(float(bi_mean.max()), 6),
        "bi_max_layer": int(bi_mean.argmax()),
        "blocks_removed": remove,
        "mean_accuracy_full": round(mean_by_k[0], 6),
        "mean_accuracy_pruned": round(mean_by_k[remove], 6),
    }
    intervals: dict[str, tuple[float, float]] = {}
    metrics["speedup"], intervals["speedup"] = mean_ci(speedups, seed=seed)
    if full:
        metrics["tokens_per_second_full"], intervals["tokens_per_second_full"] = mean_ci(torch.tensor(full), seed=seed)
        metrics["tokens_per_second_pruned"], intervals["tokens_per_second_pruned"] = mean_ci(
            torch.tensor(pruned), seed=seed
        )
    if own in acc:
        metrics["accuracy_full"], intervals["accuracy_full"] = mean_ci(acc[own][0], seed=seed)
        metrics["accuracy_pruned"], intervals["accuracy_pruned"] = mean_ci(acc[own][remove], seed=seed)
    figures: list[Any] = [
        Bars(
            "block_influence",
            f"Block Influence per layer (1 − cos(block input, output)), {len(calibration)} prompts",
            labels=[f"L{layer}" for layer in range(L)],
            values=bi_mean.tolist(),
            intervals=[mean_ci(bi[:, layer], seed=seed)[1] for layer in range(L)],
            y_label="BI",
        ),
        steering.sweep_curve(
            "removal_sweep",
            "accuracy per task with the k lowest-BI blocks removed",
            ks,
            acc,
            x_label="blocks removed (lowest BI first)",
            y_label="accuracy",
            seed=seed,
        ),
    ]
    speed_text = (
        f"{metrics['speedup']:.2f}× ({intervals['speedup'][0]:.2f}–{intervals['speedup'][1]:.2f}) measured"
        if full
        else f"{metrics['speedup']:.2f}× estimated (timing off)"
    )
    notes = [
        f"Removal order (lowest BI first): {', '.join(f'L{layer}' for layer in order)}. Removing {remove} "
        f"({', '.join(f'L{layer}' for layer in removed) or 'none'}) gives {speed_text}; mean accuracy over "
        f"{len(sets)} tasks {mean_by_k[0]:.2f} → {mean_by_k[remove]:.2f}.",
        "Reproduces ShortGPT's Block Influence and lowest-BI layer removal on task prompts (not PG19); accuracy is "
        "the next token, not the paper's benchmarks.",
    ]
    if not math.isfinite(metrics["speedup"]):
        notes.append("The speed measurement failed (no finite timings).")
    return Output(
        metrics=metrics,
        intervals=intervals,
        findings=ranked(findings),
        tensors={"block_influence": bi, "removal_order": torch.tensor(order, dtype=torch.float32)},
        figures=figures,
        improve=steering.improve(own, metric_name, torch.ones_like(speedups), speedups, seed=seed, goal="increase"),
        side_effects=costs,
        notes=notes,
    )
