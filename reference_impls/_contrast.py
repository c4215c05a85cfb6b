"""Clean/corrupt pairs for the gradient locators (attribution patching, EAP): one place that decides how a
task's examples are corrupted and which metric is differentiated.

* **contrast** (preferred): each example's own ``corrupt_prompt`` of the same token length (the toy's tasks,
  the English induction set, IOI); the metric is the logit difference answer − corrupt answer when every
  kept example names a corrupt answer whose first token differs, else log p(answer).
* **shuffle** (``corruption="shuffle"``, any task): the clean prompt's tokens with every real token except the
  first and the last randomly permuted — it breaks the bigrams that induction copies from and the word order
  a fact is read from, keeping the bag of tokens; the metric is the logit difference answer − the shuffled
  run's own top prediction (its best token other than the answer), found in one extra forward pass.
* **noise** (fallback, when no example has a usable contrast prompt — e.g. the English facts): Gaussian
  noise on the subject tokens' embeddings (every token but the last when no subject is known), σ =
  ``noise_scale`` × the standard deviation of the embedding matrix (ROME's 3σ recipe, with σ over W_E
  instead of a corpus); the metric is log p(answer).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from mi_catalog.methods.metrics import answer_logprob, logit_diff
from mi_catalog.models.hooks import ForwardState, edit
from mi_catalog.models.loading import Batch, LoadedModel
from mi_catalog.models.weights import W_E
from mi_catalog.tasks import TaskDataError, TaskExample
from reference_impls._common import answer_ids, subject_positions


@dataclass
class Contrast:
    """Aligned clean and corrupt inputs for a batch of examples (left padded, so positions match)."""

    examples: list[TaskExample]
    clean: Batch
    corrupt: Batch  # the corrupt prompts; in noise mode the clean prompts again (noise added at the embeddings)
    answers: torch.Tensor  # [batch]
    others: torch.Tensor | None  # corrupt answers [batch]; None → the metric is log p(answer)
    mode: str  # "contrast" | "shuffle" | "noise"
    n_skipped: int
    noise: torch.Tensor | None = None  # [batch, pos, d_model] added to the embeddings in noise mode
    forwards: int = 0  # forward passes spent building the pair (the shuffle mode's choice of contrast token)

    @property
    def metric_name(self) -> str:
        if self.others is None:
            return "log p(answer)"
        if self.mode == "shuffle":
            return "logit difference (answer − the shuffled run's top other token)"
        return "logit difference (answer − corrupt answer)"

    def describe(self, noise_scale: float) -> str:
        if self.mode == "contrast":
            return "the task's contrast prompts"
        if self.mode == "shuffle":
            return "the prompt's tokens shuffled (all but the first and last)"
        return f"Gaussian noise ({noise_scale}×std(W_E)) on the subject embeddings"

    def metric(self, logits: torch.Tensor) -> torch.Tensor:
        """The task metric per prompt [batch] (differentiable)."""
        if self.others is not None:
            return logit_diff(logits, self.answers, self.others)
        return answer_logprob(logits, self.answers)

    @contextlib.contextmanager
    def corrupted(self, lm: LoadedModel) -> Iterator[None]:
        """Run ``self.corrupt`` inside this context to get the corrupt run (adds the noise in noise mode)."""
        if self.noise is None:
            yield
            return
        noise = self.noise

        def add(act: torch.Tensor, _state: ForwardState) -> torch.Tensor:
            return act + noise.to(device=act.device, dtype=act.dtype)

        with edit(lm, [("embed", add)]):
            yield


CORRUPTIONS = ("task", "shuffle")


def make_contrast(
    lm: LoadedModel, examples: list[TaskExample], seed: int, noise_scale: float = 3.0, corruption: str = "task"
) -> Contrast:
    """Contrast pairs when the examples have them (same token length), else subject noise; or shuffled prompts."""
    if corruption not in CORRUPTIONS:
        raise ValueError(f"corruption={corruption!r}; use one of {', '.join(CORRUPTIONS)}")
    if corruption == "shuffle":
        return _shuffled(lm, examples, seed)
    paired = [ex for ex in examples
              if ex.corrupt_prompt and lm.n_tokens(ex.corrupt_prompt) == lm.n_tokens(ex.prompt)]  # fmt: skip
    if paired:
        answers = answer_ids(lm, paired)
        others = None
        if all(ex.corrupt_answer for ex in paired):
            candidate = answer_ids(lm, paired, corrupt=True)
            if bool((candidate != answers).all()):
                others = candidate
        clean = lm.encode([ex.prompt for ex in paired])
        corrupt = lm.encode([str(ex.corrupt_prompt) for ex in paired])
        if corrupt.input_ids.shape != clean.input_ids.shape:
            raise TaskDataError("contrast prompts do not align with their clean prompts after padding")
        return Contrast(paired, clean, corrupt, answers, others, "contrast", len(examples) - len(paired))
    clean = lm.encode([ex.prompt for ex in examples])
    batch, n_pos = clean.input_ids.shape
    real = clean.attention_mask.bool()
    first = real.int().argmax(dim=1)  # first real token per row
    where = torch.zeros(batch, n_pos, dtype=torch.bool, device=clean.input_ids.device)
    for row, ex in enumerate(examples):
        positions = subject_positions(lm, ex)
        start = int(first[row])
        if positions:
            for p in positions:
                if start + p < n_pos - 1:
                    where[row, start + p] = True
        else:
            where[row, start : n_pos - 1] = True
    with torch.no_grad():
        sigma = float(W_E(lm).float().std())
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, n_pos, lm.d_model, generator=gen) * sigma * noise_scale
    noise = noise * where.cpu()[:, :, None]
    return Contrast(list(examples), clean, clean, answer_ids(lm, examples), None, "noise", 0, noise.to(lm.device))


def _shuffled(lm: LoadedModel, examples: list[TaskExample], seed: int) -> Contrast:
    clean = lm.encode([ex.prompt for ex in examples])
    ids = clean.input_ids.clone()
    gen = torch.Generator().manual_seed(seed)
    for row in range(ids.shape[0]):
        middle = clean.attention_mask[row].nonzero().flatten()[1:-1]  # real tokens but the first and the last
        perm = torch.randperm(middle.numel(), generator=gen).to(middle.device)
        ids[row, middle] = clean.input_ids[row, middle[perm]]
    corrupt = Batch(ids, clean.attention_mask)
    answers = answer_ids(lm, examples)
    last = lm.logits(corrupt)[:, -1].float().clone()
    last[torch.arange(len(examples)), answers] = float("-inf")
    others = last.argmax(dim=-1)  # the shuffled run's own best guess other than the answer
    return Contrast(list(examples), clean, corrupt, answers, others, "shuffle", 0, forwards=1)
