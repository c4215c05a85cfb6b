"""Render figure specs (:mod:`.contract`) to dependency-free SVG, with the numbers as CSV beside each.

Only the runner calls this; implementations return specs. Labels are never clipped (the canvas grows to fit),
numbers are printed with the precision they need (``_fmt``).
"""

from __future__ import annotations

import csv
import html
import io
import math
from pathlib import Path

from mi_catalog.fsutil import atomic_write_text
from mi_catalog.methods.contract import Bars, Curve, Figure, Heatmap

CHAR_W = 6.2  # px per character at font-size 10
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f")


def _fmt(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "nan"
    if value != 0 and abs(value) < 0.01:
        return f"{value:.1e}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _color(value: float, lo: float, hi: float) -> str:
    """White → dark blue for lo → hi; for ranges crossing zero, red (negative) → white → blue."""
    if lo < 0 < hi:
        t = max(-1.0, min(1.0, value / (hi if value > 0 else -lo)))
        end = (8, 48, 107) if t > 0 else (165, 15, 21)
        t = abs(t)
    else:
        t = 0.0 if hi <= lo else min(max((value - lo) / (hi - lo), 0.0), 1.0)
        end = (8, 48, 107)
    r, g, b = (round(255 + (e - 255) * t) for e in end)
    return f"rgb({r},{g},{b})"


def _svg(width: float, height: float, body: list[str]) -> str:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            'font-family="sans-serif" font-size="10">')  # fmt: skip
    return "\n".join([head, *body, "</svg>"]) + "\n"


def heatmap_svg(fig: Heatmap) -> str:
    n_rows, n_cols = len(fig.values), len(fig.values[0]) if fig.values else 0
    flat = [v for row in fig.values for v in row if v is not None and math.isfinite(v)] or [0.0]
    lo = min(flat) if fig.vmin is None else fig.vmin
    hi = max(flat) if fig.vmax is None else fig.vmax
    texts = fig.cell_text or [[_fmt(v) for v in row] for row in fig.values]
    longest_cell = max((len(t) for row in texts for t in row), default=4)
    longest_col = max((len(c) for c in fig.col_labels), default=4)
    cell_w = max(40.0, CHAR_W * max(longest_cell, min(longest_col, 14)) + 10)
    cell_h = 22.0
    left = max(60.0, CHAR_W * max((len(r) for r in fig.row_labels), default=4) + 12)
    rotate = longest_col * CHAR_W > cell_w  # long token labels are drawn rotated instead of clipped
    bottom = (longest_col * CHAR_W * 0.75 + 20) if rotate else 24
    top = 40.0
    width = max(left + n_cols * cell_w + 10, left + len(fig.title) * 7.2)
    height = top + n_rows * cell_h + bottom
    parts = [
        f'<text x="{left}" y="16" font-size="13">{html.escape(fig.title)}</text>',
        f'<text x="{left}" y="30" fill="#555">scale {_fmt(lo)} to {_fmt(hi)}</text>',
    ]
    for r in range(n_rows):
        y = top + r * cell_h
        parts.append(f'<text x="{left - 4}" y="{y + 15}" text-anchor="end">{html.escape(fig.row_labels[r])}</text>')
        for c in range(n_cols):
            v = fig.values[r][c]
            x = left + c * cell_w
            tip = f"{fig.row_labels[r]} / {fig.col_labels[c]}: {_fmt(v)}"
            parts.append(f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="{_color(v, lo, hi)}" '
                         f'stroke="#fff"><title>{html.escape(tip)}</title></rect>')  # fmt: skip
            dark = hi > lo and abs(v - (lo if not lo < 0 < hi else 0)) > 0.55 * (hi - lo if not lo < 0 < hi else max(hi, -lo))
            parts.append(f'<text x="{x + cell_w / 2}" y="{y + 15}" text-anchor="middle" '
                         f'fill="{"#fff" if dark else "#000"}">{html.escape(texts[r][c])}</text>')  # fmt: skip
    for c, label in enumerate(fig.col_labels):
        x = left + c * cell_w + cell_w / 2
        y = top + n_rows * cell_h + 14
        if rotate:
            parts.append(f'<text x="{x}" y="{y}" text-anchor="end" transform="rotate(-45 {x} {y})">'
                         f"{html.escape(label)}</text>")  # fmt: skip
        else:
            parts.append(f'<text x="{x}" y="{y}" text-anchor="middle">{html.escape(label)}</text>')
    return _svg(width, height, parts)


def _axes(x0: float, y0: float, w: float, h: float, lo: float, hi: float, x_label: str, y_label: str) -> list[str]:
    parts = [f'<line x1="{x0}" y1="{y0 + h}" x2="{x0 + w}" y2="{y0 + h}" stroke="#333"/>',
             f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y0 + h}" stroke="#333"/>']  # fmt: skip
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        y = y0 + h - h * i / 4
        parts.append(f'<text x="{x0 - 4}" y="{y + 3}" text-anchor="end">{_fmt(v)}</text>')
    if x_label:
        parts.append(f'<text x="{x0 + w / 2}" y="{y0 + h + 32}" text-anchor="middle">{html.escape(x_label)}</text>')
    if y_label:
        parts.append(f'<text x="12" y="{y0 + h / 2}" transform="rotate(-90 12 {y0 + h / 2})" '
                     f'text-anchor="middle">{html.escape(y_label)}</text>')  # fmt: skip
    return parts


def curve_svg(fig: Curve) -> str:
    x0, y0, w, h = 60.0, 40.0, 420.0, 220.0
    values = [v for s in fig.series.values() for v in s if math.isfinite(v)]
    values += [v for lo, hi in fig.bands.values() for v in (*lo, *hi) if math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    xs = fig.x or [0.0]
    xmin, xmax = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1

    def px(x: float) -> float:
        return x0 + (x - xmin) / (xmax - xmin) * w

    def py(y: float) -> float:
        return y0 + h - (y - lo) / (hi - lo) * h

    parts = [f'<text x="{x0}" y="16" font-size="13">{html.escape(fig.title)}</text>',
             *_axes(x0, y0, w, h, lo, hi, fig.x_label, fig.y_label)]  # fmt: skip
    for x in xs:
        parts.append(f'<text x="{px(x)}" y="{y0 + h + 14}" text-anchor="middle">{_fmt(x)}</text>')
    for i, (name, ys) in enumerate(fig.series.items()):
        color = PALETTE[i % len(PALETTE)]
        if name in fig.bands:
            blo, bhi = fig.bands[name]
            band = [f"{px(x)},{py(v)}" for x, v in zip(xs, bhi, strict=True)]
            band += [f"{px(x)},{py(v)}" for x, v in reversed(list(zip(xs, blo, strict=True)))]
            parts.append(f'<polygon points="{" ".join(band)}" fill="{color}" fill-opacity="0.18" stroke="none"/>')
        pts = " ".join(f"{px(x)},{py(v)}" for x, v in zip(xs, ys, strict=True) if math.isfinite(v))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.append(f'<text x="{x0 + w + 8}" y="{y0 + 12 + 14 * i}" fill="{color}">{html.escape(name)}</text>')
    legend_w = max((len(n) for n in fig.series), default=0) * CHAR_W
    return _svg(max(x0 + w + 16 + legend_w, x0 + len(fig.title) * 7.2), y0 + h + 44, parts)


def bars_svg(fig: Bars) -> str:
    x0, y0, h = 60.0, 40.0, 200.0
    bar_w = max(18.0, max((len(label) for label in fig.labels), default=2) * CHAR_W * 0.6)
    w = max(1, len(fig.labels)) * (bar_w + 6)
    values = list(fig.values) + [v for iv in (fig.intervals or []) for v in iv]
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = min([0.0, *finite]), max([0.0, *finite]) or 1.0
    if hi - lo < 1e-9:
        hi = lo + 1.0

    def py(y: float) -> float:
        return y0 + h - (y - lo) / (hi - lo) * h

    parts = [f'<text x="{x0}" y="16" font-size="13">{html.escape(fig.title)}</text>',
             *_axes(x0, y0, w, h, lo, hi, "", fig.y_label)]  # fmt: skip
    longest = max((len(label) for label in fig.labels), default=1)
    for i, (label, v) in enumerate(zip(fig.labels, fig.values, strict=True)):
        x = x0 + 4 + i * (bar_w + 6)
        top, bottom = sorted((py(v), py(0.0)))
        parts.append(f'<rect x="{x}" y="{top}" width="{bar_w}" height="{max(bottom - top, 0.5)}" fill="{PALETTE[0]}">'
                     f"<title>{html.escape(label)}: {_fmt(v)}</title></rect>")  # fmt: skip
        if fig.intervals:
            ilo, ihi = fig.intervals[i]
            cx = x + bar_w / 2
            parts.append(f'<line x1="{cx}" y1="{py(ilo)}" x2="{cx}" y2="{py(ihi)}" stroke="#000"/>')
        ly = y0 + h + 12
        parts.append(f'<text x="{x + bar_w / 2}" y="{ly}" text-anchor="end" '
                     f'transform="rotate(-45 {x + bar_w / 2} {ly})">{html.escape(label)}</text>')  # fmt: skip
    return _svg(max(x0 + w + 20, x0 + len(fig.title) * 7.2), y0 + h + longest * CHAR_W * 0.75 + 24, parts)


def figure_csv(fig: Figure) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if isinstance(fig, Heatmap):
        writer.writerow(["row", *fig.col_labels])
        writer.writerows([[label, *(f"{v:.6g}" for v in row)] for label, row in zip(fig.row_labels, fig.values, strict=True)])
    elif isinstance(fig, Curve):
        names = list(fig.series)
        band_cols = [f"{n}_{end}" for n in names if n in fig.bands for end in ("lo", "hi")]
        writer.writerow([fig.x_label or "x", *names, *band_cols])
        for i, x in enumerate(fig.x):
            bands = [f"{fig.bands[n][j][i]:.6g}" for n in names if n in fig.bands for j in (0, 1)]
            writer.writerow([f"{x:.6g}", *(f"{fig.series[n][i]:.6g}" for n in names), *bands])
    else:
        writer.writerow(["label", "value", *(["lo", "hi"] if fig.intervals else [])])
        for i, (label, v) in enumerate(zip(fig.labels, fig.values, strict=True)):
            extra = [f"{fig.intervals[i][0]:.6g}", f"{fig.intervals[i][1]:.6g}"] if fig.intervals else []
            writer.writerow([label, f"{v:.6g}", *extra])
    return buffer.getvalue()


def render(fig: Figure) -> str:
    if isinstance(fig, Heatmap):
        return heatmap_svg(fig)
    if isinstance(fig, Curve):
        return curve_svg(fig)
    return bars_svg(fig)


def write_figure(fig: Figure, out_dir: Path, prefix: str) -> list[Path]:
    """``<prefix>_<name>.svg`` and ``.csv`` under ``out_dir`` (atomic writes); returns both paths."""
    svg = out_dir / f"{prefix}_{fig.name}.svg"
    atomic_write_text(svg, render(fig))
    data = svg.with_suffix(".csv")
    atomic_write_text(data, figure_csv(fig))
    return [svg, data]
