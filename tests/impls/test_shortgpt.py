"""shortgpt: removing a block by hooks (output := input) equals really skipping it (identity module), on every tiny
family; the skipped block computes nothing and is put back; a removed block has Block Influence 0; on the toy the
lowest-BI block costs less accuracy to remove than the highest-BI block (the paper's premise), for 10 seeds."""

from __future__ import annotations

import pytest
import torch

from mi_catalog.methods import steering
from mi_catalog.methods.data import RunData
from mi_catalog.methods.runner import run_impl
from mi_catalog.models.hooks import hook_snapshot
from mi_catalog.models.weights import get_module
from reference_impls import shortgpt

SEEDS = range(10)
PROMPTS = ["The Eiffel Tower is in the city of", "Big Ben is in the city of", "The capital of Japan is"]


def test_hook_removal_equals_skipping_the_block_and_restores_it(tiny) -> None:  # type: ignore[no-untyped-def]
    batch = tiny.encode(PROMPTS)
    blocks = get_module(tiny.model, tiny.family.layers)
    originals = list(blocks)  # type: ignore[call-overload]
    hooks = hook_snapshot(tiny.model)
    calls: list[int] = []
    handle = originals[0].register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            full = tiny.logits(batch)
            for layers in [(0,), (tiny.n_layers - 1,), tuple(range(tiny.n_layers))]:
                with shortgpt.BlockSkip(layers).apply(tiny):
                    by_hooks = tiny.logits(batch)
                calls.clear()
                with shortgpt.skipped_blocks(tiny, layers):
                    skipped = tiny.logits(batch)
                assert (0 in layers) == (not calls)  # a skipped block computes nothing
                assert torch.allclose(by_hooks, skipped, atol=1e-5), layers
                assert not torch.allclose(skipped, full, atol=1e-4)
    finally:
        handle.remove()
    assert list(blocks) == originals  # type: ignore[call-overload]
    assert hook_snapshot(tiny.model) == hooks


def test_skipped_blocks_are_put_back_when_the_body_raises(tiny) -> None:  # type: ignore[no-untyped-def]
    blocks = get_module(tiny.model, tiny.family.layers)
    originals = list(blocks)  # type: ignore[call-overload]
    with pytest.raises(RuntimeError, match="boom"), shortgpt.skipped_blocks(tiny, [0]):
        raise RuntimeError("boom")
    assert list(blocks) == originals  # type: ignore[call-overload]


def test_a_removed_block_has_no_influence(tiny) -> None:  # type: ignore[no-untyped-def]
    bi = shortgpt.block_influence(tiny, PROMPTS)
    assert bi.shape == (len(PROMPTS), tiny.n_layers) and bool((bi > 1e-4).all())
    with shortgpt.BlockSkip((0,)).apply(tiny):
        skipped = shortgpt.block_influence(tiny, PROMPTS)
    assert torch.allclose(skipped[:, 0], torch.zeros(len(PROMPTS)), atol=1e-5)


def test_toy_timing_skips_compute_and_reports_a_speedup(toy) -> None:  # type: ignore[no-untyped-def]
    result = run_impl("shortgpt", model=toy, task="facts", seed=0, remove=2, repeats=4, n_eval=8)
    m = result.metrics
    assert m["blocks_removed"] == 2 and m["tokens_per_second_full"] > 0 and m["tokens_per_second_pruned"] > 0
    assert result.output.improve is not None and result.output.improve.metric.startswith("speedup")
    assert result.output.side_effects[0].name == "facts"


@pytest.mark.parametrize("seed", SEEDS)
def test_toy_lowest_influence_block_is_the_cheapest_to_remove(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    result = run_impl("shortgpt", model=toy, task="facts", seed=seed, timing=False, n=16, n_eval=16)
    m = result.metrics
    lowest, highest = int(m["bi_min_layer"]), int(m["bi_max_layer"])
    assert lowest != highest
    data = RunData(task="facts", examples=toy.tasks.examples("facts", 16, seed), source=toy.tasks, seed=seed)
    sets = shortgpt._eval_sets(data, 16)  # the same prompts the run scored

    def mean_accuracy(layer: int) -> float:
        skip = shortgpt.BlockSkip((layer,))
        return float(torch.stack([steering.correct(toy, exs, skip).mean() for exs in sets.values()]).mean())

    assert m["mean_accuracy_pruned"] == pytest.approx(mean_accuracy(lowest), abs=1e-6)
    assert mean_accuracy(lowest) > mean_accuracy(highest) + 0.1, (lowest, highest)
    assert m["speedup"] == pytest.approx(toy.n_layers / (toy.n_layers - 1))
