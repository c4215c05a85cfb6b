"""Task data: one type for "a prompt and the token that should follow it", and where examples come from.

Every method reads its prompts through a :class:`TaskSource` that the loaded model carries
(``lm.tasks``): the toy model's source generates examples whose planted truth is known
(:mod:`mi_catalog.toy.tasks`); any other model gets the English sets shipped in
``mi_catalog/data/english``; ``--prompts FILE.jsonl`` gives a user's own examples. No method
asks "is this the toy?".

The JSONL form (one object per line) is the contract for user files and the English sets::

    {"prompt": "The Eiffel Tower is in", "answer": " Paris",
     "corrupt_prompt": "The Colosseum is in", "corrupt_answer": " Rome",    # optional, same token length
     "label": "harmful", "subject": "The Eiffel Tower", "chat": false, "meta": {...}}

Pure Python: no torch.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

JSONL_FIELDS = ("prompt", "answer", "corrupt_prompt", "corrupt_answer", "label", "subject", "chat", "meta", "task")


# Token position groups, one vocabulary for every method and the toy's card (ROME's token categories).
POSITION_GROUPS = ("before_subject", "subject_first", "subject_last", "after_subject", "last")


def position_group(position: int, subject: Sequence[int], last: int) -> str:
    """The group of ``position`` given the subject's positions and the last position of the prompt."""
    if position == last:
        return "last"
    if subject and position == subject[-1]:
        return "subject_last"
    if position in subject:
        return "subject_first"
    return "before_subject" if not subject or position < subject[0] else "after_subject"


class TaskDataError(ValueError):
    """Task data that cannot be used: unknown task, malformed file, too few examples."""


@dataclass(frozen=True)
class TaskExample:
    """One prompt whose next token should be (the first token of) ``answer``.

    ``subject_positions`` are token positions in the tokenised prompt (a BOS the tokenizer adds counts as
    position 0); a source that knows them (the toy) fills them in, otherwise they are computed from
    ``subject`` with the model's tokenizer.
    """

    task: str
    prompt: str
    answer: str
    corrupt_prompt: str | None = None
    corrupt_answer: str | None = None
    label: str | None = None
    subject: str | None = None
    subject_positions: tuple[int, ...] = ()
    chat: bool = False  # format ``prompt`` with the tokenizer's chat template first
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def text(self) -> str:
        """Prompt followed by its answer (the toy's training sequence; word-level, space separated)."""
        return f"{self.prompt} {self.answer}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task": self.task, "prompt": self.prompt, "answer": self.answer}
        for name in ("corrupt_prompt", "corrupt_answer", "label", "subject"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.chat:
            out["chat"] = True
        if self.meta:
            out["meta"] = self.meta
        return out


def example_from_json(data: Any, task: str, where: str) -> TaskExample:
    """A :class:`TaskExample` from one JSONL object; ``where`` (``file:line``) prefixes every error."""
    if not isinstance(data, dict):
        raise TaskDataError(f"{where}: expected a JSON object with 'prompt' and 'answer'")
    unknown = sorted(set(data) - set(JSONL_FIELDS))
    if unknown:
        raise TaskDataError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(JSONL_FIELDS)}")
    for name in ("prompt", "answer"):
        if not isinstance(data.get(name), str) or not data[name].strip():
            raise TaskDataError(f"{where}: field {name!r} must be a non-empty string")
    for name in ("corrupt_prompt", "corrupt_answer", "label", "subject"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise TaskDataError(f"{where}: field {name!r} must be a string")
    if data.get("subject") and data["subject"] not in data["prompt"]:
        raise TaskDataError(f"{where}: subject {data['subject']!r} does not occur in the prompt")
    meta = data.get("meta") or {}
    if not isinstance(meta, dict):
        raise TaskDataError(f"{where}: field 'meta' must be an object")
    return TaskExample(
        task=str(data.get("task") or task), prompt=data["prompt"], answer=data["answer"],
        corrupt_prompt=data.get("corrupt_prompt"), corrupt_answer=data.get("corrupt_answer"),
        label=data.get("label"), subject=data.get("subject"), chat=bool(data.get("chat", False)), meta=meta,
    )  # fmt: skip


def read_jsonl(path: Path | str, task: str = "custom") -> list[TaskExample]:
    """Examples from a JSONL file; every problem is one :class:`TaskDataError` naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TaskDataError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise TaskDataError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise TaskDataError(f"{path}: cannot read ({err.strerror})") from None
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise TaskDataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        out.append(example_from_json(data, task, f"{path}:{number}"))
    if not out:
        raise TaskDataError(f"{path}: no examples (expected one JSON object per line)")
    return out


class TaskSource(Protocol):
    """Where a model's task examples come from."""

    name: str

    def tasks(self) -> tuple[str, ...]:
        """Task names this source can produce."""
        ...

    def examples(self, task: str, n: int, seed: int = 0) -> list[TaskExample]:
        """``n`` examples of ``task`` (fewer if the source has fewer), the same for the same seed."""
        ...


def split_fit_test(examples: Sequence[TaskExample], fit_fraction: float = 0.5) -> tuple[list[TaskExample], list[TaskExample]]:
    """Held-out split for anything fitted (probes, directions, edits): the first part fits, the rest is scored.

    Stratified by ``label`` when examples carry labels, so both halves see every class.
    """
    by_label: dict[str | None, list[TaskExample]] = {}
    for ex in examples:
        by_label.setdefault(ex.label, []).append(ex)
    fit: list[TaskExample] = []
    test: list[TaskExample] = []
    for group in by_label.values():
        cut = max(1, round(len(group) * fit_fraction)) if len(group) > 1 else len(group)
        fit.extend(group[:cut])
        test.extend(group[cut:])
    if not test:
        raise TaskDataError(f"too few examples ({len(examples)}) for a held-out split")
    return fit, test


@dataclass
class ListTaskSource:
    """Examples held in memory (a user's JSONL file, or a fixed set); sampled without replacement."""

    name: str
    by_task: dict[str, list[TaskExample]]

    def tasks(self) -> tuple[str, ...]:
        return tuple(self.by_task)

    def examples(self, task: str, n: int, seed: int = 0) -> list[TaskExample]:
        if task not in self.by_task:
            raise TaskDataError(f"{self.name} has no task {task!r}; available: {', '.join(self.by_task) or '(none)'}")
        pool = list(self.by_task[task])
        # Seeded by task and seed only — never by the source's name (a file path): the same file and seed
        # must give the same examples wherever the file lives.
        random.Random(f"list/{task}/{seed}").shuffle(pool)
        return pool[:n]


def file_source(path: Path | str, task: str = "custom") -> ListTaskSource:
    """A source over a user's JSONL file; rows may name their own task, else they belong to ``task``."""
    rows = read_jsonl(path, task)
    by_task: dict[str, list[TaskExample]] = {}
    for ex in rows:
        by_task.setdefault(ex.task, []).append(ex)
    return ListTaskSource(name=str(path), by_task=by_task)
