"""``mi-catalog run ENTRY`` (every catalog entry runs) and ``mi-catalog pipeline``: plans, run on a model.

The plan (:mod:`mi_catalog.methods.plan`, pure Python) says what runs: a reproduction, or a pipeline composed
from the entry's tags. Module-level imports stay light: torch and the implementations load inside handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mi_catalog.errors import CliError
from mi_catalog.impl_info import ImplInfo, discover_impls
from mi_catalog.methods.plan import Plan, PlanError, plan_for, plan_pipeline
from mi_catalog.models import BACKENDS


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """The options a pipeline run shares with ``mi-catalog run``."""
    parser.add_argument("--model", default="toy", help="'toy' (default), a fetched model (mi-catalog models list), "
                        "a local folder, or a Hugging Face hub id")  # fmt: skip
    parser.add_argument("--n", type=int, default=None, metavar="N", help="number of prompts (default: the method's)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument(
        "--out", metavar="DIR", default=None, help="write figures (SVG + CSV), tensors and the JSON here"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default=None)
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                     help="model code: auto (default: our own Llama for plain Llama folders, else transformers), "
                     "native or transformers")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    parser.add_argument("--plan", action="store_true", help="print what would run (reproduction or pipeline) and exit")


def register(subparsers: Any) -> None:
    pipe = subparsers.add_parser(
        "pipeline",
        help="run a locate → steer → improve pipeline for any object × method × steering × task",
        description="Example: mi-catalog pipeline --object head --method patching --steer caa --task safety. "
        "Values take the vocabulary's aliases (mi-catalog facets); --steer may also be 'pruning' (the efficiency "
        "stage) or 'none' (locate only); --task a task name or an application (safety, reasoning, ...).",
    )
    pipe.add_argument("--object", required=True, help="interpretable object (head, neuron, resid, mlp, sae, ...)")
    pipe.add_argument("--method", required=True, help="localizing method (patching, probe, logit-lens, ...)")
    pipe.add_argument("--steer", default=None, help="steering method (ablation, caa, rome, ...), 'pruning' or 'none'")
    pipe.add_argument("--task", default=None, help="task (facts, refusal, toxicity, ...) or application (safety, ...)")
    add_run_options(pipe)
    pipe.set_defaults(func=cmd_pipeline)


def cmd_pipeline(args: argparse.Namespace) -> int:
    try:
        plan = plan_pipeline(args.object, args.method, args.steer, args.task, discover_impls())
    except PlanError as err:
        raise CliError(str(err), 2) from None
    return run_plan(plan, args)


def catalog_entries(catalog: str | None) -> list[Any]:
    """The catalog's valid entries (an empty list when the folder cannot be read: the caller says what is unknown)."""
    from mi_catalog.load import load_catalog
    from mi_catalog.paths import resolve_catalog_dir

    try:
        return list(load_catalog(resolve_catalog_dir(catalog)).entries)
    except (OSError, ValueError):
        return []


def entry_plan(target: str, impls: dict[str, ImplInfo], catalog: str | None) -> Plan | None:
    """The plan of a catalog entry id; None when ``target`` is not an entry."""
    entry = next((e for e in catalog_entries(catalog) if e.id == target), None)
    return None if entry is None else plan_for(entry, impls)


def print_plan(plan: Plan, fmt: str, model: str) -> None:
    if fmt == "json":
        print(json.dumps(plan.to_dict() | {"describe": plan.describe(model)}, indent=2))
        return
    print(f"{plan.command}\n  {plan.describe(model)}\n  {plan.reason}")
    if plan.kind == "pipeline":
        print(f"  locate: {plan.locator} ({plan.object} × {plan.method}) on task {plan.task}")
        stage = "pruning (efficiency)" if plan.prune else plan.steer or "none (locate only)"
        print(f"  steer:  {stage}")
        for note in plan.substitutions:
            print(f"  note:   {note}")
        if plan.entry:
            print(f"  same as: {plan.pipeline_command}")


def run_plan(plan: Plan, args: argparse.Namespace) -> int:
    """Run a plan on ``args.model``; print the table or the JSON (the run contract)."""
    if getattr(args, "plan", False):
        print_plan(plan, args.format, args.model)
        return 0
    from mi_catalog.cli_run import render_run
    from mi_catalog.methods.runner import RunError, check_out_dir
    from mi_catalog.progress import ProgressBar

    if getattr(args, "prompts", None) is not None and plan.kind == "pipeline":
        raise CliError(f"{plan.entry or 'a pipeline'} runs a pipeline on the model's own task data; --prompts works "
                       "with `mi-catalog run IMPL`", 2)  # fmt: skip
    if args.n is not None and args.n < 1:
        raise CliError("--n must be at least 1", 2)
    try:
        out_path = check_out_dir(args.out)
    except RunError as err:
        raise CliError(str(err), 2) from None
    if not plan.composed:  # one line: why, and what runs instead
        print(f"mi-catalog: note: {plan.entry}: {plan.reason}", file=sys.stderr)
    from mi_catalog.models import prepare_cli_process

    prepare_cli_process()  # RunExtraMissing (a UsageError: one line, exit 2); allocator kept warm
    progress = ProgressBar(enabled=not args.quiet and sys.stderr.isatty())
    if progress.enabled:
        sys.stderr.write(f"running {plan.run_id} on {args.model} …\n")
    result = _execute(plan, args, progress)
    if out_path is not None:
        from mi_catalog.methods.runner import write_outputs

        write_outputs(result, Path(out_path))
    if args.format == "json":
        print(result.to_json())
    else:
        print(render_run(result, what=plan.describe(result.model), plan=plan))
    return 0


def _execute(plan: Plan, args: argparse.Namespace, progress: Any) -> Any:
    from mi_catalog.methods.pipeline import PipelineError, run_pipeline
    from mi_catalog.methods.runner import RunError, run_impl
    from mi_catalog.models.families import UnsupportedModelError
    from mi_catalog.models.loading import ModelLoadError, load_model
    from mi_catalog.models.sites import SiteError
    from mi_catalog.tasks import TaskDataError

    what = plan.entry or plan.run_id
    try:
        if plan.kind == "reproduction":
            result = run_impl(str(plan.impl), model=args.model, seed=args.seed, device=args.device, dtype=args.dtype,
                              task=getattr(args, "task", None), n=args.n, prompts_file=getattr(args, "prompts", None),
                              progress=progress, backend=getattr(args, "backend", "auto"))  # fmt: skip
        else:
            lm = load_model(str(args.model), device=args.device, dtype=args.dtype, backend=getattr(args, "backend", "auto"))
            result = run_pipeline(lm, plan, seed=args.seed, n=args.n, task=getattr(args, "task", None) if plan.entry
                                  else None, progress=progress)  # fmt: skip
    except UnsupportedModelError as err:
        raise CliError(f"model not supported: {err}", 2) from None
    except (ModelLoadError, TaskDataError, RunError, SiteError, PipelineError) as err:
        raise CliError(str(err), 2) from None
    except OSError as err:
        raise CliError(f"cannot run {what} on {args.model!r}: {err}", 2) from None
    except Exception as err:  # a bug in a method: one line, never a traceback
        raise CliError(f"{plan.run_id} failed on {args.model!r}: {type(err).__name__}: {err}", 1) from None
    result.entry = plan.entry
    result.plan = plan.to_dict()
    return result
