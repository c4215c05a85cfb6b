"""``mi-catalog bench``: run the benchmark and print or write its result.

Module-level imports stay light (the main CLI imports this module for every command): torch and the
implementations are imported inside the handler.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mi_catalog.errors import CliError
from mi_catalog.progress import ProgressBar


def _words(values: list[str] | None) -> tuple[str, ...] | None:
    """``--methods a,b --methods c`` → ("a", "b", "c"); None when the flag was not given."""
    if values is None:
        return None
    return tuple(w.strip() for v in values for w in v.split(",") if w.strip())


def register(subparsers: Any) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="benchmark the reference implementations: locate (vs ground truth), steer (effect and cost), cost",
        description="Locate track: every localizing method scored against ground-truth mechanisms (precision@k, "
        "rank of the true units, AUROC, faithfulness). Steer track: every steerer's success, side effects and "
        "combined score. Cost: wall time and forward/backward passes. Means with 95%% intervals over seeds. "
        "Example: mi-catalog bench --quick --format json",
    )
    bench.add_argument("--model", default="toy", help="'toy' (default; the only model with planted truth), a "
                       "fetched model, a local folder or a hub id (steer and cost tracks only)")  # fmt: skip
    bench.add_argument("--methods", action="append", metavar="ID[,ID]", help="implementations to run (default: all)")
    bench.add_argument("--tasks", action="append", metavar="TASK[,TASK]", help="tasks to run on (default: all)")
    bench.add_argument("--seeds", type=int, default=None, metavar="N", help="seeds 0..N-1 (default 10; --quick: 2)")
    bench.add_argument("--n", type=int, default=None, metavar="N",
                       help="prompts per run for every method (default: the bench's settings; use a small N on a real model)")  # fmt: skip
    bench.add_argument("--quick", action="store_true", help="a small subset (methods, tasks, 2 seeds): under a minute")
    bench.add_argument("--format", choices=("table", "json", "markdown"), default="table",
                       help="json: the list of rows (the documented contract)")  # fmt: skip
    bench.add_argument("--out", metavar="DIR", default=None, help="write bench.json, bench.md and SVG plots here")
    bench.add_argument("--threads", type=int, default=None, metavar="N",
                       help="torch threads (default: 1 on the toy, which is fastest single-threaded; else torch's)")  # fmt: skip
    bench.add_argument("--jobs", type=int, default=None, metavar="N",
                       help="worker processes, each running whole (method, task) jobs with the same numbers as one "
                       "process (default: 2 when there are 2 cores, 1 with --quick)")  # fmt: skip
    bench.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    bench.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from mi_catalog.impl_info import discover_impls
    from mi_catalog.methods.runner import RunError, check_out_dir

    if args.seeds is not None and args.seeds < 1:
        raise CliError("--seeds must be at least 1", 2)
    if args.threads is not None and args.threads < 1:
        raise CliError("--threads must be at least 1", 2)
    if args.jobs is not None and args.jobs < 1:
        raise CliError("--jobs must be at least 1", 2)
    if args.n is not None and args.n < 2:
        raise CliError("--n must be at least 2", 2)
    try:
        out_dir = check_out_dir(args.out)  # a bad --out fails before any model runs
    except RunError as err:
        raise CliError(str(err), 2) from None
    methods, tasks = _words(args.methods), _words(args.tasks)
    known = discover_impls()
    unknown = [m for m in methods or () if m not in known]
    if unknown:
        raise CliError(f"unknown method(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(known))}", 2)
    from mi_catalog.models import prepare_cli_process

    prepare_cli_process()  # RunExtraMissing (a UsageError: one line, exit 2); allocator kept warm

    import torch

    from mi_catalog.bench.run import BenchPlan, run_bench
    from mi_catalog.models.families import UnsupportedModelError
    from mi_catalog.models.loading import ModelLoadError, load_model

    progress = ProgressBar(enabled=not args.quiet and sys.stderr.isatty())
    if progress.enabled:
        sys.stderr.write(f"loading {args.model} …\n")
    try:
        lm = load_model(args.model)
    except UnsupportedModelError as err:
        raise CliError(f"model not supported: {err}", 2) from None
    except (ModelLoadError, OSError) as err:
        raise CliError(str(err), 2) from None
    threads = args.threads or (1 if lm.card is not None else None)  # the toy: a toy checkpoint carries its card
    if threads:
        torch.set_num_threads(threads)
    import os

    jobs = args.jobs or (1 if args.quick else min(2, os.cpu_count() or 1))
    plan = BenchPlan(model=args.model, methods=methods, tasks=tasks, seeds=args.seeds, quick=args.quick, jobs=jobs,
                     n=args.n)  # fmt: skip
    result = run_bench(plan, lm=lm, progress=progress).to_dict()
    if out_dir is not None:
        write_result(result, out_dir)
    from mi_catalog.bench.render import render_json, render_markdown, render_table, summary_line

    if args.format == "json":
        print(render_json(result))
    elif args.format == "markdown":
        print(f"{summary_line(result)}\n\n{render_markdown(result)}")
    else:
        print(render_table(result))
    if result["skipped"] and args.format != "table":
        for s in result["skipped"]:
            print(f"mi-catalog: warning: {s['method']} on {s['task']} failed: {s['reason']}", file=sys.stderr)
    return 0


def write_result(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """``bench.json`` (the whole result), ``bench.md`` and the SVG plots, each written atomically."""
    from mi_catalog.bench.render import plots, render_markdown, summary_line
    from mi_catalog.bench.rows import dump_result
    from mi_catalog.fsutil import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "bench.json", out_dir / "bench.md"]
    atomic_write_text(written[0], dump_result(result))
    atomic_write_text(written[1], f"{summary_line(result)}\n\n{render_markdown(result)}")
    for name, svg in plots(result).items():
        atomic_write_text(out_dir / name, svg)
        written.append(out_dir / name)
    return written
