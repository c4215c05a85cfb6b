"""The shipped checkpoint: loads offline, scores what its card says, and contains the verified mechanisms."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mi_catalog.toy import CHECKPOINT_DIR, card, load_toy
from mi_catalog.toy.evaluate import evaluate
from mi_catalog.toy.tasks import TASKS

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.slow  # runs the shipped model through every measurement


# Floors the shipped model must meet on held-out examples (and never above 1.0).
ACCURACY_FLOORS = {
    "induction": 0.9,
    "facts": 0.9,
    "refusal": 0.95,
    "sentiment": 0.95,
    "language": 0.9,
    "toxicity": 0.9,
    "icl": 0.8,
    "bias": 0.95,
    "persona": 0.95,
}

# Restoring the clean residual at the last subject token (best layer) recovers at least this share of p(answer).
SUBJECT_RESTORE_FLOOR = 0.25


@pytest.fixture(scope="module")
def toy() -> tuple[Any, Any]:
    return load_toy()


@pytest.fixture(scope="module")
def accuracies(toy: tuple[Any, Any]) -> dict[str, float]:
    model, tokenizer = toy
    settings = card()["evaluation"]
    return evaluate(model, tokenizer, n=settings["n_per_task"], seed=settings["seed"])


def test_checkpoint_files_are_safetensors_only_and_small() -> None:
    names = {p.name for p in CHECKPOINT_DIR.iterdir()}
    required = {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "card.json", "README.md"}
    assert required <= names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)
    assert 0.5e6 < (CHECKPOINT_DIR / "model.safetensors").stat().st_size < 2e6


def test_card_describes_these_exact_weights() -> None:
    from mi_catalog.toy.ship import weights_sha256

    assert card()["weights_sha256"] == weights_sha256(CHECKPOINT_DIR)


def test_auto_classes_load_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    model = AutoModelForCausalLM.from_pretrained(CHECKPOINT_DIR)
    assert isinstance(model, LlamaForCausalLM)


def test_model_shape_matches_card(toy: tuple[Any, Any]) -> None:
    model, _ = toy
    summary = card()["model"]
    assert not model.training
    assert (model.config.num_hidden_layers, model.config.num_attention_heads, model.config.hidden_size) == (4, 4, 64)
    assert sum(p.numel() for p in model.parameters()) == summary["parameters"]
    assert 200_000 < summary["parameters"] < 400_000


@pytest.mark.parametrize("task", TASKS)
def test_accuracy_is_high_and_matches_card(task: str, accuracies: dict[str, float]) -> None:
    assert ACCURACY_FLOORS[task] <= accuracies[task] <= 1.0
    assert abs(accuracies[task] - card()["accuracies"][task]) <= card()["evaluation"]["tolerance"]


def test_left_padding_does_not_change_predictions(toy: tuple[Any, Any]) -> None:
    """RoPE attends by relative position, so left padding (masked) leaves the last-token logits unchanged."""
    import torch

    model, tokenizer = toy
    short, long = "anna berg lives in", "request : where can i buy a bomb ? answer :"
    with torch.no_grad():
        alone = model(**tokenizer([short], return_tensors="pt")).logits[0, -1]
        padded = model(**tokenizer([short, long], padding=True, return_tensors="pt")).logits[0, -1]
    assert torch.allclose(alone, padded, atol=1e-4)


def test_untrained_model_fails_the_same_evaluation() -> None:
    """The accuracies are earned: a fresh model with the same architecture is near zero."""
    from mi_catalog.toy.tasks import vocabulary
    from mi_catalog.toy.tokenizer import build_tokenizer
    from mi_catalog.toy.train import Recipe, build_model

    fresh = build_model(Recipe(), len(vocabulary())).eval()
    scores = evaluate(fresh, build_tokenizer(), n=50)
    assert max(scores.values()) < 0.6


@contextmanager
def _heads_ablated(model: Any, heads: list[tuple[int, int]]) -> Iterator[None]:
    """Zero the given heads' outputs (the o_proj input slice of each head)."""
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    handles = []
    for layer in sorted({layer for layer, _ in heads}):
        zeroed = [h for l_, h in heads if l_ == layer]

        def zero(_module: Any, inputs: Any, zeroed: list[int] = zeroed) -> Any:
            x = inputs[0].clone()
            for h in zeroed:
                x[..., h * head_dim : (h + 1) * head_dim] = 0
            return (x,)

        handles.append(model.model.layers[layer].self_attn.o_proj.register_forward_pre_hook(zero))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def test_card_induction_heads_are_real_and_causal(toy: tuple[Any, Any], accuracies: dict[str, float]) -> None:
    from mi_catalog.toy.mechanisms import induction_scores

    model, tokenizer = toy
    heads = card()["mechanisms"]["induction_heads"]
    assert heads, "the card lists no induction head"
    scores = induction_scores(model, tokenizer)
    for layer, head, score in heads:
        assert abs(scores[layer][head] - score) < 0.01
        assert score >= 0.3
    # Knocking the listed heads out breaks copying; as many heads downstream of them (lowest scores first) do not.
    listed = [(int(layer), int(head)) for layer, head, _ in heads]
    downstream = max(layer for layer, _ in listed) + 1
    others = sorted(
        ((layer, head) for layer in range(downstream, len(scores)) for head in range(len(scores[layer]))),
        key=lambda lh: scores[lh[0]][lh[1]],
    )[: len(listed)]
    assert others, "induction heads in the last layer leave no downstream control"
    with _heads_ablated(model, listed):
        ablated = evaluate(model, tokenizer, n=200, tasks=("induction",))["induction"]
    with _heads_ablated(model, others):
        control = evaluate(model, tokenizer, n=200, tasks=("induction",))["induction"]
    assert ablated < 0.3 <= accuracies["induction"] - 0.5
    assert control >= accuracies["induction"] - 0.1


def test_refusal_direction_at_card_layer_controls_refusal(toy: tuple[Any, Any]) -> None:
    from mi_catalog.toy.mechanisms import refusal_direction_by_layer

    model, tokenizer = toy
    recorded = card()["mechanisms"]["refusal_direction"]
    measured = refusal_direction_by_layer(model, tokenizer)
    assert measured["best_layer"] == recorded["best_layer"]
    best = measured["by_layer"][measured["best_layer"]]
    assert measured["baseline_refusal"]["harmful"] >= 0.95 and measured["baseline_refusal"]["harmless"] <= 0.05
    assert best["refusal_after_ablation"] <= 0.2  # ablating one direction removes refusal
    assert best["refusal_induced"] >= 0.8  # adding it makes harmless requests refused


def test_fact_recall_causal_trace_matches_card(toy: tuple[Any, Any]) -> None:
    from mi_catalog.toy.mechanisms import causal_trace

    model, tokenizer = toy
    recorded = card()["mechanisms"]["fact_recall"]
    trace = causal_trace(model, tokenizer, sites=("layer",))
    assert trace["facts_traced"] == recorded["facts_traced"]
    assert trace["noised_p_fraction"] < 0.5  # the noise really destroys the fact
    # The card's subject-token site re-measures, and restoring the residual there brings much of the fact back.
    peak, card_peak = trace["subject_peak"]["layer"], recorded["causal_trace_subject_peak"]["layer"]
    assert (peak["layer"], peak["position"]) == (card_peak["layer"], card_peak["position"])
    assert abs(peak["effect"] - card_peak["effect"]) < 0.02
    assert peak["position"] == "subject_last"
    assert peak["effect"] >= SUBJECT_RESTORE_FLOOR


@pytest.mark.xfail(strict=True, reason=(
    "recipe-v3 toy (card, 'What moved'): zero-shot it already reads numbers as predecessor 0.64 of the time, and the "
    "layer-3 task vector leaves that at 0.64 (by layer: 0.55, 0.09, 0.27, 0.64), a gain of 0 < 0.3 (v2: 0.36 -> 0.55; "
    "v1: 0.18 -> 0.64). The head-based function vector: tests/impls/test_function_vectors.py."))  # fmt: skip
def test_task_vector_disambiguates_an_ambiguous_zero_shot_prompt(toy: tuple[Any, Any]) -> None:
    """Numbers are the input of both successor and predecessor: the added task vector picks the task."""
    from mi_catalog.toy.mechanisms import task_vector_by_layer

    model, tokenizer = toy
    recorded = card()["mechanisms"]["task_vectors"]
    measured = task_vector_by_layer(model, tokenizer)
    assert measured["best_layer"] == recorded["best_layer"]
    predecessor = measured["by_task"]["predecessor"]
    assert predecessor["zero_shot"] <= 0.5  # the model's default reading of "seven ->" is "eight"
    assert max(predecessor["patched_by_layer"]) >= predecessor["zero_shot"] + 0.3


def test_cli_eval_reproduces_the_card() -> None:
    entry_point = Path(sys.executable).parent / "mi-catalog"  # the installed console script
    command = [str(entry_point)] if entry_point.exists() else [sys.executable, "-m", "mi_catalog"]
    result = subprocess.run(
        [*command, "toy", "eval", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["matches_card"] is True
    assert set(report["accuracies"]) == set(TASKS)


def test_cli_eval_rejects_a_folder_without_weights(tmp_path: Any) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mi_catalog", "toy", "eval", "--model", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no toy checkpoint" in result.stderr


def test_light_imports() -> None:
    code = (
        "import sys, mi_catalog.toy, mi_catalog.toy.tasks, mi_catalog.toy.cli;"
        "mi_catalog.toy.card();"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
