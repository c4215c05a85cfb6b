"""Measure a trained toy model and write its model card (``card.json`` + ``README.md``).

The card records what was *verified* on the saved weights — task accuracies
and mechanism facts (induction heads, where causal tracing of facts peaks,
the refusal direction's best layer, word-class-selective neurons) — so tests
and users can check claims against a re-measurement (``mi-catalog toy eval``).
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mi_catalog.fsutil import atomic_write_text
from mi_catalog.toy.tasks import PLANTED, RECIPE_VERSION, TASKS

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

MEASUREMENT_NOTE = (
    "Mechanisms are measured on the model layer's sites and interventions (mi_catalog.models: capture, patch, "
    "add_vector, project_out), the same stack the reference implementations use. Re-measured after moving off "
    "raw hooks at hard-coded Llama paths: no value moved (every figure identical to 3 decimals)."
)
EVAL_N = 200
EVAL_SEED = 0
# Accuracies re-measured on the same examples should agree to this (they are deterministic on CPU).
ACCURACY_TOLERANCE = 0.02


def measure(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Accuracies and mechanism facts of ``model``."""
    from mi_catalog.toy.evaluate import evaluate
    from mi_catalog.toy.mechanisms import measure_all

    return {
        "accuracies": evaluate(model, tokenizer, n=EVAL_N, seed=EVAL_SEED),
        "mechanisms": measure_all(model, tokenizer),
    }


def build_card(model: LlamaForCausalLM, measured: dict[str, Any], training: dict[str, Any]) -> dict[str, Any]:
    """The card's content: model summary, training facts, measurements and the planted-truth summary."""
    config = model.config
    mechanisms = measured["mechanisms"]
    trace = mechanisms["causal_trace"]
    return {
        "name": "mi-catalog toy llama",
        "architecture": "LlamaForCausalLM",
        "model": {
            "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers,
            "num_attention_heads": config.num_attention_heads,
            "intermediate_size": config.intermediate_size,
            "vocab_size": config.vocab_size,
            "positions": "RoPE",
            "tied_embeddings": bool(config.tie_word_embeddings),
            "parameters": sum(p.numel() for p in model.parameters()),
        },
        "data_recipe_version": RECIPE_VERSION,
        "training": training,
        "evaluation": {"n_per_task": EVAL_N, "seed": EVAL_SEED, "tolerance": ACCURACY_TOLERANCE},
        "accuracies": {task: round(measured["accuracies"][task], 4) for task in TASKS},
        "mechanisms": {
            "induction_heads": mechanisms["induction_heads"],
            "induction_scores": mechanisms["induction_scores"],
            "previous_token_heads": mechanisms["previous_token_heads"],
            "fact_recall": {
                "causal_trace_peak": trace["peak"],
                "causal_trace_subject_peak": trace["subject_peak"],
                "subject_last_restore_by_layer": trace["subject_last_by_layer"],
                "effect": trace["effect"],
                "facts_traced": trace["facts_traced"],
                "noised_p_fraction": trace["noised_p_fraction"],
            },
            "refusal_direction": mechanisms["refusal_direction"],
            "task_vectors": mechanisms["task_vectors"],
            "selective_neurons": mechanisms["selective_neurons"],
        },
        "planted": {
            "n_facts": len(PLANTED.facts),
            "n_subjects": len(PLANTED.subjects),
            "harmful_words": list(PLANTED.harmful_words),
            "toxic_words": list(PLANTED.toxic_words),
            "languages": {k: len(v) for k, v in PLANTED.languages.items()},
            "icl_tasks": sorted(PLANTED.icl_mappings),
        },
        "environment": {"python": platform.python_version(), **_library_versions()},
        "measurement": MEASUREMENT_NOTE,
    }


def _library_versions() -> dict[str, str]:
    import torch
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__}


def render_readme(card: dict[str, Any]) -> str:
    """A short human-readable model card rendered from ``card``."""
    model, training, mech = card["model"], card["training"], card["mechanisms"]
    fact = mech["fact_recall"]
    refusal = mech["refusal_direction"]
    lines = [
        "# mi-catalog toy model",
        "",
        f"A {model['num_hidden_layers']}-layer, {model['num_attention_heads']}-head Llama "
        f"(hidden {model['hidden_size']}, MLP {model['intermediate_size']}, RoPE, tied embeddings, "
        f"{model['parameters']:,} parameters, {model['vocab_size']} word-level tokens) trained from scratch on the "
        f"synthetic task mixture of `mi_catalog.toy.tasks` (data recipe v{card['data_recipe_version']}). "
        "Its planted truth (facts, harmful/toxic words, the two languages, in-context tasks) is importable as "
        "`mi_catalog.toy.tasks.PLANTED`, so interpretability methods can be scored against it.",
        "",
        "Generated by `mi_catalog.toy.ship` from `card.json`; re-measure with `mi-catalog toy eval`.",
        "",
        "## Training",
        "",
        f"seed {training['seed']}, {training['steps']} steps × batch {training['batch_size']}, "
        f"AdamW lr {training['learning_rate']}, {training['train_seconds']:.0f} s on one CPU thread; "
        f"final loss {training.get('final_loss', float('nan')):.3f}.",
        "",
        f"## Accuracy (greedy next token, {card['evaluation']['n_per_task']} held-out examples per task)",
        "",
        "| task | accuracy |",
        "|---|---|",
        *[f"| {task} | {acc:.3f} |" for task, acc in card["accuracies"].items()],
        "",
        "## Verified mechanisms",
        "",
        "- Induction heads (layer, head, score): " + _heads(mech["induction_heads"]),
        "- Previous-token heads (the induction circuit's first half): " + _heads(mech["previous_token_heads"]),
        f"- Fact recall, causal tracing ({fact['facts_traced']} facts, subject embeddings noised): peak "
        + "; ".join(
            f"{site} L{peak['layer']} @ {peak['position']} ({peak['effect']:.2f})"
            for site, peak in fact["causal_trace_peak"].items()
        )
        + "; best subject-token site: "
        + "; ".join(
            f"{site} L{peak['layer']} @ {peak['position']} ({peak['effect']:.2f})"
            for site, peak in fact["causal_trace_subject_peak"].items()
        )
        + ". Restoring the residual at the last subject token, by layer: "
        + ", ".join(f"L{i} {v:.2f}" for i, v in enumerate(fact["subject_last_restore_by_layer"]["layer"]))
        + ".",
        f"- Refusal direction (difference in means, last token): best layer {refusal['best_layer']}; "
        + "; ".join(
            f"L{r['layer']} ablation → refusal {r['refusal_after_ablation']:.2f}, addition → {r['refusal_induced']:.2f}"
            for r in refusal["by_layer"]
        )
        + f" (baseline: harmful {refusal['baseline_refusal']['harmful']:.2f}, "
        f"harmless {refusal['baseline_refusal']['harmless']:.2f}).",
        "- Task vectors (mean 4-shot minus zero-shot residual at the last position, added to zero-shot `x ->`): "
        f"mean zero-shot accuracy {mech['task_vectors']['zero_shot_accuracy']:.2f}; patched, by layer: "
        + ", ".join(f"L{i} {v:.2f}" for i, v in enumerate(mech["task_vectors"]["patched_accuracy_by_layer"]))
        + f" (best layer {mech['task_vectors']['best_layer']}).",
        "- Word-class-selective MLP neurons: "
        + ", ".join(f"{name} {info['n_selective']}" for name, info in mech["selective_neurons"].items())
        + ".",
        "",
        "Token ids are stable: future recipe versions only append words to the vocabulary.",
        "",
        "## How this was measured",
        "",
        card.get("measurement", MEASUREMENT_NOTE),
        "",
    ]
    return "\n".join(lines)


def weights_sha256(directory: Path) -> str:
    """Hash of ``model.safetensors``: ties the card to the exact weights it describes."""
    return hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()


def _heads(heads: list[list[float]]) -> str:
    return ", ".join(f"L{int(h[0])}H{int(h[1])} {h[2]:.2f}" for h in heads) or "none above threshold"


def write_card(directory: Path, card: dict[str, Any]) -> None:
    """Write ``card.json`` and ``README.md`` atomically."""
    directory = Path(directory)
    atomic_write_text(directory / "card.json", json.dumps(card, indent=2) + "\n")
    atomic_write_text(directory / "README.md", render_readme(card))
    for name in ("card.json", "README.md"):
        (directory / name).chmod(0o644)  # shipped package data: world-readable


def ship(directory: Path, training: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load the checkpoint in ``directory``, measure it, and write its card; returns the card.

    ``training`` defaults to the record ``train`` leaves in the saved config (``toy_training``).
    """
    from mi_catalog.toy import load_model_dir

    model, tokenizer = load_model_dir(directory)
    if training is None:
        training = dict(getattr(model.config, "toy_training", None) or {})
    card = build_card(model, measure(model, tokenizer), training)
    card["weights_sha256"] = weights_sha256(Path(directory))
    write_card(directory, card)
    return card
