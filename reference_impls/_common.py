"""Small helpers shared by the reference implementations (model-side; the contract lives in mi_catalog.methods)."""

from __future__ import annotations

import torch

from mi_catalog.models.loading import LoadedModel
from mi_catalog.models.prompts import subject_token_positions
from mi_catalog.tasks import TaskExample


def answer_ids(lm: LoadedModel, examples: list[TaskExample], corrupt: bool = False) -> torch.Tensor:
    """First token of each example's answer (or corrupt answer) → long [batch]."""
    texts = [ex.corrupt_answer if corrupt else ex.answer for ex in examples]
    if any(t is None for t in texts):
        raise ValueError("some examples have no corrupt_answer")
    return torch.tensor([lm.token_id(str(t)) for t in texts], dtype=torch.long, device=lm.device)


def subject_positions(lm: LoadedModel, ex: TaskExample) -> tuple[int, ...]:
    """The subject's token positions in the (unpadded) prompt; () when the example names no subject."""
    if ex.subject_positions:
        return ex.subject_positions
    if ex.subject:
        return subject_token_positions(lm.n_tokens, ex.prompt, ex.subject)
    return ()


def token_labels(lm: LoadedModel, input_ids: torch.Tensor) -> list[str]:
    """Readable labels for a row of token ids [pos] (padding dropped by the caller)."""
    out = []
    for i in input_ids.tolist():
        text = lm.tokenizer.decode([int(i)])
        out.append(text.strip() or repr(text))
    return out


def head_label(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def neuron_label(layer: int, neuron: int) -> str:
    return f"L{layer}N{neuron}"
