"""Ablation importance of every attention head and every FFN neuron — the causal-attribution baseline of the
survey's Locate stage (knock a unit out, measure how much the task metric drops), as used for heads by
Michel et al. 2019 (*Are Sixteen Heads Really Better than One?*, masking heads), with mean ablation over a
reference distribution as in Wang et al. 2023 (IOI) and resample ablation from corrupted inputs as in
Conmy et al. 2023 (ACDC) and causal scrubbing.

What we do: for every head (``head_out.l``, head ``h`` — the head's z, before W_O) and every neuron
(``mlp_act.l``, neuron ``j``) replace its activation and measure the drop of the task metric,
``metric(clean) − metric(ablated)``, per prompt; the score is the mean drop with a 95 % bootstrap interval
over prompts. Three ablations (``Spec.how``): ``zero``; ``mean`` — the mean activation over the task's
prompts at the ablated positions (the last token, or every real token); ``resample`` — the activation of
the same unit in the prompt's corrupted run (the task's own contrast prompt of the same token length; else
Gaussian noise on the subject embeddings, or shuffled tokens with ``corruption="shuffle"`` — see
``_contrast``). The metric is the logit difference answer − corrupt answer when the task names corrupt
answers, else log p(answer). ``positions="last"`` ablates only at the last token (where the answer is read);
``"all"`` at every real token.

Batched: many ablations per forward pass. The prompts are repeated once per unit in a chunk
(row = prompt × unit) and one boolean mask per site selects, in every row, that row's unit, so a chunk of
``batch_size`` rows ablates ``batch_size / n`` units at once. With ``positions="last"`` only the last
token's computation changes, so the prompts' prefix is run once (KV cache) and each row computes the last
token only — about prompt-length times cheaper; every head and neuron of the toy (1,040 units × 16 prompts =
16,640 ablations in 17 batched passes) takes 5–7 s on the shared 2-core box, mostly copying the repeated KV
cache. A test checks the batched numbers equal one ``ablate``/``patch`` per unit.

On the toy's induction task the four induction heads are redundant (each alone carries part of the
copying), while the layer-0 heads that feed them (previous-token and current-token heads) are single points
of failure. So zero and mean ablation rank those layer-0 heads *above* the induction heads — correctly: they
are necessary — and resample ablation from the contrast prompt (which changes only the token to copy) at
the last position isolates the heads that carry *which* token is copied: the induction heads, first.

Simplifications: one unit at a time plus one set (the top ``head_set`` heads together); no iterative
pruning of heads by a gradient proxy (Michel et al. prune by I_h = |∂L/∂ξ_h|, we ablate exactly); the mean
is taken over the run's own prompts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods.contract import Bars, Finding, Heatmap, Output, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import answer_logprob, bootstrap_ci, logit_diff, mean_ci
from mi_catalog.methods.steering import Unit
from mi_catalog.models.hooks import Cache, capture, patch
from mi_catalog.models.loading import Batch, LoadedModel
from mi_catalog.models.weights import W_out
from reference_impls._common import head_label, neuron_label
from reference_impls._contrast import Contrast, make_contrast

IMPL = ImplInfo(
    id="ablation-importance",
    title="Ablation importance of every attention head and FFN neuron (zero, mean or resample ablation), batched",
    objects=("attention-head", "neuron"),
    methods=("causal-attribution",),
    steering=(),
    reproduces=(),
    tasks=("induction", "facts", "sentiment", "refusal", "toxicity", "language", "icl", "ioi"),
    needs=(),
    metrics=(
        "n_prompts",
        "n_skipped",
        "n_units",
        "clean_metric",
        "forward_passes",
        "ablation_top_head_drop",
        "ablation_top_neuron_drop",
        "ablation_heads_significant",
        "ablation_neurons_significant",
        "ablation_head_set_drop",
        "ablation_head_set_size",
    ),
)

HOWS = ("zero", "mean", "resample")


@dataclass
class Spec:
    n: int = 16
    seed: int = 0
    how: str = "resample"  # zero | mean | resample (the unit's value in the prompt's corrupted run)
    positions: str = "last"  # last (where the answer is read; fast, KV cache) | all (every real token)
    units: str = "heads+neurons"  # heads | neurons | heads+neurons
    corruption: str = "task"  # task contrast prompts (else subject noise) | shuffle — the resample source and metric
    noise_scale: float = 3.0  # subject-noise σ in std(W_E) when the task has no contrast prompts
    head_set: int = 4  # also ablate the top-k heads together
    top_neurons: int = 50  # neurons listed as findings (every score is in the tensors)
    batch_size: int = 1024  # ablated rows (prompt × unit) per forward pass


# ---------------------------------------------------------------------------------------------------------
# Batched ablation of unit sets
# ---------------------------------------------------------------------------------------------------------


def site_sizes(lm: LoadedModel) -> tuple[int, int]:
    """(n_heads, d_mlp) of the model."""
    return lm.n_heads, int(W_out(lm, 0).shape[0])


def is_head_site(site: str) -> bool:
    """``head_out.l`` and ``q.l`` hold one entry per head ([batch, pos, n_heads, d_head]); the rest per neuron."""
    return site.split(".")[0] in ("head_out", "q")


def all_units(lm: LoadedModel, which: str = "heads+neurons") -> list[Unit]:
    """Every head (``head_out.l``) and/or every neuron (``mlp_act.l``), layer by layer."""
    n_heads, d_mlp = site_sizes(lm)
    out: list[Unit] = []
    if "heads" in which:
        out += [Unit(f"head_out.{layer}", h) for layer in range(lm.n_layers) for h in range(n_heads)]
    if "neurons" in which:
        out += [Unit(f"mlp_act.{layer}", j) for layer in range(lm.n_layers) for j in range(d_mlp)]
    return out


@dataclass
class Ablator:
    """Ablate sets of units in batches: row = prompt × unit set; ``drops`` → metric(clean) − metric(ablated)."""

    lm: LoadedModel
    clean: Batch
    answers: torch.Tensor  # [n]
    others: torch.Tensor | None  # [n] corrupt answers, or None (metric = log p(answer))
    how: str
    positions: str
    reference: Cache | None  # the corrupted run's activations (resample); None otherwise
    batch_size: int = 1024
    forward_passes: int = 0

    def metric(self, logits: torch.Tensor, repeats: int = 1) -> torch.Tensor:
        """The task metric at the last position for rows ordered prompt-major → [rows]."""
        answers = self.answers.repeat_interleave(repeats)
        if self.others is not None:
            return logit_diff(logits, answers, self.others.repeat_interleave(repeats))
        return answer_logprob(logits, answers)

    def clean_metric(self) -> torch.Tensor:
        with torch.no_grad():
            self.forward_passes += 1
            return self.metric(self.lm.logits(self.clean)).cpu()

    def _means(self, sites: Sequence[str]) -> dict[str, torch.Tensor]:
        """Mean activation per site over the ablated positions of the clean prompts → [1, 1, *unit shape]."""
        with capture(self.lm, sites) as cache:
            self.lm.logits(self.clean)
        self.forward_passes += 1
        real = self.clean.attention_mask.bool()
        if self.positions == "last":
            real = torch.zeros_like(real)
            real[:, -1] = True
        out = {}
        for s in sites:
            act = cache[s].float()  # [n, pos, ...]
            weights = real.reshape(*real.shape, *([1] * (act.dim() - 2))).float()
            out[s] = ((act * weights).sum(dim=(0, 1)) / weights.sum(dim=(0, 1)).clamp(min=1))[None, None]
        return out

    def drops(self, unit_sets: Sequence[Sequence[Unit]]) -> torch.Tensor:
        """metric(clean) − metric(with each set ablated) → [n_prompts, len(unit_sets)]."""
        n = self.clean.shape[0]
        base = self.clean_metric()
        sites = sorted({u.site for units in unit_sets for u in units})
        means = self._means(sites) if self.how == "mean" else {}
        per_chunk = max(1, self.batch_size // max(1, n))
        out = torch.zeros(n, len(unit_sets))
        with torch.no_grad():
            for start in range(0, len(unit_sets), per_chunk):
                chunk = list(unit_sets[start : start + per_chunk])
                ablated = self.metric(self._chunk(chunk, means), repeats=len(chunk)).cpu()  # [n * m]
                out[:, start : start + len(chunk)] = base[:, None] - ablated.reshape(n, len(chunk))
        return out

    def last_logits(self, unit_sets: Sequence[Sequence[Unit]]) -> torch.Tensor:
        """Next-token logits with each set ablated → float [n_prompts, len(unit_sets), d_vocab] (for small sets:
        distribution-level scores such as the KL of Ships)."""
        n = self.clean.shape[0]
        sites = sorted({u.site for units in unit_sets for u in units})
        means = self._means(sites) if self.how == "mean" else {}
        per_chunk = max(1, self.batch_size // max(1, n))
        parts = []
        with torch.no_grad():
            for start in range(0, len(unit_sets), per_chunk):
                chunk = list(unit_sets[start : start + per_chunk])
                logits = self._chunk(chunk, means)[:, -1].float().cpu()  # [n * m, d_vocab]
                parts.append(logits.reshape(n, len(chunk), -1))
        return torch.cat(parts, dim=1)

    def _chunk(self, chunk: list[Sequence[Unit]], means: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits of the repeated batch (row = prompt × unit set) with each row's set ablated → [rows, pos', d_vocab]."""
        lm, clean, m = self.lm, self.clean, len(chunk)
        n, n_pos = clean.shape
        last_only = self.positions == "last" and n_pos > 1
        width = 1 if last_only else n_pos
        n_heads, d_mlp = site_sizes(lm)
        if self.positions == "last":
            where = torch.zeros(n * m, width, dtype=torch.bool, device=lm.device)
            where[:, -1] = True
        else:
            where = clean.attention_mask.bool().repeat_interleave(m, dim=0)  # [rows, pos] real tokens
        rows_of = torch.arange(n * m, device=lm.device).reshape(n, m)  # row = prompt * m + unit set
        masks: dict[str, torch.Tensor] = {}
        for i, units in enumerate(chunk):
            for unit in units:
                if unit.site not in masks:
                    heads = is_head_site(unit.site)
                    shape = (n * m, width, n_heads, 1) if heads else (n * m, width, d_mlp)
                    masks[unit.site] = torch.zeros(shape, dtype=torch.bool, device=lm.device)
                masks[unit.site][rows_of[:, i], :, unit.index] = True
        for key, mask in masks.items():
            masks[key] = mask & where.reshape(*where.shape, *([1] * (mask.dim() - 2)))
        prefix = self._prefix(m) if last_only else None  # computed before the patches are in place
        ids = clean.input_ids.repeat_interleave(m, dim=0)
        attention = clean.attention_mask.repeat_interleave(m, dim=0)
        with contextlib.ExitStack() as stack:
            for key, mask in masks.items():
                stack.enter_context(patch(lm, key, self._source(key, width, m, means), mask=mask))
            if prefix is None:
                logits = lm.logits(Batch(ids, attention))
            else:
                logits = lm.model(input_ids=ids[:, -1:], attention_mask=attention,
                                  position_ids=clean.position_ids[:, -1:].repeat_interleave(m, dim=0),
                                  past_key_values=prefix, use_cache=True).logits  # [rows, 1, d_vocab]  # fmt: skip
        self.forward_passes += 1
        return logits

    def _prefix(self, m: int) -> Any:
        """The KV cache of every token but the last, repeated for the m unit sets of a chunk (row-aligned)."""
        clean = self.clean
        self.forward_passes += 1
        cache: Any = self.lm.model(input_ids=clean.input_ids[:, :-1], attention_mask=clean.attention_mask[:, :-1],
                                   position_ids=clean.position_ids[:, :-1], use_cache=True).past_key_values  # fmt: skip
        cache.batch_repeat_interleave(m)
        return cache

    def _source(self, key: str, width: int, m: int, means: dict[str, torch.Tensor]) -> torch.Tensor:
        """What the selected entries are replaced with: [1 or rows, width, *unit shape]."""
        n_heads, d_mlp = site_sizes(self.lm)
        unit_shape = (n_heads, self.lm.d_head) if is_head_site(key) else (d_mlp,)
        if self.how == "zero":
            return torch.zeros(1, width, *unit_shape, device=self.lm.device)
        if self.how == "mean":
            return means[key].expand(1, width, *unit_shape)
        assert self.reference is not None
        return self.reference[key][:, -width:].repeat_interleave(m, dim=0)


def make_ablator(lm: LoadedModel, pair: Contrast, how: str, positions: str, batch_size: int,
                 sites: Sequence[str]) -> Ablator:  # fmt: skip
    """An :class:`Ablator` for a contrast pair; ``resample`` reads the corrupted run at ``sites``."""
    if how not in HOWS:
        raise ValueError(f"how={how!r}; use one of {', '.join(HOWS)}")
    if positions not in ("last", "all"):
        raise ValueError(f"positions={positions!r}; use 'last' or 'all'")
    reference = None
    if how == "resample":
        with torch.no_grad(), pair.corrupted(lm), capture(lm, sorted(set(sites))) as reference:
            lm.logits(pair.corrupt)
    return Ablator(lm, pair.clean, pair.answers, pair.others, how, positions, reference, batch_size)


def lower_bounds(samples: torch.Tensor, seed: int) -> torch.Tensor:
    """Lower ends of :func:`bootstrap_ci` for every column of ``samples`` [n, U] at once → [U].

    Same draws as ``bootstrap_ci(samples[:, u], seed)`` (its generator, seeded alike, draws the same indices
    for every column of the same length), so the numbers are identical; a test checks it.
    """
    x = samples.to(torch.float64)
    if x.shape[0] < 2:
        return x[0] if x.shape[0] else torch.zeros(x.shape[1], dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, x.shape[0], (1000, x.shape[0]), generator=gen)
    means = x[idx].mean(dim=1)  # [1000, U]
    return torch.quantile(means, 0.025, dim=0).round(decimals=6)


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    if spec.units not in ("heads", "neurons", "heads+neurons"):
        raise ValueError(f"units={spec.units!r}; use heads, neurons or heads+neurons")
    pair = make_contrast(lm, data.examples, spec.seed, spec.noise_scale, spec.corruption)
    units = all_units(lm, spec.units)
    ablator = make_ablator(lm, pair, spec.how, spec.positions, spec.batch_size, [u.site for u in units])
    ablator.forward_passes += pair.forwards + (1 if spec.how == "resample" else 0)
    data.progress("ablation", 0, 2)
    drops = ablator.drops([(u,) for u in units])  # [n, U]
    data.progress("ablation", 1, 2)
    n_heads, d_mlp = site_sizes(lm)
    L, seed = lm.n_layers, spec.seed
    head_cols = [i for i, u in enumerate(units) if u.site.startswith("head_out")]
    neuron_cols = [i for i, u in enumerate(units) if u.site.startswith("mlp_act")]
    head_drop = drops[:, head_cols].reshape(-1, L, n_heads) if head_cols else torch.zeros(drops.shape[0], 0, 0)
    neuron_drop = drops[:, neuron_cols].reshape(-1, L, d_mlp) if neuron_cols else torch.zeros(drops.shape[0], 0, 0)

    def ci(samples: torch.Tensor) -> tuple[float, float]:
        return bootstrap_ci(samples, seed=seed)

    findings: list[Finding] = []
    significant = {"heads": 0, "neurons": 0}
    for i in head_cols:
        unit = units[i]
        layer = int(unit.site.split(".")[1])
        interval = ci(drops[:, i])
        significant["heads"] += int(interval[0] > 0)
        findings.append(Finding("attention-head", layer, unit.index, float(drops[:, i].mean()),
                                head_label(layer, unit.index), interval))  # fmt: skip
    neuron_means = drops[:, neuron_cols].mean(0) if neuron_cols else torch.zeros(0)
    if neuron_cols:
        significant["neurons"] = int((lower_bounds(drops[:, neuron_cols], seed) > 0).sum())
    for k in torch.topk(neuron_means, k=min(spec.top_neurons, len(neuron_cols))).indices.tolist():
        unit = units[neuron_cols[k]]
        layer = int(unit.site.split(".")[1])
        findings.append(Finding("neuron", layer, unit.index, float(neuron_means[k]),
                                neuron_label(layer, unit.index), ci(drops[:, neuron_cols[k]])))  # fmt: skip
    findings = ranked(findings)
    clean_mean, clean_ci = mean_ci(ablator.clean_metric(), seed=seed)
    metrics: dict[str, int | float] = {
        "n_prompts": int(drops.shape[0]),
        "n_skipped": pair.n_skipped,
        "n_units": len(units),
        "clean_metric": clean_mean,
    }
    intervals: dict[str, tuple[float, float]] = {"clean_metric": clean_ci}
    figures: list[Any] = []
    notes: list[str] = []
    head_findings = [f for f in findings if f.object == "attention-head"]
    if head_findings:
        best = head_findings[0]
        assert best.layer is not None and best.index is not None
        metrics["ablation_top_head_drop"], intervals["ablation_top_head_drop"] = mean_ci(
            head_drop[:, best.layer, best.index], seed=seed
        )
        metrics["ablation_heads_significant"] = significant["heads"]
        k = min(spec.head_set, len(head_findings))
        chosen = head_findings[:k]
        together = ablator.drops([tuple(Unit(f"head_out.{f.layer}", int(f.index or 0)) for f in chosen)])[:, 0]
        metrics["ablation_head_set_drop"], intervals["ablation_head_set_drop"] = mean_ci(together, seed=seed)
        metrics["ablation_head_set_size"] = k
        head_mean = head_drop.mean(0)  # [L, H]
        figures.append(Heatmap.per_head(f"{data.task}_heads",
                                        f"{data.task}: mean drop of the metric when one head is {spec.how}-ablated",
                                        head_mean.tolist()))  # fmt: skip
        shown = head_findings[: min(8, len(head_findings))]
        figures.append(Bars(f"{data.task}_head_set", f"{data.task}: top heads ablated alone vs the top {k} together",
                            labels=[f.label for f in shown] + [f"top {k} together"],
                            values=[f.score for f in shown] + [metrics["ablation_head_set_drop"]],
                            intervals=[f.interval or (f.score, f.score) for f in shown] + [intervals["ablation_head_set_drop"]],
                            y_label="metric drop (clean − ablated)"))  # fmt: skip
        notes.append(f"Ablating the top {k} heads ({', '.join(f.label for f in chosen)}) together drops the metric by "
                     f"{metrics['ablation_head_set_drop']:.2f}; the best single head by {metrics['ablation_top_head_drop']:.2f} "
                     "(a set far above its best member means redundant heads).")  # fmt: skip
    neuron_findings = [f for f in findings if f.object == "neuron"]
    if neuron_findings:
        best = neuron_findings[0]
        assert best.layer is not None and best.index is not None
        metrics["ablation_top_neuron_drop"], intervals["ablation_top_neuron_drop"] = mean_ci(
            neuron_drop[:, best.layer, best.index], seed=seed
        )
        metrics["ablation_neurons_significant"] = significant["neurons"]
        shown = neuron_findings[:20]
        figures.append(Bars(f"{data.task}_neurons", f"{data.task}: the neurons whose {spec.how}-ablation hurts most",
                            labels=[f.label for f in shown], values=[f.score for f in shown],
                            intervals=[f.interval or (f.score, f.score) for f in shown],
                            y_label="metric drop (clean − ablated)"))  # fmt: skip
    data.progress("ablation", 2, 2)
    metrics["forward_passes"] = ablator.forward_passes
    where = "at the last token" if spec.positions == "last" else "at every real token"
    reference = {"zero": "zero", "mean": "the mean over the task's prompts",
                 "resample": f"its value in the prompt's corrupted run ({pair.describe(spec.noise_scale)})"}[spec.how]  # fmt: skip
    notes.append(f"Each unit replaced by {reference} {where}; score = mean drop of the {pair.metric_name} over "
                 f"{metrics['n_prompts']} prompts with 95 % bootstrap intervals. Applies the causal-attribution family "
                 "(single-unit ablation); no specific paper's numbers are reproduced.")  # fmt: skip
    return Output(
        metrics=metrics,
        intervals=intervals,
        findings=findings,
        tensors={"head_drop": head_drop, "neuron_drop": neuron_drop},
        figures=figures,
        notes=notes,
    )
