"""SAE feature steering: find the sparse-autoencoder features of a concept, then clamp them.

The paper (Templeton et al. 2024, *Scaling Monosemanticity*, building on Bricken et al. 2023): train a
sparse autoencoder on a middle-layer residual stream, find features for a concept (by inspecting their top
activations), and steer by **clamping** a feature to a fixed value during the forward pass — to a multiple
of its maximum activation to induce the concept ("Golden Gate Claude"), or to zero / negative values to
suppress it — while keeping the SAE's reconstruction error, x ← x + (f_clamped − f(x))·W_dec, so only the
clamped features change.

What we do: the SAE of :mod:`mi_catalog.sae` (ReLU, L1, unit-norm decoder rows) at one residual site
(default ``resid_post.{n_layers//2 − 1}``: ``resid_post.1`` = ``resid_pre.2`` on the 4-layer toy, the middle
of the model, where the toy's planted concepts are linearly present and later layers still read them).
The SAE is the one cached by ``mi-catalog sae train`` for exactly this model's weights (read only), else one
trained in memory with the same defaults (``sae_trained_in_run`` = 1). The task's examples (unique prompts)
are split into fit and held-out halves, stratified by label. The **concept** is one label (toy defaults:
language → ``zu``, the target language; toxicity → ``toxic``; refusal → ``harmful``; sentiment →
``negative``; otherwise the first label), against every other label. Each feature scores a prompt by its
largest activation over the prompt's tokens; features are ranked by fit-split AUROC (concept vs rest, ties
by mean difference) and the top ``k`` are the concept's features. Steering clamps them at every token
(:class:`~mi_catalog.sae.FeatureClamp`). The concept rate is the share of prompts whose greedy next token is
one of the concept's answer tokens (first tokens of the concept examples' answers: the ``zu`` words on the
toy's language task). Improve: concept rate on held-out concept prompts before → after clamping to 0
(suppression), with a bootstrap interval; the cost (other tasks' accuracy, KL on neutral text); a sweep of
the clamp value (× each feature's largest fit activation) on held-out concept and other prompts
(induction at values > 0 on the other prompts).

Simplifications: a tiny SAE (4× expansion, minutes or seconds of training, no dead-feature resampling)
instead of millions of features; features chosen automatically by AUROC on labelled prompts instead of
by reading their activations; ``k`` features clamped together (on the toy a concept is spread over several
features and the error term, so one feature rarely moves the output); greedy next-token rates instead of
sampled generations. The run's seed draws the prompts and the split; the in-memory SAE has its own seed
(``sae_seed``, default 0, as ``mi-catalog sae train``), so by default the dictionary is the same across run
seeds.

What it finds on the recipe-v3 toy (language task = translation, resid_post.1, 256 features; run seeds 0–9 at
``n=64`` with the SAE of ``mi-catalog sae train``, and ``sae_seed`` 1, 2 at the default ``n``): the top features
separate held-out prompts perfectly (AUROC 1.0); they fire on the English source words of a sentence to be
translated into zu (the top feature on 83 % of them, on 51 % of zu source words, more weakly), so they are
"source is English" features as much as "target is zu" ones — correlation picks them, and the clamp shows they
are causal: at 0 a third to a half of the zu outputs switch to English words (rate 1.0 → 0.47–0.73 over run
seeds, 0.33 and 0.67 for SAE seeds 1 and 2; 8 random features: 0.96–1.0). What resists is a route recipe v3
trained: a prompt ending on a zu verb (the third target word) is the monolingual continuation's "SUBJECT VERB"
form, where the verb just read decides the noun's language — 57 of those 58 held-out prompts stay zu, against
49 of 99 at the other positions (recipe v2: 17 of 58 and 50 of 99; rate 1.0 → 0.24–0.65). Inducing does not
work on v3: at 0.5 × their largest activation, every token, no English-target prompt switches to zu (v2: about
a third); at ≥ 1 × every output becomes English (clamping at every position also erases where the source ends).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods import steering
from mi_catalog.methods.contract import Bars, Figure, Finding, Output, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import auroc, mean_ci
from mi_catalog.models.hooks import capture
from mi_catalog.models.loading import LoadedModel
from mi_catalog.models.sites import site as parse_site
from mi_catalog.sae import (
    DEFAULT_L1,
    DEFAULT_PROMPTS_PER_TASK,
    DEFAULT_STEPS,
    FeatureClamp,
    SparseAutoencoder,
    check_site,
    default_site,
    find_cached,
    load_sae,
    train_sae,
    weights_sha256,
)
from mi_catalog.tasks import TaskDataError, TaskExample, split_fit_test

IMPL = ImplInfo(
    id="sae-feature-steering",
    title="SAE feature steering: find a concept's sparse-autoencoder features by AUROC, clamp them (error kept)",
    objects=("sae-feature",),
    methods=("magnitude-analysis",),
    steering=("amplitude-manipulation",),
    reproduces=("scaling-monosemanticity",),
    tasks=("language", "toxicity", "refusal", "sentiment", "multilingual"),
    needs=("training",),
    metrics=(
        "n_prompts",
        "n_fit",
        "n_test",
        "sae_d_sae",
        "sae_trained_in_run",
        "sae_explained_variance",
        "sae_l0",
        "sae_dead_fraction",
        "sae_n_features",
        "sae_top_feature_auroc",
        "sae_features_auroc",
        "concept_rate_before",
        "concept_rate_suppressed",
        "concept_switch_rate_suppressed",
        "concept_rate_random_features",
        "concept_rate_other_before",
        "concept_rate_induced",
    ),
)

# The toy's planted concept per task (the label whose features are found and clamped).
TOY_CONCEPTS = {"language": "zu", "toxicity": "toxic", "refusal": "harmful", "sentiment": "negative"}


@dataclass
class Spec:
    n: int = 96
    seed: int = 0
    site: str = ""  # "" → resid_post.{n_layers // 2 − 1} (resid_post.1 on the toy)
    sae: str = "auto"  # "auto": the cached SAE for exactly this model and site, else train in memory; "train": always
    d_sae: int = 0  # in-memory SAE size; 0 → 4 × d_model
    l1: float = DEFAULT_L1
    train_steps: int = DEFAULT_STEPS
    prompts_per_task: int = DEFAULT_PROMPTS_PER_TASK
    sae_seed: int = 0  # the in-memory SAE's seed (fixed: the run's seed varies the prompts, not the dictionary)
    concept: str = ""  # "" → the toy's planted concept for the task (TOY_CONCEPTS), else the first label
    k: int = 8  # features clamped together
    induce: float = 0.5  # induction clamp value, × each feature's largest activation on the fit split
    sweep: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
    fit_fraction: float = 0.5
    n_side: int = 24  # prompts per other task for the side effects


@dataclass
class Classes:
    """The concept contrast: which examples carry the concept, and the tokens that express it."""

    concept: str  # a label, or "clean" (clean vs corrupt prompts when the examples carry no two labels)
    fit: list[tuple[str, bool]]  # (prompt, is concept)
    test: list[tuple[str, bool]]
    concept_tokens: list[int]
    other_tokens: list[int]
    how: str


def _unique(examples: list[TaskExample]) -> list[TaskExample]:
    return list({ex.prompt: ex for ex in reversed(examples)}.values())[::-1]  # first occurrence of each prompt


def classes(lm: LoadedModel, data: RunData, spec: Spec) -> Classes:
    """Concept vs rest by label (one-vs-rest), else clean vs corrupt prompts; held-out split of unique prompts."""
    examples = _unique(data.examples)
    labels = sorted({ex.label for ex in examples if ex.label is not None})
    if len(labels) >= 2:
        planted = TOY_CONCEPTS.get(data.task) if data.planted is not None else None
        concept = spec.concept or (planted if planted in labels else labels[0])
        if concept not in labels:
            raise TaskDataError(f"concept {concept!r} is not a label of task {data.task!r} ({', '.join(labels)})")
        labelled = [ex for ex in examples if ex.label is not None]
        fit, test = split_fit_test(labelled, spec.fit_fraction)
        yes = [ex for ex in labelled if ex.label == concept]
        no = [ex for ex in labelled if ex.label != concept]
        return Classes(
            concept=concept,
            fit=[(ex.prompt, ex.label == concept) for ex in fit],
            test=[(ex.prompt, ex.label == concept) for ex in test],
            concept_tokens=sorted({lm.token_id(ex.answer) for ex in yes}),
            other_tokens=sorted({lm.token_id(ex.answer) for ex in no} - {lm.token_id(ex.answer) for ex in yes}),
            how=f"label {concept!r} vs the other labels",
        )
    paired = [ex for ex in examples if ex.corrupt_prompt and ex.corrupt_prompt != ex.prompt]
    if len(paired) >= 2:
        fit_ex, test_ex = split_fit_test(paired, spec.fit_fraction)
        clean = {lm.token_id(ex.answer) for ex in paired}
        corrupt = {lm.token_id(ex.corrupt_answer) for ex in paired if ex.corrupt_answer}
        return Classes(
            concept="clean",
            fit=[p for ex in fit_ex for p in ((ex.prompt, True), (str(ex.corrupt_prompt), False))],
            test=[p for ex in test_ex for p in ((ex.prompt, True), (str(ex.corrupt_prompt), False))],
            concept_tokens=sorted(clean),
            other_tokens=sorted(corrupt - clean),
            how="clean prompts vs their corrupt prompts (the examples carry fewer than two labels)",
        )
    raise TaskDataError(f"task {data.task!r}: SAE feature steering needs two labels or corrupt prompts to contrast")


def get_sae(lm: LoadedModel, spec: Spec, where: str, data: RunData) -> tuple[SparseAutoencoder, bool]:
    """The cached SAE for exactly this model's weights at ``where`` (read only), else one trained in memory."""
    if spec.sae not in ("auto", "train"):
        raise TaskDataError(f"sae={spec.sae!r}; use 'auto' (cached if present, else train) or 'train'")
    if spec.sae == "auto":
        digest = weights_sha256(lm)
        path = find_cached(lm, where, weights_hash=digest)
        if path is not None:
            return load_sae(path, lm, weights_hash=digest), False
    sae = train_sae(lm, where, d_sae=spec.d_sae or None, steps=spec.train_steps, seed=spec.sae_seed, l1=spec.l1,
                    prompts_per_task=spec.prompts_per_task, progress=data.progress)  # fmt: skip
    return sae, True


def prompt_features(lm: LoadedModel, sae: SparseAutoencoder, prompts: list[str], batch_size: int = 64) -> torch.Tensor:
    """Each feature's largest activation over each prompt's real tokens (BOS left out) → [n, d_sae]."""
    bos = getattr(lm.tokenizer, "bos_token_id", None)
    out: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = lm.encode(prompts[start : start + batch_size])
            with capture(lm, [sae.site]) as cache:
                lm.logits(batch)
            keep = batch.attention_mask.bool()
            if bos is not None:
                keep &= batch.input_ids != bos
            f = sae.encode(cache[sae.site].float())  # [b, pos, d_sae]
            out.append(f.masked_fill(~keep[..., None], 0.0).amax(1).cpu())
    return torch.cat(out)


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    where = check_site(lm, spec.site or default_site(lm))
    layer = parse_site(where).layer
    split = classes(lm, data, spec)
    sae, trained = get_sae(lm, spec, where, data)

    # Locate: rank features by fit-split AUROC (concept vs rest) of their per-prompt maximum activation.
    fit_prompts = [p for p, _ in split.fit]
    test_prompts = [p for p, _ in split.test]
    y_fit = torch.tensor([c for _, c in split.fit], dtype=torch.float32)  # [n_fit]
    y_test = torch.tensor([c for _, c in split.test], dtype=torch.float32)  # [n_test]
    for name, y in (("fit", y_fit), ("held-out", y_test)):
        if not 0 < int(y.sum()) < len(y):
            raise TaskDataError(f"task {data.task!r}: the {name} split lacks {split.how.split(' vs ')[0]} or the rest; "
                                "use more prompts (--n) with at least two of each")  # fmt: skip
    f_fit = prompt_features(lm, sae, fit_prompts)  # [n_fit, d_sae]
    f_test = prompt_features(lm, sae, test_prompts)  # [n_test, d_sae]
    fit_auroc = torch.tensor([auroc(f_fit[:, i], y_fit) for i in range(sae.d_sae)]).nan_to_num(0.5)  # [d_sae]
    mean_diff = f_fit[y_fit.bool()].mean(0) - f_fit[~y_fit.bool()].mean(0)  # [d_sae]
    order = sorted(range(sae.d_sae), key=lambda i: (-float(fit_auroc[i]), -float(mean_diff[i]), i))
    chosen = tuple(i for i in order[: spec.k] if fit_auroc[i] > 0.5 and mean_diff[i] > 0)
    held = {i: auroc(f_test[:, i], y_test) for i in chosen}
    peak = f_fit[:, list(chosen)].amax(0) if chosen else torch.zeros(0)  # [k] largest fit activation per feature

    # Steer: clamp the chosen features; measure on the held-out prompts.
    concept_prompts = [p for p, c in split.test if c]
    other_prompts = [p for p, c in split.test if not c]
    suppress = FeatureClamp(sae, chosen, 0.0)

    def clamp_at(multiple: float) -> FeatureClamp:
        return suppress.with_value(tuple(float(v) * multiple for v in peak))

    rate = steering.token_rate
    before = rate(lm, concept_prompts, split.concept_tokens)
    after = rate(lm, concept_prompts, split.concept_tokens, suppress)
    other_before = rate(lm, other_prompts, split.concept_tokens)
    induced = rate(lm, other_prompts, split.concept_tokens, clamp_at(spec.induce))
    switched = rate(lm, concept_prompts, split.other_tokens, suppress) if split.other_tokens else None
    # Control: as many random other features clamped to 0 (a concept's features should matter more).
    gen = torch.Generator().manual_seed(spec.seed)
    pool = [i for i in range(sae.d_sae) if i not in set(chosen)]
    random_features = tuple(pool[int(j)] for j in torch.randperm(len(pool), generator=gen)[: len(chosen)])
    control = rate(lm, concept_prompts, split.concept_tokens, FeatureClamp(sae, random_features, 0.0))
    sweep = {
        f"held-out {split.concept} prompts": [rate(lm, concept_prompts, split.concept_tokens, clamp_at(m))
                                              for m in spec.sweep],
        "held-out other prompts": [rate(lm, other_prompts, split.concept_tokens, clamp_at(m)) for m in spec.sweep],
    }  # fmt: skip

    s = spec.seed
    metrics: dict[str, int | float] = {
        "n_prompts": len(split.fit) + len(split.test),
        "n_fit": len(split.fit),
        "n_test": len(split.test),
        "sae_d_sae": sae.d_sae,
        "sae_trained_in_run": int(trained),
        "sae_explained_variance": float(sae.config.metrics.get("explained_variance", float("nan"))),
        "sae_l0": float(sae.config.metrics.get("l0", float("nan"))),
        "sae_dead_fraction": float(sae.config.metrics.get("dead_fraction", float("nan"))),
        "sae_n_features": len(chosen),
    }
    intervals: dict[str, tuple[float, float]] = {}
    if chosen:
        metrics["sae_top_feature_auroc"] = held[chosen[0]]
        metrics["sae_features_auroc"] = auroc(f_test[:, list(chosen)].sum(-1), y_test)
    for name, values in (("concept_rate_before", before), ("concept_rate_suppressed", after),
                         ("concept_switch_rate_suppressed", switched), ("concept_rate_random_features", control),
                         ("concept_rate_other_before", other_before),
                         ("concept_rate_induced", induced)):  # fmt: skip
        if values is None or values.numel() == 0:
            continue
        metrics[name], intervals[name] = mean_ci(values, seed=s)

    findings = ranked([Finding(object="sae-feature", layer=layer, index=i, score=held[i], label=f"{where} F{i}")
                       for i in chosen])  # fmt: skip
    figures: list[Figure] = [
        steering.sweep_curve("sae_clamp_sweep", f"Clamping {len(chosen)} '{split.concept}' SAE features at {where}",
                             spec.sweep, sweep, x_label="clamp value (× each feature's largest fit activation)",
                             y_label=f"'{split.concept}' rate (greedy next token)", seed=s),
        Bars(name="sae_feature_auroc", title=f"Held-out AUROC of the '{split.concept}' features at {where}",
             labels=[f"F{i}" for i in chosen], values=[held[i] for i in chosen], y_label="AUROC (held out)"),
    ]  # fmt: skip
    source = "trained in this run (nothing cached for this model)" if trained else "read from the cache"
    notes = [
        f"Scaling Monosemanticity's clamping (error term kept) on a {sae.d_sae}-feature SAE at {where}, {source} "
        f"(explained variance {metrics['sae_explained_variance']:.2f}, L0 {metrics['sae_l0']:.1f}); "
        f"concept = {split.how}, features chosen by fit-split AUROC, not by reading their activations.",
        f"Clamping the top {len(chosen)} features to 0 at every token: '{split.concept}' rate on held-out "
        f"'{split.concept}' prompts {float(before.mean()):.2f} → {float(after.mean()):.2f}.",
    ]
    return Output(
        metrics=metrics,
        intervals=intervals,
        findings=findings,
        tensors={
            "fit_auroc": fit_auroc,
            "feature_directions": sae.directions(chosen).float().cpu() if chosen else torch.zeros(0, lm.d_model),
            "feature_peaks": peak.float(),
        },
        figures=figures,
        improve=steering.improve(
            data.task, f"'{split.concept}' rate (greedy next token), clamped to 0", before, after, s, goal="decrease"
        ),
        side_effects=steering.side_effects(lm, data, suppress, n=spec.n_side),
        notes=notes,
    )
