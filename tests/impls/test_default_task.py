"""`run IMPL` without --task picks the implementation's first task the model has data for (SmolLM2's English
sets have "multilingual" but not the toy's "language"), and still names what is missing when none is there."""

from __future__ import annotations

import dataclasses

import pytest

from mi_catalog.methods.runner import RunError, run_impl
from mi_catalog.models.prompts import FACTS
from mi_catalog.tasks import ListTaskSource, TaskExample


def _with_tasks(lm, by_task: dict[str, list[TaskExample]]):  # type: ignore[no-untyped-def]
    return dataclasses.replace(lm, tasks=ListTaskSource("fixed", by_task))


def _labelled(task: str) -> list[TaskExample]:
    return [TaskExample(task, p, a, label="city" if "city" in p else "other") for p, _s, a in FACTS] * 4


def test_the_first_supported_task_the_model_has_is_the_default(tiny) -> None:  # type: ignore[no-untyped-def]
    lm = _with_tasks(tiny, {"multilingual": _labelled("multilingual")})  # language-neurons lists "language" first
    result = run_impl("language-neurons", model=lm, n=64, min_tokens=2, top_rate=0.05)
    assert result.task == "multilingual"


def test_no_supported_task_names_what_is_available(tiny) -> None:  # type: ignore[no-untyped-def]
    lm = _with_tasks(tiny, {"facts": _labelled("facts")})
    with pytest.raises(RunError, match="no task data for 'language'; available: facts"):
        run_impl("language-neurons", model=lm, n=16)
