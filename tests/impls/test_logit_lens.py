from __future__ import annotations

from pathlib import Path

import torch

from mi_catalog.methods.runner import run_impl
from reference_impls import logit_lens as ll


def test_the_last_lens_layer_is_the_models_own_prediction(tiny) -> None:  # type: ignore[no-untyped-def]
    prompts = ["The Eiffel Tower is in the city of", "Big Ben is in the city of"]
    probs, _ = ll.decode_layers(tiny, prompts)
    own = tiny.logits(tiny.encode(prompts)).float().softmax(-1)
    assert torch.allclose(probs[-1], own, atol=1e-5)


def test_logit_lens_on_the_toy_forms_the_answer_across_layers(toy) -> None:  # type: ignore[no-untyped-def]
    for seed in range(10):
        result = run_impl("logit-lens", model=toy, task="facts", n=16, seed=seed)
        m = result.metrics
        assert m["final_top1_rate"] == 1.0
        assert 0 <= m["first_top1_layer"] < toy.n_layers - 1  # formed before the last layer
        assert result.output.intervals["answer_prob_final"][0] > 0.9
        assert result.output.intervals["final_top1_rate"] == (1.0, 1.0)


def test_figures_are_specs_rendered_by_the_runner(toy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run_impl("logit-lens", model=toy, task="induction", n=4, out_dir=tmp_path)
    svg = (tmp_path / "logit_lens_first_prompt.svg").read_text()
    assert svg.startswith("<svg") and "</svg>" in svg
    assert (tmp_path / "logit_lens_answer_prob.csv").read_text().splitlines()[0].startswith("layer,")
    assert str(tmp_path / "logit-lens.json") not in result.figures  # the JSON is written beside, not a figure
