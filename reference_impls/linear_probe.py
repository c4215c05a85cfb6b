"""Linear probes per layer and per head — the probing method family (Alain & Bengio 2016; per-head probes as in
Li et al. 2023, *Inference-Time Intervention*, §3).

The method: fit a logistic-regression classifier on a frozen model's activations at one site to predict a
property of the input, and read its held-out accuracy as "the property is linearly decodable here". ITI fits
one probe per attention head (the head's output before W_O, at the last token) and ranks heads by held-out
accuracy; the residual-stream version fits one probe per layer. The difference of class means is the
simplest direction (the "mass-mean" probe of Marks & Tegmark 2023; the refusal direction of Arditi et al. 2024).

What we do: binary labels from ``TaskExample.label`` (the two classes; the positive class is the first in
sorted order, e.g. ``harmful``); features at the last token of ``resid_post.l`` (one probe per layer) and
of ``head_out.l`` per head (one probe per head); each probe is an L2-regularised logistic regression on
standardised features (fit-split mean/std), trained full-batch with L-BFGS on ``data.fit_test()[0]`` and
scored on the held-out half: accuracy and AUROC per site with bootstrap intervals over held-out prompts.
Per layer we also score the difference-of-means direction (fit split) as a 1-D score (held-out AUROC).
A control probe with shuffled fit labels at the best layer must stay near chance (Hewitt & Liang 2019's
point: a probe that decodes random labels measures the probe, not the model).

Simplifications: the last token only; no hyper-parameter search for the L2 strength; with more than two
labels only the examples of the first two (sorted) labels are used (a pairwise probe), said in the notes.
This implements the method family; it does not reproduce one paper's numbers (ITI's intervention step is
not part of it), so ``reproduces`` is empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mi_catalog.impl_info import ImplInfo
from mi_catalog.methods.contract import Curve, Finding, Heatmap, Output, ranked
from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import auroc, mean_ci
from mi_catalog.models.hooks import capture
from mi_catalog.models.loading import LoadedModel
from mi_catalog.tasks import TaskDataError, TaskExample
from reference_impls._common import head_label

IMPL = ImplInfo(
    id="linear-probe",
    title="Linear probes per layer (residual stream) and per head, with the difference-of-means direction",
    objects=("residual-stream", "attention-head"),
    methods=("probing",),
    steering=(),
    reproduces=(),
    tasks=("refusal", "sentiment", "toxicity", "language"),
    needs=(),
    metrics=(
        "n_prompts",
        "n_fit",
        "n_test",
        "probe_majority_rate",
        "probe_best_layer",
        "probe_best_layer_accuracy",
        "probe_best_layer_auroc",
        "probe_best_head_accuracy",
        "probe_best_head_auroc",
        "probe_control_accuracy",
        "diffmean_best_layer",
        "diffmean_best_auroc",
    ),
)


@dataclass
class Spec:
    n: int = 64
    seed: int = 0
    steps: int = 100  # L-BFGS iterations (full batch)
    l2: float = 1e-2  # weight decay on the probe weights (features are standardised)
    fit_fraction: float = 0.5
    n_boot: int = 500  # bootstrap resamples of the held-out prompts for the AUROC intervals


def binary_labels(examples: list[TaskExample]) -> tuple[list[TaskExample], torch.Tensor, tuple[str, str]]:
    """Keep the examples of the first two (sorted) labels → (examples, y [n] float, (positive, negative))."""
    classes = sorted({ex.label for ex in examples if ex.label is not None})
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "no labels"
        raise TaskDataError(
            f"linear-probe needs examples with two label classes; task {examples[0].task!r} has {found} "
            "(use a task whose examples carry two labels — on the toy refusal, sentiment, toxicity, language; a "
            "model's correct-prompt filter can leave one class only — or --prompts FILE.jsonl with a 'label' field)"
        )
    positive, negative = classes[0], classes[1]
    kept = [ex for ex in examples if ex.label in (positive, negative)]
    y = torch.tensor([1.0 if ex.label == positive else 0.0 for ex in kept])
    return kept, y, (positive, negative)


def last_token_features(lm: LoadedModel, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual stream per layer [n_layers, n, d_model] and head outputs per head [n_layers*n_heads, n, d_head],
    at the last token (left padding puts every prompt's end there)."""
    sites = [f"{name}.{layer}" for layer in range(lm.n_layers) for name in ("resid_post", "head_out")]
    batch = lm.encode(prompts)
    with capture(lm, sites) as cache:
        lm.logits(batch)
    resid = torch.stack([cache[f"resid_post.{layer}"][:, -1] for layer in range(lm.n_layers)]).float()
    heads = torch.stack([cache[f"head_out.{layer}"][:, -1] for layer in range(lm.n_layers)]).float()  # [L, n, H, dh]
    heads = heads.permute(0, 2, 1, 3).reshape(lm.n_layers * lm.n_heads, len(prompts), lm.d_head)
    return resid, heads


def fit_probes(
    x: torch.Tensor, y: torch.Tensor, l2: float, steps: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Independent logistic regressions, one per site: x [S, n, d], y [n] → (w [S, d], b [S], mean, std).

    Features are standardised with the fit split's statistics; the losses are summed (the probes share no
    parameter, so the sum's minimum is every probe's minimum) and minimised full-batch with L-BFGS.
    """
    mean = x.mean(dim=1, keepdim=True)  # [S, 1, d]
    std = x.std(dim=1, keepdim=True).clamp(min=1e-6)
    z = ((x - mean) / std).double()
    target = y.double()[None, :].expand(z.shape[0], -1)  # [S, n]
    w = torch.zeros(z.shape[0], z.shape[2], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(z.shape[0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = torch.einsum("snd,sd->sn", z, w) + b[:, None]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=1)
        total = (loss + 0.5 * l2 * (w * w).sum(dim=1)).sum()
        total.backward()
        return total

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach(), mean, std


def probe_scores(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """Probe logits [S, n] for features x [S, n, d]."""
    z = ((x - mean) / std).double()
    return torch.einsum("snd,sd->sn", z, w) + b[:, None]


def auroc_ci(scores: torch.Tensor, y: torch.Tensor, seed: int, n_boot: int) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUROC over prompts (resamples lacking a class are skipped)."""
    gen = torch.Generator().manual_seed(seed)
    n = scores.shape[0]
    values = []
    for _ in range(n_boot):
        idx = torch.randint(0, n, (n,), generator=gen)
        value = auroc(scores[idx], y[idx])
        if value == value:  # not NaN
            values.append(value)
    if not values:
        return (float("nan"), float("nan"))
    q = torch.quantile(torch.tensor(values, dtype=torch.float64), torch.tensor([0.025, 0.975], dtype=torch.float64))
    return (round(float(q[0]), 6), round(float(q[1]), 6))


@dataclass
class SiteScores:
    accuracy: torch.Tensor  # [S]
    auroc: torch.Tensor  # [S]
    correct: torch.Tensor  # [S, n_test] bool
    scores: torch.Tensor  # [S, n_test] held-out probe logits


def score_sites(
    x_fit: torch.Tensor, y_fit: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, spec: Spec
) -> SiteScores:
    w, b, mean, std = fit_probes(x_fit, y_fit, spec.l2, spec.steps)
    scores = probe_scores(x_test, w, b, mean, std)  # [S, n_test]
    correct = (scores > 0) == y_test.bool()[None, :]
    acc = correct.double().mean(dim=1)
    aur = torch.tensor([auroc(s, y_test) for s in scores], dtype=torch.float64)
    return SiteScores(acc, aur, correct, scores)


def run(lm: LoadedModel, spec: Spec, data: RunData) -> Output:
    examples, y, (positive, negative) = binary_labels(data.examples)
    fit, test = data.fit_test(spec.fit_fraction)
    fit_ids, test_ids = {id(ex) for ex in fit}, {id(ex) for ex in test}
    kept_fit = [i for i, ex in enumerate(examples) if id(ex) in fit_ids]
    kept_test = [i for i, ex in enumerate(examples) if id(ex) in test_ids]
    if len(set(y[kept_test].tolist())) < 2 or len(set(y[kept_fit].tolist())) < 2:
        raise TaskDataError(f"too few examples ({len(examples)}) for a held-out split with both classes; raise --n")
    data.progress("capture", 0, 1)
    resid, heads = last_token_features(lm, [ex.prompt for ex in examples])  # [L, n, d], [L*H, n, dh]
    data.progress("capture", 1, 1)
    fi, ti = torch.tensor(kept_fit), torch.tensor(kept_test)
    y_fit, y_test = y[fi], y[ti]
    layers = score_sites(resid[:, fi], y_fit, resid[:, ti], y_test, spec)
    data.progress("probes", 1, 2)
    head = score_sites(heads[:, fi], y_fit, heads[:, ti], y_test, spec)
    data.progress("probes", 2, 2)

    # Difference of means (fit split, raw features) as a 1-D score on the held-out split.
    pos, neg = y_fit.bool(), ~y_fit.bool()
    direction = resid[:, fi][:, pos].mean(dim=1) - resid[:, fi][:, neg].mean(dim=1)  # [L, d_model]
    dm_scores = torch.einsum("lnd,ld->ln", resid[:, ti].double(), direction.double())
    dm_auroc = torch.tensor([auroc(s, y_test) for s in dm_scores], dtype=torch.float64)

    # Control: shuffled fit labels at the best layer (must stay near chance).
    best_layer = int(torch.argmax(layers.accuracy + 1e-3 * layers.auroc))  # ties → higher AUROC, then lower layer
    gen = torch.Generator().manual_seed(spec.seed)
    shuffled = y_fit[torch.randperm(y_fit.shape[0], generator=gen)]
    control = score_sites(
        resid[best_layer : best_layer + 1, fi], shuffled, resid[best_layer : best_layer + 1, ti], y_test, spec
    )

    best_head = int(torch.argmax(head.accuracy + 1e-3 * head.auroc))
    best_dm = int(torch.argmax(dm_auroc))
    acc_ci = [mean_ci(c.double(), seed=spec.seed)[1] for c in layers.correct]
    head_ci = [mean_ci(c.double(), seed=spec.seed)[1] for c in head.correct]
    findings = [
        Finding("residual-stream", layer, None, float(layers.accuracy[layer]), f"resid_post.{layer}", acc_ci[layer])
        for layer in range(lm.n_layers)
    ]
    for s in range(lm.n_layers * lm.n_heads):
        layer, h = divmod(s, lm.n_heads)
        findings.append(Finding("attention-head", layer, h, float(head.accuracy[s]), head_label(layer, h), head_ci[s]))
    n_test = len(kept_test)
    others = sorted({str(ex.label) for ex in data.examples if ex.label not in (positive, negative, None)})
    dropped = (
        [f"More than two labels: only {positive!r} vs {negative!r} is probed; {', '.join(others)} left out."]
        if others
        else []
    )
    majority = max(float(y_test.mean()), 1 - float(y_test.mean()))
    metrics = {
        "n_prompts": len(examples),
        "n_fit": len(kept_fit),
        "n_test": n_test,
        "probe_majority_rate": round(majority, 6),
        "probe_best_layer": best_layer,
        "probe_best_layer_accuracy": round(float(layers.accuracy[best_layer]), 6),
        "probe_best_layer_auroc": round(float(layers.auroc[best_layer]), 6),
        "probe_best_head_accuracy": round(float(head.accuracy[best_head]), 6),
        "probe_best_head_auroc": round(float(head.auroc[best_head]), 6),
        "probe_control_accuracy": round(float(control.accuracy[0]), 6),
        "diffmean_best_layer": best_dm,
        "diffmean_best_auroc": round(float(dm_auroc[best_dm]), 6),
    }
    intervals = {
        "probe_best_layer_accuracy": acc_ci[best_layer],
        "probe_best_layer_auroc": auroc_ci(layers.scores[best_layer], y_test, spec.seed, spec.n_boot),
        "probe_best_head_accuracy": head_ci[best_head],
        "probe_best_head_auroc": auroc_ci(head.scores[best_head], y_test, spec.seed, spec.n_boot),
        "probe_control_accuracy": mean_ci(control.correct[0].double(), seed=spec.seed)[1],
        "diffmean_best_auroc": auroc_ci(dm_scores[best_dm], y_test, spec.seed, spec.n_boot),
    }
    x = [float(layer) for layer in range(lm.n_layers)]
    head_grid = head.accuracy.reshape(lm.n_layers, lm.n_heads)
    return Output(
        metrics=metrics,
        intervals=intervals,
        findings=ranked(findings),
        tensors={
            "layer_accuracy": layers.accuracy.float(),
            "layer_auroc": layers.auroc.float(),
            "head_accuracy": head_grid.float(),
            "head_auroc": head.auroc.reshape(lm.n_layers, lm.n_heads).float(),
            "diffmean_auroc": dm_auroc.float(),
            "diffmean_direction": direction.float(),
        },
        figures=[
            Curve(
                "layers",
                f"linear probes on {data.task} ({positive} vs {negative}), held-out, resid_post at the last token",
                x=x,
                series={
                    "probe accuracy": layers.accuracy.tolist(),
                    "probe AUROC": layers.auroc.tolist(),
                    "diff-of-means AUROC": dm_auroc.tolist(),
                },
                x_label="layer",
                y_label="held-out score",
                bands={"probe accuracy": ([c[0] for c in acc_ci], [c[1] for c in acc_ci])},
            ),
            Heatmap.per_head(
                "heads",
                f"per-head probes on {data.task}: held-out accuracy (head_out at the last token)",
                head_grid.tolist(),
                vmin=0.0,
                vmax=1.0,
            ),
        ],
        notes=[
            f"Applies the probing method family (per-layer residual probes; per-head probes as in ITI) to "
            f"{positive!r} vs {negative!r}; fit on {len(kept_fit)} prompts, scored on {n_test} held-out prompts. "
            "Not a reproduction of one paper's numbers.",
            *dropped,
        ],
    )
