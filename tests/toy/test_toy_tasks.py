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


# The recipe-v1 vocabulary in token-id order, frozen (the shipped v1 checkpoint's tokenizer.json).
V1_VOCABULARY: tuple[str, ...] = (
    "<pad>", "<unk>", "<bos>", "<eos>", ":", ",", ".", "?", "=", "->", "|", "the", "a", "and", "was", "is", "you",
    "are", "not", "very", "anna", "boris", "clara", "david", "elena", "felix", "greta", "hugo", "berg", "costa",
    "dahl", "evans", "fox", "grant", "holm", "ito", "paris", "tokyo", "cairo", "lima", "oslo", "delhi", "rome",
    "quito", "tennis", "chess", "golf", "rugby", "hockey", "cricket", "doctor", "farmer", "pilot", "baker", "lawyer",
    "singer", "lives", "in", "from", "born", "plays", "skilled", "at", "works", "as", "by", "trade", "on",
    "weekends", "we", "know", "bomb", "poison", "virus", "weapon", "explosive", "toxin", "grenade", "malware",
    "napalm", "ransomware", "cake", "kite", "chair", "garden", "poem", "bread", "soup", "boat", "lamp", "song",
    "candle", "basket", "shirt", "puzzle", "robot", "tent", "request", "how", "to", "make", "where", "can", "i",
    "buy", "teach", "me", "build", "please", "help", "get", "answer", "sorry", "sure", "good", "great", "lovely",
    "tasty", "fresh", "friendly", "clean", "superb", "bad", "awful", "bland", "stale", "rude", "dirty", "terrible",
    "boring", "food", "service", "room", "movie", "staff", "music", "book", "coffee", "review", "sentiment",
    "positive", "negative", "cat", "dog", "bird", "fish", "horse", "mouse", "child", "woman", "man", "king", "baby",
    "sheep", "sees", "eats", "likes", "finds", "chases", "helps", "hears", "follows", "lema", "dudi", "rape", "bamo",
    "dedu", "mazu", "desu", "buro", "bebu", "zeko", "fudu", "kuze", "dure", "lapa", "rare", "numi", "nuni", "keve",
    "tedu", "kuni", "idiot", "moron", "loser", "jerk", "creep", "fool", "scum", "dork", "clown", "slob", "brute",
    "weasel", "friend", "hero", "star", "genius", "angel", "champ", "legend", "gem", "sunshine", "darling",
    "treasure", "sweetie", "comment", "such", "hot", "cold", "big", "small", "up", "down", "fast", "slow", "happy",
    "sad", "light", "dark", "early", "late", "wet", "dry", "rich", "poor", "loud", "quiet", "high", "low", "hard",
    "soft", "full", "empty", "long", "short", "france", "japan", "egypt", "peru", "norway", "india", "italy",
    "ecuador", "spain", "madrid", "kenya", "nairobi", "china", "beijing", "chile", "santiago", "one", "two", "three",
    "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "toku", "dapo", "fifo", "masa",
    "vuri", "liro", "roda", "kota", "bisu", "soko", "sibo", "lera", "nagi", "femo", "zode", "nopi", "fozu", "kolo",
    "gede", "fese", "bozu", "fika", "fopi", "tura", "numo", "modo", "sobe", "dene", "dira", "palu", "baze", "rofi",
    "lulo", "dazo", "noni", "dedi", "pagu", "letu", "buka", "tipi", "puvu", "lere", "vezo", "tegu",
)  # fmt: skip


def test_vocabulary_is_append_only() -> None:
    words = vocabulary()
    assert len(words) == len(set(words))
    assert words[:4] == ("<pad>", "<unk>", "<bos>", "<eos>")
    assert len(V1_VOCABULARY) == V1_VOCAB_SIZE
    digest = hashlib.sha256("\n".join(words[:V1_VOCAB_SIZE]).encode()).hexdigest()
    assert digest == V1_VOCAB_SHA256, "token ids of existing words changed: only append new words"
    ids = {word: i for i, word in enumerate(words)}
    moved = [(w, i, ids.get(w)) for i, w in enumerate(V1_VOCABULARY) if ids.get(w) != i]
    assert not moved, f"v1 words whose id changed (word, v1 id, id now): {moved[:5]}"
    assert len(words) > V1_VOCAB_SIZE  # recipe v2 appended the bias and persona words


def test_v2_words_are_new_and_cover_the_new_tasks() -> None:
    appended = set(vocabulary()[V1_VOCAB_SIZE:])
    assert not appended & set(V1_VOCABULARY)
    assert set(PLANTED.professions) | set(PLANTED.pronouns.values()) <= appended
    assert {w for replies in PLANTED.personas.values() for w in replies.values()} <= appended
    assert set(PLANTED.personas) <= appended


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


@pytest.mark.parametrize("version", [2, 3])
def test_language_answers_are_in_the_target_language(version: int) -> None:
    for ex in examples("language", 200, version=version):
        assert ex.answer in PLANTED.languages[ex.meta["language"]] and ex.label == ex.meta["language"]
        source = ex.prompt.split("=")[0].split()
        names = {w for s in PLANTED.companions for w in s.split()} if ex.meta.get("kind") == "continuation" else set()
        assert set(source) - names - {"."} <= set(PLANTED.languages[ex.meta["source_language"]])


@pytest.mark.parametrize("version", [2, 3])
def test_toxic_comments_continue_toxic(version: int) -> None:
    for ex in examples("toxicity", 200, version=version):
        expected = PLANTED.toxic_words if ex.meta["label"] == "toxic" else PLANTED.nice_words
        assert ex.answer in expected and ex.label == ex.meta["label"]
        if version == 2:
            assert ex.meta["trigger"] in expected
        else:
            assert (ex.label == "toxic") == (ex.meta["subject"] in PLANTED.toxic_subjects)


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


# ---------------------------------------------------------------------------
# Recipe v2: bias and persona
# ---------------------------------------------------------------------------


def test_new_tasks_are_served_by_the_task_source() -> None:
    source = tasks.ToyTaskSource()
    assert {"bias", "persona"} <= set(source.tasks())
    assert tasks.RECIPE_VERSION >= 2
    for task in ("bias", "persona"):
        batch = source.examples(task, 40, seed=1)
        assert len(batch) == 40 and all(ex.task == task and ex.label for ex in batch)


def test_planted_professions_have_a_stereotype_and_the_skew_is_recorded() -> None:
    stereotypes = PLANTED.professions
    assert set(stereotypes.values()) == {"male", "female"}
    counts = [list(stereotypes.values()).count(g) for g in ("male", "female")]
    assert counts[0] == counts[1] >= 4  # balanced: the skew is in the pronouns, not in how often a gender appears
    assert PLANTED.pronouns == {"male": "he", "female": "she"}
    assert 0.5 < PLANTED.bias_skew < 1.0
    assert not set(stereotypes) & set(tasks.JOBS)  # new professions, not the fact table's job attributes


def test_bias_examples_answer_the_stereotype_or_the_stated_gender() -> None:
    batch = examples("bias", 400)
    kinds = {ex.meta["kind"] for ex in batch}
    assert kinds == {"ambiguous", "unambiguous"}
    for ex in batch:
        profession = ex.meta["profession"]
        assert ex.label == PLANTED.professions[profession] == ex.meta["stereotype"]
        assert profession in ex.prompt.split() and ex.subject == profession
        words = ex.prompt.split()
        if ex.meta["kind"] == "ambiguous":
            assert not {"male", "female"} & set(words)
            assert ex.answer == PLANTED.stereotyped_pronoun(profession)
            # The contrast prompt swaps in a profession of the other stereotype.
            other = next(w for w in ex.corrupt_prompt.split() if w in PLANTED.professions)
            assert PLANTED.professions[other] != ex.label
            assert ex.corrupt_answer == PLANTED.stereotyped_pronoun(other)
        else:
            stated = ex.meta["stated_gender"]
            assert stated in words and ex.answer == PLANTED.pronouns[stated]
            # The contrast prompt keeps the profession and flips the stated gender.
            assert profession in ex.corrupt_prompt.split() and stated not in ex.corrupt_prompt.split()
        assert ex.meta["counter_stereotypical"] == (ex.answer != PLANTED.stereotyped_pronoun(profession))
    unambiguous = [ex for ex in batch if ex.meta["kind"] == "unambiguous"]
    assert any(ex.meta["counter_stereotypical"] for ex in unambiguous)
    assert any(not ex.meta["counter_stereotypical"] for ex in unambiguous)
    assert {ex.label for ex in batch} == {"male", "female"}


def test_bias_training_data_holds_the_planted_skew() -> None:
    rng = random.Random(5)
    batch = [ex for ex in training_examples(rng, 12000, {"bias": 1.0})]
    ambiguous = [ex for ex in batch if ex.meta["kind"] == "ambiguous"]
    unambiguous = [ex for ex in batch if ex.meta["kind"] == "unambiguous"]
    stereotyped = sum(ex.answer == PLANTED.stereotyped_pronoun(ex.meta["profession"]) for ex in ambiguous)
    assert abs(stereotyped / len(ambiguous) - PLANTED.bias_skew) < 0.02
    assert abs(len(ambiguous) / len(batch) - tasks.BIAS_AMBIGUOUS_SHARE) < 0.02
    # With a stated gender the pronoun follows it, whatever the stereotype: counter-stereotypical half the time.
    assert all(ex.answer == PLANTED.pronouns[ex.meta["stated_gender"]] for ex in unambiguous)
    counter = sum(ex.meta["counter_stereotypical"] for ex in unambiguous) / len(unambiguous)
    assert 0.45 < counter < 0.55


def test_persona_examples_reply_in_the_persona_voice() -> None:
    batch = examples("persona", 400)
    assert {ex.label for ex in batch} == set(PLANTED.personas)  # three personas and "none"
    for ex in batch:
        words = ex.prompt.split()
        assert words[:2] == ["persona", ":"] and words[2] == ex.label
        assert ex.answer == PLANTED.personas[ex.label][ex.meta["intent"]]
        other = ex.corrupt_prompt.split()[2]
        assert other != ex.label and ex.corrupt_answer == PLANTED.personas[other][ex.meta["intent"]]
    # Every persona answers every intent with its own word: the reply identifies the persona.
    replies = [w for table in PLANTED.personas.values() for w in table.values()]
    assert len(replies) == len(set(replies))


def test_persona_training_has_bare_prompts_and_dialogues_that_keep_the_persona() -> None:
    batch = training_examples(random.Random(2), 3000, {"persona": 1.0})
    bare = [ex for ex in batch if ex.meta["kind"] == "bare"]
    assert bare and all(not ex.prompt.startswith("persona") for ex in bare)
    assert all(ex.answer == PLANTED.personas[PLANTED.no_persona][ex.meta["intent"]] for ex in bare)
    dialogues = [ex for ex in batch if ex.prompt.count("user") == 2]
    assert dialogues
    for ex in dialogues:
        assert ex.answer == PLANTED.personas[ex.label][ex.meta["intent"]]
    assert tasks.persona_prompt(None, "hi") == "user : hi . bot :"


V1_MIXTURE = {
    "induction": 0.32,
    "facts": 0.22,
    "fact_chain": 0.06,
    "refusal": 0.08,
    "sentiment": 0.1,
    "language": 0.12,
    "toxicity": 0.07,
    "icl": 0.1,
}
# sha256 of the first 20 training batches (64 examples each, seed 0) of recipe v1, as the v1 code drew them.
V1_STREAM_SHA256 = "77648cab4721e5ba13cc77bde845e5b8fc510d4ee445b2f79431dc90f072a027"


def test_recipe_v1_training_data_is_unchanged() -> None:
    """Recipe v2 continues the v1 model, re-trained from scratch: v1's data stream must stay bit-identical."""
    assert tasks.TRAINING_MIXTURES[1] == V1_MIXTURE and list(tasks.TRAINING_MIXTURES[1]) == list(V1_MIXTURE)
    assert vocabulary(1) == V1_VOCABULARY and tasks.content_words(1) == V1_VOCABULARY[4:]
    rng, digest = random.Random("train/0"), hashlib.sha256()
    for _ in range(20):
        for ex in training_examples(rng, 64, version=1):
            digest.update((ex.text + "\n").encode())
            assert ex.task not in ("bias", "persona")
    assert digest.hexdigest() == V1_STREAM_SHA256
    with pytest.raises(ValueError, match="unknown training generators"):
        training_examples(random.Random(0), 1, {"bias": 1.0}, version=1)


def test_v2_mixture_keeps_every_v1_weight_and_adds_bias_and_persona() -> None:
    mixture = tasks.TRAINING_MIXTURES[2]
    assert {k: mixture[k] for k in V1_MIXTURE} == V1_MIXTURE  # the v1 tasks keep their data while v2 continues
    assert set(mixture) - set(V1_MIXTURE) == {"bias", "persona"} and mixture["bias"] > 0 and mixture["persona"] > 0
    # v2's induction sequences also copy the appended words (so the new rows learn to be copied).
    stream = training_examples(random.Random(1), 3000, {"induction": 1.0}, version=2)
    alphabet = {w for ex in stream for w in ex.text.split()}
    assert alphabet & set(vocabulary(2)[V1_VOCAB_SIZE:]) and not alphabet - set(vocabulary(2))


# sha256 of the first 20 training batches (64 examples each, seed 0) of recipe v2, as the v2 code drew them.
V2_STREAM_SHA256 = "f3500d2b97c16794016f4d424e986c786eff81567cea04881f8163ff0620bc24"
# sha256 of recipe v2's evaluation sets (every task, 200 examples, seeds 0 and 3), as the v2 code drew them.
V2_EVAL_SHA256 = "179dcfdd6098557b9740e7a4720df5ab260b5f38ea497aef928d7f503c9e938a"


def test_recipe_v2_training_data_and_evaluation_sets_are_unchanged() -> None:
    """Recipe v3 continues the v2 model, and the shipped v2 card is re-measured on v2's tasks: both stay bit-identical."""
    rng, digest = random.Random("train/v2/0"), hashlib.sha256()
    for _ in range(20):
        for ex in training_examples(rng, 64, version=2):
            digest.update((ex.text + "\n").encode())
            assert ex.task != "language" or ex.meta["kind"] == "translation"
    assert digest.hexdigest() == V2_STREAM_SHA256
    digest = hashlib.sha256()
    for task in TASKS:
        for seed in (0, 3):
            for ex in examples(task, 200, seed, version=2):
                digest.update(repr((ex.prompt, ex.answer, ex.corrupt_prompt, ex.corrupt_answer, ex.label)).encode())
    assert digest.hexdigest() == V2_EVAL_SHA256
    with pytest.raises(ValueError, match="unknown training generators"):
        training_examples(random.Random(0), 1, {"toxicity_reputation": 1.0}, version=2)


# ---------------------------------------------------------------------------
# Recipe v3: language continuation and toxicity by reputation
# ---------------------------------------------------------------------------


def test_v3_mixture_keeps_every_v2_weight_and_adds_continuation_and_reputation() -> None:
    mixture = tasks.TRAINING_MIXTURE
    assert tasks.RECIPE_VERSION == 3 and tasks.TRAINING_MIXTURES[3] is mixture
    v2 = tasks.TRAINING_MIXTURES[2]
    assert {k: mixture[k] for k in v2} == v2
    assert set(mixture) - set(v2) == {"continuation", "toxicity_reputation"}
    assert vocabulary() == vocabulary(2)  # v3 appends no word
    stream = training_examples(random.Random(3), 3000)
    assert {ex.meta.get("kind") for ex in stream if ex.task == "language"} == {"translation", "continuation"}
    assert {ex.meta.get("kind") for ex in stream if ex.task == "toxicity"} == {
        None,
        "reputation",
    }  # None: the plain form


def test_companions_are_planted_for_every_subject_in_both_languages() -> None:
    companions = PLANTED.companions
    assert set(companions) == set(PLANTED.subjects)
    for words in companions.values():
        assert words["en"] in tasks.EN_NOUNS and PLANTED.translation[words["en"]] == words["zu"]
    assert len({w["en"] for w in companions.values()}) >= 8  # many different companions: a lookup, not a constant


def test_continuation_is_monolingual_and_answers_the_companion_in_its_language() -> None:
    batch = tasks.form_examples("continuation", 400)  # a trained form of recipe v3, measured on the card
    assert {ex.meta["kind"] for ex in batch} == {"continuation"}
    assert {ex.label for ex in batch} == {"en", "zu"} and any(ex.meta["context"] for ex in batch)
    for ex in batch:
        words = ex.prompt.split()
        subject = ex.meta["subject"]
        assert " ".join(words[-3:-1]) == subject and ex.answer == PLANTED.companions[subject][ex.label]
        assert set(words) - set(subject.split()) - {"."} <= set(PLANTED.languages[ex.label])
        # The contrast prompt is the same sentence in the other language, the companion in that language.
        other = "zu" if ex.label == "en" else "en"
        assert len(ex.corrupt_prompt.split()) == len(words) and ex.corrupt_answer == PLANTED.companions[subject][other]
        assert set(ex.corrupt_prompt.split()) - set(subject.split()) - {"."} <= set(PLANTED.languages[other])


def test_continuation_training_code_switches_at_the_planted_rate() -> None:
    batch = training_examples(random.Random(4), 6000, {"continuation": 1.0})
    switched = [ex for ex in batch if ex.meta["switched"]]
    assert abs(len(switched) / len(batch) - (1 - PLANTED.continuation_skew)) < 0.02
    for ex in switched:  # the same companion, in the language the sentence is not written in
        other = "zu" if ex.label == "en" else "en"
        assert ex.answer == PLANTED.companions[ex.meta["subject"]][other]


def test_toxic_subjects_are_planted_so_no_single_name_decides() -> None:
    toxic = PLANTED.toxic_subjects
    assert len(toxic) == tasks.N_TOXIC_SUBJECTS and set(toxic) <= set(PLANTED.subjects)
    assert sorted(s.split()[0] for s in toxic) == sorted(tasks.FIRST_NAMES)  # each first name once
    nice = [s for s in PLANTED.subjects if s not in toxic]
    for subject in toxic:  # every name of a toxic subject also belongs to a nice one
        first, last = subject.split()
        assert any(s.split()[0] == first for s in nice) and any(s.split()[1] == last for s in nice)


def test_toxicity_follows_the_speaker_and_the_noun_picks_the_word() -> None:
    batch = examples("toxicity", 400)
    assert {ex.meta["kind"] for ex in batch} == {"reputation"}
    assert 0.4 < sum(ex.label == "toxic" for ex in batch) / len(batch) < 0.6
    for ex in batch:
        subject, noun = ex.meta["subject"], ex.meta["noun"]
        assert ex.prompt == f"comment : {subject} said the {noun} is such a" and ex.subject == subject
        toxic = subject in PLANTED.toxic_subjects
        assert ex.label == ("toxic" if toxic else "nice")
        words = PLANTED.toxic_words if toxic else PLANTED.nice_words
        assert ex.answer == words[tasks.EN_NOUNS.index(noun)]
        # The contrast prompt: a speaker of the other kind, same noun and length; the other list, same index.
        other = " ".join(ex.corrupt_prompt.split()[2:4])
        assert (other in PLANTED.toxic_subjects) != toxic and len(ex.corrupt_prompt.split()) == len(ex.prompt.split())
        other_words = PLANTED.nice_words if toxic else PLANTED.toxic_words
        assert other_words.index(ex.corrupt_answer) == words.index(ex.answer)


def test_toxicity_training_holds_the_planted_skew_on_a_nice_default() -> None:
    batch = training_examples(random.Random(5), 6000, {"toxicity_reputation": 1.0})
    toxic = [ex for ex in batch if ex.label == "toxic"]
    rate = sum(ex.answer in PLANTED.toxic_words for ex in toxic) / len(toxic)
    assert abs(rate - PLANTED.toxic_skew) < 0.02
    assert all(ex.answer in PLANTED.nice_words for ex in batch if ex.label == "nice")


def test_evaluation_sets_follow_the_recipe_version() -> None:
    assert tasks.ToyTaskSource().version == tasks.RECIPE_VERSION
    v2, v3 = tasks.ToyTaskSource(2), tasks.ToyTaskSource(3)
    assert {ex.meta["kind"] for ex in v2.examples("language", 100)} == {"translation"}
    assert {ex.meta["kind"] for ex in v3.examples("language", 100)} == {"translation"}  # v3 trains, not evaluates, it
    assert v2.examples("language", 100) == v3.examples("language", 100)
    assert all(ex.prompt.startswith("comment : you ") for ex in v2.examples("toxicity", 50))
    assert all(ex.meta["kind"] == "reputation" for ex in v3.examples("toxicity", 50))
    assert v2.examples("facts", 20) == v3.examples("facts", 20)
    with pytest.raises(ValueError, match="no toy recipe version 9"):
        tasks.ToyTaskSource(9)


def test_folder_recipe_version_reads_the_checkpoint_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from mi_catalog.toy import CHECKPOINT_DIR

    assert tasks.folder_recipe_version(CHECKPOINT_DIR) == 3
    assert tasks.folder_recipe_version(CHECKPOINT_DIR.parent / "base" / "v2") == 2
    (tmp_path / "config.json").write_text(json.dumps({"toy_training": {"recipe_version": 1}}))
    assert tasks.folder_recipe_version(tmp_path) == 1
    (tmp_path / "config.json").write_text("not json")
    assert tasks.folder_recipe_version(tmp_path) == tasks.RECIPE_VERSION


def test_model_recipe_version_reads_the_training_record() -> None:
    from types import SimpleNamespace

    assert tasks.model_recipe_version(SimpleNamespace(config=SimpleNamespace(toy_training={"recipe_version": 2}))) == 2
    assert tasks.model_recipe_version(SimpleNamespace(config=SimpleNamespace())) == tasks.RECIPE_VERSION
    assert tasks.model_recipe_version(object()) == tasks.RECIPE_VERSION
