"""Logit lens — nostalgebraist, *interpreting GPT: the logit lens* (LessWrong, 2020).

The paper decodes the residual stream after every block through the model's own
final norm and unembedding, ``logits^l = W_U · ln_final(x^l)``, and watches the
prediction form layer by layer: the answer typically becomes top-1 well before
the last layer. (Survey: object *residual stream*, method *vocab projection*.)

What we do: for each task's prompts, decode x^0 (the embeddings) and x^{l+1}
(after block l) at the last position, and report the mean probability of the
answer per layer and the first layer where it is top-1. We simplify: no tuned
lens (no learned per-layer translators), last position only for the metrics;
the figure shows every position of the first prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.models.hooks import capture
from mi_catalog.models.loading import LoadedModel
from mi_catalog.models.weights import unembed
from reference_impls._common import answer_id, prompts_for, token_labels, write_heatmap_svg

IMPL = ImplInfo(
    id="logit-lens",
    title="Logit lens: decode the residual stream at every layer",
    objects=("residual-stream",),
    methods=("vocab-projection",),
    steering=(),
    reproduces=("interpreting-gpt-the-logit-lens",),
)


@dataclass
class Spec:
    tasks: tuple[str, ...] = ("facts", "induction")
    n_prompts: int = 16
    seed: int = 0
    out_dir: Path | None = None
    majority: float = 0.5  # "the answer is top-1 at layer l" when it is for at least this share of prompts


@dataclass
class TaskLens:
    # Lens layers are indexed like HF hidden_states: L0 = the embeddings, L{l+1} = the output of block l.
    answer_prob: torch.Tensor  # [n_layers + 1] mean probability of the answer per lens layer
    top1_rate: torch.Tensor  # [n_layers + 1] share of prompts whose top-1 token is the answer
    first_top1_layer: int  # first lens layer with top1_rate >= majority; -1 if none


@dataclass
class Result:
    metrics: dict[str, float]
    tasks: dict[str, TaskLens]
    figures: list[Path] = field(default_factory=list)


def lens_sites(lm: LoadedModel) -> list[str]:
    """x^0 (block 0's input) then the output of every block: n_layers + 1 lens layers."""
    return ["resid_pre.0", *(f"resid_post.{layer}" for layer in range(lm.n_layers))]


def decode_layers(lm: LoadedModel, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Lens probabilities at every layer and position → ([n_layers+1, batch, pos, d_vocab], input_ids)."""
    batch = lm.encode(prompts)
    sites = lens_sites(lm)
    with capture(lm, sites) as cache:
        lm.logits(batch)
    resid = torch.stack([cache[s] for s in sites])  # [n_layers+1, batch, pos, d_model]
    with torch.no_grad():
        probs = unembed(lm, resid).float().softmax(dim=-1)  # [n_layers+1, batch, pos, d_vocab]
    return probs, batch.input_ids


def lens_task(lm: LoadedModel, prompts: list[str], answers: list[int], majority: float) -> TaskLens:
    probs, _ = decode_layers(lm, prompts)
    last = probs[:, :, -1]  # [n_layers+1, batch, d_vocab]; left padding puts every prompt's end here
    target = torch.tensor(answers)  # [batch]
    answer_prob = last[:, torch.arange(len(answers)), target]  # [n_layers+1, batch]
    top1 = (last.argmax(dim=-1) == target).float()  # [n_layers+1, batch]
    rate = top1.mean(dim=1)
    reached = (rate >= majority).nonzero()
    return TaskLens(answer_prob.mean(dim=1), rate, int(reached[0]) if len(reached) else -1)


def lens_figure(lm: LoadedModel, prompt: str, answer: int, path: Path) -> Path:
    """Layer × position grid of the first prompt: top-1 token in each cell, coloured by the answer's probability."""
    probs, input_ids = decode_layers(lm, [prompt])
    grid = probs[:, 0]  # [n_layers+1, pos, d_vocab]
    top = grid.argmax(dim=-1)  # [n_layers+1, pos]
    text = [[lm.tokenizer.decode([int(t)]).strip() for t in row] for row in top]
    rows = ["L0 embed", *(f"L{layer + 1} block {layer}" for layer in range(lm.n_layers))]
    return write_heatmap_svg(
        path, grid[:, :, answer], rows, token_labels(lm, input_ids[0]),
        title=f"logit lens: top-1 token, colour = p({lm.tokenizer.decode([answer]).strip()})",
        cell_text=text, vmin=0.0, vmax=1.0,
    )  # fmt: skip


def run(lm: LoadedModel, spec: Spec) -> Result:
    metrics: dict[str, float] = {}
    tasks: dict[str, TaskLens] = {}
    figures: list[Path] = []
    for task in spec.tasks:
        prompts = prompts_for(lm, task, spec.n_prompts, spec.seed)
        answers = [answer_id(lm, p.answer) for p in prompts]
        lens = lens_task(lm, [p.prompt for p in prompts], answers, spec.majority)
        tasks[task] = lens
        metrics[f"{task}.first_top1_layer"] = float(lens.first_top1_layer)
        metrics[f"{task}.final_top1_rate"] = float(lens.top1_rate[-1])
        for layer, prob in enumerate(lens.answer_prob.tolist()):
            metrics[f"{task}.answer_prob.L{layer}"] = prob
        if spec.out_dir is not None:
            figures.append(
                lens_figure(lm, prompts[0].prompt, answers[0], Path(spec.out_dir) / f"logit_lens_{task}.svg")
            )
    return Result(metrics=metrics, tasks=tasks, figures=figures)
