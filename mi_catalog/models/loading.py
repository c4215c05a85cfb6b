"""Load a causal LM (Hugging Face hub id, local path, or the built-in ``"toy"``) ready for hooking.

Every model is loaded with safetensors only, without remote code, in eval
mode, with **eager** attention: the fused kernels (sdpa, flash) never
materialise the attention pattern, so ``attn_pattern`` would silently be empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mi_catalog.models.families import Family, family_for_model

TOY_NAME = "toy"


@dataclass
class Batch:
    """Tokenised prompts, left-padded so every prompt ends at the last position."""

    input_ids: torch.Tensor  # [batch, pos] long
    attention_mask: torch.Tensor  # [batch, pos] long; 0 = padding (on the left)

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device))

    @property
    def position_ids(self) -> torch.Tensor:
        """Positions counted from each sequence's first real token [batch, pos] — as ``generate`` does, so a
        left-padded prompt sees the same positions as unpadded (GPT-2's absolute position embeddings need it)."""
        return (self.attention_mask.long().cumsum(-1) - 1).clamp(min=0)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.input_ids.shape[0]), int(self.input_ids.shape[1]))


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer and its architecture family."""

    model: nn.Module
    tokenizer: Any  # a PreTrainedTokenizer(Fast); None for tokenizer-less test models
    family: Family
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_toy(self) -> bool:
        return self.name == TOY_NAME

    @property
    def config(self) -> Any:
        return self.model.config  # type: ignore[union-attr]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def n_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def n_heads(self) -> int:
        return int(self.config.num_attention_heads)

    @property
    def n_kv_heads(self) -> int:
        return int(getattr(self.config, "num_key_value_heads", None) or self.n_heads)

    @property
    def d_model(self) -> int:
        return int(self.config.hidden_size)

    @property
    def d_head(self) -> int:
        return int(getattr(self.config, "head_dim", None) or self.d_model // self.n_heads)

    @property
    def parallel_residual(self) -> bool:
        attr = self.family.parallel_residual_attr
        return bool(attr and getattr(self.config, attr, False))

    def encode(self, prompts: Sequence[str]) -> Batch:
        """Tokenise with left padding (the model's BOS handling is the tokenizer's own)."""
        if self.tokenizer is None:
            raise ValueError(f"model {self.name or type(self.model).__name__!r} has no tokenizer")
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token is None:  # GPT-2 and Pythia ship without one; padding is masked out anyway
            tok.pad_token = tok.eos_token
        enc = tok(list(prompts), return_tensors="pt", padding=True)
        return Batch(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device))

    def token_id(self, text: str) -> int:
        """The id of the first token of ``text`` (an answer like ``" Paris"``), without special tokens."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"{text!r} tokenises to nothing")
        return int(ids[0])

    def n_tokens(self, text: str) -> int:
        """How many tokens ``text`` becomes as a prompt (including a BOS the tokenizer adds)."""
        return len(self.tokenizer(text)["input_ids"])

    def forward(self, batch: Batch, **kwargs: Any) -> Any:
        """The model's forward on a batch (with padding-aware position ids); gradients as the caller's mode."""
        return self.model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids, **kwargs
        )

    def logits(self, batch: Batch) -> torch.Tensor:
        """A plain forward pass without gradients: logits [batch, pos, d_vocab]."""
        with torch.no_grad():
            return self.forward(batch).logits


def wrap_model(model: nn.Module, tokenizer: Any = None, name: str = "") -> LoadedModel:
    """Wrap an already-built model (e.g. a random-init test model); forces eager attention and eval mode."""
    family = family_for_model(model)  # raises UnsupportedModelError with the supported list
    use_eager_attention(model)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, family=family, name=name or type(model).__name__)


def use_eager_attention(model: nn.Module) -> None:
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", "eager") == "eager":
        return
    set_impl = getattr(model, "set_attn_implementation", None)
    if callable(set_impl):
        set_impl("eager")
    else:  # older transformers
        config._attn_implementation = "eager"


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
             "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}  # fmt: skip
    if dtype not in table:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(table)}")
    return table[dtype]


def load_model(
    name_or_path: str = TOY_NAME, device: str = "cpu", dtype: str | torch.dtype | None = None
) -> LoadedModel:
    """Load ``"toy"``, a hub id or a local folder as a :class:`LoadedModel` (eval mode, eager attention)."""
    torch_dtype = parse_dtype(dtype)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-tensor "Loading weights" bar is noise on the CLI's stderr
    if name_or_path == TOY_NAME:
        return _load_toy(device, torch_dtype)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from mi_catalog.models.families import family_for_class_names

    # Check the architecture *before* downloading weights, from the config's declared class.
    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=False)
    declared = list(getattr(config, "architectures", None) or [])
    if declared:
        family_for_class_names(declared)
    model = AutoModelForCausalLM.from_pretrained(
        name_or_path,
        use_safetensors=True,
        trust_remote_code=False,
        attn_implementation="eager",
        dtype=torch_dtype,
    )
    model = model.to(torch.device(device))  # type: ignore[arg-type]
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=False)
    return wrap_model(model, tokenizer, name=name_or_path)


def _load_toy(device: str, dtype: torch.dtype | None) -> LoadedModel:
    try:
        from mi_catalog.toy import load_toy
    except ImportError as err:
        raise FileNotFoundError(f"the built-in toy model is not available in this build ({err})") from err
    model, tokenizer = load_toy(device=device, dtype=dtype)
    loaded = wrap_model(model, tokenizer, name=TOY_NAME)
    return loaded
