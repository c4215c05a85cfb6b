"""``mi-catalog run`` and ``mi-catalog impls``: run and list the reference implementations.

Module-level imports stay light (the main CLI imports this module for every command): torch,
transformers and the implementations are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from mi_catalog.errors import CliError
from mi_catalog.impl_info import ImplInfo, discover_impls
from mi_catalog.models import BACKENDS
from mi_catalog.progress import ProgressBar


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run",
        help="run a reference implementation, or any catalog entry (its reproduction or a pipeline from its tags)",
        description="Example: mi-catalog run logit-lens --task facts --format json --out runs/lens. A catalog entry "
        "runs the implementation that reproduces it, else the pipeline composed from its tags (--plan shows which).",
    )
    run.add_argument("target", metavar="IMPL_OR_ENTRY_ID", help="an implementation id or any catalog entry id")
    run.add_argument("--model", default="toy", help="'toy' (default), a fetched model (mi-catalog models list), "
                     "a local folder, or a Hugging Face hub id")  # fmt: skip
    run.add_argument("--task", default=None, help="task to run on (default: the implementation's first task)")
    run.add_argument("--n", type=int, default=None, metavar="N", help="number of prompts (default: the method's)")
    run.add_argument("--prompts", metavar="FILE.jsonl", default=None,
                     help="your own examples: one JSON object per line with prompt, answer, optional "
                     "corrupt_prompt, corrupt_answer, label, subject")  # fmt: skip
    run.add_argument("--format", choices=("table", "json"), default="table")
    run.add_argument("--out", metavar="DIR", default=None, help="write figures (SVG + CSV), tensors and <impl>.json here")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    run.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default=None)
    run.add_argument("--backend", choices=BACKENDS, default="auto",
                     help="model code: auto (default: our own Llama for plain Llama folders, else transformers), "
                     "native or transformers")  # fmt: skip
    run.add_argument("--quiet", action="store_true", help="no progress output on stderr")
    run.add_argument("--plan", action="store_true",
                     help="print what would run (reproduction or pipeline, the command) and exit")  # fmt: skip
    run.add_argument("--catalog", metavar="DIR", default=None,
                     help="catalog folder for entry ids (default: $MI_CATALOG_DIR, else the shipped catalog)")  # fmt: skip
    run.set_defaults(func=cmd_run)

    from mi_catalog import cli_pipeline

    cli_pipeline.register(subparsers)

    impls = subparsers.add_parser("impls", help="list the reference implementations, or describe one")
    impls.add_argument("id", nargs="?", default=None, help="an implementation id: print its metadata and metrics")
    impls.add_argument("--format", choices=("table", "json"), default="table")
    impls.set_defaults(func=cmd_impls)


def impl_dict(info: ImplInfo) -> dict[str, Any]:
    """The documented JSON form of an implementation (``mi-catalog impls --format json``)."""
    return {
        "id": info.id,
        "title": info.title,
        "objects": list(info.objects),
        "methods": list(info.methods),
        "steering": list(info.steering),
        "reproduces": list(info.reproduces),
        "tasks": list(info.tasks),
        "needs": list(info.needs),
        "metrics": list(info.metrics),
    }


def cmd_impls(args: argparse.Namespace) -> int:
    from mi_catalog.methods.glossary import GLOSSARY

    impls = discover_impls()
    if args.id is not None:
        info = impls.get(args.id)
        if info is None:
            from mi_catalog.methods.runner import UnknownImplError, resolve

            try:
                info, _entry = resolve(args.id, impls)
            except UnknownImplError as err:
                raise CliError(str(err), 2) from None
        if args.format == "json":
            detail = impl_dict(info) | {"glossary": {m: GLOSSARY.get(m, "") for m in info.metrics}}
            print(json.dumps(detail, indent=2))
            return 0
        print(f"{info.id} — {info.title}")
        for key in ("objects", "methods", "steering", "reproduces", "tasks", "needs"):
            print(f"  {key + ':':12} {', '.join(getattr(info, key)) or '-'}")
        print("  metrics:")
        width = max((len(m) for m in info.metrics), default=0)
        for m in info.metrics:
            print(f"    {m.ljust(width)}  {GLOSSARY.get(m, '(undefined)')}")
        return 0
    if args.format == "json":
        print(json.dumps([impl_dict(i) for i in impls.values()], indent=2))
        return 0
    rows = [(i.id, ", ".join(i.objects), ", ".join(i.methods), ", ".join(i.steering) or "-",
             ", ".join(i.reproduces) or "-") for i in impls.values()]  # fmt: skip
    header = ("ID", "OBJECTS", "METHODS", "STEERING", "REPRODUCES")
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from mi_catalog.methods.runner import RunError, UnknownImplError, check_out_dir, resolve

    impls = discover_impls()
    if args.target not in impls:  # a catalog entry: its reproduction, or the pipeline composed from its tags
        from mi_catalog.cli_pipeline import entry_plan, run_plan

        plan = entry_plan(args.target, impls, args.catalog or os.environ.get("MI_CATALOG_DIR"))
        if plan is not None:
            return run_plan(plan, args)
    if args.plan:
        try:
            info, _entry = resolve(args.target, impls)
        except UnknownImplError as err:
            raise CliError(str(err), 2) from None
        from mi_catalog.cli_pipeline import print_plan
        from mi_catalog.methods.plan import Plan

        print_plan(Plan(kind="reproduction", command=f"mi-catalog run {args.target}", impl=info.id,
                        reason=f"{info.id} is a reference implementation"), args.format, args.model)  # fmt: skip
        return 0
    try:
        resolve(args.target, impls)  # unknown ids fail fast, before importing torch
        check_out_dir(args.out)  # a bad --out fails before the model runs
    except UnknownImplError as err:
        raise CliError(str(err), 2) from None
    except RunError as err:
        raise CliError(str(err), 2) from None
    if args.n is not None and args.n < 1:
        raise CliError("--n must be at least 1", 2)
    from mi_catalog.models import prepare_cli_process

    prepare_cli_process()  # RunExtraMissing (a UsageError: one line, exit 2); allocator kept warm
    from mi_catalog.methods.runner import run_impl
    from mi_catalog.models.families import UnsupportedModelError
    from mi_catalog.models.loading import ModelLoadError
    from mi_catalog.models.sites import SiteError
    from mi_catalog.tasks import TaskDataError

    progress = ProgressBar(enabled=not args.quiet and sys.stderr.isatty())
    if progress.enabled:  # loading a model and the first passes can take seconds: say what is happening
        sys.stderr.write(f"running {args.target} on {args.model}{f' (task {args.task})' if args.task else ''} …\n")
    try:
        result = run_impl(args.target, model=args.model, out_dir=args.out, seed=args.seed, device=args.device,
                          dtype=args.dtype, task=args.task, n=args.n, prompts_file=args.prompts,
                          progress=progress, backend=args.backend)  # fmt: skip
    except UnsupportedModelError as err:
        raise CliError(f"model not supported: {err}", 2) from None
    except (ModelLoadError, TaskDataError, RunError, SiteError) as err:
        raise CliError(str(err), 2) from None
    except OSError as err:
        raise CliError(f"cannot run {args.target} on {args.model!r}: {err}", 2) from None
    except Exception as err:  # a bug in a method: one line, never a traceback
        raise CliError(f"{args.target} failed on {args.model!r}: {type(err).__name__}: {err}", 1) from None
    if args.format == "json":
        print(result.to_json())
        return 0
    print(render_run(result))
    return 0


def _value(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def render_run(result: Any, what: str | None = None, plan: Any = None) -> str:
    """The table form of a run: what ran (in words), metrics with intervals, the top findings, the improvement and
    its cost, files written."""
    if what is None:
        what = "reproduction of the paper's method" if result.kind == "reproduction" else \
            "pipeline: the survey's method family applied, not the paper's exact algorithm"  # fmt: skip
    lines = [f"{result.impl} on {result.model}, task {result.task}" + (f" (entry {result.entry})" if result.entry else "")
             + f" — {result.seconds:.2f} s", f"  {what}"]  # fmt: skip
    if plan is not None and plan.kind == "pipeline":
        lines.extend(f"  note: {note}" for note in plan.substitutions)
    metrics = result.output.metrics
    width = max((len(k) for k in metrics), default=0)
    for name, value in metrics.items():
        ci = result.output.intervals.get(name)
        tail = f"  [{_value(ci[0])}, {_value(ci[1])}]" if ci else ""
        lines.append(f"  {name.ljust(width)}  {_value(value)}{tail}")
    if result.output.findings:
        lines.append("  top findings:")
        for f in result.output.findings[:5]:
            where = f.label or f"{f.object} L{f.layer}" + (f"#{f.index}" if f.index is not None else "")
            lines.append(f"    {where:<28} {f.object:<16} score {_value(f.score)}")
    if result.output.improve is not None:
        imp = result.output.improve
        lines.append(f"  improve: {imp.task} {imp.metric} {_value(imp.before)} → {_value(imp.after)} "
                     f"[{_value(imp.interval[0])}, {_value(imp.interval[1])}]")  # fmt: skip
        for s in result.output.side_effects:
            lines.append(f"  cost: {s.name} {_value(s.before)} → {_value(s.after)}")
    for path in result.figures:
        lines.append(f"  wrote: {path}")
    return "\n".join(lines)
