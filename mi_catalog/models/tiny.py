"""Tiny random-init models of every supported family, for tests and benchmarks (no downloads).

Each comes with a word-level tokenizer over the built-in English prompt words
(``<bos>`` prepended, ``<pad>`` for left padding), so the reference
implementations run on them end to end. Random weights: the numbers mean
nothing, the invariants (patching clean into clean changes nothing, …) must hold.
"""

from __future__ import annotations

from typing import Any

import torch

from mi_catalog.models.loading import LoadedModel, wrap_model
from mi_catalog.models.prompts import FACTS, INDUCTION_WORDS

# "llama-native": the same random Llama as "llama", run by our own Llama (mi_catalog.models.native).
TINY_FAMILIES = ("gpt2", "gpt-neox", "gpt-neox-sequential", "llama", "llama-native", "qwen2", "mistral")
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")


def tiny_vocabulary() -> list[str]:
    """Every whitespace-separated word of the built-in prompts and of the shipped English task sets, so the
    tiny models can run every English task end to end (their numbers mean nothing; the invariants must hold)."""
    words: list[str] = []
    for prompt, subject, answer in FACTS:
        words.extend(f"{prompt} {subject} {answer}".split())
    words.extend(INDUCTION_WORDS)
    try:
        from mi_catalog.data import english
    except ImportError:
        english = None  # type: ignore[assignment]
    if english is not None:
        for task in english.TASKS:
            for row in english.load(task):
                for key in ("prompt", "answer", "corrupt_prompt", "corrupt_answer"):
                    if row.get(key):
                        words.extend(str(row[key]).split())
                meta = row.get("meta") or {}
                for text in [*meta.get("paraphrases", []), *(n.get("prompt", "") + " " + n.get("answer", "")
                                                            for n in meta.get("neighborhood", []))]:  # fmt: skip
                    words.extend(str(text).split())
                if meta.get("target_new"):
                    words.extend(str(meta["target_new"]).split())
    return [*SPECIALS, *dict.fromkeys(words)]


def tiny_tokenizer() -> Any:
    """A whitespace word-level PreTrainedTokenizerFast that prepends ``<bos>``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(tiny_vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.padding_side = "left"
    return fast


def tiny_model(family: str = "llama", seed: int = 0, n_layers: int = 2, d_model: int = 32) -> LoadedModel:
    """A random-init 2-layer model of ``family`` with :func:`tiny_tokenizer`."""
    import transformers as tf

    if family == "llama-native":
        from mi_catalog.models.native import from_module

        hf = tiny_model("llama", seed=seed, n_layers=n_layers, d_model=d_model)
        return wrap_model(from_module(hf.model), hf.tokenizer, name="tiny-llama-native")
    vocab_size = len(tiny_vocabulary())
    torch.manual_seed(seed)
    config: Any
    model: Any
    common: dict[str, Any] = {"vocab_size": vocab_size, "bos_token_id": 2, "eos_token_id": 3, "pad_token_id": 0}
    if family == "gpt2":
        config = tf.GPT2Config(n_layer=n_layers, n_embd=d_model, n_head=4, n_positions=64, **common)
        model = tf.GPT2LMHeadModel(config)
    elif family in ("gpt-neox", "gpt-neox-sequential"):
        config = tf.GPTNeoXConfig(
            num_hidden_layers=n_layers, hidden_size=d_model, num_attention_heads=4, intermediate_size=4 * d_model,
            max_position_embeddings=64, use_parallel_residual=family == "gpt-neox", **common,
        )  # fmt: skip
        model = tf.GPTNeoXForCausalLM(config)
    elif family in ("llama", "qwen2", "mistral"):
        config_cls, model_cls = {
            "llama": (tf.LlamaConfig, tf.LlamaForCausalLM),
            "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
            "mistral": (tf.MistralConfig, tf.MistralForCausalLM),
        }[family]
        config = config_cls(
            num_hidden_layers=n_layers, hidden_size=d_model, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=2 * d_model, max_position_embeddings=64, **common,
        )  # fmt: skip
        model = model_cls(config)
    else:
        raise ValueError(f"unknown tiny family {family!r}; choose from {', '.join(TINY_FAMILIES)}")
    config._attn_implementation = "eager"
    return wrap_model(model, tiny_tokenizer(), name=f"tiny-{family}")
