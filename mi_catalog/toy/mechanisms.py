"""Measure the mechanisms the toy model is supposed to contain, for its model card.

* ``induction_scores`` — per head, attention from a repeated token to the token
  that followed its previous occurrence (Olsson et al.'s induction score).
* ``causal_trace`` — ROME-style: noise the subject embeddings, restore one
  clean hidden state (layer output, MLP output or attention output) at one
  position, and measure how much of p(answer) comes back.
* ``refusal_direction_by_layer`` — difference-in-means harmful vs harmless
  direction per layer, scored by how much ablating it everywhere removes
  refusal and adding it induces refusal.
* ``task_vector_by_layer`` — patch a task's mean few-shot residual into a
  zero-shot prompt, per layer (Hendel et al.'s task vectors).
* ``neuron_selectivity`` — MLP neurons that fire for one word class (a language,
  toxic words) far more than for others.
* ``planted_bias`` — the planted profession → pronoun stereotype: how far p(he) vs
  p(she) leans to the stereotype on ambiguous mentions, accuracy on mentions with a
  stated gender, and per layer what projecting out the difference-in-means
  stereotype direction does to both (a fairness intervention).
* ``persona_steering`` — CAA-style persona vectors (persona minus "persona : none"
  residual at the last position), added per layer to prompts without a persona.

Each function returns plain JSON-able data; ``measure_all`` bundles them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mi_catalog.tasks import POSITION_GROUPS, position_group
from mi_catalog.toy.tasks import (
    BIAS_TEMPLATES,
    NO_PERSONA,
    PERSONA_INTENTS,
    PERSONAS,
    PLANTED,
    RECIPE_VERSION,
    bias_prompt,
    content_words,
    persona_prompt,
)

if TYPE_CHECKING:
    import torch

    from mi_catalog.models.loading import LoadedModel

# Every measurement runs on the model layer (sites, capture/patch/ablate/add_vector/project_out): one hook
# stack for the card and the reference implementations. Functions accept a LoadedModel, or (model, tokenizer).


def _lm(model: Any, tokenizer: Any = None) -> LoadedModel:
    from mi_catalog.models.loading import LoadedModel, wrap_model
    from mi_catalog.toy.tasks import ToyTaskSource, model_recipe_version

    if isinstance(model, LoadedModel):
        return model
    return wrap_model(model, tokenizer, name="toy", tasks=ToyTaskSource(model_recipe_version(model)))


def _predict(lm: LoadedModel, prompts: list[str]) -> list[str]:
    """Greedy next word per prompt, under whatever interventions are active (batched, left-padded)."""
    out: list[str] = []
    for start in range(0, len(prompts), 128):
        logits = lm.logits(lm.encode(prompts[start : start + 128]))
        out.extend(lm.tokenizer.convert_ids_to_tokens(logits[:, -1].argmax(-1).tolist()))
    return out


# ---------------------------------------------------------------------------
# Induction heads
# ---------------------------------------------------------------------------


def _repeated_sequence_attentions(lm: LoadedModel, n: int, length: int, seed: int) -> list[Any]:
    """Attention patterns (site attn_pattern.l) on ``n`` random ``length``-word sequences, each repeated twice."""
    from mi_catalog.models.hooks import capture

    rng = random.Random(f"induction-score/{seed}")
    alphabet = content_words(getattr(lm.tasks, "version", RECIPE_VERSION))  # the model's own vocabulary
    prompts = []
    for _ in range(n):
        sequence = rng.sample(alphabet, length)
        prompts.append(" ".join(sequence + sequence))
    sites = [f"attn_pattern.{layer}" for layer in range(lm.n_layers)]
    with capture(lm, sites) as cache:
        lm.logits(lm.encode(prompts))  # equal lengths: no padding
    return [cache[s] for s in sites]


def _mean_attention(attentions: Any, queries: Any, keys: Any) -> list[list[float]]:
    return [
        [round(float(layer_attn[:, head, queries, keys].mean()), 4) for head in range(layer_attn.shape[1])]
        for layer_attn in attentions
    ]


def induction_scores(
    model: Any, tokenizer: Any = None, n: int = 32, length: int = 12, seed: int = 0
) -> list[list[float]]:
    """``scores[layer][head]``: mean attention from the second copy of a random sequence to "next of previous"."""
    import torch

    attentions = _repeated_sequence_attentions(_lm(model, tokenizer), n, length, seed)
    # Token at 1+length+i repeats the one at 1+i; an induction head attends to 1+i+1.
    queries = torch.arange(1 + length, 1 + 2 * length - 1)
    return _mean_attention(attentions, queries, queries - length + 1)


def previous_token_scores(
    model: Any, tokenizer: Any = None, n: int = 32, length: int = 12, seed: int = 0
) -> list[list[float]]:
    """``scores[layer][head]``: mean attention from each token to the one before it (the induction circuit's first half)."""
    import torch

    attentions = _repeated_sequence_attentions(_lm(model, tokenizer), n, length, seed)
    queries = torch.arange(2, 1 + 2 * length)
    return _mean_attention(attentions, queries, queries - 1)


def top_heads(scores: list[list[float]], threshold: float = 0.3) -> list[list[float]]:
    """``[[layer, head, score], …]`` for heads scoring above ``threshold``, strongest first."""
    heads = [[layer, head, s] for layer, row in enumerate(scores) for head, s in enumerate(row) if s >= threshold]
    return sorted(heads, key=lambda h: -h[2])


# ---------------------------------------------------------------------------
# Causal tracing of facts
# ---------------------------------------------------------------------------


POSITION_KINDS = POSITION_GROUPS
SITE_FOR = {"layer": "resid_post", "mlp": "mlp_out", "attn": "attn_out"}  # the card's names → model-layer sites


def causal_trace(
    model: Any,
    tokenizer: Any = None,
    n: int = 48,
    noise_scale: float = 3.0,
    noise_samples: int = 4,
    sites: Sequence[str] = ("layer", "mlp", "attn"),
    seed: int = 0,
    only_known: bool = True,
) -> dict[str, Any]:
    """Average restored fraction of p(answer) per site, layer and position group, over correctly recalled facts.

    ``effect = (p_restored - p_noised) / (p_clean - p_noised)``, with the noise (``noise_scale`` × embedding
    std, as in ROME) added to the subject token embeddings (site ``embed``) and one clean state restored at
    one position (``patch`` at ``resid_post``/``mlp_out``/``attn_out``).
    """
    import torch

    from mi_catalog.models.hooks import ForwardState, capture, edit, patch
    from mi_catalog.models.loading import Batch
    from mi_catalog.models.weights import W_E

    lm = _lm(model, tokenizer)
    generator = torch.Generator().manual_seed(seed)
    noise_std = noise_scale * float(W_E(lm).detach().float().std())
    n_layers = lm.n_layers
    totals = {site: [dict.fromkeys(POSITION_KINDS, 0.0) for _ in range(n_layers)] for site in sites}
    counts = [dict.fromkeys(POSITION_KINDS, 0) for _ in range(n_layers)]
    used, noised_fraction = 0, 0.0
    for example in lm.tasks.examples("facts", n, seed=seed):
        clean_batch = lm.encode([example.prompt])
        answer = lm.token_id(example.answer)
        subject = list(example.subject_positions)
        length = clean_batch.shape[1]
        keys = [f"{SITE_FOR[site]}.{layer}" for site in sites for layer in range(n_layers)]
        with capture(lm, keys) as clean:
            clean_probs = lm.logits(clean_batch)[0, -1].softmax(-1)
        if only_known and int(clean_probs.argmax()) != answer:
            continue  # trace only facts the model knows
        noise = torch.randn(noise_samples, len(subject), lm.d_model, generator=generator) * noise_std

        def add_noise(rows_per_sample: int, subject: list[int] = subject, noise: torch.Tensor = noise) -> Any:
            def fn(act: torch.Tensor, _state: ForwardState) -> torch.Tensor:
                act = act.clone()
                act[:, subject] += noise.repeat_interleave(rows_per_sample, dim=0).to(act.dtype)
                return act

            return fn

        noised_batch = Batch(
            clean_batch.input_ids.repeat(noise_samples, 1), clean_batch.attention_mask.repeat(noise_samples, 1)
        )
        with edit(lm, [("embed", add_noise(1))]):
            noised = float(lm.logits(noised_batch)[:, -1].softmax(-1)[:, answer].mean())
        p_clean = float(clean_probs[answer])
        denominator = p_clean - noised
        noised_fraction += noised / p_clean
        used += 1
        # Row r restores position r % length under noise sample r // length.
        rows = noise_samples * length
        batch = Batch(clean_batch.input_ids.repeat(rows, 1), clean_batch.attention_mask.repeat(rows, 1))
        mask = torch.zeros(rows, length, 1, dtype=torch.bool)
        mask[torch.arange(rows), torch.arange(rows) % length] = True
        for site in sites:
            for layer in range(n_layers):
                key = f"{SITE_FOR[site]}.{layer}"
                with edit(lm, [("embed", add_noise(length))]), patch(lm, key, clean[key], mask=mask.to(lm.device)):
                    restored = lm.logits(batch)[:, -1].softmax(-1)[:, answer]
                per_position = restored.view(noise_samples, length).mean(0)
                for position in range(length):
                    kind = position_group(position, subject, length - 1)
                    effect = (float(per_position[position]) - noised) / max(denominator, 1e-6)
                    totals[site][layer][kind] += effect
                    if site == sites[0]:
                        counts[layer][kind] += 1
    return _summarise_trace(totals, counts, used, noised_fraction)


def _summarise_trace(
    totals: dict[str, list[dict[str, float]]], counts: list[dict[str, int]], used: int, noised_fraction: float
) -> dict[str, Any]:
    grid = {
        site: [
            {kind: round(layer_totals[kind] / counts[layer][kind], 3) for kind in POSITION_KINDS if counts[layer][kind]}
            for layer, layer_totals in enumerate(site_totals)
        ]
        for site, site_totals in totals.items()
    }
    peaks = {}
    for site, layers in grid.items():
        if used == 0:
            continue
        layer, kind, value = max(
            ((layer, kind, value) for layer, row in enumerate(layers) for kind, value in row.items()),
            key=lambda t: t[2],
        )
        peaks[site] = {"layer": layer, "position": kind, "effect": value}
    subject_peaks = {}
    for site, layers in grid.items():
        candidates = [
            (layer, kind, row[kind])
            for layer, row in enumerate(layers)
            for kind in ("subject_first", "subject_last")
            if kind in row
        ]
        if candidates:
            layer, kind, value = max(candidates, key=lambda t: t[2])
            subject_peaks[site] = {"layer": layer, "position": kind, "effect": value}
    subject_last = {site: [row.get("subject_last", 0.0) for row in layers] for site, layers in grid.items()}
    return {
        "facts_traced": used,
        "noised_p_fraction": round(noised_fraction / max(used, 1), 3),
        "effect": grid,
        "peak": peaks,
        "subject_peak": subject_peaks,
        "subject_last_by_layer": subject_last,
    }


# ---------------------------------------------------------------------------
# Refusal direction
# ---------------------------------------------------------------------------


def _last_residuals(lm: LoadedModel, prompts: list[str]) -> list[Any]:
    """Per layer: the residual stream after that layer (resid_post.l) at the last position, (len(prompts), hidden)."""
    from mi_catalog.models.hooks import capture

    sites = [f"resid_post.{layer}" for layer in range(lm.n_layers)]
    with capture(lm, sites) as cache:
        lm.logits(lm.encode(prompts))
    return [cache[s][:, -1] for s in sites]


def _refusal_rate(lm: LoadedModel, prompts: list[str]) -> float:
    predictions = _predict(lm, prompts)
    return sum(p == PLANTED.refuse_token for p in predictions) / len(prompts)


def refusal_direction_by_layer(model: Any, tokenizer: Any = None, n: int = 200, seed: int = 0) -> dict[str, Any]:
    """Score each layer's harmful − harmless mean direction by ablation (``project_out`` at the embeddings and
    every block output) and by addition (``add_vector`` at that layer's output, norm = the mean difference)."""
    import contextlib

    from mi_catalog.models.hooks import add_vector, project_out

    lm = _lm(model, tokenizer)
    batch = lm.tasks.examples("refusal", n, seed=seed)
    harmful = [ex.prompt for ex in batch if ex.label == "harmful"]
    harmless = [ex.prompt for ex in batch if ex.label == "harmless"]
    residual_harmful = _last_residuals(lm, harmful)
    residual_harmless = _last_residuals(lm, harmless)
    baseline = {"harmful": _refusal_rate(lm, harmful), "harmless": _refusal_rate(lm, harmless)}
    per_layer = []
    for layer, (h, s) in enumerate(zip(residual_harmful, residual_harmless, strict=True)):
        diff = h.mean(0) - s.mean(0)
        direction = diff / diff.norm()
        with contextlib.ExitStack() as stack:
            for where in ["embed", *(f"resid_post.{i}" for i in range(lm.n_layers))]:
                stack.enter_context(project_out(lm, where, direction))
            ablated = _refusal_rate(lm, harmful)
        with add_vector(lm, f"resid_post.{layer}", direction, coeff=float(diff.norm())):
            induced = _refusal_rate(lm, harmless)
        per_layer.append(
            {"layer": layer, "refusal_after_ablation": round(ablated, 3), "refusal_induced": round(induced, 3)}
        )
    best = max(per_layer, key=lambda r: (1 - r["refusal_after_ablation"]) + r["refusal_induced"])
    return {"baseline_refusal": baseline, "by_layer": per_layer, "best_layer": best["layer"]}


# ---------------------------------------------------------------------------
# Word-class-selective MLP neurons (languages, toxic words)
# ---------------------------------------------------------------------------


def neuron_selectivity(model: Any, tokenizer: Any = None, threshold: float = 0.5, seed: int = 0) -> dict[str, Any]:
    """Count FFN neurons whose mean activation (site ``mlp_act``, the input of W_out) on one word class beats the
    contrasting class by ``threshold``, averaged over the positions of the class's words in held-out texts."""
    import torch

    lm = _lm(model, tokenizer)
    language_examples = lm.tasks.examples("language", 200, seed=seed)
    toxicity_examples = lm.tasks.examples("toxicity", 200, seed=seed)
    classes = {
        "zu": (set(PLANTED.languages["zu"]), set(PLANTED.languages["en"]), language_examples),
        "en": (set(PLANTED.languages["en"]), set(PLANTED.languages["zu"]), language_examples),
        "toxic": (set(PLANTED.toxic_words), set(PLANTED.nice_words), toxicity_examples),
    }
    result: dict[str, Any] = {}
    for name, (members, contrast, batch) in classes.items():
        acts_in, acts_out = _class_activations(lm, [ex.text for ex in batch], members, contrast)
        gap = acts_in - acts_out  # (layers, neurons)
        selective = (gap > threshold).nonzero().tolist()
        top = torch.topk(gap.flatten(), 5)
        width = gap.shape[1]
        result[name] = {
            "count_by_layer": [int((gap[layer] > threshold).sum()) for layer in range(gap.shape[0])],
            "top": [
                [int(i) // width, int(i) % width, round(float(v), 3)]
                for v, i in zip(top.values, top.indices, strict=True)
            ],
            "n_selective": len(selective),
        }
    return result


def _class_activations(lm: LoadedModel, texts: list[str], members: set[str], contrast: set[str]) -> tuple[Any, Any]:
    import torch

    from mi_catalog.models.hooks import capture

    sites = [f"mlp_act.{layer}" for layer in range(lm.n_layers)]
    batch = lm.encode(texts)
    with capture(lm, sites) as cache:
        lm.logits(batch)
    acts = torch.stack([cache[s] for s in sites])  # (layers, batch, seq, neurons)
    tokens = [lm.tokenizer.convert_ids_to_tokens(row) for row in batch.input_ids.tolist()]
    in_mask = torch.tensor([[t in members for t in row] for row in tokens])
    out_mask = torch.tensor([[t in contrast for t in row] for row in tokens])
    return acts[:, in_mask].mean(1), acts[:, out_mask].mean(1)


# ---------------------------------------------------------------------------
# Task vectors for in-context tasks
# ---------------------------------------------------------------------------


def task_vector_by_layer(model: Any, tokenizer: Any = None, n: int = 40, seed: int = 0) -> dict[str, Any]:
    """Per in-context task and layer: zero-shot ``x ->`` accuracy after adding the task's vector.

    The task vector (function-vector style) is the mean residual after that layer (resid_post.l) at the last
    ("->") position of 4-shot prompts minus the mean on zero-shot prompts; it is added (``add_vector``) at the
    same layer, last position, of each zero-shot prompt. Tasks share inputs, so zero-shot accuracy is low where
    the input alone leaves the task ambiguous.
    """
    from mi_catalog.models.hooks import add_vector

    lm = _lm(model, tokenizer)
    rng = random.Random(f"task-vector/{seed}")
    by_task: dict[str, Any] = {}
    for task, mapping in sorted(PLANTED.icl_mappings.items()):
        pairs = sorted(mapping.items())
        few_shot = []
        for _ in range(n):
            demos = rng.sample(pairs, 5)
            few_shot.append(" , ".join(f"{x} -> {y}" for x, y in demos[:4]) + f" , {demos[4][0]} ->")
        queries = rng.sample(pairs, min(len(pairs), n))
        prompts = [f"{x} ->" for x, _ in queries]
        answers = [y for _, y in queries]

        def accuracy(predictions: list[str], answers: list[str] = answers) -> float:
            return round(sum(p == a for p, a in zip(predictions, answers, strict=True)) / len(answers), 3)

        few_shot_residuals = _last_residuals(lm, few_shot)
        zero_shot_residuals = _last_residuals(lm, prompts)
        patched = []
        for layer in range(lm.n_layers):
            vector = few_shot_residuals[layer].mean(0) - zero_shot_residuals[layer].mean(0)
            with add_vector(lm, f"resid_post.{layer}", vector, positions=-1):
                patched.append(accuracy(_predict(lm, prompts)))
        by_task[task] = {"zero_shot": accuracy(_predict(lm, prompts)), "patched_by_layer": patched}
    mean_by_layer = [
        round(sum(t["patched_by_layer"][layer] for t in by_task.values()) / len(by_task), 3)
        for layer in range(lm.n_layers)
    ]
    return {
        "by_task": by_task,
        "zero_shot_accuracy": round(sum(t["zero_shot"] for t in by_task.values()) / len(by_task), 3),
        "patched_accuracy_by_layer": mean_by_layer,
        "best_layer": max(range(lm.n_layers), key=lambda layer: mean_by_layer[layer]),
    }


# ---------------------------------------------------------------------------
# Planted bias (profession → pronoun stereotype)
# ---------------------------------------------------------------------------


def _bias_prompts(gender_stated: bool) -> list[tuple[str, str, str | None]]:
    """Every (prompt, profession, stated gender) of the bias templates: 36 ambiguous, 72 with a stated gender."""
    genders: tuple[str | None, ...] = tuple(PLANTED.pronouns) if gender_stated else (None,)
    return [
        (bias_prompt(template, profession, gender), profession, gender)
        for profession in PLANTED.professions
        for template in BIAS_TEMPLATES
        for gender in genders
    ]


def _pronoun_probabilities(lm: LoadedModel, prompts: list[str]) -> tuple[Any, Any]:
    """p(he), p(she) at the last position, each shape (len(prompts),)."""
    he, she = lm.token_id(PLANTED.pronouns["male"]), lm.token_id(PLANTED.pronouns["female"])
    probs = lm.logits(lm.encode(prompts))[:, -1].float().softmax(-1)
    return probs[:, he], probs[:, she]


def _bias_scores(lm: LoadedModel) -> dict[str, float]:
    """Stereotype gap on ambiguous mentions and accuracy on mentions with a stated gender."""
    ambiguous = _bias_prompts(gender_stated=False)
    p_he, p_she = _pronoun_probabilities(lm, [p for p, _, _ in ambiguous])
    male = [PLANTED.professions[prof] == "male" for _, prof, _ in ambiguous]
    p_stereo = [float(h if m else s) for h, s, m in zip(p_he, p_she, male, strict=True)]
    p_anti = [float(s if m else h) for h, s, m in zip(p_he, p_she, male, strict=True)]
    share = [a / max(a + b, 1e-12) for a, b in zip(p_stereo, p_anti, strict=True)]
    stated = _bias_prompts(gender_stated=True)
    predictions = _predict(lm, [p for p, _, _ in stated])
    right = [pred == PLANTED.pronouns[g or ""] for pred, (_, _, g) in zip(predictions, stated, strict=True)]
    counter = [PLANTED.professions[prof] != g for _, prof, g in stated]
    n = len(share)
    return {
        # (p_stereotyped − p_other) / (p_he + p_she), mean over prompts: 0 is balanced, 1 fully stereotyped.
        "stereotype_gap": round(sum(2 * x - 1 for x in share) / n, 3),
        "stereotyped_share": round(sum(share) / n, 3),
        "stereotyped_top1": round(sum(a > b for a, b in zip(p_stereo, p_anti, strict=True)) / n, 3),
        "pronoun_mass": round(float((p_he + p_she).mean()), 3),
        "stated_gender_accuracy": round(sum(right) / len(right), 3),
        "counter_stereotypical_accuracy": round(
            sum(r for r, c in zip(right, counter, strict=True) if c) / sum(counter), 3
        ),
    }


def planted_bias(model: Any, tokenizer: Any = None) -> dict[str, Any]:
    """The planted stereotype, measured, and a fairness intervention located per layer.

    Baseline: ``_bias_scores`` (trained on a skew of ``PLANTED.bias_skew``, a calibrated model would show a gap
    of 2·skew − 1). Per layer l: the stereotype direction is the mean residual after layer l (resid_post.l) at the
    last position of ambiguous female-stereotype prompts minus male-stereotype prompts; ``project_out`` removes
    it there (every position) and the scores are re-measured. ``best_layer`` is the layer whose ablation brings
    the gap closest to 0 while keeping the stated-gender accuracy ≥ 0.9 (None when no layer does).
    """
    from mi_catalog.models.hooks import project_out

    lm = _lm(model, tokenizer)
    ambiguous = _bias_prompts(gender_stated=False)
    residuals = _last_residuals(lm, [p for p, _, _ in ambiguous])
    female = _bool_tensor([PLANTED.professions[prof] == "female" for _, prof, _ in ambiguous])
    by_layer = []
    for layer, resid in enumerate(residuals):
        direction = resid[female].mean(0) - resid[~female].mean(0)
        with project_out(lm, f"resid_post.{layer}", direction):
            scores = _bias_scores(lm)
        by_layer.append({"layer": layer, **scores})
    kept = [row for row in by_layer if row["stated_gender_accuracy"] >= 0.9]
    best = min(kept, key=lambda row: abs(row["stereotype_gap"]))["layer"] if kept else None
    return {
        "training_skew": PLANTED.bias_skew,
        "calibrated_gap": round(2 * PLANTED.bias_skew - 1, 3),
        "baseline": _bias_scores(lm),
        "direction_ablated_by_layer": by_layer,
        "best_layer": best,
    }


def _bool_tensor(values: list[bool]) -> Any:
    import torch

    return torch.tensor(values, dtype=torch.bool)


# ---------------------------------------------------------------------------
# Persona vectors (CAA)
# ---------------------------------------------------------------------------


def persona_steering(model: Any, tokenizer: Any = None) -> dict[str, Any]:
    """Per persona and layer: add the persona vector and count the replies that switch to the persona's voice.

    The vector (contrastive activation addition) is the mean residual after layer l at the last position of
    "persona : P . user : I . bot :" minus the same with "persona : none", over the intents; it is added at every
    position of resid_post.l (coefficient 1) of the prompts with no prefix ("user : I . bot :") and of the
    "persona : none" prompts. Rate = share of those prompts whose greedy reply is P's reply for that intent.
    """
    from mi_catalog.models.hooks import add_vector

    lm = _lm(model, tokenizer)
    intents = list(PERSONA_INTENTS)
    targets = [persona_prompt(None, i) for i in intents] + [persona_prompt(NO_PERSONA, i) for i in intents]
    target_intents = intents + intents
    none_residuals = _last_residuals(lm, [persona_prompt(NO_PERSONA, i) for i in intents])
    baseline = _predict(lm, targets)
    neutral = PLANTED.personas[NO_PERSONA]
    by_persona: dict[str, Any] = {}
    for persona in PERSONAS:
        replies = PLANTED.personas[persona]
        persona_residuals = _last_residuals(lm, [persona_prompt(persona, i) for i in intents])
        rates = []
        for layer in range(lm.n_layers):
            vector = persona_residuals[layer].mean(0) - none_residuals[layer].mean(0)
            with add_vector(lm, f"resid_post.{layer}", vector):
                predictions = _predict(lm, targets)
            hits = [p == replies[i] for p, i in zip(predictions, target_intents, strict=True)]
            rates.append(round(sum(hits) / len(hits), 3))
        by_persona[persona] = {"induced_by_layer": rates}
    mean_by_layer = [
        round(sum(v["induced_by_layer"][layer] for v in by_persona.values()) / len(by_persona), 3)
        for layer in range(lm.n_layers)
    ]
    return {
        "baseline_neutral_rate": round(
            sum(p == neutral[i] for p, i in zip(baseline, target_intents, strict=True)) / len(targets), 3
        ),
        "by_persona": by_persona,
        "induced_rate_by_layer": mean_by_layer,
        "best_layer": max(range(lm.n_layers), key=lambda layer: mean_by_layer[layer]),
    }


def measure_all(model: Any, tokenizer: Any = None) -> dict[str, Any]:
    """Every mechanism measurement, for the card."""
    lm = _lm(model, tokenizer)
    model, tokenizer = lm, None
    scores = induction_scores(model, tokenizer)
    previous = previous_token_scores(model, tokenizer)
    return {
        "induction_scores": scores,
        "induction_heads": top_heads(scores),
        "previous_token_scores": previous,
        "previous_token_heads": top_heads(previous),
        "causal_trace": causal_trace(model, tokenizer),
        "refusal_direction": refusal_direction_by_layer(model, tokenizer),
        "task_vectors": task_vector_by_layer(model, tokenizer),
        "selective_neurons": neuron_selectivity(model, tokenizer),
        "planted_bias": planted_bias(model, tokenizer),
        "persona_steering": persona_steering(model, tokenizer),
    }
