"""linear-probe: its own invariants (tiny models, synthetic data) and the toy's planted truth across seeds."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch

from mi_catalog.methods.data import RunData
from mi_catalog.methods.runner import run_impl
from mi_catalog.tasks import TaskDataError, TaskExample
from reference_impls import linear_probe as lp

SEEDS = range(10)


def _tiny_labelled() -> list[TaskExample]:
    """English facts prompts (known to the tiny tokenizer), labelled by relation: city vs other."""
    from mi_catalog.models.prompts import FACTS

    rows = [(p, a, "city" if "city" in p else "other") for p, _s, a in FACTS]
    return [TaskExample("custom", p, a, label=label) for p, a, label in rows * 2]


def test_probe_fitting_separates_separable_data_and_not_random_labels() -> None:
    gen = torch.Generator().manual_seed(0)
    y = (torch.arange(80) % 2).float()
    x = torch.randn(2, 80, 6, generator=gen)
    x[0, :, 0] += 3.0 * (2 * y - 1)  # site 0 carries the label, site 1 does not
    w, b, mean, std = lp.fit_probes(x[:, :40], y[:40], l2=1e-2, steps=50)
    acc = ((lp.probe_scores(x[:, 40:], w, b, mean, std) > 0) == y[40:].bool()).float().mean(dim=1)
    assert float(acc[0]) >= 0.95
    assert float(acc[1]) <= 0.75


def test_runs_on_every_tiny_family_with_a_labelled_set(tiny) -> None:  # type: ignore[no-untyped-def]
    data = RunData(task="custom", examples=_tiny_labelled(), seed=0)
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    out = lp.run(tiny, lp.Spec(steps=20, n_boot=50), data)
    assert len(out.findings) == tiny.n_layers * (1 + tiny.n_heads)
    assert {f.object for f in out.findings} == {"residual-stream", "attention-head"}
    assert all(0.0 <= f.score <= 1.0 for f in out.findings)
    assert out.findings == sorted(out.findings, key=lambda f: -f.score)
    assert out.tensors["head_accuracy"].shape == (tiny.n_layers, tiny.n_heads)
    again = lp.run(tiny, lp.Spec(steps=20, n_boot=50), data)
    assert out.metrics == again.metrics
    for k, v in tiny.model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_unlabelled_task_is_a_clear_error(tiny) -> None:  # type: ignore[no-untyped-def]
    examples = [TaskExample("facts", "The capital of Japan is", " Tokyo")] * 4
    with pytest.raises(TaskDataError, match="two label classes"):
        lp.run(tiny, lp.Spec(), RunData(task="facts", examples=examples))


def _shuffled(examples: list[TaskExample], seed: int) -> list[TaskExample]:
    labels = [ex.label for ex in examples]
    random.Random(seed).shuffle(labels)
    return [replace(ex, label=label) for ex, label in zip(examples, labels, strict=True)]


@pytest.mark.parametrize("task", ["refusal", "sentiment"])
def test_toy_task_decodable_at_the_cards_refusal_layer(toy, task: str) -> None:  # type: ignore[no-untyped-def]
    """Planted: refusal and sentiment labels are decodable from the residual at the card's refusal-direction layer
    (measured by ablation, a different method), held out, for every seed."""
    layer = toy.card["mechanisms"]["refusal_direction"]["best_layer"]
    accuracies = []
    for seed in SEEDS:
        result = run_impl("linear-probe", model=toy, task=task, seed=seed, n=48, n_boot=50)
        accuracies.append(float(result.output.tensors["layer_accuracy"][layer]))
        assert result.metrics["diffmean_best_auroc"] >= 0.9
    assert min(accuracies) >= 0.9, accuracies


@pytest.mark.parametrize("task", ["refusal", "sentiment"])
def test_toy_shuffled_labels_stay_at_chance(toy, task: str) -> None:  # type: ignore[no-untyped-def]
    """The control that must fail: with labels shuffled across prompts nothing is decodable."""
    layer = toy.card["mechanisms"]["refusal_direction"]["best_layer"]
    accuracies, controls = [], []
    for seed in SEEDS:
        examples = _shuffled(toy.tasks.examples(task, 48, seed), seed)
        out = lp.run(toy, lp.Spec(seed=seed, n_boot=50), RunData(task=task, examples=examples, seed=seed))
        accuracies.append(float(out.tensors["layer_accuracy"][layer]))
        real = run_impl("linear-probe", model=toy, task=task, seed=seed, n=48, n_boot=50)
        controls.append(real.metrics["probe_control_accuracy"])
    assert max(accuracies) < 0.8, accuracies
    assert 0.35 <= sum(accuracies) / len(accuracies) <= 0.65, accuracies
    assert 0.35 <= sum(controls) / len(controls) <= 0.65, controls
