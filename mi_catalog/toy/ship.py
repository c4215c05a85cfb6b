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
from mi_catalog.toy.tasks import PLANTED, TASKS, TRAINED_FORMS, model_recipe_version

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerBase

MEASUREMENT_NOTE = (
    "Mechanisms are measured on the model layer's sites and interventions (mi_catalog.models: capture, patch, "
    "add_vector, project_out), the same stack the reference implementations use."
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
        "accuracy_by_kind": accuracy_by_kind(model, tokenizer),
        "retained_accuracies": retained_accuracies(model, tokenizer),
        "mechanisms": measure_all(model, tokenizer),
    }


# Task forms an earlier recipe evaluated that a later recipe still trains but evaluates differently (task → the
# version whose evaluation set is the form): recipe v3's language task is the continuation, its toxicity task the
# reputation form; translation and the plain "comment : you WORD ," form stay in its training mixture.
RETAINED_FORMS = {"toxicity_plain": ("toxicity", 2)}


def retained_accuracies(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase) -> dict[str, float]:
    """Accuracy on the earlier forms of tasks the model's recipe evaluates differently (``RETAINED_FORMS``)."""
    from mi_catalog.toy.evaluate import accuracy, evaluate
    from mi_catalog.toy.tasks import form_examples

    version = model_recipe_version(model)
    measured = {
        name: round(evaluate(model, tokenizer, n=EVAL_N, seed=EVAL_SEED, tasks=(task,), version=since)[task], 4)
        for name, (task, since) in RETAINED_FORMS.items()
        if version > since
    }
    for name, (since, _generator) in TRAINED_FORMS.items():  # trained forms that are no evaluation task
        if version >= since:
            measured[name] = round(accuracy(model, tokenizer, form_examples(name, EVAL_N, EVAL_SEED)), 4)
    return measured


def accuracy_by_kind(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase) -> dict[str, dict[str, float]]:
    """Accuracy of the card's evaluation examples split by ``meta["kind"]`` (bias: ambiguous / unambiguous; recipe
    v3's language: continuation / translation) and, for bias, on the counter-stereotypical mentions (stated gender
    against the profession's stereotype); for recipe v3's toxicity, by negated / asserted."""
    from mi_catalog.toy.evaluate import predict_next
    from mi_catalog.toy.tasks import examples

    version = model_recipe_version(model)
    result: dict[str, dict[str, float]] = {}
    for task in ("bias", "language", "toxicity"):
        batch = examples(task, EVAL_N, seed=EVAL_SEED, version=version)
        predictions = predict_next(model, tokenizer, [ex.prompt for ex in batch])
        groups: dict[str, list[bool]] = {}
        for prediction, ex in zip(predictions, batch, strict=True):
            ok = prediction == ex.answer
            if "kind" in ex.meta:
                groups.setdefault(ex.meta["kind"], []).append(ok)
            if ex.meta.get("counter_stereotypical"):
                groups.setdefault("counter_stereotypical", []).append(ok)
            if "negated" in ex.meta:
                groups.setdefault("negated" if ex.meta["negated"] else "asserted", []).append(ok)
        if len(groups) > 1 or task == "bias":
            result[task] = {kind: round(sum(v) / len(v), 4) for kind, v in groups.items()}
    return result


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
        "data_recipe_version": int(training.get("recipe_version") or model_recipe_version(model)),
        "training": training,
        "evaluation": {"n_per_task": EVAL_N, "seed": EVAL_SEED, "tolerance": ACCURACY_TOLERANCE},
        "accuracies": {task: round(measured["accuracies"][task], 4) for task in TASKS},
        "accuracy_by_kind": measured.get("accuracy_by_kind", {}),
        **({"retained_accuracies": measured["retained_accuracies"]} if measured.get("retained_accuracies") else {}),
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
            "planted_bias": mechanisms["planted_bias"],
            "persona_steering": mechanisms["persona_steering"],
        },
        "planted": {
            "n_facts": len(PLANTED.facts),
            "n_subjects": len(PLANTED.subjects),
            "harmful_words": list(PLANTED.harmful_words),
            "toxic_words": list(PLANTED.toxic_words),
            "languages": {k: len(v) for k, v in PLANTED.languages.items()},
            "icl_tasks": sorted(PLANTED.icl_mappings),
            "professions": dict(PLANTED.professions),
            "bias_skew": PLANTED.bias_skew,
            "personas": sorted(PLANTED.personas),
            **(
                {
                    "companions": len(PLANTED.companions),
                    "continuation_skew": PLANTED.continuation_skew,
                    "toxic_subjects": list(PLANTED.toxic_subjects),
                    "toxic_skew": PLANTED.toxic_skew,
                }
                if int(training.get("recipe_version") or 0) >= 3
                else {}
            ),
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
        f"{model['parameters']:,} parameters, {model['vocab_size']} word-level tokens) trained "
        + _how_trained(training)
        + f" on the synthetic task mixture of `mi_catalog.toy.tasks` (data recipe v{card['data_recipe_version']}). "
        "Its planted truth (facts, harmful/toxic words, the two languages, in-context tasks, the profession "
        "stereotypes and their skew, the personas) is importable as "
        "`mi_catalog.toy.tasks.PLANTED`, so interpretability methods can be scored against it.",
        "",
        "Generated by `mi_catalog.toy.ship` from `card.json`; re-measure with `mi-catalog toy eval`.",
        "",
        "## Training",
        "",
        *_training_lines(training),
        "",
        f"## Accuracy (greedy next token, {card['evaluation']['n_per_task']} held-out examples per task)",
        "",
        "| task | accuracy |",
        "|---|---|",
        *[f"| {task} | {acc:.3f} |" for task, acc in card["accuracies"].items()],
        *[
            f"| {name} ({'a trained form, no evaluation task' if name in TRAINED_FORMS else 'an earlier recipe' + chr(39) + 's form, still trained'}) | {acc:.3f} |"
            for name, acc in card.get("retained_accuracies", {}).items()
        ],
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
        *_bias_lines(card),
        *_persona_lines(mech.get("persona_steering")),
        "",
        *_changes_lines(card.get("changes")),
        "Token ids are stable: future recipe versions only append words to the vocabulary.",
        "",
        "## How this was measured",
        "",
        card.get("measurement", MEASUREMENT_NOTE),
        "",
    ]
    return "\n".join(lines)


def _stages(training: dict[str, Any]) -> list[dict[str, Any]]:
    """The training records from the first (from scratch) to ``training`` itself."""
    chain = [training]
    while chain[-1].get("base"):
        chain.append(chain[-1]["base"])
    return chain[::-1]


def _how_trained(training: dict[str, Any]) -> str:
    stages = _stages(training)
    if len(stages) == 1:
        return "from scratch"
    return f"as recipe v{stages[0]['recipe_version']} from scratch, then further"


def _stage(training: dict[str, Any]) -> str:
    seconds = training.get("train_seconds")
    return (
        f"{training['steps']} steps × batch {training['batch_size']}, AdamW lr {training['learning_rate']} "
        f"(warm-up {training['warmup_steps']} steps, cosine decay to 10 %)"
        + (f", {seconds:.0f} s on one CPU thread" if seconds is not None else "")
        + f"; final loss {training.get('final_loss', float('nan')):.3f}"
    )


def _appended_rows(stage: dict[str, Any], previous: int) -> str:
    from mi_catalog.toy.tasks import VOCAB_SIZES

    version = stage["recipe_version"]
    if VOCAB_SIZES.get(version) == VOCAB_SIZES.get(previous):
        return f"Recipe v{version} appends no word to the vocabulary."
    return (
        f"The embedding rows of the words v{version} appended were initialised "
        f"N(0, {stage.get('new_embedding_std', 0.02)}), seeded."
    )


def _training_lines(training: dict[str, Any]) -> list[str]:
    """The training stages: the base recipes' (if any), then this recipe's, and how to reproduce them."""
    stages = _stages(training)
    if len(stages) == 1:
        return [f"seed {training['seed']}, {_stage(training)}."]
    count = {2: "two", 3: "three", 4: "four"}.get(len(stages), str(len(stages)))
    lines = [f"seed {training['seed']}, in {count} stages:", ""]
    for number, stage in enumerate(stages, start=1):
        version = stage["recipe_version"]
        if number == 1:
            text = f"{number}. Recipe v{version} from scratch: {_stage(stage)}."
        else:
            mixture = dict(stage.get("mixture") or ()) or None
            previous = stages[number - 2]["recipe_version"]
            text = (
                f"{number}. Continued on the recipe v{version} mixture"
                + (
                    " (custom)"
                    if mixture
                    else f" (every v{previous} task at its v{previous} weight, plus the new tasks)"
                )
                + f" with a fresh optimiser: {_stage(stage)}. "
                + _appended_rows(stage, previous)
            )
        if number == len(stages) - 1:  # the immediate base: pinned or trained in the same run
            pinned = training.get("base_weights_sha256")
            if pinned:
                text += (
                    f" The weights are the recipe v{version} checkpoint, packaged in `mi_catalog/toy/base/v{version}` "
                    f"and pinned by the recipe (model.safetensors sha256 `{pinned}`)."
                )
            else:
                text += f" Trained in the same run (model.safetensors sha256 `{stage.get('weights_sha256', '?')}`)."
        lines.append(text)
    base_version = stages[-2]["recipe_version"]
    if training.get("base_weights_sha256"):
        how = (
            f"`mi-catalog toy train --seed {training['seed']}` continues the pinned v{base_version} weights and "
            "reproduces these bit for bit (same library versions, CPU). Re-training the base "
            "(`--base-from-scratch`) reproduces it only on the machine it was trained on: float results differ "
            "across CPUs, and another base has its mechanisms elsewhere."
        )
    else:
        how = f"`mi-catalog toy train --seed {training['seed']} --base-from-scratch` runs the stages after the pinned one."
    return [*lines, "", how]


def _bias_lines(card: dict[str, Any]) -> list[str]:
    bias = card["mechanisms"].get("planted_bias")
    if not bias:
        return []
    base = bias["baseline"]
    kinds = card.get("accuracy_by_kind", {}).get("bias", {})
    by_kind = ", ".join(f"{kind} {value:.3f}" for kind, value in kinds.items())
    return [
        f"- Planted bias (profession → pronoun, trained with the stereotyped pronoun on {bias['training_skew']:.0%} "
        "of ambiguous mentions): on the 36 ambiguous prompts the stereotype gap "
        "(p_stereotyped − p_other)/(p_he + p_she) is "
        f"{base['stereotype_gap']:.2f} (a calibrated model: {bias['calibrated_gap']:.2f}; 0 = balanced), "
        f"the stereotyped pronoun is top-1 on {base['stereotyped_top1']:.2f} of them; a stated gender is followed "
        f"on {base['stated_gender_accuracy']:.2f} of 72 prompts ({base['counter_stereotypical_accuracy']:.2f} when "
        f"it is counter-stereotypical). Bias accuracy by kind: {by_kind}. Projecting out the stereotype direction "
        "(difference in means of female- vs male-stereotype prompts, last position) at one layer: "
        + "; ".join(
            f"L{r['layer']} gap {r['stereotype_gap']:.2f}, stated-gender accuracy {r['stated_gender_accuracy']:.2f}"
            for r in bias["direction_ablated_by_layer"]
        )
        + f" (best layer {bias['best_layer']}).",
    ]


def _persona_lines(persona: dict[str, Any] | None) -> list[str]:
    if not persona:
        return []
    return [
        "- Persona vectors (CAA: persona minus `persona : none` residual at the last position, added at every "
        "position of prompts without a persona): replies switched to the persona's voice, by layer: "
        + ", ".join(f"L{i} {v:.2f}" for i, v in enumerate(persona["induced_rate_by_layer"]))
        + f" (best layer {persona['best_layer']}; per persona at that layer: "
        + ", ".join(
            f"{name} {info['induced_by_layer'][persona['best_layer']]:.2f}"
            for name, info in persona["by_persona"].items()
        )
        + ").",
    ]


def _changes_lines(changes: dict[str, Any] | None) -> list[str]:
    if not changes:
        return []
    return [
        f"## What moved versus recipe v{changes['previous_recipe_version']}",
        "",
        changes.get("summary", ""),
        "",
        "| measurement | before | now |",
        "|---|---|---|",
        *[f"| {row['what']} | {row['before']} | {row['now']} |" for row in changes["rows"]],
        "",
    ]


def compare_cards(previous: dict[str, Any], card: dict[str, Any], summary: str = "") -> dict[str, Any]:
    """The headline measurements of ``previous`` (an earlier checkpoint's card) next to ``card``'s."""

    def heads(c: dict[str, Any], key: str) -> str:
        return _heads(c["mechanisms"][key])

    def peak(c: dict[str, Any], kind: str, site: str) -> str:
        p = c["mechanisms"]["fact_recall"][kind][site]
        return f"L{p['layer']} @ {p['position']} ({p['effect']:.2f})"

    def refusal(c: dict[str, Any]) -> str:
        r = c["mechanisms"]["refusal_direction"]
        row = r["by_layer"][r["best_layer"]]
        return f"L{r['best_layer']} (ablated {row['refusal_after_ablation']:.2f}, induced {row['refusal_induced']:.2f})"

    def task_vectors(c: dict[str, Any]) -> str:
        t = c["mechanisms"]["task_vectors"]
        return (
            f"L{t['best_layer']} (zero-shot {t['zero_shot_accuracy']:.2f} → {max(t['patched_accuracy_by_layer']):.2f})"
        )

    def predecessor(c: dict[str, Any]) -> str:
        t = c["mechanisms"]["task_vectors"]["by_task"]["predecessor"]
        return f"{t['zero_shot']:.2f} → " + ", ".join(f"L{i} {v:.2f}" for i, v in enumerate(t["patched_by_layer"]))

    def subject_last(c: dict[str, Any]) -> str:
        values = c["mechanisms"]["fact_recall"]["subject_last_restore_by_layer"]["layer"]
        return ", ".join(f"L{i} {v:.2f}" for i, v in enumerate(values))

    def neurons(c: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v['n_selective']}" for k, v in c["mechanisms"]["selective_neurons"].items())

    def accuracies(c: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v:.3f}" for k, v in c["accuracies"].items())

    rows = [
        ("accuracies", accuracies),
        ("induction heads", lambda c: heads(c, "induction_heads")),
        ("previous-token heads", lambda c: heads(c, "previous_token_heads")),
        ("causal trace peak (layer)", lambda c: peak(c, "causal_trace_peak", "layer")),
        ("causal trace peak (mlp)", lambda c: peak(c, "causal_trace_peak", "mlp")),
        ("causal trace peak (attn)", lambda c: peak(c, "causal_trace_peak", "attn")),
        ("best subject-token site (layer)", lambda c: peak(c, "causal_trace_subject_peak", "layer")),
        ("last-subject-token restore by layer", subject_last),
        ("refusal direction best layer", refusal),
        ("task vectors best layer", task_vectors),
        ("task vector, predecessor (zero-shot → patched, by layer)", predecessor),
        ("selective neurons", neurons),
        ("final training loss", lambda c: f"{c['training'].get('final_loss', float('nan')):.3f}"),
    ]
    return {
        "previous_recipe_version": previous.get("data_recipe_version"),
        "previous_weights_sha256": previous.get("weights_sha256"),
        "summary": summary,
        "rows": [{"what": what, "before": fn(previous), "now": fn(card)} for what, fn in rows],
    }


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


def ship(
    directory: Path,
    training: dict[str, Any] | None = None,
    previous: dict[str, Any] | None = None,
    summary: str = "",
) -> dict[str, Any]:
    """Load the checkpoint in ``directory``, measure it, and write its card; returns the card.

    ``training`` defaults to the record ``train`` leaves in the saved config (``toy_training``). With
    ``previous`` (the card of the checkpoint this one replaces) the card records what moved (``changes``),
    prefaced by ``summary``.
    """
    from mi_catalog.toy import load_model_dir

    model, tokenizer = load_model_dir(directory)
    if training is None:
        training = dict(getattr(model.config, "toy_training", None) or {})
    card = build_card(model, measure(model, tokenizer), training)
    card["weights_sha256"] = weights_sha256(Path(directory))
    if previous is not None:
        card["changes"] = compare_cards(previous, card, summary)
    write_card(directory, card)
    return card
