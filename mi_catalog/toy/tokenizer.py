"""The toy model's word-level HF fast tokenizer, built from ``tasks.vocabulary()``.

One token per space-separated word (``WordLevel`` + ``WhitespaceSplit``), a
``<bos>`` prepended by the post-processor, ``<pad>``/``<unk>``/``<eos>``, and
left padding by default. Token ids are vocabulary positions, which only ever
grow at the end (see ``tasks``), so ids stay stable across recipe versions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mi_catalog.toy.tasks import BOS, EOS, PAD, RECIPE_VERSION, UNK, vocabulary

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast


def build_tokenizer(version: int = RECIPE_VERSION) -> PreTrainedTokenizerFast:
    """A fresh tokenizer for recipe ``version``'s vocabulary (the shipped one is saved next to the weights)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(vocabulary(version))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A $B",
        special_tokens=[(BOS, vocab[BOS])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",
        model_max_length=256,
        clean_up_tokenization_spaces=False,
    )
