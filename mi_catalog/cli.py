"""The `mi-catalog` command: a thin layer over the library.

Each command parses its flags, calls one library function, and prints the
result; library errors (:mod:`mi_catalog.errors`) become a one-line message
and an exit code (1 = validation found problems, 2 = bad input or usage), and
so do argparse's usage errors. Command groups that
need heavy dependencies (``run``, ``toy``, ``site``) register themselves from
their own modules, which import torch/transformers/mkdocs only inside their
handlers.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from mi_catalog import __version__, vocab
from mi_catalog.errors import CliError, MiCatalogError, exit_code

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing on the query path (mypy reads it as True)
if TYPE_CHECKING:
    from typing import NoReturn

Handler = Callable[[argparse.Namespace], int]

# Modules that add sub-commands: each exposes ``register(subparsers)``. Their
# module-level imports must stay light (checked by tests/catalog/test_index.py).
COMMAND_MODULES = (
    "mi_catalog.commands",
    "mi_catalog.cli_run",
    "mi_catalog.toy.cli",
    "mi_catalog.models.cli",
    "mi_catalog.sae_cli",
    "mi_catalog.bench.cli",
    "mi_catalog.site",
)


def add_catalog_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--catalog",
        metavar="DIR",
        default=os.environ.get("MI_CATALOG_DIR"),
        help="catalog folder (default: $MI_CATALOG_DIR, else the catalog shipped with the package)",
    )


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what is wrong, and where to read more), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``command``, register command modules in order only until one provides it
    (`mi-catalog query` then never imports the run/toy/models/site modules: a faster cold start)."""
    import importlib

    parser = Parser(
        prog="mi-catalog",
        description="Search and run the catalog of actionable mechanistic interpretability.",
        epilog=f"facets: {', '.join(f.name for f in vocab.FACETS)} — see `mi-catalog facets`.",
    )
    parser.add_argument("--version", action="version", version=f"mi-catalog {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(subparsers)
        if command is not None and command in subparsers.choices:
            break
    return parser


def _command_word(argv: Sequence[str]) -> str | None:
    # The sub-command is the first word; anything else (--help, --version, nothing) needs the full parser.
    return argv[0] if argv and not argv[0].startswith("-") else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_word(argv))
    args = parser.parse_args(argv)
    handler: Handler = args.func
    try:
        return handler(args)
    except (CliError, MiCatalogError) as err:
        print(f"mi-catalog: error: {err}", file=sys.stderr)
        return exit_code(err)
    except KeyboardInterrupt:
        print("mi-catalog: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `mi-catalog query ... | head`: the reader went away; not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
