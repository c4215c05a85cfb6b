"""Every reference implementation on one model: does it run, how long, what it reports (prints a table).

Issue 10 asks that every locate and steer implementation runs on SmolLM2-135M; this runs each registered
implementation once on its default task (or ``--task``) with ``--n`` prompts, in one process with the model
loaded once, and prints per implementation: status, wall and CPU seconds, metric count and its first
finding. A failure is printed as one line and the loop goes on; the exit code is the number of failures.

    python benchmarks/bench_impls.py [--model smollm2-135m] [--n 8] [--only ID ...] [--json FILE]
    python benchmarks/bench_impls.py --render FILE [FILE ...] [--json MERGED]   # README table from records

``--render`` merges records of the same model (later files win per implementation; each row keeps its ``n``) and prints the
Markdown table the README shows between its ``impls`` markers (a test keeps the two equal); the committed
record is ``benchmarks/results/impls-smollm2-135m.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from mi_catalog.impl_info import discover_impls
from mi_catalog.methods.runner import run_impl
from mi_catalog.models.allocator import keep_freed_memory
from mi_catalog.models.loading import load_model

# Implementations whose default settings train or sweep far more than a smoke run needs (keyword overrides).
LIGHT: dict[str, dict[str, Any]] = {
    "tuned-lens": {"steps": 60},
    "localized-finetuning": {"steps": 8},
    # Every neuron of a 30-layer model ablated one at a time is ~46k ablations per prompt (> 20 min on 2 cores).
    "ablation-importance": {"units": "heads"},
    "knowledge-neurons": {"steps": 5},
    # Ships for every one of 270 heads is one batched sweep; growing the greedy group to 3 heads and 5 random
    # controls per size triples it (~10 min on 2 cores at n=6); a smoke run grows the group to 1.
    "head-ablation-safety": {"sweep_heads": 1, "random_draws": 1},
}


def run_one(lm: Any, impl_id: str, n: int) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        result = run_impl(impl_id, model=lm, n=n, **LIGHT.get(impl_id, {}))
    except Exception as err:  # a benchmark reports every failure and goes on
        return {"impl": impl_id, "ok": False, "error": f"{type(err).__name__}: {err}".splitlines()[0][:160],
                "seconds": round(time.perf_counter() - wall, 1), "cpu_seconds": round(time.process_time() - cpu, 1), "n": n,
                "settings": LIGHT.get(impl_id, {})}  # fmt: skip
    payload = result.to_dict()
    top = payload["findings"][0] if payload["findings"] else None
    return {"impl": impl_id, "ok": True, "task": payload["task"], "seconds": round(time.perf_counter() - wall, 1),
            "cpu_seconds": round(time.process_time() - cpu, 1), "n_metrics": len(payload["metrics"]), "n": n,
            "settings": LIGHT.get(impl_id, {}),
            "top_finding": top, "improve": payload.get("improve")}  # fmt: skip


PIPE = "\\|"  # a literal pipe inside a Markdown table cell
RECORD = Path(__file__).parent / "results" / "impls-smollm2-135m.json"


def merge(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One record from several runs on the same model (each row keeps its own ``n`` and settings); a later run's
    row replaces an earlier one."""
    if len({r["model"] for r in records}) != 1:
        raise ValueError("records differ in model: " + ", ".join(sorted({r["model"] for r in records})))
    rows = {
        row["impl"]: {"n": record.get("n"), "settings": LIGHT.get(row["impl"], {}), **row}  # a merged record: n per row
        for record in records
        for row in record["rows"]
    }
    return {"model": records[0]["model"], "rows": [rows[k] for k in sorted(rows)]}


def _finding(top: dict[str, Any] | None) -> str:
    """The first finding as the implementation labels it (object: label), else its location and score."""
    if not top:
        return "–"
    if top.get("label"):
        return f"{top['object']}: {top['label']}".replace("|", PIPE)
    where = top["object"] + (f" L{top['layer']}" if top["layer"] is not None else "")
    return where + (f" #{top['index']}" if top["index"] is not None else "") + f" (score {top['score']:.3g})"


def render_markdown(record: dict[str, Any]) -> str:
    """The README table: one row per implementation (status, task, seconds, its top finding, its Improve)."""
    lines = ["| implementation | task | n | ran | wall s | CPU s | top finding | improve: before → after | settings |",
             "| --- | --- | ---: | --- | ---: | ---: | --- | --- | --- |"]  # fmt: skip
    for row in record["rows"]:
        settings = ", ".join(f"{k}={v}" for k, v in row["settings"].items()) or "defaults"
        if not row["ok"]:
            error = row["error"].replace("|", PIPE)
            lines.append(
                f"| `{row['impl']}` | – | {row['n']} | **failed**: {error} | {row['seconds']} | {row['cpu_seconds']} | – | – | {settings} |"
            )
            continue
        imp = row.get("improve")
        change = f"{imp['metric']}: {imp['before']:.3g} → {imp['after']:.3g}" if imp else "– (locates only)"
        change = change.replace("|", PIPE)
        lines.append(f"| `{row['impl']}` | {row['task']} | {row['n']} | yes | {row['seconds']} | {row['cpu_seconds']} | "
                     f"{_finding(row['top_finding'])} | {change} | {settings} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--render", type=Path, nargs="+", default=None, help="merge these records, print the table")
    args = parser.parse_args()
    if args.render:
        record = merge([json.loads(path.read_text(encoding="utf-8")) for path in args.render])
        if args.json is not None:
            args.json.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(render_markdown(record), end="")
        return 0
    keep_freed_memory()
    start = time.perf_counter()
    lm = load_model(args.model)
    print(f"{args.model}: loaded in {time.perf_counter() - start:.1f} s; {args.n} prompts per run", flush=True)
    ids = args.only or sorted(discover_impls())
    rows = []
    for i, impl_id in enumerate(ids, 1):
        print(f"[{i}/{len(ids)}] {impl_id} …", file=sys.stderr, flush=True)
        row = run_one(lm, impl_id, args.n)
        rows.append(row)
        if row["ok"]:
            top = row["top_finding"]
            where = f"{top['object']} L{top['layer']} #{top['index']}" if top else "-"
            imp = row["improve"]
            change = f"  improve {imp['before']:.3g} → {imp['after']:.3g}" if imp else ""
            change += f"  (settings {LIGHT[impl_id]})" if impl_id in LIGHT else ""
            print(f"  ok    {impl_id:<28} {row['task']:<13} {row['seconds']:7.1f} s wall {row['cpu_seconds']:7.1f} s CPU"
                  f"  {row['n_metrics']:3d} metrics  top: {where}{change}", flush=True)  # fmt: skip
        else:
            print(f"  FAIL  {impl_id:<28} {row['error']}", flush=True)
    failures = sum(not r["ok"] for r in rows)
    print(f"{len(rows) - failures}/{len(rows)} ran; total {sum(r['seconds'] for r in rows):.0f} s wall")
    if args.json is not None:
        args.json.write_text(json.dumps({"model": args.model, "n": args.n, "rows": rows}, indent=1) + "\n")
    return failures


if __name__ == "__main__":
    raise SystemExit(main())
