"""Shared pieces of the vector-arithmetic steerers (refusal direction, CAA, ITI, function vectors): which
examples form the two sides of a contrast, which tokens count as "the behaviour", last-position
activations, and the sites a directional ablation must cover. Model-side; no file I/O.

A contrast is found generically, so a steerer runs on any labelled data (the registry test's user file,
the English sets, the toy):

* **labels** — two label classes: the behaviour class is the one named in ``prefer`` when present
  (``harmful``, ``positive``, ``toxic``), else the first in sorted order (as in ``linear-probe``);
* **pairs** — no two classes but corrupt prompts: each prompt (behaviour side) against its own
  ``corrupt_prompt`` (other side);

The behaviour tokens are the first tokens of the behaviour side's answers (the toy's refusal task: the
planted refusal token ``sorry``); the other side's answers are its "correct" tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from mi_catalog.methods.steering import BATCH
from mi_catalog.models.hooks import capture
from mi_catalog.models.loading import LoadedModel
from mi_catalog.tasks import TaskDataError, TaskExample

# Behaviour class names to prefer over sorted order (the toy's and English sets' labels), and the class to
# contrast them with when there are more than two (the toy's persona task: a persona vs "none").
PREFERRED_CLASSES = ("harmful", "positive", "toxic")
PREFERRED_OTHER = ("harmless", "negative", "nice", "none")


@dataclass
class ContrastSides:
    """The two sides of a contrast, each a list of examples whose ``prompt`` is run."""

    behaviour: list[TaskExample]  # e.g. harmful prompts (their answers: the behaviour tokens)
    other: list[TaskExample]  # e.g. harmless prompts
    behaviour_name: str
    other_name: str
    mode: str  # "labels" | "pairs"

    def describe(self) -> str:
        if self.mode == "labels":
            return f"label {self.behaviour_name!r} vs {self.other_name!r}"
        return "each prompt vs its corrupt_prompt"


def contrast_sides(examples: Sequence[TaskExample], prefer: Sequence[str] = PREFERRED_CLASSES,
                   behaviour: str | None = None, other: str | None = None) -> ContrastSides:  # fmt: skip
    """Split ``examples`` into the contrast's two sides (see the module docstring); raises TaskDataError when
    the examples have neither two label classes nor corrupt prompts."""
    classes = sorted({ex.label for ex in examples if ex.label is not None})
    if len(classes) >= 2:
        chosen = behaviour if behaviour in classes else next((c for c in prefer if c in classes), classes[0])
        rest = [c for c in classes if c != chosen]
        against = other if other in rest else next((c for c in PREFERRED_OTHER if c in rest), rest[0])
        return ContrastSides([ex for ex in examples if ex.label == chosen], [ex for ex in examples if ex.label == against],
                             str(chosen), str(against), "labels")  # fmt: skip
    paired = [ex for ex in examples if ex.corrupt_prompt]
    if paired:
        flipped = [replace(ex, prompt=str(ex.corrupt_prompt), answer=ex.corrupt_answer or ex.answer,
                           corrupt_prompt=ex.prompt, corrupt_answer=ex.answer) for ex in paired]  # fmt: skip
        return ContrastSides(paired, flipped, "prompt", "corrupt_prompt", "pairs")
    raise TaskDataError(
        "a contrast needs examples with two label classes or corrupt prompts; "
        f"task {examples[0].task if examples else '?'!r} has neither (use --prompts FILE.jsonl with 'label' or 'corrupt_prompt')"
    )


def split_sides(sides: ContrastSides, fit_fraction: float) -> tuple[ContrastSides, ContrastSides]:
    """Held-out split of each side (the first part fits; paired sides stay aligned) → (fit, test)."""
    fit_b, test_b = _split(sides.behaviour, fit_fraction)
    if sides.mode == "pairs":
        fit_o, test_o = sides.other[: len(fit_b)], sides.other[len(fit_b) :]
    else:
        fit_o, test_o = _split(sides.other, fit_fraction)
    return (replace(sides, behaviour=fit_b, other=fit_o), replace(sides, behaviour=test_b, other=test_o))


def _split(examples: list[TaskExample], fit_fraction: float) -> tuple[list[TaskExample], list[TaskExample]]:
    if len(examples) < 2:
        raise TaskDataError(
            f"too few examples ({len(examples)}) on one side of the contrast for a held-out split; raise --n"
        )
    cut = max(1, min(len(examples) - 1, round(len(examples) * fit_fraction)))  # both parts non-empty
    return examples[:cut], examples[cut:]


def paired_prompts(lm: LoadedModel, sides: ContrastSides) -> list[tuple[str, str]]:
    """Contrastive pairs (behaviour prompt, other prompt) that differ only where the example's corruption
    differs: an example's own ``corrupt_prompt`` when its corrupt answer belongs to the other side (CAA's
    pairs: the same question, the behaviour swapped). Sides built from pairs are paired one to one."""
    if sides.mode == "pairs":
        return [(b.prompt, o.prompt) for b, o in zip(sides.behaviour, sides.other, strict=True)]
    b_tokens, o_tokens = set(answer_token_set(lm, sides.behaviour)), set(answer_token_set(lm, sides.other))
    out: list[tuple[str, str]] = []
    for ex in sides.behaviour:
        if ex.corrupt_prompt and ex.corrupt_answer and lm.token_id(ex.corrupt_answer) in o_tokens - b_tokens:
            out.append((ex.prompt, ex.corrupt_prompt))
    for ex in sides.other:
        if ex.corrupt_prompt and ex.corrupt_answer and lm.token_id(ex.corrupt_answer) in b_tokens - o_tokens:
            out.append((ex.corrupt_prompt, ex.prompt))
    return out


def answer_token_set(lm: LoadedModel, examples: Sequence[TaskExample]) -> list[int]:
    """Distinct first tokens of the examples' answers, sorted (the behaviour tokens of one side)."""
    return sorted({lm.token_id(ex.answer) for ex in examples if ex.answer})


def last_acts(lm: LoadedModel, prompts: Sequence[str], sites: Sequence[str], k: int = 1) -> torch.Tensor:
    """Activations at ``sites`` at each prompt's last ``k`` tokens → float [n_sites, n, k, *site dims]
    (left padding puts every prompt's end at the batch's last positions), in chunks of BATCH prompts."""
    chunks: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, len(prompts), BATCH):
            batch = lm.encode(list(prompts[start : start + BATCH]))
            with capture(lm, sites) as cache:
                lm.logits(batch)
            chunks.append(torch.stack([cache[s][:, -k:].float().cpu() for s in sites]))
    return torch.cat(chunks, dim=1)


def min_tokens(lm: LoadedModel, prompts: Sequence[str]) -> int:
    """The shortest prompt's token count (how many last positions every prompt has)."""
    return min(lm.n_tokens(p) for p in prompts)


def residual_write_sites(lm: LoadedModel) -> tuple[str, ...]:
    """Every point where the residual stream is read or written: each block's input (resid_pre.l) and the
    outputs of its attention and FFN (attn_out.l, mlp_out.l). Projecting a direction out at all of them keeps
    it out of the residual stream everywhere (Arditi et al. 2024's directional ablation)."""
    return tuple(f"{name}.{layer}" for layer in range(lm.n_layers) for name in ("resid_pre", "attn_out", "mlp_out"))


def log_odds(p: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """log(p / (1 − p)), clipped away from 0 and 1 → same shape."""
    q = p.double().clamp(eps, 1 - eps)
    return (q.log() - (1 - q).log()).float()


def rate(values: torch.Tensor) -> float:
    """Mean of a per-prompt 0/1 (or score) tensor; 0.0 for an empty one."""
    return float(values.float().mean()) if values.numel() else 0.0
