"""The generator and its planted truth: deterministic, self-consistent, tokenizable."""

from __future__ import annotations

import hashlib
import random

import pytest

from mi_catalog.toy import tasks
from mi_catalog.toy.tasks import PLANTED, TASKS, examples, training_examples, vocabulary

# sha256 of the first 308 words (recipe v1). Ids must stay stable: only append to the vocabulary.
V1_VOCAB_SIZE = 308
V1_VOCAB_SHA256 = "430374ac0147fa64cbaaab32abdaa86c08d687f6e50e8242a3a7199525589a91"


def test_vocabulary_is_append_only() -> None:
    words = vocabulary()
    assert len(words) == len(set(words))
    assert words[:4] == ("<pad>", "<unk>", "<bos>", "<eos>")
    digest = hashlib.sha256("\n".join(words[:V1_VOCAB_SIZE]).encode()).hexdigest()
    assert digest == V1_VOCAB_SHA256, "token ids of existing words changed: only append new words"


@pytest.mark.parametrize("task", TASKS)
def test_examples_are_deterministic_and_seed_dependent(task: str) -> None:
    assert examples(task, 20, seed=3) == examples(task, 20, seed=3)
    assert examples(task, 20, seed=3) != examples(task, 20, seed=4)


def test_training_stream_is_deterministic() -> None:
    assert training_examples(random.Random(1), 50) == training_examples(random.Random(1), 50)


@pytest.mark.parametrize("task", TASKS)
def test_every_word_is_in_the_vocabulary(task: str) -> None:
    known = set(vocabulary())
    for ex in examples(task, 100):
        assert set(ex.prompt.split()) <= known
        assert ex.answer in known and " " not in ex.answer
        if ex.corrupt_prompt is not None:
            assert set(ex.corrupt_prompt.split()) <= known


@pytest.mark.parametrize("task", [t for t in TASKS if t != "icl"])
def test_corrupt_prompts_have_same_length_and_other_answer(task: str) -> None:
    for ex in examples(task, 100):
        assert ex.corrupt_prompt is not None and ex.corrupt_answer is not None
        assert len(ex.corrupt_prompt.split()) == len(ex.prompt.split())
        assert ex.corrupt_answer != ex.answer


def test_word_classes_are_disjoint_where_they_must_be() -> None:
    groups = {
        "harmful": set(PLANTED.harmful_words),
        "harmless": set(PLANTED.harmless_words),
        "toxic": set(PLANTED.toxic_words),
        "nice": set(PLANTED.nice_words),
        "en": set(PLANTED.languages["en"]),
        "zu": set(PLANTED.languages["zu"]),
        "positive": set(PLANTED.positive_words),
        "negative": set(PLANTED.negative_words),
        "filler": set(PLANTED.filler_words),
    }
    names = sorted(groups)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not groups[a] & groups[b], (a, b)
    assert {PLANTED.refuse_token, PLANTED.comply_token}.isdisjoint(set().union(*groups.values()))


def test_fact_table_is_a_function_and_needs_both_subject_tokens() -> None:
    keys = [(s, r) for s, r, _ in PLANTED.facts]
    assert len(keys) == len(set(keys))
    subjects = PLANTED.subjects
    assert len(subjects) == tasks.N_SUBJECTS
    assert all(len(s.split()) == 2 for s in subjects)
    # Neither name alone identifies the subject (most first and last names are shared).
    firsts = [s.split()[0] for s in subjects]
    lasts = [s.split()[1] for s in subjects]
    assert max(firsts.count(f) for f in firsts) > 1 and max(lasts.count(x) for x in lasts) > 1
    for _s, r, a in PLANTED.facts:
        assert a in tasks.FACT_RELATION_VALUES[r]


def test_fact_examples_answer_from_the_table() -> None:
    for ex in examples("facts", 200):
        assert ex.answer == PLANTED.attribute(ex.meta["subject"], ex.meta["relation"])


def test_fact_subject_positions_match_the_tokenized_prompt() -> None:
    pytest.importorskip("transformers")
    from mi_catalog.toy.tokenizer import build_tokenizer

    tokenizer = build_tokenizer()
    for ex in examples("facts", 200):
        tokens = tokenizer.convert_ids_to_tokens(tokenizer(ex.prompt)["input_ids"])
        assert [tokens[p] for p in ex.subject_positions] == ex.meta["subject"].split()
        assert tokens[0] == "<bos>"


def test_refusal_labels_follow_the_harmful_words() -> None:
    for ex in examples("refusal", 200):
        harmful = bool(set(ex.prompt.split()) & set(PLANTED.harmful_words))
        assert ex.answer == (PLANTED.refuse_token if harmful else PLANTED.comply_token)


def test_sentiment_negation_flips_the_label() -> None:
    for ex in examples("sentiment", 200):
        words = ex.prompt.split()
        positive_word = bool(set(words) & set(PLANTED.positive_words))
        negated = PLANTED.negation_word in words
        assert ex.answer == ("positive" if positive_word != negated else "negative")
    assert any(ex.meta["negated"] for ex in examples("sentiment", 50))


def test_language_answers_are_in_the_target_language() -> None:
    for ex in examples("language", 200):
        assert ex.answer in PLANTED.languages[ex.meta["language"]]
        source = ex.prompt.split("=")[0].split()
        assert set(source) <= set(PLANTED.languages[ex.meta["source_language"]])


def test_toxic_comments_continue_toxic() -> None:
    for ex in examples("toxicity", 200):
        expected = PLANTED.toxic_words if ex.meta["label"] == "toxic" else PLANTED.nice_words
        assert ex.answer in expected and ex.meta["trigger"] in expected


def test_icl_answers_follow_the_mapping() -> None:
    for ex in examples("icl", 200):
        assert PLANTED.icl_mappings[ex.meta["icl_task"]][ex.meta["query"]] == ex.answer
        assert ex.prompt.count("->") == ex.meta["n_demos"] + 1


def test_icl_tasks_share_inputs_so_the_task_must_come_from_demonstrations() -> None:
    mappings = PLANTED.icl_mappings
    ambiguous = [x for x in mappings["successor"] if x in mappings["predecessor"]]
    assert len(ambiguous) >= 5
    assert all(mappings["successor"][x] != mappings["predecessor"][x] for x in ambiguous)


def test_induction_answer_is_copied_from_the_first_pass() -> None:
    for ex in examples("induction", 200):
        words = ex.prompt.split()
        period, k = ex.meta["period"], ex.meta["repeat_index"]
        assert words[period:] == words[:k]
        assert words[k] == ex.answer


def test_unknown_task_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"no task 'nope'.*induction"):  # TaskDataError, naming the tasks it has
        examples("nope", 1)
