"""Deterministic training of the toy ``LlamaForCausalLM`` on the synthetic task mixture.

``train(recipe)`` seeds everything, draws fresh batches from
``tasks.training_examples`` every step and returns the trained model in eval
mode; with ``out_dir`` it also saves weights (safetensors), config and
tokenizer there atomically. Card writing (measured accuracies and mechanisms)
lives in ``ship.py``.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mi_catalog.fsutil import replace_dir
from mi_catalog.toy.tasks import RECIPE_VERSION, training_examples, vocabulary

if TYPE_CHECKING:
    import torch
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the trained weights."""

    seed: int = 0
    steps: int = 6000
    batch_size: int = 64
    learning_rate: float = 3e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    answer_loss_weight: float = 1.0  # extra weight on the answer token, on top of the plain LM loss
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 256
    max_position_embeddings: int = 128
    recipe_version: int = RECIPE_VERSION
    # (generator, weight) pairs overriding ``tasks.TRAINING_MIXTURE``; empty = the standard mixture.
    mixture: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_model(recipe: Recipe, vocab_size: int) -> LlamaForCausalLM:
    """A freshly initialised small Llama (RoPE: relative positions, which help induction heads form)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        num_key_value_heads=recipe.num_heads,
        max_position_embeddings=recipe.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    return LlamaForCausalLM(config)


def _learning_rate(step: int, recipe: Recipe) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < recipe.warmup_steps:
        return recipe.learning_rate * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return recipe.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def encode_batch(tokenizer: PreTrainedTokenizerFast, texts: list[str]) -> dict[str, torch.Tensor]:
    """Left-padded ids, mask and LM labels (-100 on padding)."""
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": labels}


def _loss(model: LlamaForCausalLM, batch: dict[str, torch.Tensor], answer_weight: float) -> torch.Tensor:
    """Next-token loss on every real token, plus extra weight on the final (answer) token."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    shifted_logits, targets = logits[:, :-1], batch["labels"][:, 1:]
    lm = F.cross_entropy(shifted_logits.reshape(-1, shifted_logits.size(-1)), targets.reshape(-1), ignore_index=-100)
    if answer_weight == 0:
        return lm
    # Left padding: the answer is always the last position.
    answer = F.cross_entropy(shifted_logits[:, -1], targets[:, -1])
    return lm + answer_weight * answer


def train(
    recipe: Recipe,
    out_dir: Path | None = None,
    progress: bool = True,
    log: list[dict[str, float]] | None = None,
) -> LlamaForCausalLM:
    """Train from scratch, deterministically for a given recipe; optionally save to ``out_dir``.

    ``log``, when given, receives ``{"step", "loss"}`` records (every 50 steps and the last one).
    """
    import torch
    from tqdm.auto import tqdm

    from mi_catalog.toy.tokenizer import build_tokenizer

    torch.set_num_threads(1)  # two contending threads on a shared 2-core box are slower than one
    torch.manual_seed(recipe.seed)
    data_rng = random.Random(f"train/{recipe.seed}")
    tokenizer = build_tokenizer()
    model = build_model(recipe, len(vocabulary()))
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay, betas=(0.9, 0.98)
    )
    mixture = dict(recipe.mixture) or None
    started = time.perf_counter()
    running = None
    bar = tqdm(range(recipe.steps), desc="toy train", disable=not progress, mininterval=2.0)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, recipe)
        texts = [ex.text for ex in training_examples(data_rng, recipe.batch_size, mixture)]
        loss = _loss(model, encode_batch(tokenizer, texts), recipe.answer_loss_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        value = float(loss.detach())
        running = value if running is None else 0.98 * running + 0.02 * value
        if step % 50 == 0 or step == recipe.steps - 1:
            bar.set_postfix(loss=f"{running:.3f}")
            if log is not None:
                log.append({"step": step, "loss": value})
    model.eval()
    model.config.toy_training = {
        **recipe.to_dict(),
        "train_seconds": round(time.perf_counter() - started, 1),
        "final_loss": round(running or float("nan"), 4),
    }
    if out_dir is not None:
        save_checkpoint(model, tokenizer, out_dir)
    return model


def save_checkpoint(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, out_dir: Path) -> None:
    """Write weights (safetensors), config and tokenizer to a sibling folder, then swap it in.

    A card from an earlier model in ``out_dir`` is not carried over: it would describe other weights.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        _portable_tokenizer_config(staging)
        _make_world_readable(staging)
        replace_dir(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _portable_tokenizer_config(directory: Path) -> None:
    """Name the tokenizer class transformers 4.x also knows (5.x saves its own ``TokenizersBackend``)."""
    path = directory / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _make_world_readable(directory: Path) -> None:
    """``mkdtemp`` folders are private (0700); a shipped checkpoint must be readable by every user."""
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o644)


