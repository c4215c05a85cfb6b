"""Task prompts for the reference implementations.

On the toy model they come from its own generators (:mod:`mi_catalog.toy.tasks`,
where the planted truth is known); on any other model from the small English
sets below. Either way an implementation sees a list of :class:`~mi_catalog.tasks.TaskExample`.
Pure Python: no torch.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from mi_catalog.tasks import TaskDataError, TaskExample, example_from_json

# (prompt, subject, answer): the subject is a substring of the prompt, the answer its next word.
FACTS: tuple[tuple[str, str, str], ...] = (
    ("The Eiffel Tower is in the city of", "The Eiffel Tower", " Paris"),
    ("The Colosseum is in the city of", "The Colosseum", " Rome"),
    ("The Space Needle is in the city of", "The Space Needle", " Seattle"),
    ("The Brandenburg Gate is in the city of", "The Brandenburg Gate", " Berlin"),
    ("Big Ben is in the city of", "Big Ben", " London"),
    ("The Golden Gate Bridge is in the city of", "The Golden Gate Bridge", " San"),
    ("Michael Jordan plays the sport of", "Michael Jordan", " basketball"),
    ("Lionel Messi plays the sport of", "Lionel Messi", " soccer"),
    ("Serena Williams plays the sport of", "Serena Williams", " tennis"),
    ("The capital of Japan is", "Japan", " Tokyo"),
    ("The capital of France is", "France", " Paris"),
    ("The mother tongue of Vladimir Putin is", "Vladimir Putin", " Russian"),
)

# Short, common words: single tokens (with a leading space) in the GPT-2, Pythia and Llama tokenizers.
INDUCTION_WORDS: tuple[str, ...] = (
    "apple", "river", "chair", "green", "music", "stone", "paper", "horse", "light", "glass",
    "money", "water", "table", "night", "house", "bread", "cloud", "dream", "field", "heart",
    "plant", "smile", "train", "voice", "world", "beach", "clock", "earth", "floor", "grass",
)  # fmt: skip


def english_facts(n: int, seed: int = 0) -> list[TaskExample]:
    rows = list(FACTS)
    random.Random(seed).shuffle(rows)
    return [TaskExample("facts", p, a, subject=s) for p, s, a in rows[:n]]


def english_induction(n: int, seed: int = 0, length: int = 8) -> list[TaskExample]:
    """Random word sequences then their first k words again; the corrupt prompt changes the word to copy."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.sample(INDUCTION_WORDS, length + 1)
        sequence, spare = words[:length], words[length]
        k = rng.randint(2, length - 1)
        corrupt = [*sequence[:k], spare, *sequence[k + 1 :]]
        out.append(
            TaskExample(
                "induction",
                " ".join(sequence + sequence[:k]),
                " " + sequence[k],
                corrupt_prompt=" ".join(corrupt + sequence[:k]),
                corrupt_answer=" " + spare,
                meta={"period": length, "repeat_index": k},
            )
        )
    return out


BUILTIN_TASKS: dict[str, Callable[[int, int], list[TaskExample]]] = {
    "facts": english_facts,
    "induction": english_induction,
}


class EnglishTaskSource:
    """English task sets for any Hugging Face model: induction generated from single-token words; the sets
    shipped in ``mi_catalog/data/english`` (facts, IOI, refusal, sentiment, multilingual, toxicity) when
    present, else the built-in facts. When a correctness record exists for ``model_name``, only the prompts
    that model gets right are used (methods explain behaviour the model actually has)."""

    name = "english"

    def __init__(self, model_name: str = "") -> None:
        self.model_name = model_name

    def _shipped(self) -> Any:
        try:
            from mi_catalog.data import english
        except ImportError:
            return None
        return english

    def tasks(self) -> tuple[str, ...]:
        shipped = self._shipped()
        names = list(BUILTIN_TASKS)
        if shipped is not None:
            names += [t for t in shipped.TASKS if t not in names]
        return tuple(names)

    def examples(self, task: str, n: int, seed: int = 0) -> list[TaskExample]:
        shipped = self._shipped()
        if task != "induction" and shipped is not None and task in shipped.TASKS:
            rows = shipped.load(task)
            # Correctness records exist for registry models (by name); a folder path has none.
            named = bool(re.fullmatch(r"[A-Za-z0-9._-]+", self.model_name or ""))
            keep = shipped.correct_indices(self.model_name, task) if named else None
            if keep is not None:
                kept = [rows[i] for i in keep]
                # Keep only what the model gets right — unless that erases a whole label class (SmolLM2-135M
                # refuses no harmful prompt): a labelled set needs both classes to probe or fit a direction.
                if {r.get("label") for r in kept} >= {r.get("label") for r in rows}:
                    rows = kept
            examples = [example_from_json(r, task, f"english/{task}.jsonl") for r in rows]
            random.Random(f"english/{task}/{seed}").shuffle(examples)
            return examples[:n]
        if task not in BUILTIN_TASKS:
            raise TaskDataError(f"no English task {task!r}; available: {', '.join(self.tasks())}")
        return BUILTIN_TASKS[task](n, seed)


def subject_token_positions(n_tokens: Callable[[str], int], prompt: str, subject: str) -> tuple[int, ...]:
    """Token positions of ``subject`` inside ``prompt``, given a prompt-length function (counts BOS if added).

    Tokenises the text up to the subject's start and up to its end: the difference is the subject's span.
    Works for BPE because subjects start and end at word boundaries.
    """
    start = prompt.index(subject)
    before = n_tokens(prompt[:start].rstrip()) if prompt[:start].strip() else n_tokens("")
    through = n_tokens(prompt[: start + len(subject)])
    return tuple(range(before, through))
