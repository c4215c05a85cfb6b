"""Deterministic training of the toy ``LlamaForCausalLM`` on the synthetic task mixture.

``train(recipe)`` seeds everything, draws fresh batches from
``tasks.training_examples`` every step and returns the trained model in eval
mode; with ``out_dir`` it also saves weights (safetensors), config and
tokenizer there atomically. Card writing (measured accuracies and mechanisms)
lives in ``ship.py``.

A recipe may continue another recipe's model (``Recipe.base``): recipe v2 is
the recipe v1 model, continued on the v2 mixture, and recipe v3 the recipe v2
model, continued on the v3 mixture, so the mechanisms v1 formed stay where
they are. The weights a recipe starts from ship in ``mi_catalog/toy/base/v{N}``
and are pinned by sha256 (``Recipe.base_weights_sha256``): re-training a base
reproduces it only on the machine it was trained on (float results differ
across CPUs), and a different base has its mechanisms elsewhere. So
``train(Recipe())`` (``mi-catalog toy train --seed 0``) reproduces the
recipe's weights bit for bit from the pinned base file; with
``base_weights_sha256=None`` the base is trained first (from its own pinned
base, or from scratch for v1).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mi_catalog.fsutil import replace_dir
from mi_catalog.toy.tasks import RECIPE_VERSION, training_examples, vocabulary

if TYPE_CHECKING:
    import torch
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast


# The shipped recipe v1 checkpoint (seed 0), which recipe v2 continues: sha256 of its model.safetensors.
V1_WEIGHTS_SHA256 = "98aa8ec7ca3d712c9e7888a9e1df0bbd01f1cd5313e7c54265284d82b9d16cd2"
# The shipped recipe v2 checkpoint (seed 0), which recipe v3 continues.
V2_WEIGHTS_SHA256 = "f55c0e71acb2b623c84436d2bddfa5ea18538769bd83f0316f1e75e2a95819a6"
NEUTRAL_EMBEDDING_STD = 0.02  # the originals' init (LlamaConfig.initializer_range)
# Packaged base checkpoints (model.safetensors, config.json with the training record, card.json), by version.
BASE_CHECKPOINTS = Path(__file__).resolve().parent / "base"


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the trained weights. The defaults are the current recipe (v3).

    ``base`` is the recipe whose trained model this one continues (``None``: a fresh initialisation), with
    this recipe's seed. Its weights are the checkpoint whose ``model.safetensors`` has the sha256
    ``base_weights_sha256`` (the packaged ``base/v{version}``, or ``train``'s ``base_dir``), or, when that is
    None, trained from scratch first. The embedding (tied to the unembedding) grows by the rows of the words
    this version appends to the vocabulary, drawn from N(0, ``new_embedding_std``) with a generator seeded by
    ``seed``; then ``steps`` steps on this version's mixture with a fresh AdamW optimiser (warm-up to
    ``learning_rate``, cosine decay to 10 %). Recipe v2 = the shipped recipe v1 model (6000 steps from scratch
    at 3e-3), then 2000 steps at 1e-3 on the v1 mixture plus bias and persona. Recipe v3 = the shipped recipe v2
    model, then 3000 steps at 1e-3 on the v2 mixture plus language continuation and negated toxicity.
    """

    seed: int = 0
    steps: int = 3000
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    answer_loss_weight: float = 1.0  # extra weight on the answer token, on top of the plain LM loss
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 256
    max_position_embeddings: int = 128
    recipe_version: int = RECIPE_VERSION
    # (generator, weight) pairs overriding ``tasks.TRAINING_MIXTURES[recipe_version]``; empty = the standard one.
    mixture: tuple[tuple[str, float], ...] = ()
    new_embedding_std: float = NEUTRAL_EMBEDDING_STD  # init of appended vocabulary rows (initializer_range)
    base: Recipe | None = field(default_factory=lambda: V2_RECIPE)
    base_weights_sha256: str | None = V2_WEIGHTS_SHA256

    def __post_init__(self) -> None:
        if self.base is None:
            object.__setattr__(self, "base_weights_sha256", None)  # nothing to pin
            return
        if self.base.seed != self.seed:  # the base is trained with this recipe's seed
            object.__setattr__(self, "base", replace(self.base, seed=self.seed))
        architecture = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_position_embeddings")
        if any(getattr(self.base, name) != getattr(self, name) for name in architecture):
            raise ValueError("a recipe continues its base model: the architecture fields must match the base's")
        if self.base.recipe_version > self.recipe_version:
            raise ValueError("a recipe cannot continue a model of a later recipe version")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Recipe v1: the first shipped toy, trained from scratch (seed 0: ``V1_WEIGHTS_SHA256``, in ``base/v1``).
V1_RECIPE: Recipe = Recipe(steps=6000, learning_rate=3e-3, warmup_steps=200, recipe_version=1, base=None)
# Recipe v2: the v1 model continued (seed 0: ``V2_WEIGHTS_SHA256``, in ``base/v2``).
V2_RECIPE: Recipe = Recipe(
    steps=2000, learning_rate=1e-3, warmup_steps=100, recipe_version=2, base=V1_RECIPE,
    base_weights_sha256=V1_WEIGHTS_SHA256,
)  # fmt: skip


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
    base_dir: Path | None = None,
) -> LlamaForCausalLM:
    """Train deterministically for a given recipe (its base first, see ``Recipe``); optionally save to ``out_dir``.

    ``base_dir``: the checkpoint of ``recipe.base`` to continue from, instead of the packaged one (its saved
    training record must name that recipe, and its weights file have the pinned sha256 if one is set).
    ``log``, when given, receives ``{"step", "loss"}`` records of this recipe's own steps (every 50 and the last).
    """
    import torch

    from mi_catalog.toy.tokenizer import build_tokenizer

    torch.set_num_threads(1)  # two contending threads on a shared 2-core box are slower than one
    tokenizer = build_tokenizer(recipe.recipe_version)
    vocab_size = len(vocabulary(recipe.recipe_version))
    base_record: dict[str, Any] | None = None
    if recipe.base is None:
        if base_dir is not None:
            raise ValueError("base_dir is given but the recipe has no base")
        torch.manual_seed(recipe.seed)
        model = build_model(recipe, vocab_size)
        data_rng = random.Random(f"train/{recipe.seed}")
    else:
        base, base_record = _base_model(recipe, base_dir, progress)
        model = _grow_vocabulary(base, recipe, vocab_size)
        data_rng = random.Random(f"train/v{recipe.recipe_version}/{recipe.seed}")
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay, betas=(0.9, 0.98)
    )
    value, started = _optimise(model, tokenizer, optimizer, recipe, data_rng, progress, log)
    model.eval()
    model.config.toy_training = {
        **recipe.to_dict(),
        "base": base_record,
        "train_seconds": round(time.perf_counter() - started, 1),
        "final_loss": round(value, 4),
    }
    if out_dir is not None:
        save_checkpoint(model, tokenizer, out_dir)
    return model


def _optimise(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    optimizer: Any,
    recipe: Recipe,
    data_rng: random.Random,
    progress: bool,
    log: list[dict[str, float]] | None,
) -> tuple[float, float]:
    """The training loop; returns (smoothed final loss, start time)."""
    import torch
    from tqdm.auto import tqdm

    mixture = dict(recipe.mixture) or None
    started = time.perf_counter()
    running = None
    desc = f"toy train v{recipe.recipe_version}" + (" (continued)" if recipe.base is not None else "")
    bar = tqdm(range(recipe.steps), desc=desc, disable=not progress, mininterval=2.0)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(step, recipe)
        batch = training_examples(data_rng, recipe.batch_size, mixture, version=recipe.recipe_version)
        loss = _loss(model, encode_batch(tokenizer, [ex.text for ex in batch]), recipe.answer_loss_weight)
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
    return (running if running is not None else float("nan")), started


def _base_model(recipe: Recipe, base_dir: Path | None, progress: bool) -> tuple[LlamaForCausalLM, dict[str, Any]]:
    """The base recipe's model and its training record (with its weights file's sha256): loaded from
    ``base_dir`` or the packaged checkpoint after checking it is that recipe's (and the pinned file), or trained."""
    from transformers import LlamaForCausalLM

    base = recipe.base
    assert base is not None
    if base_dir is None and recipe.base_weights_sha256 is None:
        trained = train(base, progress=progress)
        return trained, {**dict(trained.config.toy_training), "weights_sha256": _weights_file_sha256(trained)}
    directory = Path(base_dir) if base_dir is not None else BASE_CHECKPOINTS / f"v{base.recipe_version}"
    path = directory / "model.safetensors"
    if not path.is_file():
        raise ValueError(f"no base checkpoint (model.safetensors) in {directory}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    pinned = recipe.base_weights_sha256
    if pinned is not None and digest != pinned:
        raise ValueError(f"{path} is not the pinned base (sha256 {digest[:12]}…, the recipe pins {pinned[:12]}…)")
    model: Any = LlamaForCausalLM.from_pretrained(directory, use_safetensors=True)
    recorded = json.loads(json.dumps(getattr(model.config, "toy_training", None) or {}))
    wanted = json.loads(json.dumps(base.to_dict()))
    # Fields a recipe gained later (absent from an older checkpoint's record) must be at their neutral value.
    neutral = {"base": None, "base_weights_sha256": None, "new_embedding_std": NEUTRAL_EMBEDDING_STD}
    differing = [k for k, v in wanted.items() if _recipe_record(recorded.get(k, neutral.get(k, "<missing>")), k) != v]
    if differing:
        raise ValueError(
            f"{directory} was not trained with the base recipe (differs in: {', '.join(differing)}); "
            "train the base from scratch instead (base_weights_sha256=None)"
        )
    timing = {k: recorded[k] for k in ("train_seconds", "final_loss") if k in recorded}
    # The base's own base as it recorded it (its time, loss and weights hash), for the card's training stages.
    nested = {"base": recorded["base"]} if isinstance(recorded.get("base"), dict) else {}
    return model, {**wanted, **nested, **timing, "weights_sha256": digest}


def _recipe_record(value: Any, key: str) -> Any:
    """A recorded field as a recipe states it: a base record without what training added (time, loss, hash)."""
    if key == "base" and isinstance(value, dict):
        added = ("train_seconds", "final_loss", "weights_sha256")
        return {k: _recipe_record(v, k) for k, v in value.items() if k not in added}
    return value


def packaged_base_seed(version: int) -> int | None:
    """The seed the packaged recipe-``version`` base checkpoint was trained with (None: none is packaged)."""
    path = BASE_CHECKPOINTS / f"v{version}" / "config.json"
    if not path.is_file():
        return None
    seed = json.loads(path.read_text(encoding="utf-8")).get("toy_training", {}).get("seed")
    return int(seed) if seed is not None else None


def _weights_file_sha256(model: LlamaForCausalLM) -> str:
    """sha256 of ``model.safetensors`` as ``save_checkpoint`` writes it (the card's ``weights_sha256``)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        return hashlib.sha256((Path(tmp) / "model.safetensors").read_bytes()).hexdigest()


def _grow_vocabulary(base: LlamaForCausalLM, recipe: Recipe, vocab_size: int) -> LlamaForCausalLM:
    """``base``'s weights in a model with ``vocab_size`` tokens; the appended (tied) embedding rows are seeded."""
    import torch

    state = base.state_dict()
    embedding = state["model.embed_tokens.weight"]
    old_size, width = embedding.shape
    if vocab_size < old_size:
        raise ValueError(f"the vocabulary cannot shrink ({old_size} → {vocab_size} words)")
    generator = torch.Generator().manual_seed(recipe.seed)
    new_rows = torch.randn(vocab_size - old_size, width, generator=generator) * recipe.new_embedding_std
    grown = torch.cat([embedding, new_rows.to(embedding.dtype)])
    state = {k: (grown if k in ("model.embed_tokens.weight", "lm_head.weight") else v) for k, v in state.items()}
    model = build_model(recipe, vocab_size)
    model.load_state_dict(state, strict=True)
    model.tie_weights()
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
