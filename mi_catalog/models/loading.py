"""Load a causal LM (Hugging Face hub id, local path, or the built-in ``"toy"``) ready for hooking.

Every model is loaded with safetensors only, without remote code, in eval
mode, with **eager** attention: the fused kernels (sdpa, flash) never
materialise the attention pattern, so ``attn_pattern`` would silently be empty.

Two backends build the model. ``"native"`` is our own Llama (:mod:`mi_catalog.models.native`, same module
tree and parameter names as transformers', no transformers import: a cold load of SmolLM2-135M in well under
a second instead of 3+ s); ``"transformers"`` is ``AutoModelForCausalLM``. ``backend="auto"`` (the default)
uses the native one for a local folder whose ``config.json`` it runs exactly (plain ``LlamaForCausalLM``,
:func:`~mi_catalog.models.native.native_support`) — the toy included: on its checkpoint both backends give
bit-identical logits and activations at every site (tested) — and transformers for everything else: hub ids,
other architectures.
``LoadedModel.backend`` says which one ran.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mi_catalog.models import BACKENDS
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


class ModelLoadError(ValueError):
    """A model cannot be loaded or used as asked (missing folder, no network, no CUDA, prompt too long)."""


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer, its architecture family and the task data that goes with it.

    ``tasks`` is the model's own source of task examples (the toy's generators with planted truth for a
    toy checkpoint, the English sets otherwise), so methods never need to know which model they run on.
    ``card`` is the model card of a toy checkpoint (what was verified about it), else None.
    """

    model: nn.Module
    tokenizer: Any  # a PreTrainedTokenizer(Fast); None for tokenizer-less test models
    family: Family
    name: str = ""
    tasks: Any = None  # a mi_catalog.tasks.TaskSource
    card: dict[str, Any] | None = None
    path: str | None = None  # the folder the weights came from

    @property
    def backend(self) -> str:
        """Which model code runs it: ``"native"`` (:mod:`mi_catalog.models.native`) or ``"transformers"``."""
        from mi_catalog.models.native import NativeLlamaForCausalLM

        return "native" if isinstance(self.model, NativeLlamaForCausalLM) else "transformers"

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

    @property
    def max_positions(self) -> int | None:
        """The longest sequence the model accepts (learned position tables), None when unbounded."""
        for attr in ("n_positions", "max_position_embeddings"):
            value = getattr(self.config, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def encode(self, prompts: Sequence[str]) -> Batch:
        """Tokenise with left padding (the model's BOS handling is the tokenizer's own)."""
        if self.tokenizer is None:
            raise ModelLoadError(f"model {self.name or type(self.model).__name__!r} has no tokenizer")
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token is None:  # GPT-2 and Pythia ship without one; padding is masked out anyway
            tok.pad_token = tok.eos_token
        enc = tok(list(prompts), return_tensors="pt", padding=True)
        batch = Batch(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device))
        self.check_fits(batch.shape[1], prompts)
        return batch

    def check_fits(self, n_tokens: int, prompts: Sequence[str] = ()) -> None:
        """Raise :class:`ModelLoadError` when a sequence is longer than the model's context."""
        limit = self.max_positions
        if limit is not None and n_tokens > limit:
            longest = max(prompts, key=len) if prompts else ""
            raise ModelLoadError(
                f"a prompt is {n_tokens} tokens, longer than {self.name or 'the model'}'s context of {limit} tokens"
                + (f" (starts {longest[:40]!r}); shorten it" if longest else "")
            )

    def unknown_words(self, text: str) -> list[str]:
        """Words a word-level tokenizer maps to its unknown token (empty for byte-level BPE tokenizers)."""
        unk = getattr(self.tokenizer, "unk_token_id", None)
        if unk is None:
            return []
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if unk not in ids:
            return []
        return [w for w in text.split() if unk in self.tokenizer(w, add_special_tokens=False)["input_ids"]]

    def format_prompt(self, prompt: str, chat: bool) -> str:
        """``prompt`` as the model should see it: through the chat template when asked and the tokenizer has one."""
        template = getattr(self.tokenizer, "chat_template", None)
        if not chat or not template:
            return prompt
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        return str(text)

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
        with torch.no_grad():  # not inference_mode: captured activations may later meet autograd
            return self.forward(batch).logits

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 8) -> list[str]:
        """Greedy continuations, under whatever interventions are active (no KV cache: every step is a full
        forward pass, so position-selective hooks see the same positions as in a plain forward)."""
        batch = self.encode(prompts)
        ids, mask = batch.input_ids, batch.attention_mask
        new_tokens: list[torch.Tensor] = []
        for _ in range(max_new_tokens):
            self.check_fits(ids.shape[1] + 1)
            next_ids = self.logits(Batch(ids, mask))[:, -1].argmax(dim=-1)  # [batch]
            new_tokens.append(next_ids)
            ids = torch.cat([ids, next_ids[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        out = torch.stack(new_tokens, dim=1) if new_tokens else ids[:, :0]
        return [self.tokenizer.decode(row, skip_special_tokens=True) for row in out]


def wrap_model(
    model: nn.Module, tokenizer: Any = None, name: str = "", tasks: Any = None, card: dict[str, Any] | None = None,
    path: str | None = None,
) -> LoadedModel:  # fmt: skip
    """Wrap an already-built model (e.g. a random-init test model); forces eager attention and eval mode.

    ``tasks`` defaults to the English task sets.
    """
    family = family_for_model(model)  # raises UnsupportedModelError with the supported list
    use_eager_attention(model)
    model.eval()
    if tasks is None:
        from mi_catalog.models.prompts import EnglishTaskSource

        tasks = EnglishTaskSource(model_name=name)
    return LoadedModel(model=model, tokenizer=tokenizer, family=family, name=name or type(model).__name__,
                       tasks=tasks, card=card, path=path)  # fmt: skip


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


def is_toy_checkpoint(folder: Path) -> bool:
    """A toy checkpoint is recognised by its files: the card ``toy train`` writes, or the recipe it leaves in
    ``config.json`` (a checkpoint trained with ``--no-card``) — never by the folder's name."""
    card = folder / "card.json"
    if card.is_file():
        try:
            if json.loads(card.read_text(encoding="utf-8")).get("name") == TOY_CARD_NAME:
                return True
        except (json.JSONDecodeError, OSError):
            pass
    config = folder / "config.json"
    try:
        return config.is_file() and "toy_training" in json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError):
        return False


TOY_CARD_NAME = "mi-catalog toy llama"


def check_device(device: str) -> torch.device:
    """The torch device for ``device``, or a one-line :class:`ModelLoadError` when this machine has none."""
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ModelLoadError(f"unknown device {device!r} ({err}); use cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"--device {device}: this torch build has no CUDA device available; use --device cpu")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    return dev


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or (os.sep in name and name.count("/") != 1) or Path(name).exists()


def _hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True", "YES", "yes"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_model_path(name_or_path: str) -> Path | None:
    """A local folder for ``name_or_path``: the toy, a model fetched by ``mi-catalog models get``, or a path.

    None means "a hub id" (no local folder). A path-like name that does not exist is an error.
    """
    if name_or_path == TOY_NAME:
        from mi_catalog.toy import CHECKPOINT_DIR

        return CHECKPOINT_DIR
    from mi_catalog.models import zoo

    if name_or_path in zoo.REGISTRY:
        path = zoo.local_path(name_or_path)
        if path is None:
            raise ModelLoadError(f"model {name_or_path!r} is not fetched yet; run: mi-catalog models get {name_or_path}")
        return Path(path)
    candidate = Path(name_or_path).expanduser()
    if candidate.is_dir():
        return candidate
    if _looks_like_path(name_or_path):
        what = "is not a folder" if candidate.exists() else "does not exist"
        raise ModelLoadError(f"model folder {name_or_path!r} {what}; give 'toy', a fetched model, or a folder with config.json")
    return None


def load_model(
    name_or_path: str = TOY_NAME, device: str = "cpu", dtype: str | torch.dtype | None = None, backend: str = "auto"
) -> LoadedModel:
    """Load ``"toy"``, a model fetched with ``mi-catalog models get``, a local folder or a hub id.

    Eval mode, eager attention, safetensors only, no remote code. A folder holding a toy checkpoint (recognised
    by its files) is the toy, with the toy's task data; everything else gets the English task sets.
    ``backend``: ``"auto"``, ``"native"`` (our Llama; an error naming the reason when the checkpoint needs
    transformers) or ``"transformers"`` — see the module docstring.
    """
    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    torch_dtype = parse_dtype(dtype)
    dev = check_device(device)
    folder = resolve_model_path(name_or_path)
    toy = folder is not None and is_toy_checkpoint(folder)
    name = TOY_NAME if name_or_path == TOY_NAME else str(name_or_path)
    if folder is not None and not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder} has no config.json: not a Hugging Face model folder")
    if folder is not None and _use_native(folder, backend):
        return _load_native(folder, dev, torch_dtype, name=name, toy=toy)
    if backend == "native":
        raise ModelLoadError(f"--backend native needs a local model folder; {name_or_path!r} is a hub id")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a per-tensor "Loading weights" bar is noise on the CLI's stderr
    if toy:
        assert folder is not None
        return _load_toy(folder, dev, torch_dtype, name=name)
    source = str(folder) if folder is not None else name_or_path
    if folder is None and not _hub_cached(name_or_path) and not _hub_reachable():
        raise ModelLoadError(
            f"{name_or_path!r} is not a local folder and the Hugging Face hub is unreachable (offline); "
            "pass a local folder (--model path/to/model), fetch one with 'mi-catalog models get', "
            "or set HF_HUB_OFFLINE=1 to use the local hub cache"
        )
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from mi_catalog.models.families import family_for_class_names

    try:
        # Check the architecture *before* reading weights, from the config's declared class.
        config = AutoConfig.from_pretrained(source, trust_remote_code=False)
        declared = list(getattr(config, "architectures", None) or [])
        if declared:
            family_for_class_names(declared)
        model = AutoModelForCausalLM.from_pretrained(
            source, use_safetensors=True, trust_remote_code=False, attn_implementation="eager", dtype=torch_dtype
        )
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except OSError as err:
        raise ModelLoadError(f"cannot load {name_or_path!r}: {str(err).splitlines()[0]}") from None
    model = model.to(dev)  # type: ignore[arg-type]
    return wrap_model(model, tokenizer, name=name_or_path, path=str(folder) if folder else None)


def _use_native(folder: Path, backend: str) -> bool:
    """Whether ``folder`` is loaded by our Llama: always when asked (or an error saying why it cannot), under
    ``auto`` when its config is one we run exactly."""
    if backend == "transformers":
        return False
    from mi_catalog.models.native import native_support, read_config

    try:
        reason = native_support(read_config(folder))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{folder / 'config.json'}: unreadable ({err})") from None
    if backend == "native":
        if reason:
            raise ModelLoadError(f"--backend native cannot run {folder}: {reason}; use --backend transformers")
        return True
    return reason is None


def _load_native(folder: Path, device: torch.device, dtype: torch.dtype | None, name: str, toy: bool) -> LoadedModel:
    from mi_catalog.models.native import load_native
    from mi_catalog.models.tokenizing import NativeTokenizer, TokenizerFilesError

    try:
        model = load_native(folder, device=device, dtype=dtype)
        tokenizer = NativeTokenizer.from_folder(folder)
    except (OSError, ValueError, TokenizerFilesError) as err:
        raise ModelLoadError(f"cannot load {folder}: {str(err).splitlines()[0]}") from None
    if not toy:
        return wrap_model(model, tokenizer, name=name, path=str(folder))
    return _wrap_toy(model, tokenizer, folder, name)


def _hub_cached(repo_id: str) -> bool:
    """Whether the local Hugging Face cache already holds ``repo_id``'s config (loadable offline)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # any malformed id or cache layout: treat as not cached
        return False


def _load_toy(folder: Path, device: torch.device, dtype: torch.dtype | None, name: str) -> LoadedModel:
    from mi_catalog.toy import load_model_dir

    model, tokenizer = load_model_dir(folder, device=str(device), dtype=dtype)
    return _wrap_toy(model, tokenizer, folder, name)


def _wrap_toy(model: nn.Module, tokenizer: Any, folder: Path, name: str) -> LoadedModel:
    """A toy checkpoint, whichever backend built it: the toy's task data (planted truth) and its card.

    The task data are those of the recipe the checkpoint was trained with (its config's training record), so
    an older checkpoint keeps its own evaluation sets.
    """
    from mi_catalog.toy import ToyTaskSource, read_card
    from mi_catalog.toy.tasks import folder_recipe_version

    tasks = ToyTaskSource(folder_recipe_version(folder))
    return wrap_model(model, tokenizer, name=name, tasks=tasks, card=read_card(folder), path=str(folder))
