"""Every catalog entry runs: `mi-catalog run ENTRY` for all of them on the toy (prints figures).

Target (issue 8): ≥ 95 % of catalog entries run to exit 0 with metrics on the toy, each ≤ 10 s on 2 cores.

Each entry goes through the same path as the CLI (plan → reproduction via run_impl or pipeline via
run_pipeline, then the JSON contract) in one process with the toy loaded once, so per-entry seconds exclude
Python start-up and model loading (printed once). Wall seconds depend on what else shares the cores, so CPU
seconds of the process are printed too. ``--cli N`` also times N entries end to end through the real
entry point (a subprocess each: start-up + load + run).

    python benchmarks/bench_entries.py [--model toy|DIR] [--threads 2] [--limit N] [--kind pipeline|reproduction]
                                       [--cli 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from mi_catalog.impl_info import discover_impls
from mi_catalog.load import load_catalog
from mi_catalog.methods.pipeline import run_pipeline
from mi_catalog.methods.plan import plan_for
from mi_catalog.methods.runner import run_impl
from mi_catalog.models import load_model
from mi_catalog.paths import default_catalog_dir

TARGET_SHARE = 0.95
TARGET_SECONDS = 10.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="toy", help="the toy (default) or a toy checkpoint folder")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2: the target's 2 cores)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N entries (sorted ids)")
    parser.add_argument("--kind", choices=("pipeline", "reproduction"), default=None)
    parser.add_argument("--cli", type=int, default=0, metavar="N", help="also time N entries through the real CLI")
    parser.add_argument("--json", metavar="FILE", default=None, help="write every entry's figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    impls = discover_impls()
    entries = sorted(load_catalog(default_catalog_dir()).entries, key=lambda e: e.id)
    plans = [(e.id, plan_for(e, impls)) for e in entries]
    if args.kind:
        plans = [(i, p) for i, p in plans if p.kind == args.kind]
    plans = plans[: args.limit] if args.limit else plans
    start = time.perf_counter()
    lm = load_model(args.model)
    print(
        f"{args.model} loaded in {time.perf_counter() - start:.2f} s; {len(plans)} entries; torch threads {args.threads}"
    )
    rows = []
    for entry_id, plan in plans:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            result = run_impl(str(plan.impl), model=lm) if plan.kind == "reproduction" else run_pipeline(lm, plan)
            payload = json.loads(result.to_json())
            ok = bool(payload["metrics"]) and (plan.steer is None or plan.kind != "pipeline" or "improve" in payload)
            error = "" if ok else "no metrics"
        except Exception as err:  # a benchmark counts failures, it does not stop at them
            ok, error = False, f"{type(err).__name__}: {err}"
        row = {"entry": entry_id, "kind": plan.kind, "impl": plan.run_id, "ok": ok, "error": error,
               "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}  # fmt: skip
        rows.append(row)
        flag = "ok " if ok else "ERR"
        print(f"{flag} {row['wall']:6.2f} s wall {row['cpu']:6.2f} s cpu  {entry_id:<58} {plan.run_id}"
              + (f"  — {error[:120]}" if error else ""), flush=True)  # fmt: skip
    report(rows)
    if args.cli:
        time_cli([i for i, _ in plans[: args.cli]])
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


def report(rows: list[dict[str, object]]) -> None:
    ok = [r for r in rows if r["ok"]]
    share = len(ok) / len(rows) if rows else 0.0
    print(f"\n{len(ok)}/{len(rows)} entries ran with metrics ({share:.1%}; target ≥ {TARGET_SHARE:.0%})")
    for kind in ("reproduction", "pipeline", None):
        chosen = [r for r in ok if kind is None or r["kind"] == kind]
        if not chosen:
            continue
        walls = [float(r["wall"]) for r in chosen]  # type: ignore[arg-type]
        cpus = [float(r["cpu"]) for r in chosen]  # type: ignore[arg-type]
        over = sum(1 for w in walls if w > TARGET_SECONDS)
        print(f"  {kind or 'all':<13} {len(chosen):4d} runs: wall median {statistics.median(walls):.2f} s, max "
              f"{max(walls):.2f} s ({over} over {TARGET_SECONDS:g} s); cpu median {statistics.median(cpus):.2f} s, "
              f"max {max(cpus):.2f} s")  # fmt: skip
    for r in rows:
        if not r["ok"]:
            print(f"  failed: {r['entry']} ({r['impl']}): {str(r['error'])[:160]}")


def time_cli(entry_ids: list[str]) -> None:
    print("\nthrough the real entry point (start-up + toy load + run):")
    for entry_id in entry_ids:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "mi_catalog", "run", entry_id, "--format", "json", "--quiet"],
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        print(f"  exit {proc.returncode} {time.perf_counter() - start:6.2f} s  mi-catalog run {entry_id}")


if __name__ == "__main__":
    main()
