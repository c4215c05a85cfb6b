"""ablation-importance: the batched ablations equal one ablation per unit (zero, mean, resample; last token via the
KV cache and every position), on every tiny family; on the toy the causally validated induction heads (read from the
card, re-validated here by ablating them together) rank first under resample ablation, for 10 seeds."""

from __future__ import annotations

import contextlib

import pytest
import torch

from mi_catalog.methods.data import RunData
from mi_catalog.methods.metrics import bootstrap_ci, logit_diff
from mi_catalog.methods.runner import run_impl
from mi_catalog.methods.steering import Unit
from mi_catalog.models.hooks import ablate, capture, patch
from mi_catalog.tasks import TaskExample
from reference_impls import ablation_importance as ai
from reference_impls._contrast import make_contrast

SEEDS = range(10)


def _pairs() -> list[TaskExample]:
    rows = [("The Eiffel Tower is in the city of", " Paris"), ("The Space Needle is in the city of", " Seattle"),
            ("The Colosseum is in the city of", " Rome"), ("Big Ben is in the city of", " London")]  # fmt: skip
    out = []
    for i, (prompt, answer) in enumerate(rows):
        other = rows[(i + 1) % len(rows)]
        out.append(TaskExample("custom", prompt, answer, corrupt_prompt=other[0], corrupt_answer=other[1]))
    return out


def _one_by_one(tiny, pair, unit: Unit, how: str, positions: str) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """The reference: one forward pass per unit with the model layer's own ablate/patch."""
    selection: dict[str, list[int]] = (
        {"heads": [unit.index]} if unit.site.startswith("head_out") else {"neurons": [unit.index]}
    )
    where = [-1] if positions == "last" else None
    with torch.no_grad():
        if how == "zero":
            with ablate(tiny, unit.site, "zero", positions=where, **selection):  # type: ignore[arg-type]
                logits = tiny.logits(pair.clean)
        elif how == "resample":
            with capture(tiny, [unit.site]) as ref:
                tiny.logits(pair.corrupt)
            with patch(tiny, unit.site, ref, positions=where, **selection):  # type: ignore[arg-type]
                logits = tiny.logits(pair.clean)
        else:
            with capture(tiny, [unit.site]) as cache:
                tiny.logits(pair.clean)
            act = cache[unit.site].float()
            real = (
                pair.clean.attention_mask.bool()
                if positions == "all"
                else torch.zeros_like(pair.clean.attention_mask, dtype=torch.bool)
            )
            if positions == "last":
                real[:, -1] = True
            mean = act[real].mean(0)  # [*unit shape]
            with patch(tiny, unit.site, mean.expand_as(act[:1]), positions=where, **selection):  # type: ignore[arg-type]
                logits = tiny.logits(pair.clean)
        base = logit_diff(tiny.logits(pair.clean), pair.answers, pair.others)
    return base - logit_diff(logits, pair.answers, pair.others)


@pytest.mark.parametrize("positions", ["last", "all"])
@pytest.mark.parametrize("how", ai.HOWS)
def test_batched_ablation_equals_one_ablation_per_unit(tiny, how: str, positions: str) -> None:  # type: ignore[no-untyped-def]
    pair = make_contrast(tiny, _pairs(), seed=0)
    units = [u for u in ai.all_units(tiny) if u.index in (0, 1)][:6] + ai.all_units(tiny, "neurons")[-3:]
    ablator = ai.make_ablator(tiny, pair, how, positions, batch_size=5, sites=[u.site for u in units])
    batched = ablator.drops([(u,) for u in units])  # [n, U], several chunks of 1 unit set (5 rows // 4 prompts)
    for col, unit in enumerate(units):
        expected = _one_by_one(tiny, pair, unit, how, positions)
        assert torch.allclose(batched[:, col], expected.float().cpu(), atol=1e-4), (unit, batched[:, col], expected)
    assert batched.abs().sum() > 0  # ablation changed something: the check can fail


def test_a_unit_set_is_ablated_together(tiny) -> None:  # type: ignore[no-untyped-def]
    pair = make_contrast(tiny, _pairs(), seed=0)
    assert pair.others is not None
    a, b = Unit("head_out.0", 0), Unit("head_out.1", 1)
    ablator = ai.make_ablator(tiny, pair, "zero", "all", batch_size=64, sites=[a.site, b.site])
    together = ablator.drops([(a, b)])[:, 0]
    with torch.no_grad(), ablate(tiny, a.site, "zero", heads=[0]), ablate(tiny, b.site, "zero", heads=[1]):
        logits = tiny.logits(pair.clean)
    base = logit_diff(tiny.logits(pair.clean), pair.answers, pair.others)
    assert torch.allclose(together, (base - logit_diff(logits, pair.answers, pair.others)).cpu(), atol=1e-4)


def test_lower_bounds_equal_bootstrap_ci() -> None:
    x = torch.randn(12, 30, generator=torch.Generator().manual_seed(0))
    lower = ai.lower_bounds(x, seed=5)
    assert all(bootstrap_ci(x[:, u], seed=5)[0] == pytest.approx(float(lower[u]), abs=1e-9) for u in range(30))


def test_bad_settings_are_clear_errors(tiny) -> None:  # type: ignore[no-untyped-def]
    data = RunData(task="custom", examples=_pairs())
    with pytest.raises(ValueError, match="how="):
        ai.run(tiny, ai.Spec(how="shrink"), data)
    with pytest.raises(ValueError, match="positions="):
        ai.run(tiny, ai.Spec(positions="first"), data)


def _card_induction_heads() -> set[tuple[int, int]]:
    from mi_catalog.toy import card

    return {(int(h[0]), int(h[1])) for h in card()["mechanisms"]["induction_heads"]}


def test_card_induction_heads_are_causally_necessary(toy) -> None:  # type: ignore[no-untyped-def]
    """The ground truth below: mean-ablating the card's induction heads together breaks copying."""
    heads = _card_induction_heads()
    assert heads
    examples = toy.tasks.examples("induction", 64, seed=321)
    batch = toy.encode([ex.prompt for ex in examples])
    answers = torch.tensor([toy.token_id(ex.answer) for ex in examples])

    def accuracy() -> float:
        return float((toy.logits(batch)[:, -1].argmax(-1) == answers).float().mean())

    base = accuracy()
    with contextlib.ExitStack() as stack:
        for layer in sorted({lay for lay, _ in heads}):
            stack.enter_context(
                ablate(toy, f"head_out.{layer}", how="mean", heads=[h for lay, h in heads if lay == layer])
            )
        without = accuracy()
    assert base > 0.85 and without < 0.3, (base, without)


@pytest.mark.parametrize("seed", SEEDS)
def test_toy_resample_ablation_ranks_the_induction_heads_first(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    heads = _card_induction_heads()
    result = run_impl("ablation-importance", model=toy, task="induction", n=16, seed=seed, units="heads")
    top = [(f.layer, f.index) for f in result.output.findings if f.object == "attention-head"][: len(heads)]
    assert set(top) == heads, top
    ranked_heads = [f for f in result.output.findings if f.object == "attention-head"]
    weakest_induction, strongest_other = ranked_heads[len(heads) - 1], ranked_heads[len(heads)]
    assert weakest_induction.interval is not None and weakest_induction.interval[0] > strongest_other.score + 1.0
    # Redundant heads: together they matter far more than the best one alone.
    assert result.metrics["ablation_head_set_drop"] > 2 * result.metrics["ablation_top_head_drop"]


@pytest.mark.parametrize("how", ["zero", "mean"])
@pytest.mark.parametrize("seed", SEEDS)
def test_toy_zero_and_mean_ablation_rank_induction_heads_above_later_layers(toy, seed: int, how: str) -> None:  # type: ignore[no-untyped-def]
    """Zero/mean ablation also knock out the layer-0 heads that feed the induction heads (ranked first, rightly:
    they are single points of failure); every induction head still beats every head of the later layers."""
    heads = _card_induction_heads()
    result = run_impl("ablation-importance", model=toy, task="induction", n=16, seed=seed, units="heads", how=how)
    drop = result.output.tensors["head_drop"].mean(0)  # [L, H]
    last = max(layer for layer, _ in heads)
    later = drop[last + 1 :]
    assert later.numel() > 0
    assert min(float(drop[layer, h]) for layer, h in heads) > float(later.max()), drop


def test_toy_full_run_is_fast_and_scores_every_unit(toy) -> None:  # type: ignore[no-untyped-def]
    result = run_impl("ablation-importance", model=toy, task="induction", seed=0)
    n_heads, d_mlp = ai.site_sizes(toy)
    assert result.metrics["n_units"] == toy.n_layers * (n_heads + d_mlp)
    assert result.output.tensors["neuron_drop"].shape == (16, toy.n_layers, d_mlp)
    assert result.seconds < 20
    objects = {f.object for f in result.output.findings}
    assert objects == {"attention-head", "neuron"}
