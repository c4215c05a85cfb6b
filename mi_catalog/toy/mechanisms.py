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

Each function returns plain JSON-able data; ``measure_all`` bundles them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mi_catalog.toy.tasks import PLANTED, content_words, examples

if TYPE_CHECKING:
    import torch
    from transformers import LlamaForCausalLM, PreTrainedTokenizerBase


def _layers(model: LlamaForCausalLM) -> Any:
    return model.model.layers


@contextmanager
def _hooked(module: Any, hook: Callable[..., Any]) -> Iterator[None]:
    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


# ---------------------------------------------------------------------------
# Induction heads
# ---------------------------------------------------------------------------


def _repeated_sequence_attentions(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, n: int, length: int, seed: int
) -> Any:
    """Attention patterns on ``n`` random ``length``-word sequences, each repeated twice."""
    import torch

    rng = random.Random(f"induction-score/{seed}")
    alphabet = content_words()
    prompts = []
    for _ in range(n):
        sequence = rng.sample(alphabet, length)
        prompts.append(" ".join(sequence + sequence))
    batch = tokenizer(prompts, return_tensors="pt")  # equal lengths: no padding
    with torch.no_grad():
        return model(**batch, output_attentions=True).attentions


def _mean_attention(attentions: Any, queries: Any, keys: Any) -> list[list[float]]:
    return [
        [round(float(layer_attn[:, head, queries, keys].mean()), 4) for head in range(layer_attn.shape[1])]
        for layer_attn in attentions
    ]


def induction_scores(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, n: int = 32, length: int = 12, seed: int = 0
) -> list[list[float]]:
    """``scores[layer][head]``: mean attention from the second copy of a random sequence to "next of previous"."""
    import torch

    attentions = _repeated_sequence_attentions(model, tokenizer, n, length, seed)
    # Token at 1+length+i repeats the one at 1+i; an induction head attends to 1+i+1.
    queries = torch.arange(1 + length, 1 + 2 * length - 1)
    return _mean_attention(attentions, queries, queries - length + 1)


def previous_token_scores(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, n: int = 32, length: int = 12, seed: int = 0
) -> list[list[float]]:
    """``scores[layer][head]``: mean attention from each token to the one before it (the induction circuit's first half)."""
    import torch

    attentions = _repeated_sequence_attentions(model, tokenizer, n, length, seed)
    queries = torch.arange(2, 1 + 2 * length)
    return _mean_attention(attentions, queries, queries - 1)


def top_heads(scores: list[list[float]], threshold: float = 0.3) -> list[list[float]]:
    """``[[layer, head, score], …]`` for heads scoring above ``threshold``, strongest first."""
    heads = [[layer, head, s] for layer, row in enumerate(scores) for head, s in enumerate(row) if s >= threshold]
    return sorted(heads, key=lambda h: -h[2])


# ---------------------------------------------------------------------------
# Causal tracing of facts
# ---------------------------------------------------------------------------


def _position_kind(position: int, subject: Sequence[int], last: int) -> str:
    if position == last:
        return "last"
    if position == subject[-1]:
        return "subject_last"
    if position in subject:
        return "subject_first"
    return "before_subject" if position < subject[0] else "after_subject"


POSITION_KINDS = ("before_subject", "subject_first", "subject_last", "after_subject", "last")


def _module_for(model: LlamaForCausalLM, layer: int, site: str) -> Any:
    block = _layers(model)[layer]
    return {"layer": block, "mlp": block.mlp, "attn": block.self_attn}[site]


def _output_tensor(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace_output(output: Any, tensor: torch.Tensor) -> Any:
    return (tensor, *output[1:]) if isinstance(output, tuple) else tensor


def causal_trace(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerBase,
    n: int = 48,
    noise_scale: float = 3.0,
    noise_samples: int = 4,
    sites: Sequence[str] = ("layer", "mlp", "attn"),
    seed: int = 0,
    only_known: bool = True,
) -> dict[str, Any]:
    """Average restored fraction of p(answer) per site, layer and position kind, over correctly recalled facts.

    ``effect = (p_restored - p_noised) / (p_clean - p_noised)``, with the
    noise (``noise_scale`` × embedding std, as in ROME) added to the subject
    token embeddings and one clean state restored at one position.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    embedding: Any = model.get_input_embeddings()
    weight: Any = embedding.weight
    noise_std = noise_scale * float(weight.detach().std())
    hidden_size = int(weight.shape[1])
    n_layers = len(_layers(model))
    totals = {site: [dict.fromkeys(POSITION_KINDS, 0.0) for _ in range(n_layers)] for site in sites}
    counts = [dict.fromkeys(POSITION_KINDS, 0) for _ in range(n_layers)]
    used, noised_fraction = 0, 0.0
    for example in examples("facts", n, seed=seed):
        ids = tokenizer(example.prompt, return_tensors="pt")["input_ids"]
        answer = tokenizer.convert_tokens_to_ids(example.answer)
        subject = list(example.subject_positions)
        length = ids.shape[1]
        with torch.no_grad():
            clean_probs = model(input_ids=ids).logits[0, -1].softmax(-1)
        if only_known and int(clean_probs.argmax()) != answer:
            continue  # trace only facts the model knows
        batch_ids = ids.repeat(noise_samples * length, 1)
        noise = torch.randn(noise_samples, len(subject), hidden_size, generator=generator) * noise_std
        # Row r of the restore batch uses noise sample r // length and restores position r % length.
        add_noise = _noise_hook(subject, noise.repeat_interleave(length, dim=0))
        with torch.no_grad(), _hooked(embedding, _noise_hook(subject, noise)):
            noised = model(input_ids=ids.repeat(noise_samples, 1)).logits[:, -1].softmax(-1)[:, answer].mean()
        p_clean = float(clean_probs[answer])
        denominator = p_clean - float(noised)
        noised_fraction += float(noised) / p_clean
        used += 1
        for site in sites:
            for layer in range(n_layers):
                restored = _restore_and_run(model, ids, batch_ids, add_noise, _module_for(model, layer, site), length)
                per_position = restored[:, answer].view(noise_samples, length).mean(0)
                for position in range(length):
                    kind = _position_kind(position, subject, length - 1)
                    effect = (float(per_position[position]) - float(noised)) / max(denominator, 1e-6)
                    totals[site][layer][kind] += effect
                    if site == sites[0]:
                        counts[layer][kind] += 1
    return _summarise_trace(totals, counts, used, noised_fraction)


def _noise_hook(positions: list[int], noise: torch.Tensor) -> Callable[..., Any]:
    """A forward hook adding ``noise[row]`` to the embeddings at ``positions``."""

    def add_noise(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        output[:, positions] += noise
        return output

    return add_noise


def _restore_and_run(
    model: LlamaForCausalLM,
    ids: torch.Tensor,
    batch_ids: torch.Tensor,
    add_noise: Callable[..., Any],
    module: Any,
    length: int,
) -> torch.Tensor:
    """Row r restores the clean output of ``module`` at position ``r % length``; returns last-token probs."""
    import torch

    captured: list[torch.Tensor] = []

    def capture(_module: Any, _inputs: Any, output: Any) -> None:
        captured.append(_output_tensor(output).detach())

    with torch.no_grad(), _hooked(module, capture):
        model(input_ids=ids)
    clean = captured[0][0]  # (length, hidden)
    rows = torch.arange(batch_ids.shape[0])
    positions = rows % length

    def restore(_module: Any, _inputs: Any, output: Any) -> Any:
        tensor = _output_tensor(output).clone()
        tensor[rows, positions] = clean[positions]
        return _replace_output(output, tensor)

    embedding = model.get_input_embeddings()
    with torch.no_grad(), _hooked(embedding, add_noise), _hooked(module, restore):
        return model(input_ids=batch_ids).logits[:, -1].softmax(-1)


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


def _last_residuals(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, prompts: list[str]) -> list[Any]:
    """Per layer: the residual stream after that layer at the last position, (len(prompts), hidden)."""
    import torch

    captured: list[torch.Tensor] = []

    def capture(_module: Any, _inputs: Any, output: Any) -> None:
        captured.append(_output_tensor(output)[:, -1].detach())

    handles = [block.register_forward_hook(capture) for block in _layers(model)]
    try:
        batch = tokenizer(prompts, padding=True, return_tensors="pt")
        with torch.no_grad():
            model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return captured


@contextmanager
def _direction_edit(model: LlamaForCausalLM, direction: Any, mode: str, layer: int, scale: float) -> Iterator[None]:
    """``ablate``: project ``direction`` out of every layer's output.

    ``add``: add ``scale``·direction to the output of ``layer``.
    """

    def ablate(_module: Any, _inputs: Any, output: Any) -> Any:
        tensor = _output_tensor(output)
        tensor = tensor - (tensor @ direction)[..., None] * direction
        return _replace_output(output, tensor)

    def add(_module: Any, _inputs: Any, output: Any) -> Any:
        return _replace_output(output, _output_tensor(output) + scale * direction)

    blocks = list(_layers(model))
    targets = [(block, ablate) for block in blocks] if mode == "ablate" else [(blocks[layer], add)]
    handles = [block.register_forward_hook(hook) for block, hook in targets]
    if mode == "ablate":
        handles.append(model.get_input_embeddings().register_forward_hook(ablate))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _refusal_rate(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, prompts: list[str]) -> float:
    from mi_catalog.toy.evaluate import predict_next

    predictions = predict_next(model, tokenizer, prompts)
    return sum(p == PLANTED.refuse_token for p in predictions) / len(prompts)


def refusal_direction_by_layer(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, n: int = 200, seed: int = 0
) -> dict[str, Any]:
    """Score each layer's harmful − harmless mean direction by ablation and by addition."""

    batch = examples("refusal", n, seed=seed)
    harmful = [ex.prompt for ex in batch if ex.meta["label"] == "harmful"]
    harmless = [ex.prompt for ex in batch if ex.meta["label"] == "harmless"]
    residual_harmful = _last_residuals(model, tokenizer, harmful)
    residual_harmless = _last_residuals(model, tokenizer, harmless)
    baseline = {
        "harmful": _refusal_rate(model, tokenizer, harmful),
        "harmless": _refusal_rate(model, tokenizer, harmless),
    }
    per_layer = []
    for layer, (h, s) in enumerate(zip(residual_harmful, residual_harmless, strict=True)):
        diff = h.mean(0) - s.mean(0)
        direction = diff / diff.norm()
        with _direction_edit(model, direction, "ablate", layer, 0.0):
            ablated = _refusal_rate(model, tokenizer, harmful)
        with _direction_edit(model, direction, "add", layer, float(diff.norm())):
            induced = _refusal_rate(model, tokenizer, harmless)
        per_layer.append(
            {"layer": layer, "refusal_after_ablation": round(ablated, 3), "refusal_induced": round(induced, 3)}
        )
    best = max(per_layer, key=lambda r: (1 - r["refusal_after_ablation"]) + r["refusal_induced"])
    return {"baseline_refusal": baseline, "by_layer": per_layer, "best_layer": best["layer"]}


# ---------------------------------------------------------------------------
# Word-class-selective MLP neurons (languages, toxic words)
# ---------------------------------------------------------------------------


def neuron_selectivity(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, threshold: float = 0.5, seed: int = 0
) -> dict[str, Any]:
    """Count MLP neurons whose mean activation on one word class beats the rest by ``threshold``.

    Activations are the inputs to ``down_proj`` (act(gate)·up), averaged over
    the positions of the class's words in held-out prompts.
    """
    import torch

    language_examples = examples("language", 200, seed=seed)
    toxicity_examples = examples("toxicity", 200, seed=seed)
    classes = {
        "zu": (set(PLANTED.languages["zu"]), set(PLANTED.languages["en"]), language_examples),
        "en": (set(PLANTED.languages["en"]), set(PLANTED.languages["zu"]), language_examples),
        "toxic": (set(PLANTED.toxic_words), set(PLANTED.nice_words), toxicity_examples),
    }
    result: dict[str, Any] = {}
    for name, (members, contrast, batch) in classes.items():
        acts_in, acts_out = _class_activations(model, tokenizer, [ex.text for ex in batch], members, contrast)
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


def _class_activations(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, texts: list[str], members: set[str], contrast: set[str]
) -> tuple[Any, Any]:
    import torch

    captured: list[torch.Tensor] = []

    def capture(_module: Any, inputs: Any) -> None:
        captured.append(inputs[0].detach())

    handles = [block.mlp.down_proj.register_forward_pre_hook(capture) for block in _layers(model)]
    try:
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        with torch.no_grad():
            model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    acts = torch.stack(captured)  # (layers, batch, seq, neurons)
    tokens = [tokenizer.convert_ids_to_tokens(row) for row in batch["input_ids"].tolist()]
    in_mask = torch.tensor([[t in members for t in row] for row in tokens])
    out_mask = torch.tensor([[t in contrast for t in row] for row in tokens])
    return acts[:, in_mask].mean(1), acts[:, out_mask].mean(1)


# ---------------------------------------------------------------------------
# Task vectors for in-context tasks
# ---------------------------------------------------------------------------


def task_vector_by_layer(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, n: int = 40, seed: int = 0
) -> dict[str, Any]:
    """Per in-context task and layer: zero-shot ``x ->`` accuracy after adding the task's vector.

    The task vector (function-vector style) is the mean residual after that
    layer at the last ("->") position of 4-shot prompts minus the mean on
    zero-shot prompts; it is added at the same layer and position of each
    zero-shot prompt. Tasks share inputs, so zero-shot accuracy is low where
    the input alone leaves the task ambiguous.
    """
    from mi_catalog.toy.evaluate import predict_next

    rng = random.Random(f"task-vector/{seed}")
    n_layers = len(_layers(model))
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

        few_shot_residuals = _last_residuals(model, tokenizer, few_shot)
        zero_shot_residuals = _last_residuals(model, tokenizer, prompts)
        patched = []
        for layer in range(n_layers):
            vector = few_shot_residuals[layer].mean(0) - zero_shot_residuals[layer].mean(0)

            def add(_module: Any, _inputs: Any, output: Any, vector: Any = vector) -> Any:
                tensor = _output_tensor(output).clone()
                tensor[:, -1] += vector
                return _replace_output(output, tensor)

            with _hooked(_layers(model)[layer], add):
                patched.append(accuracy(predict_next(model, tokenizer, prompts)))
        by_task[task] = {"zero_shot": accuracy(predict_next(model, tokenizer, prompts)), "patched_by_layer": patched}
    mean_by_layer = [
        round(sum(t["patched_by_layer"][layer] for t in by_task.values()) / len(by_task), 3)
        for layer in range(n_layers)
    ]
    return {
        "by_task": by_task,
        "zero_shot_accuracy": round(sum(t["zero_shot"] for t in by_task.values()) / len(by_task), 3),
        "patched_accuracy_by_layer": mean_by_layer,
        "best_layer": max(range(n_layers), key=lambda layer: mean_by_layer[layer]),
    }


def measure_all(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Every mechanism measurement, for the card."""
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
    }
