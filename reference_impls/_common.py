"""Helpers shared by the reference implementations: task data, answer ids, and dependency-free figures.

Figures are hand-written SVG heatmaps (plus the numbers as CSV next to them), so
running an implementation needs nothing beyond the ``run`` extra.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from pathlib import Path

import torch

from mi_catalog.models.loading import LoadedModel
from mi_catalog.models.prompts import TaskPrompt, subject_token_positions, task_prompts


def prompts_for(lm: LoadedModel, task: str, n: int, seed: int) -> list[TaskPrompt]:
    """The toy model's task data on the toy, the built-in English set on any other model."""
    return task_prompts(task, n, seed=seed, toy=lm.is_toy)


def answer_id(lm: LoadedModel, answer: str) -> int:
    return lm.token_id(answer)


def subject_positions(lm: LoadedModel, p: TaskPrompt) -> tuple[int, ...]:
    """The subject's token positions in the (unpadded) prompt."""
    if p.subject_positions:
        return p.subject_positions
    if p.subject:
        return subject_token_positions(lm.n_tokens, p.prompt, p.subject)
    return ()


def token_labels(lm: LoadedModel, input_ids: torch.Tensor) -> list[str]:
    """Readable labels for a row of token ids [pos]."""
    return [lm.tokenizer.decode([int(i)]).strip() or repr(lm.tokenizer.decode([int(i)])) for i in input_ids]


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _color(value: float, lo: float, hi: float) -> str:
    """White → dark blue for lo → hi (values outside are clamped)."""
    t = 0.0 if hi <= lo else min(max((value - lo) / (hi - lo), 0.0), 1.0)
    r, g, b = (round(255 + (end - 255) * t) for end in (8, 48, 107))
    return f"rgb({r},{g},{b})"


def write_heatmap_svg(
    path: Path,
    values: torch.Tensor,  # [rows, cols]
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str,
    cell_text: Sequence[Sequence[str]] | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
) -> Path:
    """A self-contained SVG heatmap (row 0 at the top), with the numbers as a CSV next to it."""
    grid = values.detach().float().cpu()
    n_rows, n_cols = grid.shape
    lo = float(grid.min()) if vmin is None else vmin
    hi = float(grid.max()) if vmax is None else vmax
    cell_w, cell_h, left, top = 56.0, 22.0, 90.0, 40.0
    title_w = left + int(len(title) * 7.2)  # ~7 px per character at font-size 13: never clip the title
    width, height = max(left + n_cols * cell_w + 10, title_w), top + n_rows * cell_h + 30
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="10">',
        f'<text x="{left}" y="16" font-size="13">{html.escape(title)}</text>',
        f'<text x="{left}" y="30" fill="#555">scale {lo:.3g} (white) to {hi:.3g} (blue)</text>',
    ]
    for r in range(n_rows):
        y = top + r * cell_h
        parts.append(f'<text x="{left - 4}" y="{y + 15}" text-anchor="end">{html.escape(row_labels[r])}</text>')
        for c in range(n_cols):
            v = float(grid[r, c])
            x = left + c * cell_w
            parts.append(f'<rect x="{x}" y="{y}" width="{cell_w}" height="{cell_h}" fill="{_color(v, lo, hi)}" '
                         f'stroke="#fff"><title>{html.escape(row_labels[r])} / {html.escape(col_labels[c])}: '
                         f'{v:.4g}</title></rect>')  # fmt: skip
            text = cell_text[r][c] if cell_text is not None else f"{v:.2f}"
            fill = "#fff" if (v - lo) > 0.55 * (hi - lo) else "#000"
            parts.append(f'<text x="{x + cell_w / 2}" y="{y + 15}" text-anchor="middle" fill="{fill}">'
                         f"{html.escape(text[:9])}</text>")  # fmt: skip
    for c in range(n_cols):
        x = left + c * cell_w + cell_w / 2
        y = top + n_rows * cell_h + 14
        parts.append(f'<text x="{x}" y="{y}" text-anchor="middle">{html.escape(col_labels[c][:9])}</text>')
    parts.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    rows = [[row_labels[r], *(f"{float(grid[r, c]):.6g}" for c in range(n_cols))] for r in range(n_rows)]
    write_csv(path.with_suffix(".csv"), ["row", *col_labels], rows)
    return path


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    """Save result tensors aside (safetensors)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, str(path))
    return path
