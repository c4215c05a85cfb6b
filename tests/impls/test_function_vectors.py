"""function-vectors: on the toy's in-context mappings the function vector (top heads by indirect effect) makes
zero-shot queries perform the task (10 seeds), it carries the task's identity (the planted predecessor mapping
on number queries the toy answers with their successor), and heads with the least effect do not."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")

from support import strict_xfail_at  # noqa: E402

from mi_catalog.methods import steering as st  # noqa: E402
from mi_catalog.methods.contract import Bars  # noqa: E402
from mi_catalog.methods.data import RunData  # noqa: E402
from mi_catalog.methods.runner import run_impl  # noqa: E402
from mi_catalog.toy.tasks import PLANTED  # noqa: E402
from reference_impls import function_vectors as fvm  # noqa: E402

SEEDS = range(10)


_SEED_7 = (
    "recipe-v2 toy: zero-shot, it reads 'two', 'seven' and 'eight ->' as predecessor (p 0.59, 0.52, 0.63; v1 read "
    "only 'nine' so, besides 'twelve', which has no successor), 0.36 of the 11 predecessor inputs (card; v1 0.18); "
    "seed 7's 11 held-out predecessor queries draw 'two' 3 times, 'eight' twice and 'seven' once: 'predecessor "
    "before' 6/11 = 0.545 > 0.5. The other 9 seeds are 0.08-0.47.")  # fmt: skip


@pytest.mark.parametrize("seed", strict_xfail_at(SEEDS, {7: _SEED_7}))
def test_function_vectors_make_zero_shot_queries_do_the_task(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    result = run_impl("function-vectors", model=toy, task="icl", seed=seed, n=150, n_side=4)
    m = result.metrics
    assert m["icl_n_tasks"] == len(PLANTED.icl_mappings) and m["icl_accuracy"] >= 0.9
    assert m["zero_shot_before"] <= 0.9  # the number queries are ambiguous without demonstrations
    assert m["zero_shot_fv"] >= 0.95 and m["zero_shot_fv"] >= m["zero_shot_before"] + 0.08
    bars = next(f for f in result.output.figures if f.name == "per_task")
    assert isinstance(bars, Bars)
    value = dict(zip(bars.labels, bars.values, strict=True))
    # The toy answers a bare number with its successor: predecessor fails zero-shot, its FV fixes it.
    assert value["predecessor before"] <= 0.5 and value["predecessor FV"] >= 0.8
    assert result.output.improve is not None and result.output.improve.after == m["zero_shot_fv"]


def _vectors(toy, seed: int = 0):  # type: ignore[no-untyped-def]
    examples = toy.tasks.examples("icl", 150, seed=seed)
    data = RunData(task="icl", examples=examples, source=toy.tasks, seed=seed)
    spec = fvm.Spec(seed=seed)
    tasks, fit, _ = fvm.split_forms(data, spec)
    return spec, tasks, fit, fvm.fit_vectors(toy, spec, fit, tasks)


def _number_queries(mapping: dict[str, str]) -> list[tuple[str, str]]:
    both = sorted(set(PLANTED.icl_mappings["successor"]) & set(PLANTED.icl_mappings["predecessor"]))
    return [(f"{x} ->", mapping[x]) for x in both]


def _rate(toy, queries: list[tuple[str, str]], intervention: st.Intervention | None) -> float:  # type: ignore[no-untyped-def]
    ids = torch.tensor([toy.token_id(a) for _, a in queries])
    logits = st.next_token_logits(toy, [q for q, _ in queries], intervention)
    # Counted exactly: a float32 mean of 3 hits in 10 is 0.30000001, above a "≤ 0.3" bar it meets.
    return int((logits.argmax(-1).cpu() == ids).sum()) / len(queries)


def test_the_function_vector_carries_the_task_identity(toy) -> None:  # type: ignore[no-untyped-def]
    _, _, _, vecs = _vectors(toy)
    pred = _number_queries(PLANTED.icl_mappings["predecessor"])
    succ = _number_queries(PLANTED.icl_mappings["successor"])
    assert _rate(toy, pred, None) <= 0.3  # unsteered, "five ->" is read as successor
    for layer in (1, 2):
        add = st.SteeringVector(f"resid_post.{layer}", vecs.fv["predecessor"], 1.0, positions=-1)
        assert _rate(toy, pred, add) >= 0.8
        back = st.SteeringVector(f"resid_post.{layer}", vecs.fv["successor"], 1.0, positions=-1)
        assert _rate(toy, succ, back) >= 0.8


def test_heads_with_the_least_indirect_effect_do_not_carry_it(toy) -> None:  # type: ignore[no-untyped-def]
    spec, _, _, vecs = _vectors(toy, seed=1)
    flat = vecs.aie.flatten()
    n_heads = toy.n_heads
    bottom = [divmod(s, n_heads) for s in sorted(range(flat.numel()), key=lambda s: float(flat[s]))[: spec.n_heads]]
    assert not set(bottom) & set(vecs.heads)
    pred = _number_queries(PLANTED.icl_mappings["predecessor"])
    weak = fvm.function_vector(toy, vecs.head_mean["predecessor"], bottom)
    strong = vecs.fv["predecessor"]
    weak_rate = _rate(toy, pred, st.SteeringVector("resid_post.1", weak, 1.0, positions=-1))
    strong_rate = _rate(toy, pred, st.SteeringVector("resid_post.1", strong, 1.0, positions=-1))
    assert strong_rate >= 0.8 and weak_rate <= 0.4, (strong_rate, weak_rate)


def test_forms_zero_shot_and_shuffled_labels() -> None:
    spec = fvm.Spec()
    parsed = fvm.parse_icl("hot -> cold , big -> small , up -> down , fast ->", "->", ",")
    assert parsed == ([("hot", "cold"), ("big", "small"), ("up", "down")], "fast")
    assert fvm.parse_icl("the cat sat on the", "->", ",") is None
    from mi_catalog.tasks import TaskExample

    ex = TaskExample(task="icl", prompt="hot -> cold , big -> small , up -> down , fast ->", answer="slow")
    for seed in range(5):
        f = fvm.forms(ex, spec, random.Random(seed))
        assert f.zero_shot == "fast ->" and f.k_shot == ex.prompt
        demos, query = fvm.parse_icl(f.shuffled, "->", ",") or ([], "")
        assert query == "fast" and sorted(y for _, y in demos) == ["cold", "down", "small"]
        assert all(dict([("hot", "cold"), ("big", "small"), ("up", "down")])[x] != y for x, y in demos)  # all wrong
    plain = TaskExample(
        task="x", prompt="The capital of France is", answer=" Paris", corrupt_prompt="The capital of Japan is"
    )
    f = fvm.forms(plain, spec, random.Random(0))
    assert f.zero_shot == "is" and f.shuffled == "The capital of Japan is"


def test_head_patch_sets_only_that_head(toy) -> None:  # type: ignore[no-untyped-def]
    from mi_catalog.models.hooks import capture

    prompts = ["hot -> cold , big -> small , up ->", "one -> two , three -> four , five ->"]
    value = torch.full((toy.d_head,), 0.5)
    with fvm.HeadPatch(2, 1, value).apply(toy), capture(toy, ["head_out.2"]) as cache:
        toy.logits(toy.encode(prompts))
    with capture(toy, ["head_out.2"]) as plain:
        toy.logits(toy.encode(prompts))
    z, z0 = cache["head_out.2"], plain["head_out.2"]
    assert torch.allclose(z[:, -1, 1], value.expand(2, -1))
    assert torch.equal(z[:, -1, 0], z0[:, -1, 0]) and torch.equal(z[:, :-1], z0[:, :-1])
