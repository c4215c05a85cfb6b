"""The committed record of every implementation run once on SmolLM2-135M (benchmarks/bench_impls.py): it covers
the whole registry, every run succeeded, and the README shows exactly its table."""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from mi_catalog.impl_info import discover_impls

REPO = Path(__file__).resolve().parents[2]


@functools.cache  # executed once: it imports the runner (torch)
def bench_impls() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_impls", REPO / "benchmarks" / "bench_impls.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_record_covers_every_implementation_and_every_run_succeeded() -> None:
    record = json.loads(bench_impls().RECORD.read_text(encoding="utf-8"))
    assert record["model"] == "smollm2-135m"
    assert sorted(row["impl"] for row in record["rows"]) == sorted(discover_impls())
    failed = [(row["impl"], row.get("error")) for row in record["rows"] if not row["ok"]]
    assert not failed, failed


def test_readme_shows_the_committed_record() -> None:
    module = bench_impls()
    record = json.loads(module.RECORD.read_text(encoding="utf-8"))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- impls:start -->\n(.*?)<!-- impls:end -->", readme, re.S)
    assert block is not None, "README lacks the impls table markers"
    assert block.group(1) == module.render_markdown(record)


def test_merge_keeps_the_later_run_and_refuses_mixed_records() -> None:
    module = bench_impls()
    row = {"impl": "a", "ok": True, "task": "t", "seconds": 1.0, "cpu_seconds": 1.0, "top_finding": None}
    first = {"model": "m", "n": 4, "rows": [row, {**row, "impl": "b"}]}
    second = {"model": "m", "n": 4, "rows": [{**row, "seconds": 2.0}]}
    merged = module.merge([first, second])
    assert [r["impl"] for r in merged["rows"]] == ["a", "b"] and merged["rows"][0]["seconds"] == 2.0
    assert merged["rows"][1]["n"] == 4 and merged["rows"][1]["settings"] == {}
    with pytest.raises(ValueError, match="differ"):
        module.merge([first, {**second, "model": "other"}])
    failed = {"model": "m", "n": 4, "rows": [{**row, "ok": False, "error": "Boom: x | y"}]}
    table = module.render_markdown(module.merge([failed]))
    assert "**failed**: Boom: x \\| y" in table and table.count("\n") == 3
