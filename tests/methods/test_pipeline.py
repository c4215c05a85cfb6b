"""Pipelines: locate → steer → improve on the toy and on every tiny architecture family."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from mi_catalog.impl_info import discover_impls  # noqa: E402
from mi_catalog.methods import plan as P  # noqa: E402
from mi_catalog.methods import steering as S  # noqa: E402
from mi_catalog.methods.contract import Finding  # noqa: E402
from mi_catalog.methods.glossary import GLOSSARY  # noqa: E402
from mi_catalog.methods.pipeline import (  # noqa: E402
    Projection,
    SkipLayers,
    build_goal,
    locate_units,
    run_pipeline,
)
from mi_catalog.models.hooks import capture, edit, hook_snapshot  # noqa: E402
from mi_catalog.models.tiny import tiny_model  # noqa: E402

torch.set_num_threads(1)
FAMILIES = ("gpt2", "gpt-neox", "llama", "qwen2", "mistral")


@pytest.fixture(scope="module")
def impls():  # type: ignore[no-untyped-def]
    return discover_impls()


@pytest.fixture(scope="module")
def toy():  # type: ignore[no-untyped-def]
    from mi_catalog.models import load_model

    return load_model("toy")


def state(lm) -> tuple[dict[str, torch.Tensor], frozenset[tuple[str, str, int]], set[str]]:  # type: ignore[no-untyped-def]
    weights = {k: v.detach().clone() for k, v in lm.model.state_dict().items()}
    patched = {name for name, m in lm.model.named_modules() if "forward" in m.__dict__}
    return weights, hook_snapshot(lm.model), patched


def assert_unchanged(lm, before) -> None:  # type: ignore[no-untyped-def]
    weights, hooks, patched = state(lm)
    assert hooks == before[1] and patched == before[2]
    assert weights.keys() == before[0].keys()
    assert all(torch.equal(weights[k], before[0][k]) for k in weights)
    assert all(p.grad is None for p in lm.model.parameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_skip_layers_is_an_identity_block_and_restores_the_model(family: str) -> None:
    lm = tiny_model(family, seed=2)
    batch = lm.encode(["The Eiffel Tower is in the city of", "Big Ben is in"])
    before = state(lm)
    with capture(lm, ["resid_pre.1"]) as cache:
        lm.logits(batch)
    with edit(lm, [("resid_post.1", lambda act, st: cache["resid_pre.1"].to(act.dtype))]):
        expected = lm.logits(batch)
    with SkipLayers((1,)).apply(lm):
        skipped = lm.logits(batch)
    torch.testing.assert_close(skipped, expected)
    assert not torch.allclose(skipped, lm.logits(batch))
    assert_unchanged(lm, before)
    with pytest.raises(RuntimeError), SkipLayers((0,)).apply(lm):
        raise RuntimeError("body fails")
    assert_unchanged(lm, before)


def test_projection_removes_the_component_per_head_and_whole() -> None:
    lm = tiny_model("llama", seed=3)
    batch = lm.encode(["The Colosseum is in the city of"])
    d = torch.randn(lm.d_model)
    with Projection("resid_post.0", d, 1.0).apply(lm), capture(lm, ["resid_post.0"]) as cache:
        lm.logits(batch)
    assert (cache["resid_post.0"].float() @ (d / d.norm())).abs().max() < 1e-4
    heads = torch.randn(lm.n_heads, lm.d_head)
    heads[1] = 0  # head 1 untouched
    with capture(lm, ["head_out.0"]) as plain:
        lm.logits(batch)
    with Projection("head_out.0", heads, 1.0).apply(lm), capture(lm, ["head_out.0"]) as cache:
        lm.logits(batch)
    unit = heads / heads.norm(dim=-1, keepdim=True).clamp(min=1e-8)
    dots = (cache["head_out.0"].float() * unit).sum(-1)  # [b, pos, heads]
    assert dots[..., [0, 2, 3]].abs().max() < 1e-4
    torch.testing.assert_close(cache["head_out.0"][..., 1, :], plain["head_out.0"][..., 1, :])


def test_findings_become_units_of_the_plans_object() -> None:
    lm = tiny_model("gpt2", seed=0)  # 2 layers, 4 heads
    findings = [
        Finding("residual-stream", 1, None, 5.0),
        Finding("attention-head", 0, 3, 2.0),
        Finding("attention-head", 1, 2, 1.0),
        Finding("neuron", 1, 7, 0.5),
        Finding("attention-head", 9, 0, 0.4),
    ]  # fmt: skip  (layer 9 does not exist: ignored)
    heads = locate_units(lm, findings, "attention-head")
    assert heads.kind == "heads" and heads.units == (S.Unit("head_out.0", 3), S.Unit("head_out.1", 2))
    assert heads.ranking[(0, 3)] > heads.ranking[(1, 2)]
    neurons = locate_units(lm, findings, "neuron")
    assert neurons.units == (S.Unit("mlp_act.1", 7),) and neurons.layer == 1
    layer = locate_units(lm, findings, "residual-stream")
    assert (layer.kind, layer.layer, layer.site) == ("layer", 1, "resid_post.1")
    assert locate_units(lm, findings, "ffn").site == "mlp_out.1"
    assert locate_units(lm, findings, "token-embedding").site == "embed"
    fallback = locate_units(lm, [Finding("residual-stream", 0, None, 1.0)], "attention-head")
    assert fallback.kind == "layer" and fallback.layer == 0 and "no attention-head findings" in fallback.note
    nothing = locate_units(lm, [], "neuron")
    assert nothing.kind == "ffn" and nothing.note


def test_layers_the_locator_cannot_tell_apart_are_all_steering_candidates() -> None:
    lm = tiny_model("llama", seed=1)
    n = lm.n_layers
    saturated = [Finding("residual-stream", layer, None, 1.0, interval=(1.0, 1.0)) for layer in range(n)]
    located = locate_units(lm, saturated, "residual-stream")
    assert located.layer == 0 and located.layers == tuple(range(n))  # ranked() puts ties in layer order
    clear = [Finding("residual-stream", 1, None, 0.9, interval=(0.85, 0.95)),
             Finding("residual-stream", 0, None, 0.6, interval=(0.5, 0.7))]  # fmt: skip
    assert locate_units(lm, clear, "residual-stream").layers == (1,)
    within = [Finding("residual-stream", 1, None, 0.9, interval=(0.8, 0.95)),
              Finding("residual-stream", 0, None, 0.85, interval=(0.7, 0.9))]  # fmt: skip
    assert locate_units(lm, within, "ffn").layers == (1, 0)
    no_interval = [Finding("residual-stream", 1, None, 0.9), Finding("residual-stream", 0, None, 0.85)]
    assert locate_units(lm, no_interval, "residual-stream").layers == (1,)


def test_tied_layers_are_chosen_by_steering_on_the_fit_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """With every layer tied, the steered layer is the one whose best strength does best on the fit split."""
    from dataclasses import replace

    from mi_catalog.methods import pipeline as pl
    from mi_catalog.methods.contract import Output

    lm = tiny_model("llama", seed=1)
    tied = [Finding("residual-stream", layer, None, 1.0, interval=(1.0, 1.0)) for layer in range(lm.n_layers)]
    monkeypatch.setattr(pl, "_locate", lambda *_args: ("linear-probe", Output(metrics={}, findings=tied)))
    plan = P.plan_pipeline("residual-stream", "probing", "vector-arithmetic", "facts", discover_impls())
    result = run_pipeline(lm, plan, seed=0, n=8)
    m = result.output.metrics
    assert m["steer_layers_tried"] == lm.n_layers
    goal = build_goal(lm, "facts", 8, 0)
    located = locate_units(lm, tied, "residual-stream")
    best_by_layer = []
    for layer in range(lm.n_layers):
        strengths, make, _ = pl.vector_candidates(lm, replace(located, layer=layer), goal, {})
        best_by_layer.append(max(float(goal.measure(lm, goal.fit, make(s)).mean()) for s in strengths))
    assert best_by_layer[int(m["steer_layer"])] == max(best_by_layer)
    assert "alike, so the layer was chosen" in result.output.notes[0]


@pytest.mark.parametrize("task", ["refusal", "toxicity", "language", "facts", "icl", "sentiment", "induction"])
def test_toy_goals_measure_what_the_table_says(toy, task: str) -> None:  # type: ignore[no-untyped-def]
    goal = build_goal(toy, task, 16, seed=0)
    assert goal.metric == P.goal_for(task).metric and goal.better == P.goal_for(task).better
    assert goal.metric in GLOSSARY
    assert goal.fit and goal.test and goal.positive and goal.negative and len(goal.desired) == len(goal.fit)
    before = goal.measure(toy, goal.test, None)
    assert before.shape == (len(goal.test),) and torch.isfinite(before).all()


def test_toy_goal_baselines_match_the_planted_behaviour(toy) -> None:  # type: ignore[no-untyped-def]
    """The toy does its tasks: toxic prompts get toxic words, en-target prompts stay in en, harmful ones refuse."""
    tox = build_goal(toy, "toxicity", 16, 0)
    assert float(tox.measure(toy, tox.test, None).mean()) == 1.0
    lang = build_goal(toy, "language", 16, 0)
    assert float(lang.measure(toy, lang.test, None).mean()) == 0.0
    ref = build_goal(toy, "refusal", 16, 0)
    assert float(ref.measure(toy, ref.test, None).min()) > 0
    icl = build_goal(toy, "icl", 16, 0)
    assert float(icl.measure(toy, icl.test, None).mean()) < 1.0  # the chosen task is ambiguous without demos


@pytest.mark.parametrize(
    ("obj", "method", "steer", "task"),
    [
        ("attention-head", "gradient-detection", "amplitude-manipulation", "toxicity"),
        ("residual-stream", "probing", "vector-arithmetic", "refusal"),
        ("neuron", "vocab-projection", "targeted-optimization", "language"),
        ("residual-stream", "vocab-projection", "pruning", "facts"),
        ("attention-head", "magnitude-analysis", "pruning", "facts"),
        ("attention-head", "causal-attribution", "vector-arithmetic", "icl"),
        ("ffn", "causal-attribution", None, "facts"),
    ],
)
def test_toy_pipeline_runs_reports_improve_and_leaves_the_model(toy, impls, obj, method, steer, task) -> None:  # type: ignore[no-untyped-def]
    plan = P.plan_pipeline(obj, method, steer, task, impls)
    before = state(toy)
    result = run_pipeline(toy, plan, seed=0, n=16)
    assert_unchanged(toy, before)
    payload = json.loads(result.to_json())
    assert payload["kind"] == "pipeline" and payload["impl"].startswith("pipeline:") and payload["task"] == task
    assert payload["plan"]["object"] == obj and payload["plan"]["locator"] == plan.locator
    assert all(name in GLOSSARY for name in payload["metrics"]), set(payload["metrics"]) - set(GLOSSARY)
    assert payload["findings"] and payload["notes"][0].startswith("Pipeline: the survey's")
    assert "not the paper's exact algorithm" in payload["notes"][0]
    if steer is None:
        assert "improve" not in payload and "only the locate stage ran" in payload["notes"][0]
        return
    improve = payload["improve"]
    assert set(improve) == {"task", "metric", "goal", "before", "after", "interval"} and improve["task"] == task
    goal = P.goal_for(task, prune=steer == "pruning")
    assert improve["metric"] == goal.metric
    assert improve["goal"] == ("increase" if goal.better == "higher" else "decrease")
    lo, hi = improve["interval"]
    assert lo <= improve["after"] + 1e-6 and improve["after"] <= hi + 1e-6
    names = [s.get("task") or s.get("measure") for s in payload["side_effects"]]
    assert "kl_neutral" in names and len(names) >= 4 and task not in names
    again = run_pipeline(toy, plan, seed=0, n=16).to_dict()
    if steer != "pruning":  # pruning's improve is a timing
        assert again["improve"] == payload["improve"] and again["metrics"] == payload["metrics"]


@pytest.mark.parametrize(
    ("obj", "method", "steer", "task"),
    [
        ("head", "gradient", "amplitude", "toxicity"),
        ("head", "patching", "vector", "icl"),
        ("neuron", "magnitude", "rome", "language"),  # recipe v2 missed: its LAPE neurons only read a language
    ],
)
def test_toy_steering_moves_the_goal(toy, impls, obj: str, method: str, steer: str, task: str) -> None:  # type: ignore[no-untyped-def]
    """Causal checks on the toy: ablating the heads that carry toxicity lowers the toxic rate; a task vector from
    the demonstrations raises zero-shot accuracy; a few gradient steps on the language neurons switch the output
    language."""
    improve = run_pipeline(toy, P.plan_pipeline(obj, method, steer, task, impls), n=16).output.improve
    assert improve is not None
    goal = P.goal_for(task)
    assert improve.after < improve.before if goal.better == "lower" else improve.after > improve.before


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("steer", ["amplitude-manipulation", "vector-arithmetic", "targeted-optimization", "pruning"])
def test_pipeline_runs_on_every_tiny_family(impls, family: str, steer: str) -> None:  # type: ignore[no-untyped-def]
    lm = tiny_model(family, seed=1)
    obj = {"amplitude-manipulation": "attention-head", "vector-arithmetic": "residual-stream",
           "targeted-optimization": "neuron", "pruning": "residual-stream"}[steer]  # fmt: skip
    plan = P.plan_pipeline(obj, "gradient-detection", steer, "facts", impls)
    before = state(lm)
    result = run_pipeline(lm, plan, seed=0, n=8)
    assert_unchanged(lm, before)
    payload = json.loads(result.to_json())
    assert payload["improve"]["metric"] in GLOSSARY and payload["side_effects"]
    assert all(name in GLOSSARY for name in payload["metrics"])


def test_missing_task_falls_back_and_says_so(impls) -> None:  # type: ignore[no-untyped-def]
    lm = tiny_model("llama", seed=1)  # English source: no persona task
    result = run_pipeline(lm, P.plan_pipeline("resid", "probe", "vector", "persona", impls), n=8)
    assert result.task == P.TASK_FALLBACKS["persona"][0]
    assert any("has no 'persona' task" in note for note in result.output.notes)


@pytest.mark.parametrize(("task", "obj", "method"), [("bias", "resid", "probe"), ("persona", "resid", "probe")])
def test_toy_fairness_and_persona_goals(toy, impls, task: str, obj: str, method: str) -> None:  # type: ignore[no-untyped-def]
    """Recipe v2 tasks (on the shipped v3 toy): the stereotype is learnt (gap > 0) and projecting the stereotype direction out narrows it
    without breaking prompts that state the gender; a persona direction gives prompts without a prefix its voice."""
    from mi_catalog.methods.pipeline import usable_tasks

    if task not in usable_tasks(toy):
        pytest.skip(f"the shipped toy checkpoint does not know the {task} task yet (recipe v1)")
    goal = build_goal(toy, task, 16, 0)
    assert goal.metric == P.GOALS[task].metric
    result = run_pipeline(toy, P.plan_pipeline(obj, method, "vector", task, impls), n=16)
    improve = result.output.improve
    assert improve is not None and result.task == task
    if task == "bias":
        assert improve.before > 0.2 and improve.after < improve.before
        assert result.output.metrics["steer_stated_accuracy_after"] >= 0.9
    else:
        assert improve.before == 0.0 and improve.after > 0.5
