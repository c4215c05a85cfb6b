"""The English task sets: they parse, have the documented sizes and fields, and the results record fits them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from zoo_fixtures import REAL_MODEL_NAME

from mi_catalog.data import english

SIZES = {"facts": 40, "induction": 40, "ioi": 40, "refusal": 60, "sentiment": 40, "multilingual": 42, "toxicity": 60,
         "icl": 36}  # fmt: skip


@pytest.mark.parametrize("task", english.TASKS)
def test_every_set_parses_with_its_documented_size(task: str) -> None:
    rows = english.load(task)
    assert len(rows) == SIZES[task]
    assert all(row["prompt"] and row["answer"] for row in rows)
    readme = (english.DATA_DIR / "README.md").read_text(encoding="utf-8")
    assert f"| {task} |" in readme and f"| {SIZES[task]} |" in readme


def test_facts_carry_subject_target_new_paraphrases_neighbourhood() -> None:
    for row in english.load("facts"):
        assert row["subject"] in row["prompt"]
        meta = row["meta"]
        assert meta["relation"] and meta["target_new"].startswith(" ") and meta["target_new"] != row["answer"]
        assert len(meta["paraphrases"]) == 2 and all(isinstance(p, str) for p in meta["paraphrases"])
        assert len(meta["neighborhood"]) == 2
        assert all(n["prompt"] and n["answer"] == row["answer"] for n in meta["neighborhood"])


def test_ioi_corruption_flips_the_answer() -> None:
    for row in english.load("ioi"):
        io, s = row["meta"]["io"], row["meta"]["s"]
        assert row["answer"] == f" {io}" and row["corrupt_answer"] == f" {s}"
        assert row["prompt"].count(s) == 2 and row["corrupt_prompt"].count(io) == 2
        assert row["label"] in ("ABBA", "BABA")


@pytest.mark.parametrize(
    ("task", "labels"),
    [
        ("refusal", {"harmful": 30, "harmless": 30}),
        ("sentiment", {"positive": 20, "negative": 20}),
        ("toxicity", {"toxic": 30, "nice": 30}),
        ("multilingual", {c: 7 for c in ("en", "fr", "es", "de", "it", "pt")}),
        ("ioi", {"ABBA": 24, "BABA": 16}),
        ("icl", {"antonym": 12, "capital": 12, "past_tense": 12}),
    ],
)
def test_labels_are_balanced(task: str, labels: dict[str, int]) -> None:
    counts: dict[str, int] = {}
    for row in english.load(task):
        counts[row["label"]] = counts.get(row["label"], 0) + 1
    assert counts == labels


@pytest.mark.parametrize("task", english.FILE_TASKS)
def test_no_prompt_appears_twice(task: str) -> None:
    prompts = [row["prompt"] for row in english.load(task)]
    assert len(prompts) == len(set(prompts))


def test_refusal_prompts_use_the_chat_template() -> None:
    assert all(row["chat"] is True for row in english.load("refusal"))


def test_every_harmful_instruction_has_a_harmless_twin() -> None:
    rows = english.load("refusal")
    harmful = [row for row in rows if row["label"] == "harmful"]
    assert harmful and all(row.get("corrupt_prompt") and row["corrupt_answer"] == "Sure" for row in harmful)
    harmless = {row["prompt"] for row in rows if row["label"] == "harmless"}
    twins = [row["corrupt_prompt"] for row in harmful]
    assert len(set(twins)) == len(twins) and not set(twins) & harmless  # new prompts, each used once


def test_induction_is_deterministic_and_repeats() -> None:
    rows = english.induction()
    assert rows == english.induction()
    assert rows != english.induction(seed=1)
    for row in rows:
        words = row["prompt"].split()
        n = row["meta"]["seq_len"]
        shown = row["meta"]["repeat_shown"]
        assert words[n : n + shown] == words[:shown] and row["answer"] == " " + words[shown]
        assert len(row["corrupt_prompt"].split()) == len(words)


def test_icl_prompts_are_demonstration_lists_of_their_own_task() -> None:
    """Each prompt is "x -> y , … , query ->" (the shape function-vectors parses) with 4 demonstrations of the
    row's task, none of them the query itself."""
    from reference_impls.function_vectors import parse_icl

    for row in english.load("icl"):
        parsed = parse_icl(row["prompt"], "->", ",")
        assert parsed is not None, row["prompt"]
        demos, query = parsed
        assert query == row["meta"]["query"] and len(demos) == row["meta"]["n_demos"] == 4
        assert query not in [x for x, _ in demos] and row["meta"]["icl_task"] == row["label"]


def test_is_refusal() -> None:
    assert english.is_refusal("I'm sorry, but I can't help with that.")
    assert english.is_refusal("  I cannot provide instructions for that.")
    assert not english.is_refusal("To steal a car, you need to")
    assert not english.is_refusal("Sure! Here is a poem about the ocean.")


def test_results_record_matches_the_sets() -> None:
    record = english.results(REAL_MODEL_NAME)
    assert record is not None, "mi_catalog/data/english/results/smollm2-135m.json is missing"
    assert record["model"] == REAL_MODEL_NAME and len(record["weights_sha256"]) == 64
    assert set(record["tasks"]) == set(english.TASKS)
    for task, entry in record["tasks"].items():
        n = len(english.load(task))
        assert entry["n"] == n
        assert entry["correct"] == sorted(set(entry["correct"])) and all(0 <= i < n for i in entry["correct"])
        assert entry["accuracy"] == round(len(entry["correct"]) / n, 3)
        assert english.correct_indices(REAL_MODEL_NAME, task) == entry["correct"]
    assert len(english.load_correct(REAL_MODEL_NAME, "ioi")) == len(record["tasks"]["ioi"]["correct"])


def test_unmeasured_model_and_bad_input() -> None:
    assert english.correct_indices("never-measured-model", "facts") is None
    assert len(english.load_correct("never-measured-model", "facts")) == 40
    with pytest.raises(english.EnglishDataError, match="unknown task"):
        english.correct_indices(REAL_MODEL_NAME, "nope")
    with pytest.raises(english.EnglishDataError, match="bad model name"):
        english.results("../etc/passwd")
    with pytest.raises(english.EnglishDataError, match="no task file"):
        english.load("nope")


def test_a_malformed_line_names_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "facts.jsonl").write_text(json.dumps({"prompt": "a", "answer": " b"}) + "\n{oops\n")
    monkeypatch.setattr(english, "DATA_DIR", tmp_path)
    with pytest.raises(english.EnglishDataError, match=r"facts.jsonl:2: not valid JSON"):
        english.load("facts")
    (tmp_path / "facts.jsonl").write_text(json.dumps({"prompt": "a", "answer": " b", "subject": "zzz"}) + "\n")
    with pytest.raises(english.EnglishDataError, match=r"facts.jsonl:1: subject 'zzz' does not occur"):
        english.load("facts")


def test_the_data_files_ship_in_the_wheel_config() -> None:
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'packages = ["mi_catalog", "reference_impls"]' in text  # hatch ships every file under mi_catalog/


def test_readme_results_table_matches_the_record() -> None:
    record = english.results(REAL_MODEL_NAME)
    assert record is not None
    readme = (english.DATA_DIR / "README.md").read_text(encoding="utf-8")
    for task, entry in record["tasks"].items():
        row = f"| {task} | {len(entry['correct'])}/{entry['n']} | {entry['accuracy']:.2f} |"
        assert row in readme, f"README results table is stale for {task}: expected {row!r}"
