"""Activation patching / causal tracing — Meng et al., *Locating and Editing Factual Associations in GPT*
(ROME, NeurIPS 2022), Section 2.

The paper runs a factual prompt three times: **clean**; **corrupted**, with
Gaussian noise (3× the embedding standard deviation) added to the subject's
token embeddings so the model no longer recalls the fact; and **corrupted with
one clean state restored** — the hidden state of one layer at one position.
The restored probability of the correct answer measures how much that state
carries the fact. Its finding: early/mid-layer FFN states at the *last subject
token* and late states at the *last token* matter (indirect effect), which
located the edit site for ROME.

What we do: for each prompt, restore every (layer, position) of the residual
stream (block output) and of the FFN output, and every attention head's output
at the last position, all in large batches (one forward for many restorations).
For tasks with a contrasting prompt of the same length (induction: the copied
token is changed) the corruption is that prompt instead of noise. We simplify:
a single noise sample per prompt, the embedding std taken over the whole
embedding matrix, no windows of several layers around each restored FFN state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.models.hooks import Cache, ForwardState, capture, edit, patch
from mi_catalog.models.loading import Batch, LoadedModel
from mi_catalog.models.prompts import TaskPrompt
from mi_catalog.models.weights import W_E
from reference_impls._common import (
    answer_id,
    prompts_for,
    save_tensors,
    subject_positions,
    token_labels,
    write_heatmap_svg,
)

IMPL = ImplInfo(
    id="activation-patching",
    title="Activation patching (causal tracing) over residual stream, FFNs and heads",
    objects=("residual-stream", "attention-head", "ffn"),
    methods=("causal-attribution",),
    steering=(),
    reproduces=("locating-and-editing-factual-associations-in-gpt",),
)

KINDS = ("resid", "mlp", "heads")
SITE_OF_KIND = {"resid": "resid_post", "mlp": "mlp_out", "heads": "head_out"}
CATEGORIES = ("subject", "subject_last", "other", "last")  # ROME's token groups, coarsened


@dataclass
class Spec:
    tasks: tuple[str, ...] = ("facts", "induction")
    n_prompts: int = 8
    noise_scale: float = 3.0  # noise std in units of the token-embedding std (ROME: 3)
    corruption: str = "auto"  # "noise" | "prompt" | "auto" (prompt when the task has a same-length contrast)
    kinds: tuple[str, ...] = KINDS
    batch_size: int = 128  # restorations per forward pass; 1 = the per-site loop
    seed: int = 0
    out_dir: Path | None = None


@dataclass
class PromptTrace:
    prompt: str
    tokens: list[str]
    corrupted_positions: tuple[int, ...]  # subject tokens (noise) or the positions where the contrast differs
    p_clean: float
    p_corrupt: float
    restored: dict[str, torch.Tensor]  # kind → [n_layers, pos] (resid, mlp) or [n_layers, n_heads] (heads)


@dataclass
class TaskTrace:
    traces: list[PromptTrace]
    curves: dict[str, torch.Tensor]  # resid/mlp → [n_layers, len(CATEGORIES)] mean restored prob per token group
    heads: torch.Tensor | None  # [n_layers, n_heads] mean restored prob, head restored at the last position
    p_clean: float
    p_corrupt: float
    skipped: int = 0  # prompts whose contrast had a different token length


@dataclass
class Result:
    metrics: dict[str, float]
    tasks: dict[str, TaskTrace]
    figures: list[Path] = field(default_factory=list)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# Corruption
# ---------------------------------------------------------------------------


@dataclass
class Corruption:
    batch: Batch  # the corrupted input, batch 1
    noise: torch.Tensor | None  # [1, pos, d_model] added to the token embeddings, or None
    positions: tuple[int, ...]  # corrupted positions

    @contextlib.contextmanager
    def applied(self, lm: LoadedModel) -> Iterator[None]:
        if self.noise is None:
            yield
            return
        noise = self.noise

        def add_noise(act: torch.Tensor, _state: ForwardState) -> torch.Tensor:  # act: [batch, pos, d_model]
            return act + noise.to(act.dtype)

        with edit(lm, [("embed", add_noise)]):
            yield


def noise_corruption(lm: LoadedModel, clean: Batch, positions: tuple[int, ...], scale: float, seed: int) -> Corruption:
    """ROME: x^0_i += ε_i, ε ~ N(0, (scale·σ)²) at the subject tokens, σ = std of the token embeddings."""
    sigma = float(W_E(lm).detach().float().std())
    generator = torch.Generator().manual_seed(seed)
    n_pos = clean.shape[1]
    noise = torch.zeros(1, n_pos, lm.d_model)  # [1, pos, d_model]
    offset = n_pos - int(clean.attention_mask[0].sum())  # left padding (none for a single prompt)
    for p in positions:
        noise[0, offset + p] = torch.randn(lm.d_model, generator=generator) * scale * sigma
    return Corruption(clean, noise.to(lm.device), positions)


def prompt_corruption(lm: LoadedModel, clean: Batch, p: TaskPrompt) -> Corruption | None:
    """The contrasting prompt, when it has the same token length; positions = where the tokens differ."""
    assert p.corrupt_prompt is not None
    corrupt = lm.encode([p.corrupt_prompt])
    if corrupt.shape != clean.shape:
        return None
    differ = (corrupt.input_ids[0] != clean.input_ids[0]).nonzero().flatten().tolist()
    return Corruption(corrupt, None, tuple(int(i) for i in differ))


def choose_corruption(lm: LoadedModel, clean: Batch, p: TaskPrompt, spec: Spec, seed: int) -> Corruption | None:
    use_prompt = spec.corruption == "prompt" or (
        spec.corruption == "auto" and p.corrupt_prompt is not None and p.task != "facts"
    )
    if use_prompt:
        if p.corrupt_prompt is None:
            raise ValueError(f"task {p.task!r} has no contrasting prompt; use corruption='noise'")
        return prompt_corruption(lm, clean, p)
    positions = subject_positions(lm, p)
    if not positions:
        raise ValueError(f"noise corruption needs subject positions; task {p.task!r} has none")
    return noise_corruption(lm, clean, positions, spec.noise_scale, seed)


# ---------------------------------------------------------------------------
# Restoration, batched
# ---------------------------------------------------------------------------


def restoration_rows(lm: LoadedModel, kinds: tuple[str, ...], n_pos: int) -> list[tuple[str, int, int]]:
    """Every (kind, layer, position-or-head) to restore."""
    rows: list[tuple[str, int, int]] = []
    for kind in kinds:
        width = lm.n_heads if kind == "heads" else n_pos
        rows.extend((kind, layer, i) for layer in range(lm.n_layers) for i in range(width))
    return rows


def answer_probs(logits: torch.Tensor, answer: int) -> torch.Tensor:
    """p(answer) at the last position: logits [batch, pos, d_vocab] → [batch]."""
    return logits[:, -1].float().softmax(dim=-1)[:, answer]


def restore_chunk(
    lm: LoadedModel, corruption: Corruption, clean: Cache, rows: list[tuple[str, int, int]], answer: int
) -> torch.Tensor:
    """One forward pass over len(rows) copies of the corrupted input, row r restoring its own clean state."""
    n, n_pos = len(rows), corruption.batch.shape[1]
    batch = Batch(corruption.batch.input_ids.expand(n, -1), corruption.batch.attention_mask.expand(n, -1))
    groups: dict[tuple[str, int], list[tuple[int, int]]] = {}  # (kind, layer) → [(row, position or head)]
    for r, (kind, layer, index) in enumerate(rows):
        groups.setdefault((kind, layer), []).append((r, index))
    masks: dict[tuple[str, int], torch.Tensor] = {}
    for (kind, layer), members in groups.items():
        row_idx, idx = torch.tensor(members, device=lm.device).T  # [k], [k]
        if kind == "heads":  # head `index` at the last position
            mask = torch.zeros(n, n_pos, lm.n_heads, 1, dtype=torch.bool, device=lm.device)
            mask[row_idx, n_pos - 1, idx] = True
        else:  # the whole state at position `index`
            mask = torch.zeros(n, n_pos, 1, dtype=torch.bool, device=lm.device)
            mask[row_idx, idx] = True
        masks[(kind, layer)] = mask
    with contextlib.ExitStack() as stack:
        stack.enter_context(corruption.applied(lm))
        for (kind, layer), mask in masks.items():
            where = f"{SITE_OF_KIND[kind]}.{layer}"
            stack.enter_context(patch(lm, where, clean[where], mask=mask))
        return answer_probs(lm.logits(batch), answer)  # [n]


def restore_all(
    lm: LoadedModel, corruption: Corruption, clean: Cache, answer: int, kinds: tuple[str, ...], batch_size: int
) -> dict[str, torch.Tensor]:
    """Restored p(answer) for every restoration, kind → [n_layers, pos or n_heads]."""
    n_pos = corruption.batch.shape[1]
    rows = restoration_rows(lm, kinds, n_pos)
    probs = torch.cat([restore_chunk(lm, corruption, clean, rows[i : i + batch_size], answer)
                       for i in range(0, len(rows), batch_size)])  # fmt: skip
    out, start = {}, 0
    for kind in kinds:
        width = lm.n_heads if kind == "heads" else n_pos
        out[kind] = probs[start : start + lm.n_layers * width].reshape(lm.n_layers, width).cpu()
        start += lm.n_layers * width
    return out


def trace_prompt(lm: LoadedModel, p: TaskPrompt, spec: Spec, seed: int) -> PromptTrace | None:
    clean_batch = lm.encode([p.prompt])
    answer = answer_id(lm, p.answer)
    sites = [f"{SITE_OF_KIND[k]}.{layer}" for k in spec.kinds for layer in range(lm.n_layers)]
    with capture(lm, sites) as clean:
        p_clean = float(answer_probs(lm.logits(clean_batch), answer)[0])
    corruption = choose_corruption(lm, clean_batch, p, spec, seed)
    if corruption is None:
        return None
    with corruption.applied(lm):
        p_corrupt = float(answer_probs(lm.logits(corruption.batch), answer)[0])
    restored = restore_all(lm, corruption, clean, answer, spec.kinds, spec.batch_size)
    tokens = token_labels(lm, clean_batch.input_ids[0])
    return PromptTrace(p.prompt, tokens, corruption.positions, p_clean, p_corrupt, restored)


# ---------------------------------------------------------------------------
# Aggregation over prompts
# ---------------------------------------------------------------------------


def category_curve(restored: torch.Tensor, corrupted: tuple[int, ...]) -> torch.Tensor:
    """[n_layers, pos] → [n_layers, len(CATEGORIES)]: mean restored prob over each token group."""
    n_pos = restored.shape[1]
    last = n_pos - 1
    subject = [p for p in corrupted if p != last]
    other = [p for p in range(n_pos) if p not in subject and p != last]
    groups = {"subject": subject, "subject_last": subject[-1:], "other": other, "last": [last]}
    cols = [restored[:, groups[c]].mean(dim=1) if groups[c] else torch.zeros(restored.shape[0]) for c in CATEGORIES]
    return torch.stack(cols, dim=1)


def aggregate(traces: list[PromptTrace], kinds: tuple[str, ...], skipped: int) -> TaskTrace:
    curves = {
        kind: torch.stack([category_curve(t.restored[kind], t.corrupted_positions) for t in traces]).mean(dim=0)
        for kind in kinds
        if kind != "heads"
    }
    heads = torch.stack([t.restored["heads"] for t in traces]).mean(dim=0) if "heads" in kinds else None
    p_clean = sum(t.p_clean for t in traces) / len(traces)
    p_corrupt = sum(t.p_corrupt for t in traces) / len(traces)
    return TaskTrace(traces, curves, heads, p_clean, p_corrupt, skipped)


def normalised_effect(restored: float, p_clean: float, p_corrupt: float) -> float:
    """(p_restored − p_corrupt) / (p_clean − p_corrupt): 1 = the state restores the whole effect."""
    gap = p_clean - p_corrupt
    return (restored - p_corrupt) / gap if abs(gap) > 1e-6 else 0.0


def task_metrics(task: str, trace: TaskTrace) -> dict[str, float]:
    m = {f"{task}.clean_prob": trace.p_clean, f"{task}.corrupt_prob": trace.p_corrupt,
         f"{task}.n_prompts": float(len(trace.traces)), f"{task}.skipped_prompts": float(trace.skipped)}  # fmt: skip
    for kind, curve in trace.curves.items():  # [n_layers, categories]
        for c, cat in enumerate(CATEGORIES):
            best = float(curve[:, c].max())
            m[f"{task}.{kind}.{cat}.max_restored"] = best
            m[f"{task}.{kind}.{cat}.argmax_layer"] = float(curve[:, c].argmax())
            m[f"{task}.{kind}.{cat}.max_nie"] = normalised_effect(best, trace.p_clean, trace.p_corrupt)
    if trace.heads is not None:
        flat = int(trace.heads.argmax())
        n_heads = trace.heads.shape[1]
        best = float(trace.heads.max())
        m[f"{task}.heads.top_layer"] = float(flat // n_heads)
        m[f"{task}.heads.top_head"] = float(flat % n_heads)
        m[f"{task}.heads.max_restored"] = best
        m[f"{task}.heads.max_nie"] = normalised_effect(best, trace.p_clean, trace.p_corrupt)
    return m


def task_figures(lm: LoadedModel, task: str, trace: TaskTrace, out_dir: Path) -> list[Path]:
    # The heatmap shows one prompt: the one whose corruption hurt most, so the picture has something to restore.
    first = max(trace.traces, key=lambda t: t.p_clean - t.p_corrupt)
    layers = [f"layer {layer}" for layer in range(lm.n_layers)]
    labels = [f"{tok}*" if i in first.corrupted_positions else tok for i, tok in enumerate(first.tokens)]
    figures = []
    for kind in ("resid", "mlp"):
        if kind in first.restored:
            figures.append(write_heatmap_svg(
                out_dir / f"activation_patching_{task}_{kind}.svg", first.restored[kind], layers, labels,
                title=f"{task}: p(answer) restoring {SITE_OF_KIND[kind]} (clean {first.p_clean:.2f}, "
                      f"corrupt {first.p_corrupt:.2f}; * = corrupted)",
            ))  # fmt: skip
    if trace.heads is not None:
        figures.append(write_heatmap_svg(
            out_dir / f"activation_patching_{task}_heads.svg", trace.heads, layers,
            [f"head {h}" for h in range(lm.n_heads)],
            title=f"{task}: mean p(answer) restoring one head's output at the last position",
        ))  # fmt: skip
    return figures


def run(lm: LoadedModel, spec: Spec) -> Result:
    unknown = set(spec.kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    result = Result(metrics={}, tasks={})
    for task in spec.tasks:
        prompts = prompts_for(lm, task, spec.n_prompts, spec.seed)
        traces, skipped = [], 0
        for i, p in enumerate(prompts):
            trace = trace_prompt(lm, p, spec, seed=spec.seed * 10_000 + i)
            if trace is None:
                skipped += 1
            else:
                traces.append(trace)
        if not traces:
            raise ValueError(f"{task}: no prompt could be corrupted (contrasts differ in token length)")
        trace_summary = aggregate(traces, spec.kinds, skipped)
        result.tasks[task] = trace_summary
        result.metrics.update(task_metrics(task, trace_summary))
        for kind, curve in trace_summary.curves.items():
            result.tensors[f"{task}.{kind}.curves"] = curve
        if trace_summary.heads is not None:
            result.tensors[f"{task}.heads"] = trace_summary.heads
        if spec.out_dir is not None:
            result.figures.extend(task_figures(lm, task, trace_summary, Path(spec.out_dir)))
    if spec.out_dir is not None and result.tensors:
        save_tensors(Path(spec.out_dir) / "activation_patching.safetensors", result.tensors)
    return result
