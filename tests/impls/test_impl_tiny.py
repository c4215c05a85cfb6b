"""Every reference implementation on a tiny random model of each family: smoke tests and invariants."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from reference_impls import activation_patching as ap
from reference_impls import logit_lens as ll


def test_logit_lens_runs_and_its_last_layer_is_the_model(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = ll.run(tiny, ll.Spec(n_prompts=4, out_dir=tmp_path))
    for task in ("facts", "induction"):
        lens = result.tasks[task]
        assert lens.answer_prob.shape == (tiny.n_layers + 1,)
        assert f"{task}.first_top1_layer" in result.metrics
        # The last lens layer decodes resid_post of the last block: exactly the model's own prediction.
        prompts = ll.prompts_for(tiny, task, 4, 0)
        batch = tiny.encode([p.prompt for p in prompts])
        probs = tiny.logits(batch)[:, -1].softmax(-1)
        answers = torch.tensor([ll.answer_id(tiny, p.answer) for p in prompts])
        expected = probs[torch.arange(len(prompts)), answers].mean()
        torch.testing.assert_close(lens.answer_prob[-1], expected, atol=1e-5, rtol=1e-4)
    assert len(result.figures) == 2
    for figure in result.figures:
        ET.parse(figure)  # well-formed SVG
        assert figure.with_suffix(".csv").is_file()


def test_patching_without_corruption_restores_exactly_the_clean_prob(tiny) -> None:  # type: ignore[no-untyped-def]
    spec = ap.Spec(tasks=("facts",), n_prompts=2, noise_scale=0.0)
    result = ap.run(tiny, spec)
    for trace in result.tasks["facts"].traces:
        assert trace.p_corrupt == pytest.approx(trace.p_clean, abs=1e-6)
        for kind, restored in trace.restored.items():
            torch.testing.assert_close(restored, torch.full_like(restored, trace.p_clean), atol=1e-5, rtol=1e-4,
                                       msg=kind)  # fmt: skip


def test_noise_corrupts_and_restoring_the_last_state_restores_everything(tiny) -> None:  # type: ignore[no-untyped-def]
    result = ap.run(tiny, ap.Spec(tasks=("facts",), n_prompts=2, noise_scale=30.0, kinds=("resid",)))
    for trace in result.tasks["facts"].traces:
        assert abs(trace.p_corrupt - trace.p_clean) > 1e-6  # the noise does something
        # The final block's output at the last position alone determines the prediction.
        assert float(trace.restored["resid"][-1, -1]) == pytest.approx(trace.p_clean, abs=1e-5)
        # Restoring a position the noise never touched (and that cannot see the subject: <bos>) does nothing.
        assert float(trace.restored["resid"][0, 0]) == pytest.approx(trace.p_corrupt, abs=1e-5)


def test_batched_restoration_equals_the_per_site_loop(tiny) -> None:  # type: ignore[no-untyped-def]
    spec = ap.Spec(tasks=("facts", "induction"), n_prompts=1, noise_scale=5.0)
    batched = ap.run(tiny, spec)
    looped = ap.run(tiny, ap.Spec(tasks=spec.tasks, n_prompts=1, noise_scale=5.0, batch_size=1))
    for task in spec.tasks:
        for one, loop in zip(batched.tasks[task].traces, looped.tasks[task].traces, strict=True):
            for kind in ap.KINDS:
                torch.testing.assert_close(one.restored[kind], loop.restored[kind], atol=1e-5, rtol=1e-4)


def test_patching_writes_figures_and_tensors(tiny, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = ap.run(tiny, ap.Spec(n_prompts=1, out_dir=tmp_path))
    assert {p.name for p in result.figures} >= {"activation_patching_facts_resid.svg",
                                                 "activation_patching_induction_heads.svg"}  # fmt: skip
    for figure in result.figures:
        ET.parse(figure)
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "activation_patching.safetensors"))
    assert saved["facts.heads"].shape == (tiny.n_layers, tiny.n_heads)
    assert all(isinstance(v, float) for v in result.metrics.values())
