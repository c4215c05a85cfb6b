"""What a method costs, measured on the model rather than reported by the method.

:func:`count_passes` hooks the model for the length of a ``with`` block:

* a **forward pass** is one call of the first decoder block (every forward of the model goes through it, whatever
  the batch size — a batch of 64 prompts is one pass; generation is one pass per new token);
* a **backward pass** is one backward that reaches the model's output logits (a tensor hook on the logits of every
  forward run with gradients). Fitting a probe or a lens on cached activations is not a backward through the model
  and is not counted.

The hooks are removed on exit, also when the body raises, so the model is left as found.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from mi_catalog.models.loading import LoadedModel
from mi_catalog.models.weights import layer_module


@dataclass
class Passes:
    forward: int = 0
    backward: int = 0
    forward_rows: int = 0  # prompts (batch rows) summed over forward passes


def _logits(output: Any) -> torch.Tensor | None:
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return output if isinstance(output, torch.Tensor) else None


@contextlib.contextmanager
def count_passes(lm: LoadedModel) -> Iterator[Passes]:
    """Count forward and backward passes through ``lm`` inside the block."""
    passes = Passes()

    def on_block(_module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        passes.forward += 1
        hidden = args[0] if args else kwargs.get("hidden_states")
        if isinstance(hidden, torch.Tensor) and hidden.dim() >= 1:
            passes.forward_rows += int(hidden.shape[0])

    def on_backward(grad: torch.Tensor) -> None:
        passes.backward += 1

    def on_model(_module: torch.nn.Module, _args: tuple[Any, ...], output: Any) -> None:
        logits = _logits(output)
        if logits is not None and logits.requires_grad:
            logits.register_hook(on_backward)

    handles = []
    try:
        handles.append(layer_module(lm, 0).register_forward_pre_hook(on_block, with_kwargs=True))
        handles.append(lm.model.register_forward_hook(on_model))
        yield passes
    finally:
        for handle in handles:
            handle.remove()
