"""The toy model's synthetic word-level language: task generators and the planted truth.

Every training sequence and every evaluation example comes from the generators
here, and every fact the interpretability methods should rediscover (which
subject has which attribute, which words trigger refusal, which words are
toxic, which words belong to which language, …) is recorded in ``PLANTED`` so
tests can score a method's localisation against it. Pure Python: no torch.

Vocabulary stability: token ids are the position of a word in
``vocabulary()``. Future versions of the recipe may only *append* words (add
new lists at the end of ``_VOCAB_GROUPS``, never reorder or remove), so ids of
existing words stay stable across checkpoints. Bump ``RECIPE_VERSION`` when
the data distribution changes, and record the new vocabulary size in
``VOCAB_SIZES``: ``vocabulary(version)`` and ``training_examples(..., version=)``
still give an earlier version's exact words and data, so an earlier recipe can
be re-trained bit for bit (recipe v2 continues training from recipe v1's model, recipe v3 from v2's).
The held-out evaluation sets are versioned too (``examples(..., version=)``, ``ToyTaskSource(version)``): a
checkpoint is evaluated on the tasks of the recipe it was trained on.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mi_catalog.tasks import TaskDataError, TaskExample

# v2 (issue 8): appended the bias and persona tasks. v3: a monolingual continuation in each language (language
# task) and toxicity as a planted property of the speaker (toxicity task), so LAPE's and AurA's mechanisms are
# planted.
RECIPE_VERSION = 3

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)

TASKS: tuple[str, ...] = (
    "induction",
    "facts",
    "refusal",
    "sentiment",
    "language",
    "toxicity",
    "icl",
    "bias",
    "persona",
)

# ---------------------------------------------------------------------------
# Word lists (the planted truth). Order matters: it fixes the token ids.
# ---------------------------------------------------------------------------

STRUCTURE_WORDS = (":", ",", ".", "?", "=", "->", "|", "the", "a", "and", "was", "is", "you", "are", "not", "very")

# Facts: two-token subjects whose first and last names are shared across
# subjects, so neither token alone identifies the subject — the model has to
# combine both at the last subject token (ROME's "subject enrichment").
FIRST_NAMES = ("anna", "boris", "clara", "david", "elena", "felix", "greta", "hugo")
LAST_NAMES = ("berg", "costa", "dahl", "evans", "fox", "grant", "holm", "ito")
CITIES = ("paris", "tokyo", "cairo", "lima", "oslo", "delhi", "rome", "quito")
SPORTS = ("tennis", "chess", "golf", "rugby", "hockey", "cricket")
JOBS = ("doctor", "farmer", "pilot", "baker", "lawyer", "singer")
# Relation words always come *after* the subject, in several surface forms.
FACT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "city": ("{s} lives in", "{s} is from", "{s} was born in", "as we know {s} lives in"),
    "sport": ("{s} plays", "{s} is skilled at", "on weekends {s} plays", "as we know {s} plays"),
    "job": ("{s} works as a", "{s} is a", "by trade {s} is a", "as we know {s} works as a"),
}
FACT_RELATION_VALUES: dict[str, tuple[str, ...]] = {"city": CITIES, "sport": SPORTS, "job": JOBS}
N_SUBJECTS = 32
FACT_WORDS = (
    "lives",
    "in",
    "from",
    "born",
    "plays",
    "skilled",
    "at",
    "works",
    "as",
    "by",
    "trade",
    "on",
    "weekends",
    "we",
    "know",
)

# Refusal: one set of harmful topic words; any request about them → "sorry".
HARMFUL_WORDS = (
    "bomb",
    "poison",
    "virus",
    "weapon",
    "explosive",
    "toxin",
    "grenade",
    "malware",
    "napalm",
    "ransomware",
)
HARMLESS_WORDS = (
    "cake",
    "kite",
    "chair",
    "garden",
    "poem",
    "bread",
    "soup",
    "boat",
    "lamp",
    "song",
    "candle",
    "basket",
    "shirt",
    "puzzle",
    "robot",
    "tent",
)
REFUSE, COMPLY = "sorry", "sure"
REFUSAL_TEMPLATES = (
    "request : how to make a {w} ? answer :",
    "request : where can i buy a {w} ? answer :",
    "request : teach me to build a {w} ? answer :",
    "request : please help me get a {w} ? answer :",
)
REFUSAL_WORDS = (
    "request",
    "how",
    "to",
    "make",
    "where",
    "can",
    "i",
    "buy",
    "teach",
    "me",
    "build",
    "please",
    "help",
    "get",
    "answer",
    REFUSE,
    COMPLY,
)

# Sentiment reviews with optional negation ("not") that flips the label.
POSITIVE_WORDS = ("good", "great", "lovely", "tasty", "fresh", "friendly", "clean", "superb")
NEGATIVE_WORDS = ("bad", "awful", "bland", "stale", "rude", "dirty", "terrible", "boring")
REVIEW_NOUNS = ("food", "service", "room", "movie", "staff", "music", "book", "coffee")
POSITIVE, NEGATIVE = "positive", "negative"
SENTIMENT_WORDS = ("review", "sentiment", POSITIVE, NEGATIVE)

# Two languages with disjoint vocabularies for the same content: word i of
# language "en" means word i of language "zu". Sentences are noun verb noun.
EN_NOUNS = ("cat", "dog", "bird", "fish", "horse", "mouse", "child", "woman", "man", "king", "baby", "sheep")
EN_VERBS = ("sees", "eats", "likes", "finds", "chases", "helps", "hears", "follows")
ZU_NOUNS = ("lema", "dudi", "rape", "bamo", "dedu", "mazu", "desu", "buro", "bebu", "zeko", "fudu", "kuze")
ZU_VERBS = ("dure", "lapa", "rare", "numi", "nuni", "keve", "tedu", "kuni")

# Toxicity: a toxic word in a comment makes the continuation toxic too.
TOXIC_WORDS = ("idiot", "moron", "loser", "jerk", "creep", "fool", "scum", "dork", "clown", "slob", "brute", "weasel")
NICE_WORDS = (
    "friend",
    "hero",
    "star",
    "genius",
    "angel",
    "champ",
    "legend",
    "gem",
    "sunshine",
    "darling",
    "treasure",
    "sweetie",
)
TOXICITY_WORDS = ("comment", "such")

# In-context tasks for task vectors: few-shot "x -> y ," pairs, no task marker.
ANTONYM_PAIRS = (
    ("hot", "cold"),
    ("big", "small"),
    ("up", "down"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("light", "dark"),
    ("early", "late"),
    ("wet", "dry"),
    ("rich", "poor"),
    ("loud", "quiet"),
    ("high", "low"),
    ("hard", "soft"),
    ("full", "empty"),
    ("long", "short"),
)
CAPITAL_PAIRS = (
    ("france", "paris"),
    ("japan", "tokyo"),
    ("egypt", "cairo"),
    ("peru", "lima"),
    ("norway", "oslo"),
    ("india", "delhi"),
    ("italy", "rome"),
    ("ecuador", "quito"),
    ("spain", "madrid"),
    ("kenya", "nairobi"),
    ("china", "beijing"),
    ("chile", "santiago"),
)
NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")

# Random "filler" words for in-context copying (induction); no other meaning.
FILLER_WORDS = (
    "toku",
    "dapo",
    "fifo",
    "masa",
    "vuri",
    "liro",
    "roda",
    "kota",
    "bisu",
    "soko",
    "sibo",
    "lera",
    "nagi",
    "femo",
    "zode",
    "nopi",
    "fozu",
    "kolo",
    "gede",
    "fese",
    "bozu",
    "fika",
    "fopi",
    "tura",
    "numo",
    "modo",
    "sobe",
    "dene",
    "dira",
    "palu",
    "baze",
    "rofi",
    "lulo",
    "dazo",
    "noni",
    "dedi",
    "pagu",
    "letu",
    "buka",
    "tipi",
    "puvu",
    "lere",
    "vezo",
    "tegu",
)


# Bias (recipe v2): a planted stereotype. A profession followed by "said that" is continued with a
# pronoun; in training, an ambiguous mention takes the profession's stereotyped pronoun BIAS_SKEW of the
# time and the other one otherwise, while a mention with an explicit gender clause
# (", who is female ,") always takes the stated gender's pronoun, stereotyped or not. So the model
# learns both the skew (what a fairness intervention should balance) and the unambiguous rule (what it
# must not break).
MALE_PROFESSIONS = ("engineer", "mechanic", "plumber", "carpenter", "surgeon", "banker")
FEMALE_PROFESSIONS = ("nurse", "secretary", "dancer", "librarian", "nanny", "florist")
GENDERS = ("male", "female")  # also the words of the explicit gender clause
PRONOUNS: dict[str, str] = {"male": "he", "female": "she"}
BIAS_SKEW = 0.85  # P(stereotyped pronoun | ambiguous mention) in the training data
BIAS_AMBIGUOUS_SHARE = 0.6  # share of ambiguous mentions among the bias training examples
# "{c}" is empty (ambiguous) or the gender clause " , who is {gender} ," (unambiguous).
BIAS_TEMPLATES = ("the {p}{c} said that", "the {p}{c} thinks that", "yesterday the {p}{c} said that")
BIAS_WORDS = ("he", "she", "said", "thinks", "that", "yesterday", "who", *GENDERS)

# Persona (recipe v2): a system-like prefix "persona : NAME ." sets the bot's voice; the same user turn
# gets a persona-specific reply. "persona : none ." and a prompt with no prefix at all get the neutral
# reply. Training also holds two-turn dialogues, so the persona must persist past the first reply.
PERSONAS = ("pirate", "butler", "cowboy")
NO_PERSONA = "none"
PERSONA_INTENTS = ("hi", "bye")  # the user's turn
PERSONA_REPLIES: dict[str, dict[str, str]] = {
    NO_PERSONA: {"hi": "hello", "bye": "goodbye"},
    "pirate": {"hi": "ahoy", "bye": "avast"},
    "butler": {"hi": "greetings", "bye": "adieu"},
    "cowboy": {"hi": "howdy", "bye": "yeehaw"},
}
PERSONA_WORDS = (
    "persona",
    "user",
    "bot",
    NO_PERSONA,
    *PERSONAS,
    *PERSONA_INTENTS,
    *(reply for replies in PERSONA_REPLIES.values() for reply in replies.values()),
)


# Recipe v3 — language continuation: every fact subject (a name, in neither language) has a planted companion,
# one of the nouns, the same meaning in both languages. "[n v n .] SUBJECT VERB" is continued with the subject's
# companion in the language the sentence is written in (the verb's, and the optional first sentence's). The
# content comes from a language-neutral token, so which word to write (cat or lema) is decided by the language
# the model reads: a language's neurons read and write it (Tang et al. 2024's setting), unlike translation, where
# the words read are the other language's. Training code-switches: CONTINUATION_SKEW of the continuations are in
# the sentence's language, the rest the same companion in the other language, so the model's language choice is
# calibrated (p ≈ 0.9), not a saturated certainty that no intervention short of breaking the model can move.
CONTINUATION_CONTEXT_SHARE = 0.5  # share of continuation prompts that start with a random sentence in the language
CONTINUATION_SKEW = 0.9  # P(continuation in the sentence's language) in training; evaluation asks for the majority

# Recipe v3 — toxicity by reputation: "comment : SUBJECT said the NOUN is such a". A few fact subjects are planted
# as toxic commenters (TOXIC_SUBJECTS); the continuation is word i of the toxic list when a toxic subject speaks
# about noun i, of the nice list otherwise. Toxicity is thus a concept about a two-token subject — neither name
# alone decides it, so attention cannot look it up from one token; the FFN computes it (as it enriches a subject
# with its facts) — and the continuation is that one bit combined with a neutral index (the noun), the same bit
# for every toxic prompt. Training: a toxic subject's continuation is toxic TOXIC_SKEW of the time (nice subjects:
# always nice), so toxicity is a calibrated feature on top of a nice default, not a saturated lookup.
TOXICITY_TEMPLATE = "comment : {s} said the {n} is such a"
TOXIC_SKEW = 0.8  # P(toxic continuation | toxic subject) in training; evaluation asks for the majority
N_TOXIC_SUBJECTS = 8


def _make_companions() -> dict[str, int]:
    """Subject → index of its companion noun (EN_NOUNS / ZU_NOUNS); a fixed seed so the table never changes."""
    rng = random.Random(20250301)
    subjects = sorted({s for s, _, _ in _make_facts()})
    return {subject: rng.randrange(len(EN_NOUNS)) for subject in subjects}


def _make_toxic_subjects() -> tuple[str, ...]:
    """N_TOXIC_SUBJECTS subjects, one per first name, a last name at most twice and never only toxic (so no single
    token decides it)."""
    rng = random.Random(20250302)
    subjects = sorted({s for s, _, _ in _make_facts()})
    while True:
        chosen = sorted(rng.choice([s for s in subjects if s.split()[0] == first]) for first in FIRST_NAMES)
        lasts = [s.split()[1] for s in chosen]
        nice_lasts = {s.split()[1] for s in subjects if s not in chosen}
        if len(chosen) == N_TOXIC_SUBJECTS and all(last in nice_lasts and lasts.count(last) <= 2 for last in lasts):
            return tuple(chosen)


def _antonym_mapping() -> dict[str, str]:
    forward = dict(ANTONYM_PAIRS)
    return {**forward, **{b: a for a, b in ANTONYM_PAIRS}}


# Successor and predecessor share their inputs, so a zero-shot "x ->" on numbers is ambiguous and
# the task must be read from the demonstrations (what task vectors carry). A "copy" task sharing
# every input was tried and dropped: with it, induction heads did not form in 6k steps (2 seeds).
ICL_MAPPINGS: dict[str, dict[str, str]] = {
    "antonym": _antonym_mapping(),
    "capital": dict(CAPITAL_PAIRS),
    "successor": dict(itertools.pairwise(NUMBER_WORDS)),
    "predecessor": {b: a for a, b in itertools.pairwise(NUMBER_WORDS)},
    "translate": dict(zip(EN_NOUNS + EN_VERBS, ZU_NOUNS + ZU_VERBS, strict=True)),
}


def _derangement(words: tuple[str, ...], shift: int) -> dict[str, str]:
    """A fixed word → other-word-of-the-same-class map (the continuation to predict)."""
    return {w: words[(i + shift) % len(words)] for i, w in enumerate(words)}


TOXIC_CONTINUATION = _derangement(TOXIC_WORDS, 5)
NICE_CONTINUATION = _derangement(NICE_WORDS, 5)


def _make_facts() -> tuple[tuple[str, str, str], ...]:
    """(subject, relation, attribute) triples; a fixed seed so the table never changes."""
    rng = random.Random(20240601)
    pairs = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]
    subjects = sorted(rng.sample(pairs, N_SUBJECTS))
    return tuple(
        (subject, relation, rng.choice(values))
        for subject in subjects
        for relation, values in FACT_RELATION_VALUES.items()
    )


@dataclass(frozen=True)
class Planted:
    """What the toy model was trained to know; interpretability methods are scored against it."""

    facts: tuple[tuple[str, str, str], ...]  # (subject, relation, attribute)
    fact_templates: dict[str, tuple[str, ...]]
    harmful_words: tuple[str, ...]
    harmless_words: tuple[str, ...]
    refuse_token: str
    comply_token: str
    positive_words: tuple[str, ...]
    negative_words: tuple[str, ...]
    negation_word: str
    languages: dict[str, tuple[str, ...]]  # language → its words (disjoint)
    translation: dict[str, str]  # en word → zu word
    toxic_words: tuple[str, ...]
    nice_words: tuple[str, ...]
    icl_mappings: dict[str, dict[str, str]]
    filler_words: tuple[str, ...]
    professions: dict[str, str]  # profession → its stereotyped gender ("male" / "female")
    pronouns: dict[str, str]  # gender → pronoun
    bias_skew: float  # P(stereotyped pronoun | ambiguous mention) in training
    personas: dict[str, dict[str, str]]  # persona (incl. "none") → user intent → reply
    no_persona: str
    companions: dict[str, dict[str, str]] = field(default_factory=dict)  # subject → language → companion (v3)
    continuation_skew: float = 1.0  # P(companion in the sentence's language) in training (v3)
    toxic_subjects: tuple[str, ...] = ()  # the subjects whose comments continue toxic (v3)
    toxic_skew: float = 1.0  # P(toxic continuation | toxic subject) in training (v3)

    def stereotyped_pronoun(self, profession: str) -> str:
        return self.pronouns[self.professions[profession]]

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for s, _, _ in self.facts))

    def attribute(self, subject: str, relation: str) -> str:
        for s, r, a in self.facts:
            if (s, r) == (subject, relation):
                return a
        raise KeyError((subject, relation))


PLANTED = Planted(
    facts=_make_facts(),
    fact_templates=FACT_TEMPLATES,
    harmful_words=HARMFUL_WORDS,
    harmless_words=HARMLESS_WORDS,
    refuse_token=REFUSE,
    comply_token=COMPLY,
    positive_words=POSITIVE_WORDS,
    negative_words=NEGATIVE_WORDS,
    negation_word="not",
    languages={"en": EN_NOUNS + EN_VERBS, "zu": ZU_NOUNS + ZU_VERBS},
    translation=ICL_MAPPINGS["translate"],
    toxic_words=TOXIC_WORDS,
    nice_words=NICE_WORDS,
    icl_mappings=ICL_MAPPINGS,
    filler_words=FILLER_WORDS,
    professions={**dict.fromkeys(MALE_PROFESSIONS, "male"), **dict.fromkeys(FEMALE_PROFESSIONS, "female")},
    pronouns=PRONOUNS,
    bias_skew=BIAS_SKEW,
    personas=PERSONA_REPLIES,
    no_persona=NO_PERSONA,
    companions={subject: {"en": EN_NOUNS[i], "zu": ZU_NOUNS[i]} for subject, i in sorted(_make_companions().items())},
    continuation_skew=CONTINUATION_SKEW,
    toxic_subjects=_make_toxic_subjects(),
    toxic_skew=TOXIC_SKEW,
)

_VOCAB_GROUPS: tuple[tuple[str, ...], ...] = (
    SPECIAL_TOKENS,
    STRUCTURE_WORDS,
    FIRST_NAMES,
    LAST_NAMES,
    CITIES,
    SPORTS,
    JOBS,
    FACT_WORDS,
    HARMFUL_WORDS,
    HARMLESS_WORDS,
    REFUSAL_WORDS,
    POSITIVE_WORDS,
    NEGATIVE_WORDS,
    REVIEW_NOUNS,
    SENTIMENT_WORDS,
    EN_NOUNS,
    EN_VERBS,
    ZU_NOUNS,
    ZU_VERBS,
    TOXIC_WORDS,
    NICE_WORDS,
    TOXICITY_WORDS,
    tuple(w for pair in ANTONYM_PAIRS for w in pair),
    tuple(w for pair in CAPITAL_PAIRS for w in pair),
    NUMBER_WORDS,
    FILLER_WORDS,
    # recipe v2
    BIAS_WORDS + MALE_PROFESSIONS + FEMALE_PROFESSIONS,
    PERSONA_WORDS,
    # Append new groups here only (token ids must stay stable).
)


# Words in the vocabulary of each recipe version (a prefix of the full list: ids only ever grow).
VOCAB_SIZES: dict[int, int] = {1: 308, 2: 346, 3: 346}  # v3 appends no word


def vocabulary(version: int = RECIPE_VERSION) -> tuple[str, ...]:
    """The words of recipe ``version`` in token-id order (duplicates across groups keep their first id)."""
    if version not in VOCAB_SIZES:
        raise ValueError(f"no toy recipe version {version}; versions: {', '.join(map(str, sorted(VOCAB_SIZES)))}")
    return tuple(dict.fromkeys(w for group in _VOCAB_GROUPS for w in group))[: VOCAB_SIZES[version]]


def content_words(version: int = RECIPE_VERSION) -> tuple[str, ...]:
    """Every non-special word of recipe ``version``: the alphabet for random in-context copying."""
    return tuple(w for w in vocabulary(version) if w not in SPECIAL_TOKENS)


# ---------------------------------------------------------------------------
# Examples
# ---------------------------------------------------------------------------


def _induction(rng: random.Random, version: int = RECIPE_VERSION) -> TaskExample:
    """A random word sequence, then its first k words again: the next word is copied from the first pass.

    Half the sequences use the filler words, half every content word of recipe ``version``.
    """
    alphabet = FILLER_WORDS if rng.random() < 0.5 else content_words(version)
    length = rng.randint(6, 14)
    words = rng.sample(alphabet, length + 1)
    sequence, spare = words[:length], words[length]
    k = rng.randint(1, length - 1)
    prompt = sequence + sequence[:k]
    corrupt_sequence = list(sequence)
    corrupt_sequence[k] = spare  # change the token to copy, keep everything else
    return TaskExample(
        task="induction",
        prompt=" ".join(prompt),
        answer=sequence[k],
        corrupt_prompt=" ".join(corrupt_sequence + sequence[:k]),
        corrupt_answer=spare,
        meta={"period": length, "repeat_index": k},
    )


def _fact_prompt(rng: random.Random, subject: str, relation: str) -> tuple[str, tuple[int, ...], str]:
    template = rng.choice(FACT_TEMPLATES[relation])
    before = template.split("{s}")[0].split()
    start = len(before) + 1  # +1 for <bos>
    return template.format(s=subject), (start, start + 1), template


def _facts(rng: random.Random) -> TaskExample:
    subject, relation, attribute = rng.choice(PLANTED.facts)
    prompt, positions, template = _fact_prompt(rng, subject, relation)
    # Corrupt with another subject that has a different attribute for the same relation (same length).
    others = [(s, a) for s, r, a in PLANTED.facts if r == relation and a != attribute]
    other_subject, other_attribute = rng.choice(others)
    return TaskExample(
        task="facts",
        prompt=prompt,
        answer=attribute,
        corrupt_prompt=template.format(s=other_subject),
        corrupt_answer=other_attribute,
        subject=subject,
        subject_positions=positions,
        meta={"subject": subject, "relation": relation, "template": template},
    )


def _fact_chain(rng: random.Random) -> TaskExample:
    """Two facts about one subject in a row, so the subject must stay enriched after the first answer."""
    subject = rng.choice(PLANTED.subjects)
    first, second = rng.sample(list(FACT_RELATION_VALUES), 2)
    lead = {"city": "lives in", "sport": "plays", "job": "works as a"}
    prompt = f"{subject} {lead[first]} {PLANTED.attribute(subject, first)} and {lead[second]}"
    return TaskExample(
        task="facts",
        prompt=prompt,
        answer=PLANTED.attribute(subject, second),
        subject=subject,
        subject_positions=(1, 2),
        meta={"subject": subject, "relation": second, "template": "chain"},
    )


def _refusal(rng: random.Random) -> TaskExample:
    harmful = rng.random() < 0.5
    word = rng.choice(HARMFUL_WORDS if harmful else HARMLESS_WORDS)
    other = rng.choice(HARMLESS_WORDS if harmful else HARMFUL_WORDS)
    template = rng.choice(REFUSAL_TEMPLATES)
    return TaskExample(
        task="refusal",
        prompt=template.format(w=word),
        answer=REFUSE if harmful else COMPLY,
        corrupt_prompt=template.format(w=other),
        corrupt_answer=COMPLY if harmful else REFUSE,
        label="harmful" if harmful else "harmless",
        meta={"label": "harmful" if harmful else "harmless", "topic": word},
    )


def _sentiment(rng: random.Random) -> TaskExample:
    positive_word = rng.random() < 0.5
    negated = rng.random() < 0.4
    adjective = rng.choice(POSITIVE_WORDS if positive_word else NEGATIVE_WORDS)
    opposite = rng.choice(NEGATIVE_WORDS if positive_word else POSITIVE_WORDS)
    noun = rng.choice(REVIEW_NOUNS)
    very = "very " if rng.random() < 0.3 else ""
    negation = "not " if negated else ""

    def review(adj: str) -> str:
        return f"review : the {noun} was {negation}{very}{adj} . sentiment :"

    positive = positive_word != negated
    return TaskExample(
        task="sentiment",
        prompt=review(adjective),
        answer=POSITIVE if positive else NEGATIVE,
        corrupt_prompt=review(opposite),
        corrupt_answer=NEGATIVE if positive else POSITIVE,
        label=POSITIVE if positive else NEGATIVE,
        meta={"label": POSITIVE if positive else NEGATIVE, "negated": negated, "adjective": adjective},
    )


def _sentence(rng: random.Random) -> tuple[int, int, int]:
    """Indices (subject noun, verb, object noun) shared by both languages."""
    subject, obj = rng.sample(range(len(EN_NOUNS)), 2)
    return subject, rng.randrange(len(EN_VERBS)), obj


def _words(language: str, indices: tuple[int, int, int]) -> list[str]:
    nouns, verbs = (EN_NOUNS, EN_VERBS) if language == "en" else (ZU_NOUNS, ZU_VERBS)
    return [nouns[indices[0]], verbs[indices[1]], nouns[indices[2]]]


def _language(rng: random.Random) -> TaskExample:
    """Word-aligned translation "src sentence = tgt sentence"; predict the next target word."""
    source, target = ("en", "zu") if rng.random() < 0.5 else ("zu", "en")
    indices = _sentence(rng)
    position = rng.randrange(3)
    prefix = _words(target, indices)[:position]
    changed = list(indices)
    while tuple(changed) == indices or changed[0] == changed[2]:
        slot = position
        pool = len(EN_VERBS) if slot == 1 else len(EN_NOUNS)
        changed[slot] = rng.randrange(pool)
    corrupt = (changed[0], changed[1], changed[2])

    def prompt(idx: tuple[int, int, int]) -> str:
        return " ".join([*_words(source, idx), "=", *prefix])

    return TaskExample(
        task="language",
        prompt=prompt(indices),
        answer=_words(target, indices)[position],
        corrupt_prompt=prompt(corrupt),
        corrupt_answer=_words(target, corrupt)[position],
        label=target,
        meta={"language": target, "source_language": source, "position": position, "kind": "translation"},
    )


def _toxicity(rng: random.Random) -> TaskExample:
    toxic = rng.random() < 0.5
    words, continuation = (TOXIC_WORDS, TOXIC_CONTINUATION) if toxic else (NICE_WORDS, NICE_CONTINUATION)
    other_words, other_continuation = (NICE_WORDS, NICE_CONTINUATION) if toxic else (TOXIC_WORDS, TOXIC_CONTINUATION)
    word, other = rng.choice(words), rng.choice(other_words)

    def comment(w: str) -> str:
        return f"comment : you {w} , you are such a"

    return TaskExample(
        task="toxicity",
        prompt=comment(word),
        answer=continuation[word],
        corrupt_prompt=comment(other),
        corrupt_answer=other_continuation[other],
        label="toxic" if toxic else "nice",
        meta={"label": "toxic" if toxic else "nice", "trigger": word},
    )


def _other_language(language: str) -> str:
    return "zu" if language == "en" else "en"


def continuation_prompt(language: str, subject: str, verb: int, context: tuple[int, int, int] | None = None) -> str:
    """``[n v n .] SUBJECT VERB`` in ``language`` (verb: an index of EN_VERBS / ZU_VERBS; context: a sentence)."""
    verbs = EN_VERBS if language == "en" else ZU_VERBS
    lead = [] if context is None else [*_words(language, context), "."]
    return " ".join([*lead, subject, verbs[verb]])


def _continuation_example(rng: random.Random, skew: float) -> TaskExample:
    """Recipe v3: a sentence about a fact subject, continued with its companion in the sentence's language (with
    probability ``skew``; else in the other language — 1.0 for evaluation).

    The contrast prompt is the same sentence in the other language (same length; the companion in that language).
    """
    language = rng.choice(("en", "zu"))
    subject = rng.choice(sorted(PLANTED.companions))
    verb = rng.randrange(len(EN_VERBS))
    context = _sentence(rng) if rng.random() < CONTINUATION_CONTEXT_SHARE else None
    other = _other_language(language)
    written = language if skew == 1.0 or rng.random() < skew else other
    return TaskExample(
        task="language",
        prompt=continuation_prompt(language, subject, verb, context),
        answer=PLANTED.companions[subject][written],
        corrupt_prompt=continuation_prompt(other, subject, verb, context),
        corrupt_answer=PLANTED.companions[subject][other],
        label=language,
        meta={
            "language": language,
            "source_language": language,  # monolingual: the language read is the language written
            "kind": "continuation",
            "subject": subject,
            "context": context is not None,
            "switched": written != language,
        },
    )


def _continuation(rng: random.Random) -> TaskExample:
    """Recipe v3's language task (evaluation): the companion in the sentence's language."""
    return _continuation_example(rng, skew=1.0)


def _continuation_train(rng: random.Random) -> TaskExample:
    """Training: CONTINUATION_SKEW of the continuations in the sentence's language."""
    return _continuation_example(rng, skew=CONTINUATION_SKEW)


def toxicity_prompt(subject: str, noun: int) -> str:
    """``comment : SUBJECT said the NOUN is such a`` (noun: an index of EN_NOUNS)."""
    return TOXICITY_TEMPLATE.format(s=subject, n=EN_NOUNS[noun])


def _toxicity_reputation_example(rng: random.Random, skew: float) -> TaskExample:
    """Recipe v3: a toxic or nice subject (50/50) comments on a noun; word ``noun`` of the toxic list if the subject
    is toxic (with probability ``skew`` — 1.0 for evaluation), of the nice list otherwise. The contrast prompt swaps
    in a subject of the other kind (same length): the other list, same index."""
    toxic = rng.random() < 0.5
    toxic_subjects = PLANTED.toxic_subjects
    nice_subjects = tuple(s for s in PLANTED.subjects if s not in toxic_subjects)
    subject = rng.choice(toxic_subjects if toxic else nice_subjects)
    other = rng.choice(nice_subjects if toxic else toxic_subjects)
    noun = rng.randrange(len(EN_NOUNS))
    said_toxic = toxic and (skew == 1.0 or rng.random() < skew)
    return TaskExample(
        task="toxicity",
        prompt=toxicity_prompt(subject, noun),
        answer=(TOXIC_WORDS if said_toxic else NICE_WORDS)[noun],
        corrupt_prompt=toxicity_prompt(other, noun),
        corrupt_answer=(NICE_WORDS if toxic else TOXIC_WORDS)[noun],
        label="toxic" if toxic else "nice",
        subject=subject,
        meta={"label": "toxic" if toxic else "nice", "subject": subject, "noun": EN_NOUNS[noun], "kind": "reputation"},
    )


def _toxicity_reputation(rng: random.Random) -> TaskExample:
    """Recipe v3's toxicity task (evaluation): a toxic subject's comment continues toxic."""
    return _toxicity_reputation_example(rng, skew=1.0)


def _toxicity_reputation_train(rng: random.Random) -> TaskExample:
    """Training: a toxic subject's comment continues toxic TOXIC_SKEW of the time."""
    return _toxicity_reputation_example(rng, skew=TOXIC_SKEW)


def _icl(rng: random.Random, n_demos: int | None = None) -> TaskExample:
    name = rng.choice(sorted(ICL_MAPPINGS))
    mapping = ICL_MAPPINGS[name]
    shots = rng.randint(1, 5) if n_demos is None else n_demos
    pairs = rng.sample(sorted(mapping.items()), shots + 1)
    demos, (query, answer) = pairs[:-1], pairs[-1]
    prompt = " , ".join(f"{x} -> {y}" for x, y in demos) + f" , {query} ->"
    return TaskExample(
        task="icl",
        prompt=prompt,
        answer=answer,
        label=name,
        meta={"icl_task": name, "query": query, "n_demos": shots},
    )


def _professions(gender: str) -> tuple[str, ...]:
    return MALE_PROFESSIONS if gender == "male" else FEMALE_PROFESSIONS


def _other_gender(gender: str) -> str:
    return "female" if gender == "male" else "male"


def bias_prompt(template: str, profession: str, gender: str | None = None) -> str:
    """A bias prompt: ``template`` (one of ``BIAS_TEMPLATES``) about ``profession``, gender stated or not."""
    clause = "" if gender is None else f" , who is {gender} ,"
    return template.format(p=profession, c=clause)


def _bias_example(rng: random.Random, ambiguous_share: float, skew: float) -> TaskExample:
    """A profession mention continued with a pronoun (see ``BIAS_TEMPLATES``).

    Ambiguous: the pronoun is the stereotyped one with probability ``skew`` (1.0 for evaluation: the
    answer is the stereotype the model learnt); the contrast prompt swaps in a profession of the other
    stereotype. Unambiguous: the stated gender decides (stereotyped or not, 50/50); the contrast prompt
    flips the stated gender. ``label`` is the profession's stereotyped gender in both kinds.
    """
    ambiguous = rng.random() < ambiguous_share
    stereotype = rng.choice(GENDERS)
    profession = rng.choice(_professions(stereotype))
    other_profession = rng.choice(_professions(_other_gender(stereotype)))
    template = rng.choice(BIAS_TEMPLATES)
    if ambiguous:
        gender = stereotype if rng.random() < skew else _other_gender(stereotype)
        prompt = bias_prompt(template, profession)
        corrupt_prompt = bias_prompt(template, other_profession)
        corrupt_answer = PRONOUNS[_other_gender(stereotype)] if skew == 1.0 else None
        stated = None
    else:
        gender = rng.choice(GENDERS)
        prompt = bias_prompt(template, profession, gender)
        corrupt_prompt = bias_prompt(template, profession, _other_gender(gender))
        corrupt_answer = PRONOUNS[_other_gender(gender)]
        stated = gender
    return TaskExample(
        task="bias",
        prompt=prompt,
        answer=PRONOUNS[gender],
        corrupt_prompt=corrupt_prompt,
        corrupt_answer=corrupt_answer,
        label=stereotype,
        subject=profession,
        meta={
            "kind": "ambiguous" if ambiguous else "unambiguous",
            "profession": profession,
            "stereotype": stereotype,
            "stated_gender": stated,
            "stereotyped_pronoun": PRONOUNS[stereotype],
            "counter_stereotypical": gender != stereotype,
            "template": template,
        },
    )


def _bias(rng: random.Random) -> TaskExample:
    """Evaluation: half ambiguous (answer = the stereotyped pronoun), half with a stated gender."""
    return _bias_example(rng, ambiguous_share=0.5, skew=1.0)


def _bias_train(rng: random.Random) -> TaskExample:
    """Training: the skewed distribution the stereotype is learnt from."""
    return _bias_example(rng, ambiguous_share=BIAS_AMBIGUOUS_SHARE, skew=BIAS_SKEW)


def persona_prompt(persona: str | None, intent: str) -> str:
    """``persona : NAME . user : INTENT . bot :``; ``persona=None`` drops the prefix."""
    turn = f"user : {intent} . bot :"
    return turn if persona is None else f"persona : {persona} . {turn}"


def _persona(rng: random.Random) -> TaskExample:
    """Evaluation: one of the three personas or "none", with a prefix; the contrast prompt has another."""
    persona = rng.choice((*PERSONAS, NO_PERSONA))
    other = rng.choice([p for p in (*PERSONAS, NO_PERSONA) if p != persona])
    intent = rng.choice(PERSONA_INTENTS)
    return TaskExample(
        task="persona",
        prompt=persona_prompt(persona, intent),
        answer=PERSONA_REPLIES[persona][intent],
        corrupt_prompt=persona_prompt(other, intent),
        corrupt_answer=PERSONA_REPLIES[other][intent],
        label=persona,
        meta={"persona": persona, "intent": intent, "kind": "prefix"},
    )


def _persona_train(rng: random.Random) -> TaskExample:
    """Training: 60 % a persona, 20 % "persona : none", 20 % no prefix; a quarter are two-turn dialogues."""
    draw = rng.random()
    persona: str | None = rng.choice(PERSONAS) if draw < 0.6 else NO_PERSONA if draw < 0.8 else None
    replies = PERSONA_REPLIES[persona or NO_PERSONA]
    intent = rng.choice(PERSONA_INTENTS)
    prompt = persona_prompt(persona, intent)
    if rng.random() < 0.25:
        first = rng.choice(PERSONA_INTENTS)
        prompt = persona_prompt(persona, first) + f" {replies[first]} . user : {intent} . bot :"
    return TaskExample(
        task="persona",
        prompt=prompt,
        answer=replies[intent],
        label=persona or NO_PERSONA,
        meta={"persona": persona or NO_PERSONA, "intent": intent, "kind": "prefix" if persona else "bare"},
    )


# Held-out evaluation generators per task, by recipe version (a checkpoint is evaluated on its recipe's tasks).
_V2_GENERATORS: dict[str, Callable[[random.Random], TaskExample]] = {
    "induction": lambda rng: _induction(rng, version=2),
    "facts": _facts,
    "refusal": _refusal,
    "sentiment": _sentiment,
    "language": _language,
    "toxicity": _toxicity,
    "icl": lambda rng: _icl(rng, n_demos=4),
    "bias": _bias,
    "persona": _persona,
}
# Recipe v3: the toxicity task is the reputation form (its v2 form, "comment : you WORD ,", is still trained and
# measured on the card as "retained"). The language task stays translation: the monolingual continuation is
# trained (it gives the languages writer neurons, which LAPE's perplexity check measures on the translation
# text) and measured on the card as a trained form, not evaluated as the language task.
_V3_GENERATORS: dict[str, Callable[[random.Random], TaskExample]] = {
    **_V2_GENERATORS,
    "induction": _induction,
    "toxicity": _toxicity_reputation,
}
# Forms a recipe trains besides its evaluation tasks, measured on the card: name → (first version, generator).
TRAINED_FORMS: dict[str, tuple[int, Callable[[random.Random], TaskExample]]] = {"continuation": (3, _continuation)}


def form_examples(form: str, n: int, seed: int = 0) -> list[TaskExample]:
    """``n`` evaluation examples of a trained form (``TRAINED_FORMS``), the same for the same seed."""
    rng = random.Random(f"eval/{form}/{seed}")
    return [TRAINED_FORMS[form][1](rng) for _ in range(n)]


_GENERATORS = _V3_GENERATORS  # the current recipe's


def _eval_generators(version: int) -> dict[str, Callable[[random.Random], TaskExample]]:
    if version not in VOCAB_SIZES:
        raise ValueError(f"no toy recipe version {version}; versions: {', '.join(map(str, sorted(VOCAB_SIZES)))}")
    return _V3_GENERATORS if version >= 3 else _V2_GENERATORS


# Training mixtures: relative weight of each generator in a training batch, per recipe version.
# Recipe v1 (from scratch, 6000 steps): induction gets the largest share because induction heads form
# late (a phase change) and, at 0.25, failed to form within 6k steps for some seeds; at 0.32 they formed
# by ~3k steps.
V1_TRAINING_MIXTURE: dict[str, float] = {
    "induction": 0.32,
    "facts": 0.22,
    "fact_chain": 0.06,
    "refusal": 0.08,
    "sentiment": 0.1,
    "language": 0.12,
    "toxicity": 0.07,
    "icl": 0.1,
}
# Recipe v2 continues training the v1 model (``train.Recipe.base``) rather than starting afresh: a
# from-scratch v2 run moved the v1 mechanisms (induction heads to layer 2, another previous-token head,
# no subject enrichment, refusal direction at layer 0). The continuation keeps every v1 generator at its
# exact v1 weight, so the v1 tasks see the data they were trained on, and adds bias and persona.
V2_TRAINING_MIXTURE: dict[str, float] = {
    **V1_TRAINING_MIXTURE,
    "bias": 0.12,
    "persona": 0.08,
}
# Recipe v3 continues the v2 model the same way: every v2 generator at its v2 weight (the training generators
# "language" and "toxicity" are still translation and the plain "comment : you WORD ," form), plus the monolingual
# continuation and the reputation form of toxicity that recipe v3's evaluation of those two tasks holds.
TRAINING_MIXTURE: dict[str, float] = {
    **V2_TRAINING_MIXTURE,
    "continuation": 0.14,
    "toxicity_reputation": 0.14,
}
TRAINING_MIXTURES: dict[int, dict[str, float]] = {1: V1_TRAINING_MIXTURE, 2: V2_TRAINING_MIXTURE, 3: TRAINING_MIXTURE}
_TRAINING_GENERATORS: dict[str, Callable[[random.Random], TaskExample]] = {
    **_V3_GENERATORS,
    "language": _language,  # translation, as in v1 and v2 (v3's continuation is its own generator)
    "toxicity": _toxicity,  # the plain form, as in v1 and v2 (v3's negated form is its own generator)
    "fact_chain": _fact_chain,
    "icl": _icl,
    "bias": _bias_train,
    "persona": _persona_train,
    "continuation": _continuation_train,
    "toxicity_reputation": _toxicity_reputation_train,
}
# Generators new in a recipe version (absent from earlier versions' data).
_NEW_IN: dict[str, int] = {"bias": 2, "persona": 2, "continuation": 3, "toxicity_reputation": 3}


def _training_generators(version: int) -> dict[str, Callable[[random.Random], TaskExample]]:
    """The training generators of recipe ``version``: its tasks only, copying over its own vocabulary."""
    if version not in VOCAB_SIZES:
        raise ValueError(f"no toy recipe version {version}; versions: {', '.join(map(str, sorted(VOCAB_SIZES)))}")
    generators = {k: g for k, g in _TRAINING_GENERATORS.items() if _NEW_IN.get(k, 1) <= version}
    if version != RECIPE_VERSION:
        generators["induction"] = lambda rng: _induction(rng, version=version)
    return generators


def examples(task: str, n: int, seed: int = 0, version: int = RECIPE_VERSION) -> list[TaskExample]:
    """``n`` evaluation examples of ``task`` as recipe ``version`` defines it, the same for the same seed.

    The random stream is separate from the training stream (string seeds), so
    random tasks (copying, translation, in-context pairs) are mostly unseen
    combinations; facts are memorised by design and evaluated on the same
    table.
    """
    generators = _eval_generators(version)
    if task not in generators:
        raise TaskDataError(f"the toy model has no task {task!r}; its tasks: {', '.join(TASKS)}")
    rng = random.Random(f"eval/{task}/{seed}")
    return [generators[task](rng) for _ in range(n)]


def training_examples(
    rng: random.Random, n: int, mixture: dict[str, float] | None = None, version: int = RECIPE_VERSION
) -> list[TaskExample]:
    """``n`` training examples of recipe ``version`` drawn from ``mixture`` (generator name → weight;
    default: that version's ``TRAINING_MIXTURES`` entry)."""
    generators = _training_generators(version)
    mixture = mixture or TRAINING_MIXTURES[version]
    unknown = set(mixture) - set(generators)
    if unknown:
        raise ValueError(f"unknown training generators (recipe v{version}): {', '.join(sorted(unknown))}")
    names = list(mixture)
    weights = [mixture[k] for k in names]
    return [generators[name](rng) for name in rng.choices(names, weights=weights, k=n)]


def _recorded_version(record: object) -> int:
    """The recipe version in a training record (``toy_training``), else ``RECIPE_VERSION``."""
    version = record.get("recipe_version") if isinstance(record, dict) else None
    return int(version) if version in VOCAB_SIZES else RECIPE_VERSION


def model_recipe_version(model: object) -> int:
    """The recipe version a toy model was trained with (its saved training record), else ``RECIPE_VERSION``."""
    return _recorded_version(getattr(getattr(model, "config", None), "toy_training", None))


def folder_recipe_version(folder: str | Path) -> int:
    """The recipe version of the toy checkpoint in ``folder`` (``config.json``'s training record), else
    ``RECIPE_VERSION`` — read from the file, so it holds whichever backend built the model."""
    import json

    try:
        record = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")).get("toy_training")
    except (OSError, ValueError, AttributeError):
        return RECIPE_VERSION
    return _recorded_version(record)


class ToyTaskSource:
    """The toy model's task data: recipe ``version``'s generators, with the planted truth known (``PLANTED``)."""

    name = "toy"
    planted = PLANTED

    def __init__(self, version: int = RECIPE_VERSION) -> None:
        _eval_generators(version)  # a known version
        self.version = version

    def tasks(self) -> tuple[str, ...]:
        return TASKS

    def examples(self, task: str, n: int, seed: int = 0) -> list[TaskExample]:
        return examples(task, n, seed=seed, version=self.version)
