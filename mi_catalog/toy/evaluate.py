"""Task accuracies of a toy model: greedy next-token prediction on held-out examples, batched."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from mi_catalog.toy.tasks import TASKS, examples, model_recipe_version

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from mi_catalog.tasks import TaskExample


def last_token_logits(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], batch_size: int = 128
) -> torch.Tensor:
    """Next-token logits after each prompt, shape (len(prompts), vocab); prompts are left-padded."""
    import torch

    if tokenizer.padding_side != "left":
        raise ValueError("the toy evaluation reads the last position; use a left-padding tokenizer")
    chunks = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(list(prompts[start : start + batch_size]), padding=True, return_tensors="pt")
            batch = {k: v.to(model.device) for k, v in batch.items()}
            chunks.append(model(**batch).logits[:, -1].float().cpu())
    return torch.cat(chunks)


def predict_next(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], batch_size: int = 128
) -> list[str]:
    """The greedy next word after each prompt."""
    ids = last_token_logits(model, tokenizer, prompts, batch_size).argmax(-1).tolist()
    return list(tokenizer.convert_ids_to_tokens(ids))


def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    n: int = 200,
    seed: int = 0,
    tasks: Iterable[str] = TASKS,
    version: int | None = None,
) -> dict[str, float]:
    """Fraction of ``n`` held-out examples per task whose greedy next token is the answer; the tasks as recipe
    ``version`` defines them (default: the recipe the model was trained with)."""
    version = model_recipe_version(model) if version is None else version
    return {task: accuracy(model, tokenizer, examples(task, n, seed=seed, version=version)) for task in tasks}


def accuracy(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch: Sequence[TaskExample]) -> float:
    """Fraction of ``batch`` whose greedy next word is the answer."""
    predictions = predict_next(model, tokenizer, [ex.prompt for ex in batch])
    return sum(p == ex.answer for p, ex in zip(predictions, batch, strict=True)) / len(batch)
