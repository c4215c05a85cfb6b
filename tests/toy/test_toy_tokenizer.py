"""The word-level fast tokenizer: one id per word, <bos> prepended, left padding, shipped copy identical."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from mi_catalog.toy import CHECKPOINT_DIR
from mi_catalog.toy.tasks import TASKS, examples, vocabulary
from mi_catalog.toy.tokenizer import build_tokenizer


def test_round_trip_of_every_task_prompt() -> None:
    tokenizer = build_tokenizer()
    for task in TASKS:
        for ex in examples(task, 30):
            ids = tokenizer(ex.text)["input_ids"]
            assert ids[0] == tokenizer.bos_token_id
            assert len(ids) == len(ex.text.split()) + 1
            assert tokenizer.unk_token_id not in ids
            assert tokenizer.decode(ids, skip_special_tokens=True) == ex.text


def test_ids_are_vocabulary_positions() -> None:
    tokenizer = build_tokenizer()
    words = vocabulary()
    assert tokenizer.convert_tokens_to_ids(list(words)) == list(range(len(words)))
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id) == (0, 1, 2)


def test_unknown_words_map_to_unk() -> None:
    tokenizer = build_tokenizer()
    assert tokenizer("qwertyuiop cat")["input_ids"][1] == tokenizer.unk_token_id


def test_left_padding() -> None:
    tokenizer = build_tokenizer()
    assert tokenizer.padding_side == "left"
    batch = tokenizer(["cat", "cat sees dog"], padding=True)
    assert batch["input_ids"][0][:2] == [tokenizer.pad_token_id] * 2
    assert batch["attention_mask"][0] == [0, 0, 1, 1]
    assert batch["input_ids"][0][-1] == batch["input_ids"][1][1]


def test_shipped_tokenizer_matches_and_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from mi_catalog.toy import card

    built = build_tokenizer(card()["data_recipe_version"])  # the vocabulary of the recipe the checkpoint was trained on
    for loader in (PreTrainedTokenizerFast, AutoTokenizer):
        shipped = loader.from_pretrained(CHECKPOINT_DIR)
        assert shipped.get_vocab() == built.get_vocab()
        assert shipped.padding_side == "left"
        assert shipped("anna berg lives in")["input_ids"] == built("anna berg lives in")["input_ids"]
