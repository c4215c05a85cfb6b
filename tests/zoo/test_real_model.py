"""SmolLM2-135M (dequantised Q4_1) from the user's model cache: it loads, answers " Paris", and the shipped
results record matches a re-measurement. Skipped, with the command to run, when the model is not fetched."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from zoo_fixtures import REAL_MODEL_NAME

from mi_catalog.data import english
from mi_catalog.models import zoo

# Equal token length for the contrast pairs needs only the tokenizer: fast, but it needs the fetched folder.


def test_contrast_pairs_have_equal_token_length(real_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(real_model_dir))
    for task in ("ioi", "sentiment", "refusal"):
        for row in english.load(task):
            if task == "refusal" and row["label"] == "harmless":
                continue  # the harmless half has no twin; every harmful row has one (test_english_sets)
            assert len(tokenizer(row["prompt"]).input_ids) == len(tokenizer(row["corrupt_prompt"]).input_ids), row
    for row in english.load("ioi"):
        for name in (row["meta"]["io"], row["meta"]["s"]):
            assert len(tokenizer(" " + name, add_special_tokens=False).input_ids) == 1
    for word in english.INDUCTION_WORDS:
        assert len(tokenizer(" " + word, add_special_tokens=False).input_ids) == 1, word


def test_fetched_folder_records_its_provenance(real_model_dir: Path) -> None:
    source = json.loads((real_model_dir / "source.json").read_text())
    entry = zoo.REGISTRY[REAL_MODEL_NAME]
    assert source["package"] == entry.package and source["version"] == entry.version
    assert source["gguf_sha256"] == entry.sha256 and source["dequantised"] is True
    assert "not the original bf16 checkpoint" in (real_model_dir / "README.md").read_text()


@pytest.fixture(scope="module")
def scorer(real_model_dir: Path) -> Any:
    from mi_catalog.data.measure import Scorer

    started = time.monotonic()
    loaded = Scorer(real_model_dir)
    print(
        f"\nloaded {REAL_MODEL_NAME} in {time.monotonic() - started:.2f} s (target ≤ 3 s; see benchmarks/bench_zoo.py)"
    )
    return loaded


@pytest.mark.slow
def test_loads_as_eager_llama_and_answers_paris(scorer: Any) -> None:
    model = scorer.model
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config._attn_implementation == "eager"
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert getattr(model.config, "quantization_config", None) is None
    row = {"prompt": "The capital of France is", "answer": " Paris"}
    (pred,) = scorer.next_tokens([row])
    assert scorer.tokenizer.decode([pred]) == " Paris"


@pytest.mark.slow
def test_results_record_matches_a_remeasurement(scorer: Any, real_model_dir: Path) -> None:
    """A few prompts per task, right and wrong ones, re-scored now give what the shipped record says."""
    from mi_catalog.data.measure import score_task

    record = english.results(REAL_MODEL_NAME)
    assert record is not None
    source = json.loads((real_model_dir / "source.json").read_text())
    assert record["weights_sha256"] == source["weights_sha256"], "the cached weights differ from the measured ones"
    for task in ("facts", "ioi", "sentiment", "multilingual", "toxicity", "induction"):
        rows = english.load(task)
        correct = set(record["tasks"][task]["correct"])
        wrong = [i for i in range(len(rows)) if i not in correct]
        picks = sorted(set(sorted(correct)[:2] + wrong[:2]))
        got = score_task(scorer, task, [rows[i] for i in picks])
        assert got == [i in correct for i in picks], task
    rows = english.load("refusal")
    picks = [0, 30]  # one harmful, one harmless (greedy generation is the slow part)
    got = score_task(scorer, "refusal", [rows[i] for i in picks])
    assert got == [i in set(record["tasks"]["refusal"]["correct"]) for i in picks]


@pytest.mark.slow
def test_native_llama_is_transformers_on_smollm2(real_model_dir: Path) -> None:
    """`--model smollm2-135m` loads with our own Llama (no transformers import; issue 10's cold-start target):
    it must be the same model as transformers' — same prompts after the chat template, same ids, same greedy
    next token on every English prompt, logits and every site's activation equal up to float reordering."""
    import torch

    from mi_catalog.models import load_model
    from mi_catalog.models.hooks import capture

    theirs, ours = load_model(str(real_model_dir), backend="transformers"), load_model(str(real_model_dir))
    assert (theirs.backend, ours.backend) == ("transformers", "native")
    rows = [(task, row) for task in english.TASKS for row in english.load(task)]
    texts = [theirs.format_prompt(row["prompt"], chat=bool(row.get("chat"))) for _, row in rows]
    assert texts == [ours.format_prompt(row["prompt"], chat=bool(row.get("chat"))) for _, row in rows]
    for text in texts:  # every prompt of every English set: the same ids and decodes
        ids = theirs.tokenizer(text)["input_ids"]
        assert ours.tokenizer(text)["input_ids"] == ids
        assert ours.tokenizer.decode(ids, skip_special_tokens=True) == theirs.tokenizer.decode(ids, skip_special_tokens=True)
    by_task: dict[str, list[str]] = {}
    for (task, _), text in zip(rows, texts, strict=True):
        by_task.setdefault(task, []).append(text)
    for task, task_texts in by_task.items():  # 16 prompts per set: the same greedy next token, logits close
        batch = theirs.encode(task_texts[:16])
        assert torch.equal(ours.encode(task_texts[:16]).input_ids, batch.input_ids), task
        logits_theirs, logits_ours = theirs.logits(batch)[:, -1], ours.logits(batch)[:, -1]
        assert torch.equal(logits_ours.argmax(-1), logits_theirs.argmax(-1)), task
        torch.testing.assert_close(logits_ours, logits_theirs, rtol=1e-4, atol=1e-2, msg=task)
    batch = theirs.encode([task_texts[0] for task_texts in by_task.values()])  # every site and position
    with capture(theirs) as cache_theirs:
        theirs.logits(batch)
    with capture(ours) as cache_ours:
        ours.logits(batch)
    for key in sorted(cache_theirs.keys()):
        scale = float(cache_theirs[key].abs().max()) or 1.0
        torch.testing.assert_close(cache_ours[key], cache_theirs[key], rtol=1e-4, atol=1e-3 * scale, msg=key)
