"""`mi-catalog site build|serve`: the generated static site (mkdocs-material).

Module-level imports stay light (argparse only): mkdocs is imported inside the
handlers, so `mi-catalog query` never pays for it and a missing mkdocs is a
clear error rather than an ImportError at start-up.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEFAULT_PORT = 8000


def register(subparsers: Any) -> None:
    from mi_catalog.cli import add_catalog_option

    site = subparsers.add_parser(
        "site",
        help="build or serve the static website",
        description="Build the catalog's website (one page per paper, the vocabulary, the object x method grids "
        "and a faceted explore page) with mkdocs-material, or serve it on 127.0.0.1.",
    )
    commands = site.add_subparsers(dest="site_command", metavar="SUBCOMMAND")
    commands.required = True

    build = commands.add_parser("build", help="generate the mkdocs project and build the site")
    _add_build_options(build, add_catalog_option)
    build.set_defaults(func=cmd_build)

    serve = commands.add_parser("serve", help="build the site, then serve it on 127.0.0.1")
    _add_build_options(serve, add_catalog_option)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0 = any free)")
    serve.add_argument("--no-build", action="store_true", help="serve the existing --out folder as is")
    serve.set_defaults(func=cmd_serve)


def _add_build_options(parser: argparse.ArgumentParser, add_catalog_option: Any) -> None:
    add_catalog_option(parser)
    parser.add_argument("--out", metavar="DIR", help="output folder (default: _site/ in a checkout, else ./_site)")
    parser.add_argument(
        "--project", metavar="DIR", help="where to write the mkdocs project (default: the repository's site/)"
    )


def _build(args: argparse.Namespace) -> Path:
    from mi_catalog.paths import resolve_catalog_dir
    from mi_catalog.site.build import build_site

    report = build_site(
        resolve_catalog_dir(args.catalog),
        out_dir=Path(args.out).expanduser() if args.out else None,
        project_dir=Path(args.project).expanduser() if args.project else None,
    )
    print(
        f"built {report.papers} papers ({report.pages} pages) into {report.out_dir} "
        f"in {report.generate_seconds + report.mkdocs_seconds:.1f}s "
        f"(generate {report.generate_seconds:.1f}s, mkdocs {report.mkdocs_seconds:.1f}s)"
    )
    return report.out_dir


def cmd_build(args: argparse.Namespace) -> int:
    _build(args)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mi_catalog.errors import CliError
    from mi_catalog.site.build import default_out_dir
    from mi_catalog.site.serve import make_server

    if args.no_build:
        out = Path(args.out).expanduser() if args.out else default_out_dir()
        if not (out / "index.html").is_file():
            raise CliError(f"nothing to serve in {out}: run `mi-catalog site build` first")
    else:
        out = _build(args)
    server = make_server(out, args.port)
    print(f"serving {out} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)", flush=True)
    with server:
        server.serve_forever()
    return 0
