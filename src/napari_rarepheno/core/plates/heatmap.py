"""The plate heatmap: one square per well, coloured by the well's score, the plate's layout
(rows A.., columns 1..), wells without fields in grey, the ``top`` wells outlined and
numbered by rank. Drawn with matplotlib's object API (no pyplot: safe in worker threads)
and written atomically."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path
from .layout import parse_well, row_letters


def score_grid(wells: Sequence[dict], shape: tuple[int, int], key: str = "score") -> np.ndarray:
    """(rows, columns) float array of ``row[key]`` per well; NaN where a well has no row."""
    grid = np.full(shape, np.nan)
    for r in wells:
        i, j = parse_well(r["well"])
        if i < shape[0] and j < shape[1]:
            grid[i, j] = float(r[key])
    return grid


def plate_heatmap(wells: Sequence[dict], shape: tuple[int, int], out: str | Path, *, title: str = "",
                  label: str = "well score", top: int = 10, vmin: float | None = 0.0,
                  vmax: float | None = 1.0) -> Path:
    """Write the heatmap of ``wells`` (rows with ``well``, ``score`` and ``rank``) to ``out`` (PNG)."""
    from matplotlib.backends.backend_agg import (
        FigureCanvasAgg,  # deferred: loads matplotlib
    )
    from matplotlib.figure import Figure  # deferred: loads matplotlib
    from matplotlib.patches import Rectangle  # deferred: loads matplotlib

    rows, cols = shape
    grid = score_grid(wells, shape)
    cell = 0.42 if cols <= 24 else 0.22
    fig = Figure(figsize=(max(5.0, cols * cell + 2.2), max(3.0, rows * cell + 1.4)), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    cmap = _cmap()
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_facecolor("#d0d0d0")
    ax.set_xticks(range(cols))
    ax.set_xticklabels([str(c + 1) for c in range(cols)], fontsize=7 if cols <= 24 else 5)
    ax.set_yticks(range(rows))
    ax.set_yticklabels([row_letters(r) for r in range(rows)], fontsize=7 if rows <= 16 else 5)
    ax.xaxis.tick_top()
    ax.set_xticks(np.arange(-0.5, cols), minor=True)
    ax.set_yticks(np.arange(-0.5, rows), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.6)
    ax.tick_params(which="minor", length=0)
    ranked = sorted((r for r in wells if r.get("rank") not in (None, "")), key=lambda r: int(r["rank"]))
    for r in ranked[:top]:
        i, j = parse_well(r["well"])
        if i < rows and j < cols:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.4))
            if cols <= 24:
                light = np.isfinite(grid[i, j]) and grid[i, j] > 0.5 * ((vmin or 0.0) + (vmax or 1.0))
                ax.text(j, i, str(r["rank"]), ha="center", va="center", fontsize=6,
                        color="black" if light else "white")
    cb = fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    cb.set_label(label, fontsize=8)
    cb.ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=9, pad=18)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out, "the plate heatmap") as tmp:
        fig.savefig(tmp, format="png")
    return out


def _cmap():
    from matplotlib import colormaps  # deferred: loads matplotlib

    return colormaps["viridis"].with_extremes(bad="#d0d0d0")
