"""The ``mi-catalog toy`` command group: ``train`` a toy model and ``eval`` one against its card.

Module-level imports stay light (the main CLI imports this module for every
command); torch/transformers are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mi_catalog.errors import CliError

INSTALL_HINT = "the toy model needs torch and transformers: pip install 'mi-catalog[run]'"


def register(subparsers: Any) -> None:
    """Add ``toy train`` and ``toy eval``."""
    toy = subparsers.add_parser("toy", help="train or evaluate the shipped toy model")
    commands = toy.add_subparsers(dest="toy_command", metavar="TOY_COMMAND")
    commands.required = True

    train = commands.add_parser(
        "train",
        help="train a toy model (the current recipe v3: the recipe v2 model, continued on the v3 mixture) "
        "and write its checkpoint and card",
    )
    train.add_argument(
        "--out", metavar="DIR", default="toy-checkpoint", help="output folder (default: ./toy-checkpoint)"
    )
    train.add_argument(
        "--steps", type=int, default=None, help="training steps of the last stage (default: the recipe's)"
    )
    train.add_argument(
        "--base-from-scratch",
        action="store_true",
        help="train the base recipes first (v1 from scratch, then v2) instead of continuing the packaged, "
        "sha256-pinned v2 weights (automatic for a seed other than theirs; on another machine it gives another base)",
    )
    train.add_argument(
        "--base-steps",
        type=int,
        default=None,
        help="training steps of each base stage (implies --base-from-scratch; default: the recipes')",
    )
    train.add_argument(
        "--base",
        metavar="DIR",
        default=None,
        help="continue from this checkpoint of the base recipe (same seed and settings) instead",
    )
    train.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    train.add_argument("--no-card", action="store_true", help="skip measuring mechanisms and writing card.json")
    train.set_defaults(func=run_train)

    evaluate = commands.add_parser("eval", help="re-measure a toy model's task accuracies and compare with its card")
    evaluate.add_argument("--model", metavar="DIR", default=None, help="checkpoint folder (default: the shipped one)")
    evaluate.add_argument("--format", choices=("table", "json"), default="table")
    evaluate.set_defaults(func=run_eval)


def _require_run_extras() -> None:
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as err:
        raise CliError(INSTALL_HINT, 2) from err
    transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars would drown the report


def run_train(args: argparse.Namespace) -> int:
    _require_run_extras()
    from dataclasses import replace

    from mi_catalog.toy.ship import ship
    from mi_catalog.toy.train import Recipe, packaged_base_seed, train

    for flag, value in (("--steps", args.steps), ("--base-steps", args.base_steps)):
        if value is not None and value < 1:
            raise CliError(f"{flag} must be at least 1", 2)
    recipe = Recipe(seed=args.seed)
    if args.steps is not None:
        recipe = replace(recipe, steps=args.steps)
    base_dir = Path(args.base) if args.base else None
    if base_dir is not None and not (base_dir / "model.safetensors").is_file():
        raise CliError(f"--base: no toy checkpoint (model.safetensors) in {base_dir}", 2)
    from_scratch = args.base_from_scratch or args.base_steps is not None
    if base_dir is None and not from_scratch and recipe.base is not None:
        pinned_seed = packaged_base_seed(recipe.base.recipe_version)
        if pinned_seed != args.seed:
            print(
                f"the packaged recipe v{recipe.base.recipe_version} weights are seed {pinned_seed}'s: "
                f"training the base from scratch with seed {args.seed} first",
                file=sys.stderr,
            )
            from_scratch = True
    if recipe.base is not None and from_scratch and base_dir is None:
        recipe = replace(recipe, base=_unpinned(recipe.base, args.base_steps), base_weights_sha256=None)
    elif recipe.base is not None and base_dir is not None:
        base = recipe.base if args.base_steps is None else replace(recipe.base, steps=args.base_steps)
        recipe = replace(recipe, base=base, base_weights_sha256=None)
    out = Path(args.out)
    try:
        model = train(recipe, out_dir=out, progress=True, base_dir=base_dir)
    except ValueError as err:  # a base checkpoint of another recipe
        raise CliError(str(err), 2) from err
    training = dict(model.config.toy_training)
    record = training.get("base") or {}
    if not record:
        start = ""
    elif from_scratch:
        start = f"recipe v{record['recipe_version']} from scratch ({record['steps']} steps), then "
    else:
        start = f"continuing recipe v{record['recipe_version']} weights {record['weights_sha256'][:12]}…, "
    print(f"trained {start}{recipe.steps} steps in {training['train_seconds']:.0f} s → {out}")
    if not args.no_card:
        card = ship(out, training)
        for task, accuracy in card["accuracies"].items():
            print(f"{task:<10} {accuracy:.3f}")
    return 0


def _unpinned(base: Any, steps: int | None) -> Any:
    """``base`` and every recipe it continues, trained in this run (no pinned weights), each ``steps`` long if given."""
    from dataclasses import replace

    inner = None if base.base is None else _unpinned(base.base, steps)
    return replace(base, base=inner, base_weights_sha256=None, **({} if steps is None else {"steps": steps}))


def run_eval(args: argparse.Namespace) -> int:
    """Re-measure accuracies on the card's evaluation set; exit 1 if they drift from the card."""
    _require_run_extras()
    from mi_catalog.toy import CHECKPOINT_DIR, load_model_dir
    from mi_catalog.toy.evaluate import evaluate
    from mi_catalog.toy.ship import ACCURACY_TOLERANCE, EVAL_N, EVAL_SEED

    directory = Path(args.model) if args.model else CHECKPOINT_DIR
    if not (directory / "model.safetensors").is_file():
        raise CliError(f"no toy checkpoint (model.safetensors) in {directory}", 2)
    card = _read_card(directory)
    settings = card.get("evaluation", {})
    model, tokenizer = load_model_dir(directory)
    measured = evaluate(model, tokenizer, n=settings.get("n_per_task", EVAL_N), seed=settings.get("seed", EVAL_SEED))
    expected: dict[str, float] = card.get("accuracies", {})
    tolerance = settings.get("tolerance", ACCURACY_TOLERANCE)
    mismatches = [t for t, v in measured.items() if t in expected and abs(v - expected[t]) > tolerance]
    if args.format == "json":
        report = {
            "model": str(directory),
            "accuracies": measured,
            "card_accuracies": expected,
            "tolerance": tolerance,
            "matches_card": not mismatches,
        }
        print(json.dumps(report, indent=2))
    else:
        print(f"{'task':<10} {'measured':>8} {'card':>8}")
        for task, value in measured.items():
            card_value = f"{expected[task]:.3f}" if task in expected else "-"
            flag = "  ≠ card" if task in mismatches else ""
            print(f"{task:<10} {value:>8.3f} {card_value:>8}{flag}")
    return 1 if mismatches else 0


def _read_card(directory: Path) -> dict[str, Any]:
    path = directory / "card.json"
    if not path.is_file():
        return {}
    try:
        card: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CliError(f"{path} is not valid JSON: {err}", 2) from err
    return card
