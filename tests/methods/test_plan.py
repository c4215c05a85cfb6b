"""The plan layer: what `mi-catalog run ENTRY` runs for every entry (pure Python, no torch)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from mi_catalog import vocab
from mi_catalog.impl_info import ImplInfo, discover_impls
from mi_catalog.methods import plan as P


@dataclass
class FakeEntry:
    id: str = "hostile"
    title: str = "A Hostile Entry"
    summary: str | None = None
    impls: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    steering: list[str] = field(default_factory=list)
    applications: list[str] = field(default_factory=list)

    @property
    def tags(self) -> Any:
        return SimpleNamespace(objects=self.objects, methods=self.methods, steering=self.steering,
                               applications=self.applications)  # fmt: skip


@pytest.fixture(scope="module")
def impls() -> dict[str, ImplInfo]:
    return discover_impls()


@pytest.fixture(scope="module")
def entries() -> list[Any]:
    from mi_catalog.load import load_catalog
    from mi_catalog.paths import default_catalog_dir

    return load_catalog(default_catalog_dir()).entries


def test_every_object_method_pair_has_a_locator_that_exists(impls: dict[str, ImplInfo]) -> None:
    for obj in vocab.OBJECT.ids:
        for method in vocab.METHOD.ids:
            found = P.choose_locator(obj, method, impls)
            assert found is not None, (obj, method)
            locator_id, locator = found
            assert locator_id in impls
            assert locator.exact or locator.note, f"{obj} × {method}: a stand-in must say how it stands in"


def test_tables_use_canonical_ids_and_known_tasks(impls: dict[str, ImplInfo]) -> None:
    assert set(P.OBJECT_UNITS) == set(vocab.OBJECT.ids)
    assert set(P.APPLICATION_TASKS) == set(vocab.APPLICATION.ids)
    assert set(vocab.APPLICATION.ids) >= P.PRUNE_APPLICATIONS
    assert set(P.STEER_STRENGTHS) == set(vocab.STEER.ids)
    assert set(P.DEFAULT_OBJECT_FOR_STEER) == set(vocab.STEER.ids) == set(P.DEFAULT_METHOD_FOR_STEER)
    for rules in P.APPLICATION_TASKS.values():
        assert all(r.task in P.KNOWN_TASKS for r in rules) and not rules[-1].words  # the last rule is the default
    assert set(P.GOALS) <= P.KNOWN_TASKS
    assert set(P.LOCATE_SPEC) <= {i for loc in P.LOCATORS.values() for i in loc.impls}
    assert all(f in impls for f in P.LOCATE_FALLBACKS)


def test_entry_with_no_tags_cannot_compose_and_says_what_runs_instead(impls: dict[str, ImplInfo]) -> None:
    plan = P.plan_for(FakeEntry(), impls)
    assert plan.kind == "pipeline" and not plan.composed
    assert plan.reason.startswith("cannot compose a pipeline: ") and "runs instead" in plan.reason
    assert "\n" not in plan.reason
    assert (plan.object, plan.method, plan.locator, plan.steer) == ("residual-stream", "vocab-projection", "logit-lens",
                                                                   None)  # fmt: skip
    assert plan.run_id == "pipeline:logit-lens" and plan.command == "mi-catalog run hostile"


def test_missing_method_is_filled_from_the_object_and_said(impls: dict[str, ImplInfo]) -> None:
    plan = P.plan_for(FakeEntry(objects=["attention-head"], steering=["amplitude-manipulation"],
                                applications=["reasoning"]), impls)  # fmt: skip
    assert plan.composed and plan.object == "attention-head" and plan.method in vocab.METHOD.ids
    assert any("no localizing-method tag" in s for s in plan.substitutions)
    assert plan.task == "icl" and plan.steer == "amplitude-manipulation"


def test_steering_only_entry_composes_from_the_steering_tag(impls: dict[str, ImplInfo]) -> None:
    plan = P.plan_for(FakeEntry(steering=["vector-arithmetic"], applications=["persona"]), impls)
    assert plan.composed and (plan.object, plan.method) == ("residual-stream", "probing")
    assert plan.run_id == "pipeline:linear-probe+vector-arithmetic" and plan.task == "persona"


def test_reproduction_wins_over_a_pipeline(impls: dict[str, ImplInfo]) -> None:
    by_list = P.plan_for(FakeEntry(impls=["logit-lens"], objects=["neuron"], methods=["probing"]), impls)
    assert by_list.kind == "reproduction" and by_list.impl == "logit-lens" and by_list.run_id == "logit-lens"
    assert "A Hostile Entry's algorithm" in by_list.describe()
    declared = P.plan_for(FakeEntry(id="interpreting-gpt-the-logit-lens"), impls)  # only IMPL.reproduces names it
    assert declared.kind == "reproduction" and declared.impl == "logit-lens"
    unknown = P.plan_for(FakeEntry(impls=["not-an-impl"], objects=["neuron"], methods=["probing"]), impls)
    assert unknown.kind == "pipeline"


def test_efficiency_prunes_and_stand_ins_are_named(impls: dict[str, ImplInfo]) -> None:
    plan = P.plan_for(FakeEntry(objects=["sae-feature"], methods=["probing"], steering=["vector-arithmetic"],
                                applications=["efficient-inference"]), impls)  # fmt: skip
    assert plan.prune and plan.task == "facts" and plan.run_id == "pipeline:attribution-patching+pruning"
    assert any("SAE" in s for s in plan.substitutions) and any("prunes" in s for s in plan.substitutions)
    assert "linear-probe cannot use the facts task's data: attribution-patching stands in" in plan.substitutions
    assert "× pruning family applied to toy, not the paper's exact algorithm" in plan.describe("toy")
    locate_only = P.plan_for(FakeEntry(objects=["ffn"], methods=["vocab-projection"],
                                       applications=["efficient-inference"]), impls)  # fmt: skip
    assert not locate_only.prune and locate_only.run_id == "pipeline:ffn-vocab-projection"


def test_exact_pair_preferred_over_a_stand_in(impls: dict[str, ImplInfo]) -> None:
    plan = P.plan_for(FakeEntry(objects=["sae-feature", "attention-head"], methods=["probing"]), impls)
    assert plan.object == "attention-head" and not plan.substitutions


def test_safety_task_follows_the_papers_words(impls: dict[str, ImplInfo]) -> None:
    def task(title: str) -> str | None:
        return P.plan_for(FakeEntry(title=title, objects=["neuron"], methods=["probing"], steering=["vector-arithmetic"],
                                    applications=["safety"]), impls).task  # fmt: skip

    assert task("Detoxifying language models") == "toxicity"
    assert task("Refusal is mediated by a direction") == "refusal"
    assert task("Reducing hallucination via heads") == "facts"
    assert task("Jailbreaks everywhere") == "refusal"  # the default


def test_pipeline_command_values_take_aliases(impls: dict[str, ImplInfo]) -> None:
    plan = P.plan_pipeline("head", "patching", "caa", "safety", impls)
    assert (plan.object, plan.method, plan.steer, plan.task) == ("attention-head", "causal-attribution",
                                                                "vector-arithmetic", "refusal")  # fmt: skip
    assert plan.command == ("mi-catalog pipeline --object attention-head --method causal-attribution "
                            "--steer vector-arithmetic --task refusal")  # fmt: skip
    assert P.plan_pipeline("mlp", "logit-lens", None, "facts", impls).run_id == "pipeline:ffn-vocab-projection"
    neurons = P.plan_pipeline("neuron", "magnitude", "pruning", None, impls)
    assert neurons.prune and neurons.run_id == "pipeline:language-neurons+pruning" and neurons.task == "language"
    pruned = P.plan_pipeline("layer", "magnitude", "pruning", "facts", impls)
    assert pruned.prune and pruned.run_id == "pipeline:massive-activations+pruning"
    assert P.plan_pipeline("resid", "probe", "none", "toxicity", impls).steer is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("hed", "probe", None, None), "unknown object 'hed'"),
        (("head", "probe", "vectr-arithmetic", None), "unknown steer"),
        (("head", "probe", None, "toxicty"), "did you mean 'toxicity'"),
        (("head", "nonsense", None, None), "unknown method 'nonsense'"),
    ],
)
def test_pipeline_bad_values_are_one_line_errors(impls: dict[str, ImplInfo], args: tuple[Any, ...],
                                                 message: str) -> None:  # fmt: skip
    with pytest.raises(P.PlanError, match=message) as info:
        P.plan_pipeline(*args, impls)
    assert "\n" not in str(info.value)


def test_plan_entry_matches_its_pipeline_command(impls: dict[str, ImplInfo], entries: list[Any]) -> None:
    """The pipeline command shown beside an entry runs the same pipeline as `mi-catalog run ENTRY`."""
    for entry in entries:
        plan = P.plan_for(entry, impls)
        if plan.kind != "pipeline":
            continue
        words = str(plan.pipeline_command).split()
        opts = dict(zip(words[2::2], words[3::2], strict=True))
        again = P.plan_pipeline(opts["--object"], opts["--method"], opts.get("--steer"), opts.get("--task"), impls)
        assert (again.run_id, again.object, again.method, again.task, again.prune) == \
            (plan.run_id, plan.object, plan.method, plan.task, plan.prune), entry.id  # fmt: skip


def test_every_catalog_entry_has_a_plan_and_most_compose(impls: dict[str, ImplInfo], entries: list[Any]) -> None:
    cov = P.coverage(entries, impls)
    assert cov.total == len(entries) > 200
    assert cov.reproductions >= 5
    assert cov.composed_share >= 0.95, cov.not_composed
    for plan in P.plans(entries, impls).values():
        assert plan.kind in P.KINDS and plan.command == f"mi-catalog run {plan.entry}"
        assert "\n" not in plan.reason
        if plan.kind == "pipeline":
            assert plan.locator in impls and plan.task in P.KNOWN_TASKS
            assert plan.run_id.startswith(P.PIPELINE_PREFIX)


def test_plan_layer_imports_no_torch() -> None:
    code = ("import sys, mi_catalog.methods.plan as p; from mi_catalog.impl_info import discover_impls;"
            "p.plan_pipeline('head', 'probe', 'caa', 'safety', discover_impls());"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_readme_plan_tables_are_current() -> None:
    from pathlib import Path

    readme = Path(__file__).resolve().parents[2] / "README.md"
    text = readme.read_text(encoding="utf-8")
    assert P.update_readme_plan(text, discover_impls()) == text, "run `python -m mi_catalog.methods.plan`"
