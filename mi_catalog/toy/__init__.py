"""The toy model shipped with mi-catalog: a tiny Llama trained on a synthetic task mixture.

``load_toy()`` returns the model and tokenizer from ``CHECKPOINT_DIR``;
``card()`` returns what was measured about it (accuracies, verified
mechanisms). The generator and the planted truth are in ``tasks`` (pure
Python). This module must stay light: torch/transformers are imported inside
functions only, because the catalog CLI imports this package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

CHECKPOINT_DIR: Path = Path(__file__).resolve().parent / "checkpoint"

__all__ = ["CHECKPOINT_DIR", "ToyTaskSource", "card", "load_model_dir", "load_toy", "read_card"]


def __getattr__(name: str) -> Any:
    if name == "ToyTaskSource":
        from mi_catalog.toy.tasks import ToyTaskSource

        return ToyTaskSource
    raise AttributeError(f"module 'mi_catalog.toy' has no attribute {name!r}")


def load_model_dir(
    directory: Path | str, device: str = "cpu", dtype: Any = None
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Load a toy checkpoint folder (safetensors only), in eval mode, with eager attention.

    Eager attention so methods can ask for attention weights (``output_attentions=True``).
    """
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    directory = Path(directory)
    if not (directory / "model.safetensors").is_file():
        raise FileNotFoundError(f"no model.safetensors in {directory}")
    model: Any = LlamaForCausalLM.from_pretrained(directory, use_safetensors=True, attn_implementation="eager")
    if dtype is not None:
        model = model.to(dtype=dtype)
    model = model.to(device)
    model.eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(directory)
    tokenizer.padding_side = "left"
    return model, tokenizer


def load_toy(device: str = "cpu", dtype: Any = None) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """The shipped toy model (eval mode) and its tokenizer."""
    return load_model_dir(CHECKPOINT_DIR, device=device, dtype=dtype)


def card() -> dict[str, Any]:
    """The shipped model card (``checkpoint/card.json``) as a dict; no torch needed."""
    return read_card(CHECKPOINT_DIR) or {}


def read_card(directory: Path | str) -> dict[str, Any] | None:
    """A toy checkpoint folder's ``card.json`` (None when it was trained with ``--no-card``)."""
    path = Path(directory) / "card.json"
    if not path.is_file():
        return None
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result
