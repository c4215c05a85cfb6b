"""A tokenizer read straight from ``tokenizer.json`` with the ``tokenizers`` library (no transformers import).

:class:`NativeTokenizer` implements the part of transformers' ``PreTrainedTokenizerFast`` interface that the
model layer and the reference implementations use — calling it on a string or a batch (with padding on either
side and ``return_tensors="pt"``), ``decode``, ``convert_ids_to_tokens``, the special tokens and their ids,
and ``apply_chat_template`` (the folder's Jinja template, rendered in a sandbox as transformers does). Both
wrap the same Rust tokenizer with the same calls, so the ids are the same; the parity tests compare them on
the toy's word-level tokenizer, the tiny test tokenizers and SmolLM2's byte-level BPE.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SPECIAL_NAMES = ("bos", "eos", "unk", "pad")


class TokenizerFilesError(ValueError):
    """A tokenizer folder is missing a file or holds an unreadable one."""


class Encoding(dict[str, Any]):
    """transformers' ``BatchEncoding`` in miniature: ``enc["input_ids"]`` and ``enc.input_ids``."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


class NativeTokenizer:
    """A ``tokenizers.Tokenizer`` with special tokens, padding and a chat template (see the module docstring)."""

    def __init__(
        self, backend: Any, *, bos_token: str | None = None, eos_token: str | None = None, unk_token: str | None = None,
        pad_token: str | None = None, chat_template: str | None = None, padding_side: str = "right",
        clean_up_tokenization_spaces: bool = False, name_or_path: str = "",
    ) -> None:  # fmt: skip
        # A tokenizer.json may carry its own padding/truncation settings; transformers switches them off and
        # pads per call, and so do we (else every batch would come back padded, with a mask we never read).
        backend.no_padding()
        backend.no_truncation()
        self.backend_tokenizer = backend
        self.bos_token, self.eos_token, self.unk_token, self.pad_token = bos_token, eos_token, unk_token, pad_token
        self.chat_template = chat_template
        self.padding_side = padding_side
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.name_or_path = name_or_path

    @classmethod
    def from_folder(cls, folder: Path | str) -> NativeTokenizer:
        """Read ``tokenizer.json``, ``tokenizer_config.json`` and (when present) ``chat_template.jinja``."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise TokenizerFilesError(f"{folder} has no tokenizer.json")
        try:
            backend = Tokenizer.from_file(str(path))
            config_path = folder / "tokenizer_config.json"
            config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        except Exception as err:  # OSError, bad JSON, and tokenizers' own Exception subclass alike
            raise TokenizerFilesError(f"{path}: cannot read the tokenizer ({str(err).splitlines()[0]})") from None
        template_file = folder / "chat_template.jinja"
        template = template_file.read_text(encoding="utf-8") if template_file.is_file() else config.get("chat_template")
        specials = {f"{name}_token": _token_text(config.get(f"{name}_token")) for name in SPECIAL_NAMES}
        return cls(backend, chat_template=template, padding_side=str(config.get("padding_side", "right")),
                   clean_up_tokenization_spaces=bool(config.get("clean_up_tokenization_spaces", False)),
                   name_or_path=str(folder), **specials)  # fmt: skip

    # -- special tokens ----------------------------------------------------------------------------------

    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.backend_tokenizer.token_to_id(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id(self.eos_token)

    @property
    def unk_token_id(self) -> int | None:
        return self._id(self.unk_token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id(self.pad_token)

    @property
    def all_special_tokens(self) -> list[str]:
        return [t for t in (self.bos_token, self.eos_token, self.unk_token, self.pad_token) if t is not None]

    @property
    def all_special_ids(self) -> list[int]:
        return [i for i in (self._id(t) for t in self.all_special_tokens) if i is not None]

    # -- vocabulary -----------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """The base vocabulary (without added tokens), as transformers reports it."""
        return int(self.backend_tokenizer.get_vocab_size(with_added_tokens=False))

    def __len__(self) -> int:
        return int(self.backend_tokenizer.get_vocab_size(with_added_tokens=True))

    def get_vocab(self) -> dict[str, int]:
        return dict(self.backend_tokenizer.get_vocab(with_added_tokens=True))

    def convert_ids_to_tokens(self, ids: int | Sequence[int] | Any) -> Any:
        if isinstance(ids, int):
            return self.backend_tokenizer.id_to_token(ids)
        return [self.backend_tokenizer.id_to_token(int(i)) for i in _as_list(ids)]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> Any:
        if isinstance(tokens, str):
            return self.backend_tokenizer.token_to_id(tokens)
        return [self.backend_tokenizer.token_to_id(t) for t in tokens]

    # -- encoding -----------------------------------------------------------------------------------------

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def __call__(
        self, text: str | Sequence[str], add_special_tokens: bool = True, padding: bool | str = False,
        return_tensors: str | None = None, return_attention_mask: bool = True, **unsupported: Any,
    ) -> Encoding:  # fmt: skip
        """Token ids (and the attention mask) for one text or a batch; ``padding=True`` pads to the longest."""
        if unsupported:
            raise TypeError(f"NativeTokenizer does not support {', '.join(sorted(unsupported))}")
        single = isinstance(text, str)
        texts = [text] if single else list(text)  # type: ignore[list-item]
        ids = [list(e.ids) for e in self.backend_tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens)]
        masks = [[1] * len(row) for row in ids]
        if padding and padding != "do_not_pad":
            ids, masks = self._pad(ids, masks)
        if return_tensors == "pt":
            import torch

            if len({len(row) for row in ids}) > 1:
                raise ValueError("texts of different lengths need padding=True to become one tensor")
            out = Encoding(input_ids=torch.tensor(ids, dtype=torch.long))
            if return_attention_mask:
                out["attention_mask"] = torch.tensor(masks, dtype=torch.long)
            return out
        if return_tensors is not None:
            raise ValueError(f"return_tensors={return_tensors!r}: only 'pt' is supported")
        out = Encoding(input_ids=ids[0] if single else ids)
        if return_attention_mask:
            out["attention_mask"] = masks[0] if single else masks
        return out

    def _pad(self, ids: list[list[int]], masks: list[list[int]]) -> tuple[list[list[int]], list[list[int]]]:
        pad = self.pad_token_id
        if pad is None:
            raise ValueError("asked to pad but the tokenizer has no pad token; set tokenizer.pad_token")
        width = max((len(row) for row in ids), default=0)
        left = self.padding_side == "left"
        padded, padded_masks = [], []
        for row, mask in zip(ids, masks, strict=True):
            fill = width - len(row)
            padded.append([pad] * fill + row if left else row + [pad] * fill)
            padded_masks.append([0] * fill + mask if left else mask + [0] * fill)
        return padded, padded_masks

    # -- decoding -----------------------------------------------------------------------------------------

    def decode(self, ids: int | Sequence[int] | Any, skip_special_tokens: bool = False) -> str:
        text = str(self.backend_tokenizer.decode(_as_list(ids), skip_special_tokens=skip_special_tokens))
        return _clean_up(text) if self.clean_up_tokenization_spaces else text

    def batch_decode(self, rows: Any, skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(row, skip_special_tokens=skip_special_tokens) for row in rows]

    # -- chat -----------------------------------------------------------------------------------------------

    def apply_chat_template(
        self, messages: Sequence[dict[str, str]], tokenize: bool = True, add_generation_prompt: bool = False,
        **kwargs: Any,
    ) -> Any:  # fmt: skip
        """Render the chat template (sandboxed Jinja, transformers' settings); token ids when ``tokenize``."""
        if not self.chat_template:
            raise ValueError(f"{self.name_or_path or 'this tokenizer'} has no chat template")
        text = _compiled_template(self.chat_template).render(
            messages=list(messages), add_generation_prompt=add_generation_prompt,
            **{f"{name}_token": getattr(self, f"{name}_token") for name in SPECIAL_NAMES}, **kwargs,
        )  # fmt: skip
        return self.encode(text, add_special_tokens=False) if tokenize else text


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json stores it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _as_list(ids: Any) -> list[int]:
    if isinstance(ids, int):
        return [ids]
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
        return [ids] if isinstance(ids, int) else [int(i) for i in ids]
    return [int(i) for i in ids]


def _clean_up(text: str) -> str:
    """transformers' ``clean_up_tokenization`` (spaces before punctuation and English contractions)."""
    for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                          (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):  # fmt: skip
        text = text.replace(before, after)
    return text


_TEMPLATES: dict[str, Any] = {}


def _compiled_template(source: str) -> Any:
    if source not in _TEMPLATES:
        from jinja2 import ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise ValueError(f"chat template: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[ext.loopcontrols])
        env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
        env.globals["raise_exception"] = raise_exception
        _TEMPLATES[source] = env.from_string(source)
    return _TEMPLATES[source]
