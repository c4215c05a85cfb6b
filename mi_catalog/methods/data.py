"""The data a run sees: the task's examples (from the model's own task source or a user's file), held-out
splits, other tasks' examples for side effects, and a progress callback. Pure Python."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mi_catalog.tasks import TaskDataError, TaskExample, TaskSource, split_fit_test

Progress = Callable[[str, int, int], None]  # (what, done, total)


def no_progress(_what: str, _done: int, _total: int) -> None:
    return None


@dataclass
class RunData:
    """The examples of one task for one run, and where more come from."""

    task: str
    examples: list[TaskExample]
    source: TaskSource | None = None  # the model's task source, for other tasks (side effects, neutral text)
    seed: int = 0
    progress: Progress = field(default=no_progress, repr=False)
    planted: Any = None  # the toy's planted truth (mi_catalog.toy.tasks.PLANTED) when the source has one

    def __post_init__(self) -> None:
        if not self.examples:
            raise TaskDataError(f"no examples for task {self.task!r}")

    @property
    def prompts(self) -> list[str]:
        return [ex.prompt for ex in self.examples]

    def labels(self) -> list[str]:
        """The distinct labels, sorted (empty when the examples carry none)."""
        return sorted({ex.label for ex in self.examples if ex.label is not None})

    def fit_test(self, fit_fraction: float = 0.5) -> tuple[list[TaskExample], list[TaskExample]]:
        """Held-out split (stratified by label): fit probes/directions/edits on the first, score on the second."""
        return split_fit_test(self.examples, fit_fraction)

    def other(self, task: str, n: int) -> list[TaskExample]:
        """``n`` examples of another task from the same source (for side effects); [] when unavailable."""
        if self.source is None or task not in self.source.tasks():
            return []
        return self.source.examples(task, n, seed=self.seed + 7919)  # a different draw than the task's own
