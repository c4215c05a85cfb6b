"""The ``mi-catalog sae`` command group: ``train`` a sparse autoencoder on one site of a model, ``list`` the cached ones.

Module-level imports stay light (the main CLI imports this module for every command): torch, transformers
and :mod:`mi_catalog.sae` are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from mi_catalog.errors import CliError
from mi_catalog.progress import ProgressBar


def register(subparsers: Any) -> None:
    """Add ``sae train`` and ``sae list``."""
    sae = subparsers.add_parser(
        "sae", help="train and list sparse autoencoders (SAE features) on a model's activations"
    )
    commands = sae.add_subparsers(dest="sae_command", metavar="SAE_COMMAND")
    commands.required = True

    train = commands.add_parser(
        "train",
        help="train an SAE on one site over the model's task prompts and cache it",
        description=(
            "Collect the activations of --site on every real token of the model's task prompts, train a ReLU "
            "sparse autoencoder (L1, unit-norm decoder) on them and save it as safetensors + JSON in the SAE cache "
            "($MI_CATALOG_CACHE/saes/<model>/<site>/) or --out. `mi-catalog run sae-feature-steering` reads it."
        ),
    )
    train.add_argument("--model", default="toy", help="'toy' (default), a fetched model, a local folder or a hub id")
    train.add_argument("--site", default=None,
                       help="activation site (default: resid_post.{n_layers//2 - 1}, i.e. resid_post.1 on the toy)")  # fmt: skip
    train.add_argument(
        "--d-sae", type=int, default=None, metavar="N", help="features (default: 4 × d_model; 256 on the toy)"
    )
    train.add_argument("--steps", type=int, default=None, metavar="N", help="optimiser steps (default: 1000)")
    train.add_argument("--l1", type=float, default=None, help="L1 sparsity coefficient (default: 1.0)")
    train.add_argument("--prompts-per-task", type=int, default=None, metavar="N",
                       help="prompts drawn from each of the model's tasks (default: 256)")  # fmt: skip
    train.add_argument("--seed", type=int, default=0, help="random seed: prompts, initialisation, batches (default: 0)")
    train.add_argument("--out", metavar="DIR", default=None, help="save here instead of the SAE cache")
    train.add_argument("--threads", type=int, default=1, metavar="N",
                       help="torch threads (default: 1; small matrices on a shared machine are fastest on one)")  # fmt: skip
    train.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    train.add_argument("--format", choices=("table", "json"), default="table")
    train.add_argument("--quiet", "-q", action="store_true", help="no progress bar on stderr")
    train.set_defaults(func=run_train)

    listing = commands.add_parser("list", help="the SAEs in the cache: model, site, size, quality, path")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.set_defaults(func=run_list)


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise CliError(f"{name} must be at least 1 (got {value})", 2)


def run_train(args: argparse.Namespace) -> int:
    for name, value in (("--d-sae", args.d_sae), ("--steps", args.steps), ("--prompts-per-task", args.prompts_per_task),
                        ("--threads", args.threads)):  # fmt: skip
        _positive(name, value)
    if args.l1 is not None and not args.l1 >= 0:
        raise CliError(f"--l1 must be ≥ 0 (got {args.l1})", 2)
    from mi_catalog.models import prepare_cli_process

    prepare_cli_process()  # RunExtraMissing (a UsageError: one line, exit 2); allocator kept warm
    import torch

    from mi_catalog import sae as sae_lib
    from mi_catalog.models.families import UnsupportedModelError
    from mi_catalog.models.loading import ModelLoadError, load_model

    torch.set_num_threads(args.threads)
    bar = ProgressBar(enabled=not args.quiet and sys.stderr.isatty())
    if bar.enabled:
        sys.stderr.write(f"loading {args.model} …\n")
    try:
        lm = load_model(args.model, device=args.device)
    except UnsupportedModelError as err:
        raise CliError(f"model not supported: {err}", 2) from None
    except ModelLoadError as err:
        raise CliError(str(err), 2) from None
    except OSError as err:
        raise CliError(f"cannot load {args.model!r}: {err}", 2) from None
    options: dict[str, Any] = {"d_sae": args.d_sae, "seed": args.seed}
    for key in ("steps", "l1", "prompts_per_task"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    try:
        sae = sae_lib.train_sae(lm, args.site, progress=bar, **options)
        path = sae_lib.save_sae(sae, args.out)
    except sae_lib.SAEError as err:
        raise CliError(str(err), 2) from None
    config = sae.config
    if args.format == "json":
        print(json.dumps({"path": str(path), "config": json.loads(config.to_json())}, indent=2))
        return 0
    m = config.metrics
    print(f"SAE {config.site} of {config.model}: {config.d_sae} features, {config.steps} steps on {config.n_tokens} "
          f"tokens in {config.seconds:.1f} s — explained variance {m['explained_variance']:.3f}, "
          f"L0 {m['l0']:.1f}, dead {100 * m['dead_fraction']:.1f} %")  # fmt: skip
    print(f"saved: {path}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from mi_catalog.sae import list_saes, saes_dir

    rows = list_saes()
    if args.format == "json":
        payload = {"cache": str(saes_dir()),
                   "saes": [{"path": str(r.path), "config": json.loads(r.config.to_json())} for r in rows]}  # fmt: skip
        print(json.dumps(payload, indent=2))
        return 0
    if not rows:
        print(f"no SAEs cached in {saes_dir()} (train one: mi-catalog sae train)")
        return 0
    header = ("model", "site", "d_sae", "steps", "seed", "expl.var", "L0", "dead", "weights", "path")
    table = [header] + [
        (r.config.model, r.config.site, str(r.config.d_sae), str(r.config.steps), str(r.config.seed),
         f"{r.config.metrics.get('explained_variance', float('nan')):.3f}", f"{r.config.metrics.get('l0', float('nan')):.1f}",
         f"{100 * r.config.metrics.get('dead_fraction', float('nan')):.1f}%", r.config.weights_sha256[:12], str(r.path))
        for r in rows
    ]  # fmt: skip
    widths = [max(len(row[c]) for row in table) for c in range(len(header) - 1)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1])
    return 0
