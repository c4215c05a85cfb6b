"""``mi-catalog run`` and ``mi-catalog impls``: run and list the reference implementations.

Module-level imports stay light (the main CLI imports this module for every
command): torch, transformers and the implementations are imported inside the
handlers.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mi_catalog.errors import CliError
from mi_catalog.impl_info import ImplInfo, discover_impls

RUN_EXTRA_HINT = "pip install 'mi-catalog[run]'"


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run",
        help="run a reference implementation (by its id or a catalog entry id) on a model",
        description="Example: mi-catalog run logit-lens --model toy --format json --out runs/lens",
    )
    run.add_argument("target", metavar="IMPL_OR_ENTRY_ID", help="an implementation id or an entry id it reproduces")
    run.add_argument("--model", default="toy", help="'toy' (default), a Hugging Face hub id, or a local folder")
    run.add_argument("--format", choices=("table", "json"), default="table")
    run.add_argument("--out", metavar="DIR", default=None, help="write figures, tensors and <impl>.json here")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    run.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default=None)
    run.set_defaults(func=cmd_run)

    impls = subparsers.add_parser("impls", help="list the reference implementations")
    impls.add_argument("--format", choices=("table", "json"), default="table")
    impls.set_defaults(func=cmd_impls)


def _impl_dict(info: ImplInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "title": info.title,
        "objects": list(info.objects),
        "methods": list(info.methods),
        "steering": list(info.steering),
        "reproduces": list(info.reproduces),
    }


def cmd_impls(args: argparse.Namespace) -> int:
    impls = discover_impls()
    if args.format == "json":
        print(json.dumps([_impl_dict(i) for i in impls.values()], indent=2))
        return 0
    rows = [(i.id, ", ".join(i.objects), ", ".join(i.methods), ", ".join(i.steering) or "-",
             ", ".join(i.reproduces)) for i in impls.values()]  # fmt: skip
    header = ("ID", "OBJECTS", "METHODS", "STEERING", "REPRODUCES")
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from mi_catalog.runner import UnknownImplError, resolve

    try:
        resolve(args.target)  # unknown ids fail fast, before importing torch
    except UnknownImplError as err:
        raise CliError(str(err), 2) from None
    try:
        from mi_catalog.models import RunExtraMissing, require_run_extra

        require_run_extra()
    except RunExtraMissing as err:
        raise CliError(str(err), 2) from None
    from mi_catalog.models.families import UnsupportedModelError
    from mi_catalog.runner import run_impl

    try:
        result = run_impl(args.target, model=args.model, out_dir=args.out, seed=args.seed, device=args.device,
                          dtype=args.dtype)  # fmt: skip
    except UnsupportedModelError as err:
        raise CliError(f"model not supported: {err}", 2) from None
    except (OSError, ValueError) as err:  # missing local folder / hub id, bad dtype, toy checkpoint absent
        raise CliError(f"cannot run {args.target} on {args.model!r}: {err}", 2) from None
    if args.format == "json":
        print(result.to_json())
        return 0
    print(f"{result.impl} on {result.model}" + (f" (entry {result.entry})" if result.entry else "")
          + f" — {result.seconds:.1f} s")  # fmt: skip
    width = max((len(k) for k in result.metrics), default=0)
    for name, value in result.metrics.items():
        print(f"  {name.ljust(width)}  {value:.4g}")
    for path in result.figures:
        print(f"  figure: {path}")
    return 0
