"""The bench's JSON contract and its result files. Pure Python (the site reads results without torch).

``mi-catalog bench --format json`` prints a list of rows; every row has exactly these keys::

    {"track": "locate" | "steer" | "cost" | "truth",
     "method": "attribution-patching",      # implementation id ("random" / "ground-truth" for the references)
     "family": "gradient-detection",        # survey vocabulary id of the method (steer rows: its steering id;
                                            # "baseline" for random, "reference" for ground truth)
     "task": "induction",
     "metric": "auroc",
     "value": 0.97,                         # mean over seeds (null when undefined)
     "interval": [0.95, 0.99],              # 95 % bootstrap interval of that mean over seeds (null when undefined)
     "seconds": 1.23,                       # mean wall time of one run of this method on this task
     "n_seeds": 10,                         # seeds behind the mean (each seed also draws other prompts)
     "mechanism": "induction-heads",        # the ground-truth mechanism scored (locate/truth rows), else null
     "x": null}                             # the strength of a sweep point (metrics "sweep:…"), else null

Metrics by track — locate: ``precision_at_k``, ``true_rank``, ``auroc``, ``faithfulness``; steer: ``success``,
``accuracy_loss``, ``kl_neutral``, ``combined``, ``improve_before``, ``improve_after``, ``side_effect:<task>``
(accuracy after − before), ``sweep:<curve>:<series>`` (with ``x``); cost: ``seconds`` (wall), ``cpu_seconds``
(process CPU time, steadier on a busy machine), ``forward_passes``, ``backward_passes``; truth: ``faithfulness``, ``n_true``, ``n_units``. Keys are only ever added.

A result file (``--out DIR`` writes ``DIR/bench.json``; the site reads ``mi_catalog/bench/results/<model>.json``)
is ``{"meta": {...}, "mechanisms": [...], "rows": [...], "skipped": [...]}``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

ROW_KEYS = ("track", "method", "family", "task", "metric", "value", "interval", "seconds", "n_seeds", "mechanism", "x")
TRACKS = ("truth", "locate", "steer", "cost")
LOCATE_METRICS = ("precision_at_k", "true_rank", "auroc", "faithfulness")
STEER_METRICS = ("success", "accuracy_loss", "kl_neutral", "combined", "improve_before", "improve_after")
COST_METRICS = ("seconds", "cpu_seconds", "forward_passes", "backward_passes")
RESULTS_DIR = Path(__file__).resolve().parent / "results"


class ResultFileError(ValueError):
    """A bench result file that cannot be read."""


def number(value: float | int | None) -> float | int | None:
    """JSON-safe: integers stay integers, floats rounded to 6 decimals, non-finite → None."""
    if value is None or isinstance(value, bool):
        return None if value is None else int(value)
    if isinstance(value, int):
        return value
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None


def row_problems(row: Any) -> list[str]:
    """What is wrong with one row under the contract (empty when fine)."""
    if not isinstance(row, dict):
        return ["a row is not an object"]
    out = []
    if set(row) != set(ROW_KEYS):
        out.append(f"keys {sorted(row)} != {sorted(ROW_KEYS)}")
        return out
    if row["track"] not in TRACKS:
        out.append(f"track {row['track']!r} not one of {TRACKS}")
    for key in ("method", "family", "task", "metric"):
        if not isinstance(row[key], str) or not row[key]:
            out.append(f"{key} must be a non-empty string")
    if row["value"] is not None and not isinstance(row["value"], (int, float)):
        out.append("value must be a number or null")
    interval = row["interval"]
    if interval is not None and not (isinstance(interval, list) and len(interval) == 2):
        out.append("interval must be [lo, hi] or null")
    if not isinstance(row["n_seeds"], int) or row["n_seeds"] < 1:
        out.append("n_seeds must be a positive integer")
    return out


def load_result(path: str | Path) -> dict[str, Any]:
    """A result file → ``{"meta", "mechanisms", "rows", "skipped"}`` (raises :class:`ResultFileError`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ResultFileError(f"{path}: cannot read bench result ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise ResultFileError(f"{path}: not a bench result (expected an object with 'rows')")
    for i, row in enumerate(data["rows"]):
        problems = row_problems(row)
        if problems:
            raise ResultFileError(f"{path}: row {i}: {'; '.join(problems)}")
    data.setdefault("meta", {})
    data.setdefault("mechanisms", [])
    data.setdefault("skipped", [])
    return data


def dump_result(result: dict[str, Any]) -> str:
    """A result file's text: readable, one row per line (diffs of a re-measured result stay small)."""
    head = {k: result[k] for k in ("meta", "mechanisms", "skipped") if k in result}
    body = json.dumps(head, indent=1, allow_nan=False, ensure_ascii=False)[:-2]  # drop the closing "\n}"
    rows = ",\n".join("  " + json.dumps(r, allow_nan=False, ensure_ascii=False) for r in result["rows"])
    return f'{body},\n "rows": [\n{rows}\n ]\n}}\n'


def committed_result(model: str = "toy") -> dict[str, Any] | None:
    """The bench result shipped with the package for ``model`` (the site's Benchmark page), or None."""
    path = RESULTS_DIR / f"{model}.json"
    return load_result(path) if path.is_file() else None
