"""Logit lens — nostalgebraist, *interpreting GPT: the logit lens* (LessWrong, 2020).

The paper decodes the residual stream after every block through the model's own final norm and
unembedding, ``logits^l = W_U · ln_final(x^l)``, and watches the prediction form layer by layer: the
answer typically becomes top-1 well before the last layer. (Survey: object *residual stream*, method
*vocab projection*.)

What we do: decode the embeddings (``resid_pre.0``) and every block's output (``resid_post.l``) at the
last position of each prompt; report the answer's probability per layer (with a bootstrap interval over
prompts) and the first layer where it is top-1 for most prompts. We simplify: the last position only for
the metrics (the figure shows every position of one prompt); no learned translators (that is the tuned lens).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods.contract import Curve, Finding, Heatmap, Output, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import mean_ci
from mi_catalog.models.hooks import capture
from mi_catalog.models.loading import LoadedModel
from mi_catalog.models.weights import unembed
from reference_impls._common import answer_ids, token_labels

IMPL = ImplInfo(
    id="logit-lens",
    title="Logit lens: decode the residual stream at every layer",
    objects=("residual-stream",),
    methods=("vocab-projection",),
    steering=(),
    reproduces=("interpreting-gpt-the-logit-lens",),
    tasks=("facts", "induction", "icl", "sentiment", "language", "refusal", "toxicity", "ioi", "multilingual"),
    needs=(),
    metrics=("n_prompts", "first_top1_layer", "final_top1_rate", "answer_prob_final", "answer_prob_mid"),
)


@dataclass
class Spec:
    n: int = 16
    seed: int = 0
    majority: float = 0.5  # "the answer is top-1 at layer l" when it is for at least this share of prompts


def lens_sites(lm: LoadedModel) -> list[str]:
    """The embeddings (block 0's input), then every block's output: n_layers + 1 points."""
    return ["resid_pre.0", *(f"resid_post.{layer}" for layer in range(lm.n_layers))]


def decode_layers(lm: LoadedModel, prompts: list[str], last_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Lens probabilities → ([n_layers+1, batch, pos, d_vocab], input_ids [batch, pos]); ``last_only`` decodes
    just the last position (pos = 1): the unembedding is the expensive part on a large vocabulary."""
    batch = lm.encode(prompts)
    sites = lens_sites(lm)
    with capture(lm, sites) as cache:
        lm.logits(batch)
    resid = torch.stack([cache[s][:, -1:] if last_only else cache[s] for s in sites])  # [L+1, batch, pos, d_model]
    with torch.no_grad():
        probs = unembed(lm, resid).float().softmax(dim=-1)
    return probs, batch.input_ids


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    examples = data.examples
    answers = answer_ids(lm, examples)  # [batch]
    probs, _ = decode_layers(lm, data.prompts, last_only=True)
    last = probs[:, :, -1]  # [n_layers+1, batch, d_vocab]; left padding puts every prompt's end here
    rows = torch.arange(len(examples))
    answer_prob = last[:, rows, answers.cpu()]  # [n_layers+1, batch]
    top1 = (last.argmax(dim=-1) == answers.cpu()).float()  # [n_layers+1, batch]
    rate = top1.mean(dim=1)
    # Lens point 0 is the embeddings; point l+1 is block l's output (layer l in the one convention).
    reached = [layer for layer in range(lm.n_layers) if float(rate[layer + 1]) >= spec.majority]
    mid = lm.n_layers // 2
    final_mean, final_ci = mean_ci(answer_prob[-1], seed=spec.seed)
    mid_mean, mid_ci = mean_ci(answer_prob[mid + 1], seed=spec.seed)
    means = answer_prob.mean(dim=1)
    cis = [mean_ci(answer_prob[i], seed=spec.seed)[1] for i in range(answer_prob.shape[0])]
    findings = [Finding("residual-stream", layer, None, float(means[layer + 1]), f"resid_post.{layer}", cis[layer + 1])
                for layer in range(lm.n_layers)]  # fmt: skip
    findings.append(Finding("token-embedding", None, None, float(means[0]), "embed", cis[0]))
    x = list(range(-1, lm.n_layers))  # -1 = the embeddings
    output = Output(
        metrics={"n_prompts": len(examples), "first_top1_layer": reached[0] if reached else -1,
                 "final_top1_rate": round(float(rate[-1]), 6), "answer_prob_final": final_mean,
                 "answer_prob_mid": mid_mean},
        intervals={"answer_prob_final": final_ci, "answer_prob_mid": mid_ci,
                   "final_top1_rate": mean_ci(top1[-1], seed=spec.seed)[1]},
        findings=ranked(findings),
        tensors={"answer_prob": answer_prob, "top1_rate": rate},
        figures=[
            Curve("answer_prob", f"logit lens on {data.task}: p(answer) by layer (-1 = embeddings)",
                  x=[float(v) for v in x], series={"p(answer)": means.tolist(), "top-1 rate": rate.tolist()},
                  x_label="layer", y_label="probability",
                  bands={"p(answer)": ([c[0] for c in cis], [c[1] for c in cis])}),
            _first_prompt_grid(lm, *decode_layers(lm, data.prompts[:1]), int(answers[0]), data.task),
        ],
        notes=["Reproduces the logit lens as published: ln_final and W_U applied to each block's output."],
    )
    return output


def _first_prompt_grid(lm: LoadedModel, probs: torch.Tensor, input_ids: torch.Tensor, answer: int, task: str) -> Heatmap:
    """Layer × position grid of the first prompt: top-1 token per cell, coloured by p(answer)."""
    real = input_ids[0] != (lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else -1)
    start = int(real.int().argmax()) if bool(real.any()) else 0
    grid = probs[:, 0, start:]  # [n_layers+1, pos, d_vocab]
    top = grid.argmax(dim=-1)
    text = [[lm.tokenizer.decode([int(t)]).strip() for t in row] for row in top]
    rows = ["embed", *(f"L{layer}" for layer in range(lm.n_layers))]
    return Heatmap(
        "first_prompt", f"logit lens ({task}, first prompt): top-1 token, colour = p({lm.tokenizer.decode([answer]).strip()})",
        values=grid[:, :, answer].tolist(), row_labels=rows, col_labels=token_labels(lm, input_ids[0, start:]),
        cell_text=text, vmin=0.0, vmax=1.0,
    )  # fmt: skip
