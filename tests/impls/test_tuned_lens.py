"""tuned-lens: identity-initialised translators are the logit lens, the last layer is the model, and on the toy the
trained lens has a lower held-out KL to the final distribution than the logit lens, for every seed."""

from __future__ import annotations

import pytest
import torch

from mi_catalog.methods.data import RunData
from mi_catalog.methods.runner import run_impl
from reference_impls import tuned_lens as tl

TOY_TASKS = ("facts", "induction", "refusal", "sentiment", "language", "toxicity", "icl")


def _data(lm, task: str = "facts", n: int = 8) -> RunData:  # type: ignore[no-untyped-def]
    return RunData(task=task, examples=lm.tasks.examples(task, n, 0), source=lm.tasks, seed=0)


def test_untrained_translators_are_the_logit_lens_and_the_last_layer_is_the_model(tiny) -> None:  # type: ignore[no-untyped-def]
    out = tl.run(tiny, tl.Spec(steps=0, n_other=4), _data(tiny))
    torch.testing.assert_close(out.tensors["kl_tuned_lens"], out.tensors["kl_logit_lens"], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.tensors["answer_prob_tuned_lens"], out.tensors["answer_prob_logit_lens"])
    assert float(out.tensors["kl_logit_lens"][-1]) == pytest.approx(0.0, abs=1e-5)
    assert out.tensors["translator_A"].shape == (tiny.n_layers, tiny.d_model, tiny.d_model)


def test_training_lowers_the_fit_objective_and_leaves_the_model_alone(tiny) -> None:  # type: ignore[no-untyped-def]
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    data = _data(tiny)
    trained = tl.run(tiny, tl.Spec(steps=40, n_other=8, lr=1e-2), data)
    again = tl.run(tiny, tl.Spec(steps=40, n_other=8, lr=1e-2), data)
    assert trained.metrics == again.metrics  # deterministic for a seed
    assert all(p.grad is None for p in tiny.model.parameters())
    for k, v in tiny.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert trained.tensors["kl_tuned_lens"][-1] == pytest.approx(0.0, abs=1e-5)
    assert {f.object for f in trained.findings} == {"residual-stream", "token-embedding"}


@pytest.mark.parametrize("seed", range(10))
def test_toy_tuned_lens_beats_the_logit_lens_held_out(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    task = TOY_TASKS[seed % len(TOY_TASKS)]
    result = run_impl("tuned-lens", model=toy, task=task, seed=seed)
    m, ci = result.metrics, result.output.intervals
    assert ci["lens_kl_tuned_mean"][1] < ci["lens_kl_logit_mean"][0], (task, m)
    assert m["lens_kl_reduction"] >= 0.5, (task, m)
    kl_logit, kl_tuned = result.output.tensors["kl_logit_lens"], result.output.tensors["kl_tuned_lens"]
    assert bool((kl_tuned[:-1] < kl_logit[:-1]).all()), (kl_logit, kl_tuned)  # at every layer, not just on average
