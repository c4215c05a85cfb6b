"""function-vectors: on the toy's in-context mappings the function vector (top heads by indirect effect) makes
zero-shot queries perform the task (10 seeds), it carries the task's identity (successor and predecessor share their
number inputs: each mapping's FV switches the numbers the toy reads as the other mapping), and heads with the least
effect do not."""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")

from mi_catalog.methods import steering as st  # noqa: E402
from mi_catalog.methods.contract import Bars  # noqa: E402
from mi_catalog.methods.data import RunData  # noqa: E402
from mi_catalog.methods.runner import run_impl  # noqa: E402
from mi_catalog.toy.tasks import PLANTED  # noqa: E402
from reference_impls import function_vectors as fvm  # noqa: E402

SEEDS = range(10)


# Zero-shot, a shared number ("seven ->") is a near coin flip between successor and predecessor: the toy was trained
# on both mappings equally, and p(successor), p(predecessor) are 0.35-0.65 each on every shared input (recipes v2
# and v3). Which one wins the argmax is an accident of training: v2 read 3 of the 10 as predecessor, v3 reads 6
# ("predecessor before" 0.41-0.73 over the 10 seeds, was 0.08-0.55), so neither mapping is a fixed zero-shot failure.
# The premise is taken by construction instead: the held-out queries the unsteered toy gets wrong (before = 0 on them;
# every one is a number query, 11-18 a seed on v3, 9-19 on v2) are where a vector has to carry the task.


def _held_out(toy, seed: int) -> tuple[list[str], dict[str, list[fvm.Forms]]]:  # type: ignore[no-untyped-def]
    """The held-out half run_impl evaluates (same examples, same split): tasks and their forms."""
    data = RunData(task="icl", examples=toy.tasks.examples("icl", 150, seed=seed), source=toy.tasks, seed=seed)
    tasks, _, test = fvm.split_forms(data, fvm.Spec(seed=seed))
    return tasks, test


@pytest.mark.parametrize("seed", SEEDS)
def test_function_vectors_make_zero_shot_queries_do_the_task(toy, seed: int) -> None:  # type: ignore[no-untyped-def]
    result = run_impl("function-vectors", model=toy, task="icl", seed=seed, n=150, n_side=4)
    m = result.metrics
    assert m["icl_n_tasks"] == len(PLANTED.icl_mappings) and m["icl_accuracy"] >= 0.9
    assert m["zero_shot_before"] <= 0.9  # the number queries are ambiguous without demonstrations
    assert m["zero_shot_fv"] >= 0.95 and m["zero_shot_fv"] >= m["zero_shot_before"] + 0.08
    bars = next(f for f in result.output.figures if f.name == "per_task")
    assert isinstance(bars, Bars)
    value = dict(zip(bars.labels, bars.values, strict=True))
    assert value["predecessor FV"] >= 0.8 and value["successor FV"] >= 0.8
    # The queries the toy fails zero-shot (the shared numbers it reads as the other mapping): each task's FV, at
    # the layer the run chose, must answer >= 0.8 of them.
    tasks, test = _held_out(toy, seed)
    assert tasks == sorted(PLANTED.icl_mappings)
    fvs = result.output.tensors["function_vectors"]
    failed = fixed = 0
    for t in tasks:
        wrong = [f for f, ok in zip(test[t], fvm.accuracy(toy, test[t], "zero_shot"), strict=True) if not ok]
        assert not wrong or t in ("successor", "predecessor"), t  # only the number queries are ambiguous
        if wrong:
            add = st.SteeringVector(f"resid_post.{m['fv_layer']}", fvs[tasks.index(t)], 1.0, positions=-1)
            failed, fixed = failed + len(wrong), fixed + int(fvm.accuracy(toy, wrong, "zero_shot", add).sum())
    assert failed >= 8, failed  # enough zero-shot failures for the claim to be tested
    assert fixed >= 0.8 * failed, (fixed, failed)
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
    for task, other in (("predecessor", "successor"), ("successor", "predecessor")):
        queries = _number_queries(PLANTED.icl_mappings[task])
        # Unsteered, the toy answers these numbers with the other mapping (v3 seed 0: 4 read as successor, 6 as
        # predecessor; v2: 7 and 3): the same inputs, the other task's answer.
        misread = [
            (q, a)
            for q, a in queries
            if _rate(toy, [(q, PLANTED.icl_mappings[other][q.removesuffix(" ->")])], None) == 1
        ]
        assert len(misread) >= 3, (task, misread)
        for layer in (1, 2):
            add = st.SteeringVector(f"resid_post.{layer}", vecs.fv[task], 1.0, positions=-1)
            assert _rate(toy, misread, add) >= 0.8 and _rate(toy, queries, add) >= 0.8, (task, layer)


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
