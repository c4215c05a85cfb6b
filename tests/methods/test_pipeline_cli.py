"""`mi-catalog run ENTRY` for every kind of entry, `mi-catalog pipeline`, and their one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mi_catalog.cli import main
from mi_catalog.impl_info import discover_impls
from mi_catalog.methods import plan as P

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mi_catalog", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600)  # fmt: skip


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def catalog_plans() -> dict[str, P.Plan]:
    from mi_catalog.load import load_catalog
    from mi_catalog.paths import default_catalog_dir

    return P.plans(load_catalog(default_catalog_dir()).entries, discover_impls())


def sample(plans: dict[str, P.Plan]) -> list[str]:
    """One entry of each kind of run (sorted ids: a stable sample)."""
    kinds = {
        "amplitude": lambda p: p.kind == "pipeline" and p.steer == "amplitude-manipulation" and not p.prune,
        "vector": lambda p: p.kind == "pipeline" and p.steer == "vector-arithmetic" and not p.prune,
        "optimization": lambda p: p.kind == "pipeline" and p.steer == "targeted-optimization" and not p.prune,
        "vector-heads": lambda p: p.steer == "vector-arithmetic" and p.object == "attention-head",
        "pruning": lambda p: p.prune,
        "locate-only": lambda p: p.kind == "pipeline" and p.steer is None and p.composed,
        "not-composed": lambda p: not p.composed,
        "persona-or-bias": lambda p: p.kind == "pipeline" and p.task in ("persona", "bias") and p.steer is not None,
        "stand-in": lambda p: p.kind == "pipeline" and p.object == "sae-feature" and p.steer is not None,
    }
    chosen = [next(i for i in sorted(plans) if pick(plans[i])) for pick in kinds.values()]
    return [*dict.fromkeys(chosen), "interpreting-gpt-the-logit-lens"]


def test_sample_of_entries_runs_through_the_cli(capsys: pytest.CaptureFixture[str],
                                                catalog_plans: dict[str, P.Plan]) -> None:  # fmt: skip
    ids = sample(catalog_plans)
    assert len(ids) >= 8
    for entry_id in ids:
        plan = catalog_plans[entry_id]
        code, out, err = run_main(capsys, "run", entry_id, "--format", "json", "--quiet", "--n", "12")
        assert code == 0, (entry_id, err)
        payload = json.loads(out)
        assert payload["kind"] == plan.kind and payload["entry"] == entry_id, entry_id
        assert payload["metrics"] and payload["plan"]["command"] == f"mi-catalog run {entry_id}"
        if plan.kind == "pipeline":
            assert payload["impl"] == plan.run_id
        if plan.kind == "pipeline" and plan.steer is not None:
            assert set(payload["improve"]) == {"task", "metric", "goal", "before", "after", "interval"}, entry_id
            assert any(s.get("measure") == "kl_neutral" for s in payload["side_effects"])
        if not plan.composed:
            assert err.startswith(f"mi-catalog: note: {entry_id}: cannot compose a pipeline") and err.count("\n") == 1
        else:
            assert err == ""


def test_table_output_says_reproduction_or_pipeline_in_words(capsys: pytest.CaptureFixture[str],
                                                             catalog_plans: dict[str, P.Plan]) -> None:  # fmt: skip
    pipeline_id = next(i for i in sorted(catalog_plans) if catalog_plans[i].steer == "vector-arithmetic"
                       and catalog_plans[i].kind == "pipeline")  # fmt: skip
    code, out, _ = run_main(capsys, "run", pipeline_id, "--quiet", "--n", "12")
    assert code == 0
    assert "family applied to toy, not the paper's exact algorithm" in out.splitlines()[1]
    assert "improve:" in out and "cost: kl_neutral" in out
    code, out, _ = run_main(capsys, "run", "interpreting-gpt-the-logit-lens", "--quiet", "--n", "4")
    assert code == 0 and "reproduction of interpreting GPT: the logit lens's algorithm (logit-lens)" in out


def test_plan_flag_prints_the_plan_without_running(capsys: pytest.CaptureFixture[str],
                                                   catalog_plans: dict[str, P.Plan]) -> None:  # fmt: skip
    for entry_id in sample(catalog_plans):
        code, out, _ = run_main(capsys, "run", entry_id, "--plan", "--format", "json")
        assert code == 0
        shown = json.loads(out)
        assert {k: v for k, v in shown.items() if k != "describe"} == catalog_plans[entry_id].to_dict()
    code, out, _ = run_main(capsys, "run", "logit-lens", "--plan")
    assert code == 0 and out.startswith("mi-catalog run logit-lens")


def test_pipeline_command_through_the_entry_point(tmp_path: Path) -> None:
    proc = cli("pipeline", "--object", "head", "--method", "gradient", "--steer", "ablation", "--task", "safety",
               "--format", "json", "--quiet", "--n", "12", "--out", str(tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["kind"] == "pipeline" and payload["impl"] == "pipeline:attribution-patching+amplitude-manipulation"
    assert (
        payload["task"] == "refusal" and payload["entry"] is None and payload["improve"]["metric"] == "refusal_margin"
    )
    assert (tmp_path / "pipeline_attribution-patching_amplitude-manipulation.json").is_file()
    assert all(Path(f).is_file() for f in payload["figures"])


def _one_line_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("mi-catalog: error: ")
    return proc.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("run", "dolaa"), "did you mean 'dola'"),
        (
            ("run", "refusal-direction-is-universal-across-safety-aligne"),
            "did you mean 'refusal-direction-is-universal-across-safety-aligned'",
        ),
        (("pipeline", "--object", "hed", "--method", "probe"), "unknown object 'hed'"),
        (("pipeline", "--object", "head", "--method", "probe", "--steer", "sideways"), "unknown steer 'sideways'"),
        (("pipeline", "--object", "head", "--method", "probe", "--task", "toxicty"), "did you mean 'toxicity'"),
        (("run", "{pipeline}", "--prompts", "x.jsonl"), "runs a pipeline on the model's own task data"),
        (("run", "{pipeline}", "--n", "0"), "--n must be at least 1"),
    ],
)
def test_errors_are_one_line(args: tuple[str, ...], expected: str, catalog_plans: dict[str, P.Plan]) -> None:
    pipeline = next(i for i in sorted(catalog_plans) if catalog_plans[i].kind == "pipeline")
    assert expected in _one_line_error(cli(*(a.format(pipeline=pipeline) for a in args)))
