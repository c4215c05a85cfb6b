"""Task prompts for the reference implementations.

On the toy model they come from its own generators (:mod:`mi_catalog.toy.tasks`,
where the planted truth is known); on any other model from the small English
sets below. Either way an implementation sees a list of :class:`TaskPrompt`.
Pure Python: no torch.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


@dataclass(frozen=True)
class TaskPrompt:
    """One prompt whose next token should be (the first token of) ``answer``."""

    task: str
    prompt: str
    answer: str
    corrupt_prompt: str | None = None  # same token length as ``prompt``; None when noise is the corruption
    corrupt_answer: str | None = None
    subject: str | None = None  # substring of ``prompt`` (facts)
    subject_positions: tuple[int, ...] = ()  # token positions in the tokenised prompt (BOS counted if added)
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


def english_facts(n: int, seed: int = 0) -> list[TaskPrompt]:
    rows = list(FACTS)
    random.Random(seed).shuffle(rows)
    return [TaskPrompt("facts", p, a, subject=s) for p, s, a in rows[:n]]


def english_induction(n: int, seed: int = 0, length: int = 8) -> list[TaskPrompt]:
    """Random word sequences then their first k words again; the corrupt prompt changes the word to copy."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = rng.sample(INDUCTION_WORDS, length + 1)
        sequence, spare = words[:length], words[length]
        k = rng.randint(2, length - 1)
        corrupt = [*sequence[:k], spare, *sequence[k + 1 :]]
        out.append(
            TaskPrompt(
                "induction",
                " ".join(sequence + sequence[:k]),
                " " + sequence[k],
                corrupt_prompt=" ".join(corrupt + sequence[:k]),
                corrupt_answer=" " + spare,
                meta={"period": length, "repeat_index": k},
            )
        )
    return out


ENGLISH_TASKS: dict[str, Callable[[int, int], list[TaskPrompt]]] = {
    "facts": english_facts,
    "induction": english_induction,
}


def toy_prompts(task: str, n: int, seed: int = 0) -> list[TaskPrompt]:
    """The toy model's own task examples (with planted truth) as TaskPrompts."""
    from mi_catalog.toy import tasks as toy_tasks

    return [
        TaskPrompt(
            task=ex.task,
            prompt=ex.prompt,
            answer=ex.answer,
            corrupt_prompt=ex.corrupt_prompt,
            corrupt_answer=ex.corrupt_answer,
            subject=" ".join(ex.prompt.split()[p - 1] for p in ex.subject_positions) or None,
            subject_positions=tuple(ex.subject_positions),
            meta=dict(ex.meta),
        )
        for ex in toy_tasks.examples(task, n, seed=seed)
    ]


def task_prompts(task: str, n: int, seed: int = 0, toy: bool = False) -> list[TaskPrompt]:
    """``n`` prompts of ``task``: the toy generator's on the toy model, the English set otherwise."""
    if toy:
        return toy_prompts(task, n, seed)
    if task not in ENGLISH_TASKS:
        raise ValueError(f"no English prompt set for task {task!r}; available: {', '.join(ENGLISH_TASKS)}")
    return ENGLISH_TASKS[task](n, seed)


def subject_token_positions(n_tokens: Callable[[str], int], prompt: str, subject: str) -> tuple[int, ...]:
    """Token positions of ``subject`` inside ``prompt``, given a prompt-length function (counts BOS if added).

    Tokenises the text up to the subject's start and up to its end: the difference is the subject's span.
    Works for BPE because subjects start and end at word boundaries.
    """
    start = prompt.index(subject)
    before = n_tokens(prompt[:start].rstrip()) if prompt[:start].strip() else n_tokens("")
    through = n_tokens(prompt[: start + len(subject)])
    return tuple(range(before, through))
