"""Activation patching / causal tracing — Meng et al., *Locating and Editing Factual Associations in GPT*
(ROME, NeurIPS 2022), Section 2; head-set restoration after Wang et al. 2023 (path/multi-head patching).

The paper runs a factual prompt three times: **clean**; **corrupted**, with Gaussian noise ε ~ N(0, ν²)
added to the subject's token embeddings, ν = 3 × the standard deviation of subject embeddings, so the
model no longer recalls the fact; and **corrupted with one clean state restored** — the hidden state of one
layer at one token. It averages 10 noise samples per prompt. The restored probability of the answer
measures how much that state carries the fact: early/mid FFN states at the *last subject token* and late
states at the *last token* matter, which located ROME's edit site.

What we do: per prompt, ``noise_samples`` noise draws (σ from the embeddings of the data's subject tokens,
as ROME's ``collect_embedding_std``); restore the residual stream (block output) and the FFN output at
each layer and position, and each attention head's output at all positions; then restore the top-k heads
*together* — redundant heads (the toy's four induction heads) each restore little alone. For tasks with a
contrast prompt of the same token length (induction, sentiment, …) the corruption is that prompt (one
"sample"). Effects are normalised, (p_restored − p_corrupt)/(p_clean − p_corrupt), per prompt; headline
numbers are means with 95 % bootstrap intervals over prompts. Simplified relative to ROME: no windows of
several layers around a restored FFN state; token groups coarsened to subject-first/subject-last/other/last.

Cost: a restoration at position p leaves the corrupted run unchanged before p, so on deep models
(``prefix_cache`` auto: beyond 12 layers) the corrupted prefix's KV cache is computed once per noise sample
and only positions p.. are recomputed — one token for the many last-position restorations (exact, tested).
On deep models ``positions`` auto restores the residual/FFN only at the key positions (last subject token,
last token: what the headline metrics read) instead of every position; the toy restores every position.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods.contract import Bars, Finding, Heatmap, Output, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import answer_prob, mean_ci, normalised_effect
from mi_catalog.models.hooks import Cache, ForwardState, capture, edit, patch
from mi_catalog.models.loading import Batch, LoadedModel
from mi_catalog.models.weights import W_E
from mi_catalog.tasks import TaskExample, position_group
from reference_impls._common import head_label, subject_positions, token_labels

IMPL = ImplInfo(
    id="activation-patching",
    title="Activation patching (causal tracing) over residual stream, FFNs, heads and head sets",
    objects=("residual-stream", "attention-head", "ffn"),
    methods=("causal-attribution",),
    steering=(),
    reproduces=("locating-and-editing-factual-associations-in-gpt",),
    tasks=("facts", "induction", "sentiment", "refusal", "toxicity", "language", "ioi"),
    needs=(),
    metrics=(
        "n_prompts", "n_skipped", "clean_prob", "corrupt_prob", "noise_samples", "noise_sigma",
        "resid_subject_last_peak_effect", "resid_subject_last_peak_layer", "resid_last_peak_effect",
        "resid_last_peak_layer", "mlp_subject_last_peak_effect", "mlp_subject_last_peak_layer",
        "head_top_effect", "head_set_effect", "head_set_size",
    ),
)

SITE_OF_KIND = {"resid": "resid_post", "mlp": "mlp_out", "heads": "head_out"}
GROUPS = ("subject_first", "subject_last", "other", "last")


@dataclass
class Spec:
    n: int = 8
    seed: int = 0
    noise_samples: int | None = None  # ROME: 10; None = auto: 10 up to 12 layers, 3 beyond (cost, see the notes)
    noise_scale: float = 3.0  # ν = noise_scale × std of subject embeddings (ROME: 3)
    corruption: str = "auto"  # "noise" | "prompt" | "auto" (noise for facts, the contrast prompt otherwise)
    head_set: int = 4  # restore the top-k heads together
    head_positions: str = "last"  # restore head outputs at the "last" position (where the answer is read) or "all"
    batch_size: int = 256  # restorations per forward pass
    positions: str = "auto"  # resid/FFN restored at "all" positions, or only the "key" ones (last subject token,
    # last token: what the headline metrics read); "auto" = all up to 12 layers, key beyond (real models)
    prefix_cache: bool | None = None  # reuse the corrupted run's KV cache for the positions before a restoration;
    # None = auto: on beyond 12 layers (on tiny models the cache copies cost more than the forwards they save)


# ---------------------------------------------------------------------------
# Corruption
# ---------------------------------------------------------------------------


@dataclass
class Corruption:
    """S corrupted copies of one prompt: the contrast prompt (S = 1) or the clean prompt with S noise draws."""

    batch: Batch  # batch 1
    noise: torch.Tensor | None  # [S, pos, d_model] added to the token embeddings, or None
    positions: tuple[int, ...]  # corrupted positions (absolute, in the batch)

    @property
    def samples(self) -> int:
        return 1 if self.noise is None else int(self.noise.shape[0])

    @contextlib.contextmanager
    def applied(self, lm: LoadedModel, sample_of_row: torch.Tensor | None = None, start: int = 0,
                stop: int | None = None) -> Iterator[None]:  # fmt: skip
        """Add the noise; row r of the running batch gets sample ``sample_of_row[r]`` (default: row r).
        A run over positions ``start:stop`` only (a prefix, or a suffix after a cached prefix) gets that slice."""
        if self.noise is None:
            yield
            return
        noise = self.noise[:, start:stop]

        def add_noise(act: torch.Tensor, _state: ForwardState) -> torch.Tensor:  # [rows, pos, d_model]
            rows = sample_of_row if sample_of_row is not None else torch.arange(act.shape[0])
            return act + noise[rows.to(noise.device)].to(act.dtype)

        with edit(lm, [("embed", add_noise)]):
            yield


DEEP_LAYERS = 12  # beyond this depth the "auto" settings trade the full protocol for affordable cost


def is_deep(lm: LoadedModel) -> bool:
    """Whether the auto settings (prefix cache, key positions, 3 noise samples) apply to this model."""
    return lm.n_layers > DEEP_LAYERS


def noise_samples(lm: LoadedModel, spec: Spec) -> int:
    """ROME's 10 draws per prompt on small models; 3 on deep ones, where each draw costs a full restoration grid."""
    if spec.noise_samples is not None:
        return spec.noise_samples
    return 3 if is_deep(lm) else 10


def subject_sigma(lm: LoadedModel, examples: list[TaskExample]) -> float:
    """Std of the token embeddings of every subject token in the data (ROME's collect_embedding_std)."""
    ids: list[int] = []
    for ex in examples:
        positions = subject_positions(lm, ex)
        if positions:
            tokens = lm.encode([ex.prompt]).input_ids[0]
            ids.extend(int(tokens[p]) for p in positions)
    weight = W_E(lm).detach().float()
    rows = weight[torch.tensor(sorted(set(ids)))] if ids else weight
    return float(rows.std())


def make_corruption(lm: LoadedModel, ex: TaskExample, spec: Spec, sigma: float, seed: int) -> Corruption | None:
    clean = lm.encode([ex.prompt])
    use_prompt = spec.corruption == "prompt" or (spec.corruption == "auto" and ex.corrupt_prompt is not None
                                                 and ex.task != "facts")  # fmt: skip
    if use_prompt:
        if ex.corrupt_prompt is None:
            raise ValueError(f"task {ex.task!r} has no contrast prompt; use corruption='noise'")
        corrupt = lm.encode([ex.corrupt_prompt])
        if corrupt.shape != clean.shape:
            return None  # a contrast of another token length cannot be patched position by position
        differ = (corrupt.input_ids[0] != clean.input_ids[0]).nonzero().flatten().tolist()
        return Corruption(corrupt, None, tuple(int(i) for i in differ))
    positions = subject_positions(lm, ex)
    if not positions:
        raise ValueError(f"noise corruption needs a subject; task {ex.task!r} example has none")
    generator = torch.Generator().manual_seed(seed)
    n_pos, samples = clean.shape[1], noise_samples(lm, spec)
    noise = torch.zeros(samples, n_pos, lm.d_model)
    for p in positions:
        noise[:, p] = torch.randn(samples, lm.d_model, generator=generator) * spec.noise_scale * sigma
    return Corruption(clean, noise.to(lm.device), tuple(positions))


# ---------------------------------------------------------------------------
# Restoration, batched: a restoration is a set of (site, position-or-heads) restored together
# ---------------------------------------------------------------------------

Restoration = tuple[tuple[str, str, tuple[int, ...]], ...]  # ((site key, "pos"|"heads", indices), ...)


def restore(lm: LoadedModel, corruption: Corruption, clean: Cache, restorations: list[Restoration],
            answer: int, batch_size: int, head_positions: str = "last", prefix_cache: bool | None = True) -> torch.Tensor:  # fmt: skip
    """p(answer) for each restoration, averaged over the corruption's noise samples → [len(restorations)].

    Why a prefix cache: a restoration at position p leaves every earlier position exactly as in the corrupted
    run (attention is causal), so the corrupted run's keys/values for positions < p are computed once per noise
    sample and only positions p.. are recomputed — one token instead of the whole prompt for the many
    restorations at the last position (heads). Exact up to float rounding (tested against full forwards).
    """
    samples, n_pos = corruption.samples, corruption.batch.shape[1]
    restore_all = head_positions == "all"
    if prefix_cache is None:  # auto: on deep models; on tiny ones the cache copies cost more than they save
        prefix_cache = is_deep(lm)
    starts = [_first_position(r, n_pos, restore_all) if prefix_cache else 0 for r in restorations]
    probs = torch.zeros(len(restorations), samples)
    for start in sorted(set(starts)):
        members = [i for i, s in enumerate(starts) if s == start]
        prefix = _corrupted_prefix(lm, corruption, start) if start > 0 else None
        rows = [(r, s) for r in members for s in range(samples)]
        for first in range(0, len(rows), batch_size):
            chunk = rows[first : first + batch_size]
            p = _restore_chunk(lm, corruption, clean, restorations, chunk, answer, restore_all, start, prefix)
            for (r, s), value in zip(chunk, p.tolist(), strict=True):
                probs[r, s] = value
    return probs.mean(dim=1)


def _first_position(restoration: Restoration, n_pos: int, restore_all_heads: bool) -> int:
    """The earliest position a restoration touches (the corrupted run is unchanged before it)."""
    firsts = [0 if restore_all_heads else n_pos - 1 if how == "heads" else min(indices)
              for _key, how, indices in restoration]  # fmt: skip
    return min(firsts) if firsts else n_pos - 1  # () = the corrupted run itself: only its last position is read


def _corrupted_prefix(lm: LoadedModel, corruption: Corruption, start: int) -> Any:
    """The corrupted run's KV cache over positions [0, start), one row per noise sample."""
    samples = corruption.samples
    ids = corruption.batch.input_ids[:, :start].expand(samples, -1)
    mask = corruption.batch.attention_mask[:, :start].expand(samples, -1)
    with torch.no_grad(), corruption.applied(lm, torch.arange(samples), 0, start):
        out = lm.model(input_ids=ids, attention_mask=mask, position_ids=Batch(ids, mask).position_ids, use_cache=True)
    return out.past_key_values


def _restore_chunk(lm: LoadedModel, corruption: Corruption, clean: Cache, restorations: list[Restoration],
                   chunk: list[tuple[int, int]], answer: int, restore_all_positions: bool, start: int = 0,
                   prefix: Any = None) -> torch.Tensor:  # fmt: skip
    n, n_pos = len(chunk), corruption.batch.shape[1]
    full = Batch(corruption.batch.input_ids.expand(n, -1), corruption.batch.attention_mask.expand(n, -1))
    width = n_pos - start  # the positions this forward computes
    masks: dict[str, torch.Tensor] = {}
    for row, (r, _sample) in enumerate(chunk):
        for key, how, indices in restorations[r]:
            if how == "heads":
                mask = masks.setdefault(key, torch.zeros(n, width, lm.n_heads, 1, dtype=torch.bool, device=lm.device))
                columns = slice(None) if restore_all_positions else slice(width - 1, width)
                mask[row, columns, list(indices)] = True
            else:
                mask = masks.setdefault(key, torch.zeros(n, width, 1, dtype=torch.bool, device=lm.device))
                mask[row, [p - start for p in indices]] = True
    sample_of_row = torch.tensor([s for _r, s in chunk])
    kwargs: dict[str, Any] = {}
    if prefix is not None:
        cache = copy.deepcopy(prefix)
        cache.batch_select_indices(sample_of_row.to(lm.device))  # row r continues its own noise sample's prefix
        kwargs = {"past_key_values": cache, "use_cache": True}
    with contextlib.ExitStack() as stack, torch.no_grad():
        stack.enter_context(corruption.applied(lm, sample_of_row, start))
        for key, mask in masks.items():
            stack.enter_context(patch(lm, key, clean[key][:, start:], mask=mask))
        logits = lm.model(input_ids=full.input_ids[:, start:], attention_mask=full.attention_mask,
                          position_ids=full.position_ids[:, start:], **kwargs).logits  # fmt: skip
    return answer_prob(logits, torch.full((n,), answer)).cpu()


@dataclass
class PromptTrace:
    tokens: list[str]
    corrupted: tuple[int, ...]
    p_clean: float
    p_corrupt: float
    grid: dict[str, torch.Tensor]  # resid/mlp → [n_layers, pos] normalised effect; heads → [n_layers, n_heads]
    groups: dict[str, tuple[int, ...]]  # token group → positions
    clean: Cache  # the clean run's activations (restored from)
    corruption: Corruption  # the same noise draws / contrast prompt, reused for the head-set restoration
    answer: int


def token_groups(n_pos: int, corrupted: tuple[int, ...], subject: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Positions per group, in the one vocabulary of position groups (mi_catalog.tasks.POSITION_GROUPS);
    before/after the subject are reported together as "other". For a contrast corruption the changed
    tokens play the subject's role."""
    last = n_pos - 1
    subj = [p for p in (subject or corrupted) if p != last]
    named = {p: position_group(p, subj, last) for p in range(n_pos)}
    merged = {p: ("other" if g in ("before_subject", "after_subject") else g) for p, g in named.items()}
    return {g: tuple(p for p in range(n_pos) if merged[p] == g) for g in GROUPS}


def trace(lm: LoadedModel, ex: TaskExample, spec: Spec, sigma: float, seed: int) -> PromptTrace | None:
    clean_batch = lm.encode([ex.prompt])
    answer = lm.token_id(ex.answer)
    sites = [f"{SITE_OF_KIND[k]}.{layer}" for k in SITE_OF_KIND for layer in range(lm.n_layers)]
    with capture(lm, sites) as clean:
        p_clean = float(answer_prob(lm.logits(clean_batch), torch.tensor([answer]))[0])
    corruption = make_corruption(lm, ex, spec, sigma, seed)
    if corruption is None:
        return None
    p_corrupt = float(restore(lm, corruption, clean, [()], answer, spec.batch_size, prefix_cache=spec.prefix_cache)[0])
    n_pos, L, H = clean_batch.shape[1], lm.n_layers, lm.n_heads
    groups = token_groups(n_pos, corruption.positions, subject_positions(lm, ex))
    positions = restored_positions(lm, spec, groups, n_pos)
    singles: list[Restoration] = []
    for kind in ("resid", "mlp"):
        singles += [((f"{SITE_OF_KIND[kind]}.{layer}", "pos", (p,)),) for layer in range(L) for p in positions]
    singles += [((f"head_out.{layer}", "heads", (h,)),) for layer in range(L) for h in range(H)]
    probs = restore(lm, corruption, clean, singles, answer, spec.batch_size, spec.head_positions, spec.prefix_cache)
    effect = normalised_effect(probs, p_clean, p_corrupt)
    k = len(positions)
    grid = {"heads": effect[2 * L * k :].reshape(L, H)}
    for i, kind in enumerate(("resid", "mlp")):
        full = torch.full((L, n_pos), float("nan"))  # NaN = not restored (positions="key")
        full[:, positions] = effect[i * L * k : (i + 1) * L * k].reshape(L, k)
        grid[kind] = full
    tokens = token_labels(lm, clean_batch.input_ids[0])
    return PromptTrace(tokens, corruption.positions, p_clean, p_corrupt, grid, groups, clean, corruption, answer)


def restored_positions(lm: LoadedModel, spec: Spec, groups: dict[str, tuple[int, ...]], n_pos: int) -> list[int]:
    """Every position, or only the key ones — the last subject (or changed) token and the last token."""
    mode = spec.positions if spec.positions != "auto" else ("key" if is_deep(lm) else "all")
    if mode not in ("all", "key"):
        raise ValueError(f"positions={spec.positions!r}; use all, key or auto")
    if mode == "all":
        return list(range(n_pos))
    return sorted({*groups["subject_last"], n_pos - 1})


def head_set(lm: LoadedModel, heads_mean: torch.Tensor, k: int) -> list[tuple[int, int]]:
    """The k heads with the largest mean single-head effect, best first."""
    order = torch.argsort(heads_mean.flatten(), descending=True)[:k].tolist()
    return [(i // lm.n_heads, i % lm.n_heads) for i in order]


def set_effect(lm: LoadedModel, pt: PromptTrace, heads: list[tuple[int, int]], spec: Spec) -> float:
    """Normalised effect of restoring ``heads`` together on one prompt (the same noise draws as its trace)."""
    by_layer: dict[int, list[int]] = {}
    for layer, h in heads:
        by_layer.setdefault(layer, []).append(h)
    restoration: Restoration = tuple((f"head_out.{layer}", "heads", tuple(hs)) for layer, hs in sorted(by_layer.items()))
    p = restore(lm, pt.corruption, pt.clean, [restoration], pt.answer, spec.batch_size, spec.head_positions,
                spec.prefix_cache)
    return float(normalised_effect(p, pt.p_clean, pt.p_corrupt)[0])


# ---------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------


def group_curve(traces: list[PromptTrace], kind: str, group: str) -> torch.Tensor | None:
    """Per prompt, per layer: mean effect over the group's restored positions → [n_prompts, n_layers];
    None when the group was not restored (positions="key")."""
    rows = []
    for t in traces:
        grid = t.grid[kind]
        positions = [p for p in t.groups[group] if not bool(grid[:, p].isnan().any())]
        if t.groups[group] and not positions:
            return None
        rows.append(grid[:, positions].mean(dim=1) if positions else torch.zeros(grid.shape[0]))
    return torch.stack(rows)


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    examples = data.examples
    sigma = subject_sigma(lm, examples)
    seeds = [spec.seed * 100_003 + i for i in range(len(examples))]
    pts: list[PromptTrace] = []
    for i, (ex, seed) in enumerate(zip(examples, seeds, strict=True)):
        data.progress("activation patching", i, len(examples))
        pt = trace(lm, ex, spec, sigma, seed)
        if pt is not None:
            pts.append(pt)
    data.progress("activation patching", len(examples), len(examples))
    if not pts:
        raise ValueError(f"{data.task}: no prompt could be corrupted (contrast prompts differ in token length)")
    heads = torch.stack([t.grid["heads"] for t in pts])  # [n_prompts, L, H]
    k = min(spec.head_set, lm.n_layers * lm.n_heads)
    chosen = head_set(lm, heads.mean(dim=0), k)
    set_effects = [set_effect(lm, pt, chosen, spec) for pt in pts]
    metrics: dict[str, int | float] = {"n_prompts": len(pts), "n_skipped": len(examples) - len(pts)}
    intervals: dict[str, tuple[float, float]] = {}

    def headline(name: str, samples: torch.Tensor) -> None:
        metrics[name], intervals[name] = mean_ci(samples, seed=spec.seed)

    headline("clean_prob", torch.tensor([t.p_clean for t in pts]))
    headline("corrupt_prob", torch.tensor([t.p_corrupt for t in pts]))
    metrics["noise_samples"] = pts[0].corruption.samples
    metrics["noise_sigma"] = round(spec.noise_scale * sigma, 6)
    curves = {(kind, group): curve for kind in ("resid", "mlp") for group in GROUPS
              if (curve := group_curve(pts, kind, group)) is not None}  # fmt: skip
    for kind, group, prefix in (("resid", "subject_last", "resid_subject_last"), ("resid", "last", "resid_last"),
                                ("mlp", "subject_last", "mlp_subject_last")):  # fmt: skip
        per_prompt = curves[(kind, group)]  # [n_prompts, L] (key groups are always restored)
        layer = int(per_prompt.mean(dim=0).argmax())
        metrics[f"{prefix}_peak_layer"] = layer
        headline(f"{prefix}_peak_effect", per_prompt[:, layer])
    best = chosen[0]
    headline("head_top_effect", heads[:, best[0], best[1]])
    headline("head_set_effect", torch.tensor(set_effects))
    metrics["head_set_size"] = k
    head_means = heads.mean(dim=0)
    findings = [Finding("attention-head", layer, h, float(head_means[layer, h]), head_label(layer, h),
                        mean_ci(heads[:, layer, h], seed=spec.seed)[1])
                for layer in range(lm.n_layers) for h in range(lm.n_heads)]  # fmt: skip
    for kind, obj in (("resid", "residual-stream"), ("mlp", "ffn")):
        for group in ("subject_last", "last"):
            per_prompt = curves[(kind, group)]
            for layer in range(lm.n_layers):
                findings.append(Finding(obj, layer, None, float(per_prompt[:, layer].mean()),
                                        f"{SITE_OF_KIND[kind]}.{layer} @ {group}"))  # fmt: skip
    tensors = {f"{kind}_{group}": curve for (kind, group), curve in curves.items()}
    tensors["heads"] = heads
    return Output(
        metrics=metrics, intervals=intervals, findings=ranked(findings), tensors=tensors,
        figures=_figures(lm, data.task, pts, curves, head_means, chosen, set_effects),
        notes=[f"Restoring the top {k} heads together ({', '.join(head_label(*h) for h in chosen)}) gives back "
               f"{metrics['head_set_effect']:.2f} of the effect; the best single head {metrics['head_top_effect']:.2f}.",
               "Reproduces ROME's causal tracing protocol (noise on subject embeddings, ν = 3σ, 10 samples) for facts; "
               "other tasks use their contrast prompt as the corruption (interchange intervention).",
               *_cost_notes(lm, spec, pts)],
    )  # fmt: skip


def _cost_notes(lm: LoadedModel, spec: Spec, pts: list[PromptTrace]) -> list[str]:
    """Say when this run departed from the paper's protocol to keep a deep model affordable."""
    out = []
    samples = pts[0].corruption.samples
    if pts[0].corruption.noise is not None and samples < 10:
        out.append(f"{samples} noise samples per prompt (ROME: 10) to keep a {lm.n_layers}-layer model affordable; "
                   "pass noise_samples=10 for the paper's protocol.")  # fmt: skip
    if bool(pts[0].grid["resid"].isnan().any()):
        out.append("Residual/FFN states restored at the key positions only (last subject token, last token); "
                   "pass positions='all' for the full grid.")  # fmt: skip
    return out


def _figures(lm: LoadedModel, task: str, pts: list[PromptTrace], curves: dict[tuple[str, str], torch.Tensor],
             head_means: torch.Tensor, chosen: list[tuple[int, int]], set_effects: list[float]) -> list:  # fmt: skip
    example = max(pts, key=lambda t: t.p_clean - t.p_corrupt)  # the prompt whose corruption hurt most
    layers = [f"L{layer}" for layer in range(lm.n_layers)]
    labels = [f"{tok}*" if i in example.corrupted else tok for i, tok in enumerate(example.tokens)]
    partial = bool(example.grid["resid"].isnan().any())
    note = "; only key positions restored, others shown as 0" if partial else ""
    figs: list = [
        Heatmap(f"{task}_{kind}", f"{task}: normalised effect of restoring {SITE_OF_KIND[kind]} (one prompt; * = corrupted{note})",
                values=example.grid[kind].nan_to_num(0.0).tolist(), row_labels=layers, col_labels=labels,
                vmin=min(0.0, float(example.grid[kind].nan_to_num(0.0).min())), vmax=1.0)
        for kind in ("resid", "mlp")
    ]  # fmt: skip
    figs.append(Heatmap.per_head(f"{task}_heads", f"{task}: mean effect of restoring one head's output",
                                 head_means.tolist(), digits=None))
    figs.append(Heatmap(f"{task}_groups", f"{task}: mean effect by token group (rows: site @ group, cols: layer)",
                        values=[curve.mean(dim=0).tolist() for curve in curves.values()],
                        row_labels=[f"{SITE_OF_KIND[k]} @ {g}" for k, g in curves],
                        col_labels=layers))  # fmt: skip
    single = [float(head_means[layer, h]) for layer, h in chosen]
    figs.append(Bars(f"{task}_head_set", f"{task}: top heads alone vs together",
                     labels=[head_label(*h) for h in chosen] + [f"top {len(chosen)} together"],
                     values=[*single, sum(set_effects) / len(set_effects)], y_label="normalised effect"))
    return figs
