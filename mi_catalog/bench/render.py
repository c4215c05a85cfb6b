"""A bench result as a terminal table, Markdown, JSON rows and SVG heatmaps. Pure Python (no torch): the site uses it.

``result`` is the dict form of a bench result: ``{"meta", "mechanisms", "rows", "skipped"}`` (:mod:`.rows`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from typing import Any

from mi_catalog.bench.rows import COST_METRICS, LOCATE_METRICS
from mi_catalog.methods.contract import Heatmap
from mi_catalog.methods.figures import heatmap_svg

Row = dict[str, Any]
REFERENCES = ("ground-truth", "random")
LOCATE_HEAD = {"precision_at_k": "P@k", "true_rank": "rank", "auroc": "AUROC", "faithfulness": "faithful."}
STEER_COLUMNS = (("success", "success"), ("accuracy_loss", "acc. loss"), ("kl_neutral", "KL"), ("combined", "combined"))
COST_HEAD = {"seconds": "s/run", "cpu_seconds": "CPU s", "forward_passes": "fwd", "backward_passes": "bwd"}


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for a table: ``digits`` decimals; ``digits=0`` for counts (forward passes, units)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 10):
        return str(int(value))
    return f"{value:.{digits}f}"


def cell(row: Row | None, digits: int = 2) -> str:
    """``mean [lo, hi]`` (just the mean for one seed or a degenerate interval)."""
    if row is None:
        return "–"
    value, interval = row["value"], row["interval"]
    if row["n_seeds"] <= 1 or interval is None or interval[0] == interval[1]:
        return fmt(value, digits)
    return f"{fmt(value, digits)} [{fmt(interval[0], digits)}, {fmt(interval[1], digits)}]"


def rows_of(result: dict[str, Any], track: str, method: str | None = None) -> list[Row]:
    return [r for r in result["rows"] if r["track"] == track and (method is None or r["method"] == method)]


def _index(rows: Iterable[Row], key: Callable[[Row], tuple[str, ...]]) -> dict[tuple[str, ...], Row]:
    return {key(r): r for r in rows}


def valid_mechanisms(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in result.get("mechanisms", []) if m.get("valid")]


# ---------------------------------------------------------------------------------------------------------
# Tables: one builder, two skins (terminal, Markdown)
# ---------------------------------------------------------------------------------------------------------


def locate_table(result: dict[str, Any], method: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one line per (mechanism, method), best AUROC first, the references last."""
    by_key = _index(rows_of(result, "locate"), lambda r: (r["mechanism"], r["method"], r["metric"]))
    truth = _index(rows_of(result, "truth"), lambda r: (r["mechanism"], r["metric"]))
    header = ["mechanism", "task", "true/units", "method", *LOCATE_HEAD.values(), "seeds", "s/run"]
    lines: list[list[str]] = []
    for mech in valid_mechanisms(result):
        mid = mech["id"]
        methods = sorted({m for (k, m, _metric) in by_key if k == mid and (method is None or m == method)})
        if not methods:
            continue

        def auroc(m: str, mid: str = mid) -> float:
            row = by_key.get((mid, m, "auroc"))
            return -(row["value"] if row and row["value"] is not None else -1.0)

        ordered = sorted((m for m in methods if m not in REFERENCES), key=lambda m: (auroc(m), m))
        ordered += [m for m in REFERENCES if m in methods and method is None]
        n_true = truth.get((mid, "n_true"))
        size = f"{int(n_true['value']) if n_true else len(mech['true_units'])}/{mech['n_units']}"
        for m in ordered:
            cells = [cell(by_key.get((mid, m, metric))) for metric in LOCATE_METRICS]
            any_row = next((by_key[(mid, m, metric)] for metric in LOCATE_METRICS if (mid, m, metric) in by_key), None)
            seeds = str(any_row["n_seeds"]) if any_row else "–"
            seconds = fmt(any_row["seconds"]) if any_row and m not in REFERENCES else ""
            lines.append([mid, mech["task"], size, m, *cells, seeds, seconds])
        if method is None:
            faith = truth.get((mid, "faithfulness"))
            lines.append([mid, mech["task"], size, "ground-truth", "1.00", fmt((len(mech["true_units"]) + 1) / 2),
                          "1.00", cell(faith), "", ""])  # fmt: skip
    return header, lines


def steer_table(result: dict[str, Any], method: str | None = None) -> tuple[list[str], list[list[str]]]:
    by_key = _index(rows_of(result, "steer", method), lambda r: (r["method"], r["task"], r["metric"]))
    header = ["method", "family", "task", "before → after", *(h for _m, h in STEER_COLUMNS), "seeds", "s/run"]
    pairs = sorted({(m, t) for (m, t, _metric) in by_key})
    combined = {p: (by_key.get((*p, "combined")) or {}).get("value") or 0.0 for p in pairs}
    lines = []
    for m, t in sorted(pairs, key=lambda p: (-combined[p], p)):
        before, after = by_key.get((m, t, "improve_before")), by_key.get((m, t, "improve_after"))
        change = f"{fmt(before['value'])} → {fmt(after['value'])}" if before and after else "–"
        row = by_key[(m, t, "combined")] if (m, t, "combined") in by_key else next(iter(by_key.values()))
        lines.append([m, row["family"], t, change, *(cell(by_key.get((m, t, metric))) for metric, _h in STEER_COLUMNS),
                      str(row["n_seeds"]), fmt(row["seconds"])])  # fmt: skip
    return header, lines


def cost_table(result: dict[str, Any], method: str | None = None) -> tuple[list[str], list[list[str]]]:
    by_key = _index(rows_of(result, "cost", method), lambda r: (r["method"], r["task"], r["metric"]))
    header = ["method", "family", "task", *COST_HEAD.values(), "seeds"]
    lines = []
    for m, t in sorted({(m, t) for (m, t, _metric) in by_key}):
        first = next(by_key[(m, t, metric)] for metric in COST_METRICS if (m, t, metric) in by_key)
        lines.append([m, first["family"], t, *(cell(by_key.get((m, t, metric)), 2 if "seconds" in metric else 0)
                                               for metric in COST_HEAD), str(first["n_seeds"])])  # fmt: skip
    return header, lines


def _text_table(header: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(r[c]) for r in [header, *lines]) for c in range(len(header))]
    out = []
    for r in [header, *lines]:
        out.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(out)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def md_table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_md_escape(v) for v in line) + " |" for line in lines]
    return "\n".join(out) + "\n"


def summary_line(result: dict[str, Any]) -> str:
    meta = result.get("meta", {})
    mode = "--quick; " if meta.get("quick") else ""
    return (f"mi-catalog bench on {meta.get('model', '?')} ({mode}up to {meta.get('seeds', '?')} seeds; "
            f"mean [95 % interval over seeds]; {meta.get('seconds', '?')} s)")  # fmt: skip


def render_table(result: dict[str, Any]) -> str:
    parts = [summary_line(result)]
    for title, (header, lines) in (("LOCATE", locate_table(result)), ("STEER", steer_table(result)),
                                   ("COST", cost_table(result))):  # fmt: skip
        if lines:
            parts += ["", title, _text_table(header, lines)]
    invalid = [m for m in result.get("mechanisms", []) if not m.get("valid")]
    if invalid:
        parts += ["", "not scored: " + "; ".join(f"{m['id']} ({m['reason']})" for m in invalid)]
    if result.get("skipped"):
        parts += [
            "",
            "failed runs: " + "; ".join(f"{s['method']} on {s['task']} ({s['reason']})" for s in result["skipped"]),
        ]
    return "\n".join(parts)


def render_markdown(result: dict[str, Any], method: str | None = None) -> str:
    parts = []
    for title, (header, lines) in (("Locate", locate_table(result, method)), ("Steer", steer_table(result, method)),
                                   ("Cost", cost_table(result, method))):  # fmt: skip
        if lines:
            parts.append(f"### {title}\n\n{md_table(header, lines)}")
    return "\n".join(parts) if parts else "*No benchmark rows.*\n"


def render_json(result: dict[str, Any]) -> str:
    """The documented contract: the list of rows."""
    rows = [json.dumps(r, allow_nan=False) for r in result["rows"]]
    return "[\n" + ",\n".join(rows) + "\n]" if rows else "[]"


# ---------------------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------------------


def _heatmap(
    name: str, title: str, rows: list[Row], row_key: str, col_key: str, vmin: float, vmax: float
) -> Heatmap | None:
    methods = sorted({r[row_key] for r in rows}, key=lambda m: (m in REFERENCES, m))
    cols = sorted({r[col_key] for r in rows})
    if not methods or not cols:
        return None
    value = {(r[row_key], r[col_key]): r["value"] for r in rows}
    grid, texts = [], []
    for m in methods:
        grid.append([float(value[(m, c)]) if value.get((m, c)) is not None else vmin for c in cols])
        texts.append([fmt(value[(m, c)]) if value.get((m, c)) is not None else "–" for c in cols])
    return Heatmap(name=name, title=title, values=grid, row_labels=methods, col_labels=cols, cell_text=texts,
                   vmin=vmin, vmax=vmax)  # fmt: skip


def plots(result: dict[str, Any]) -> dict[str, str]:
    """File name → SVG: methods × mechanisms (AUROC, faithfulness) and steerers × tasks (combined score)."""
    out: dict[str, str] = {}
    locate = rows_of(result, "locate")
    for metric, title in (("auroc", "Locate: AUROC against the ground truth (methods × mechanisms)"),
                          ("faithfulness", "Locate: faithfulness of the top-k units (share of the metric lost)")):  # fmt: skip
        fig = _heatmap(f"locate-{metric}", title, [r for r in locate if r["metric"] == metric], "method", "mechanism",
                       0.0, 1.0)  # fmt: skip
        if fig is not None:
            out[f"{fig.name}.svg"] = heatmap_svg(fig)
    steer = [r for r in rows_of(result, "steer") if r["metric"] == "combined"]
    fig = _heatmap("steer-combined", "Steer: combined score (methods × tasks)", steer, "method", "task", 0.0, 1.0)
    if fig is not None:
        out[f"{fig.name}.svg"] = heatmap_svg(fig)
    return out
