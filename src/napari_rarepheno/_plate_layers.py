"""A plate as napari layers (numpy and napari's layer models, no Qt): what the Plate dock
shows and what the plugin's reader opens.

* :func:`prepare_plate` turns a run's (or a results folder's) wells and fields into the two
  plate layers and the wells table's rows: "plate heatmap", an Image of rows x columns wells
  coloured by the well's score (viridis, 0..1), and "plate wells", a Shapes layer of one
  square per well of the plate format (:func:`grid_layer`: the grid, wells without fields in
  grey, the best wells outlined and labelled with their rank, the well names up to 384
  wells; each square's features are its well's row, so hovering a well shows it).
* :func:`overview_layers` shows an OME-Zarr HCS plate before it is scored: each well's first
  field as a thumbnail (a coarse resolution level) in its square of the same grid.

A well's square is as large as the largest field on small plates, and smaller on large ones,
so that an open well's fields (below the plate, at their own pixel size:
:meth:`PlateView.field_translates`) take about half the plate's width (:func:`well_side`);
an overview and a heatmap of the same plate cover the same squares.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _layers
from .core.plates.heatmap import score_grid
from .core.plates.layout import parse_well, well_name
from .core.plates.reading import read_zarr_plate
from .core.plates.results import read_results

HEATMAP, GRID, OVERVIEW = "plate heatmap", "plate wells", "plate overview"
#: wells outlined and labelled with their rank (as in plate.png)
TOP = 10
#: well names are written on the plate up to this many wells (beyond, the ranks only)
NAMED_WELLS = 384
EMPTY_WELL = "#c8c8c8"
WELL_COLUMNS = ("rank", "well", "score")


@dataclass
class PlateView:
    """A plate's results as the dock shows them (built in a worker)."""

    name: str
    kind: str                                  # 'wscnn' | 'deepyeast'
    shape: tuple[int, int]                     # rows, columns of the plate format
    cell: float                                # a well's side in world units (:func:`well_side`)
    wells: list[dict]                          # highest score first
    fields: list[dict]                         # plate order
    complete: bool = True
    out: Path | None = None
    side: float = 1.0                          # the largest field's side (px)
    layers: list[tuple] = field(default_factory=list)   # (layer data tuple, built layer): heatmap, grid
    table: tuple[list[str], list[list]] = ((), ())      # the wells table (columns, rows)

    @property
    def well_names(self) -> list[str]:
        return [w["well"] for w in self.wells]

    def fields_of(self, well: str) -> list[dict]:
        return [f for f in self.fields if f["well"] == well]

    def well_at(self, y: float, x: float) -> str | None:
        """The well (with results) under the world position (y, x) of the heatmap; None elsewhere."""
        if y < 0 or x < 0:
            return None
        r, c = int(y // self.cell), int(x // self.cell)
        if r >= self.shape[0] or c >= self.shape[1]:
            return None
        name = well_name(r, c)
        return name if name in set(self.well_names) else None

    def well_box(self, well: str) -> tuple[float, float, float, float]:
        """(y0, x0, y1, x1) world extent of ``well``'s square on the heatmap."""
        r, c = parse_well(well)
        return r * self.cell, c * self.cell, (r + 1) * self.cell, (c + 1) * self.cell

    def field_translates(self, sizes: list[tuple[int, int]]) -> list[tuple[float, float]]:
        """Where a well's fields go (world translate of each, at scale 1): below the plate,
        left to right, a new row where the plate's width ends."""
        gap = 0.05 * max(self.side, max((max(s) for s in sizes), default=1))
        widest = max((w for _, w in sizes), default=1)
        per_row = max(1, int((self.shape[1] * self.cell + gap) // (widest + gap)))
        y, out = self.shape[0] * self.cell + max(0.25 * self.cell, 2 * gap), []
        for start in range(0, len(sizes), per_row):
            row = sizes[start:start + per_row]
            x = 0.0
            for h, w in row:
                out.append((y, x))
                x += w + gap
            y += max(h for h, _ in row) + gap
        return out


def field_side(fields: list[dict]) -> float:
    """The largest field's side (px), from the fields table's height and width; 1 when unknown."""
    sides = [max(int(f.get("height") or 0), int(f.get("width") or 0)) for f in fields]
    return float(max(sides, default=0) or 1)


def well_side(side: float, columns: int, fields_per_well: int) -> float:
    """A well's side on the heatmap (world units): the largest field's ``side``, or less, so
    that a well's fields (at scale 1, below the plate) are about half the plate's width."""
    return float(side) * min(1.0, 2.0 * max(1, fields_per_well) / max(1, columns))


def well_columns(wells: list[dict]) -> list[str]:
    if not wells:
        return list(WELL_COLUMNS)
    return [*WELL_COLUMNS, *(k for k in wells[0] if k not in WELL_COLUMNS)]


def prepare_plate(wells: list[dict], fields: list[dict], shape: tuple[int, int], *, kind: str, name: str,
                  complete: bool = True, out: Path | None = None, label: str = "well score",
                  build: bool = True) -> PlateView:
    """The plate's layers (built, unless not ``build``) and the wells table (call it in a worker)."""
    side = field_side(fields)
    per_well = max((int(w.get("n_fields") or 0) for w in wells), default=1)
    cell = well_side(side, int(shape[1]), per_well)
    view = PlateView(name, kind, (int(shape[0]), int(shape[1])), cell, list(wells), list(fields), complete, out,
                     side=side)
    cols = well_columns(view.wells)
    view.table = (cols, [[w.get(c, "") for c in cols] for w in view.wells])
    if build:
        view.layers = [(ldt, _layers.build_layer(ldt)) for ldt in plate_layers(view, label)]
    return view


def plate_layers(view: PlateView, label: str = "well score") -> list[tuple]:
    """The heatmap and grid layer data tuples of ``view``."""
    rows, cols = view.shape
    cell = view.cell
    grid = score_grid(view.wells, view.shape)
    meta = _layers.result_meta("plate", view.name, shape=[rows, cols], cell=cell, label=label,
                               out=str(view.out) if view.out else None)
    heat = (np.nan_to_num(grid, nan=0.0).astype(np.float32),
            {"name": HEATMAP, "colormap": "viridis", "contrast_limits": (0.0, 1.0), "scale": (cell, cell),
             "translate": (cell / 2, cell / 2), "metadata": meta}, "image")
    return [heat, grid_layer(view.shape, cell, {w["well"]: w for w in view.wells}, view.name)]


def grid_layer(shape: tuple[int, int], cell: float, wells: dict[str, dict], name: str, **meta) -> tuple:
    """The "plate wells" Shapes layer: a square of ``cell`` world units per well of the plate
    format; ``wells``: the wells that have fields (their rows: ``score``, ``rank``,
    ``n_fields`` when scored), the others grey."""
    import pandas as pd  # deferred: loads pandas

    rows, cols = shape
    named = rows * cols <= NAMED_WELLS
    rects, face, edge, width = [], [], [], []
    feats: dict[str, list] = {"well": [], "score": [], "rank": [], "n_fields": [], "label": [], "text_color": []}
    thin, thick = 0.02 * cell, 0.08 * cell
    for r in range(rows):
        for c in range(cols):
            well = well_name(r, c)
            w = wells.get(well)
            y0, x0 = r * cell, c * cell
            rects.append(np.array([[y0, x0], [y0, x0 + cell], [y0 + cell, x0 + cell], [y0 + cell, x0]]))
            score = float(w["score"]) if w is not None and w.get("score") not in (None, "") else np.nan
            rank = int(w["rank"]) if w is not None and w.get("rank") not in (None, "") else 0
            light = w is None or score > 0.5  # dark marks on light wells (and on grey empty ones)
            mark = "#000000" if light else "#ffffff"
            top = 0 < rank <= TOP
            feats["well"].append(well)
            feats["score"].append(score)
            feats["rank"].append(rank)
            feats["n_fields"].append(int(w.get("n_fields") or 0) if w is not None else 0)
            feats["label"].append(f"{well}\n#{rank}" if top and named else f"#{rank}" if top else
                                  well if named else "")
            feats["text_color"].append(mark)
            face.append(EMPTY_WELL if w is None else "transparent")
            edge.append(mark if top else "#303030")
            width.append(thick if top else thin)
    size = 9 if rows * cols <= 96 else 7
    kw = {"name": GRID, "shape_type": "rectangle", "face_color": face, "edge_color": edge, "edge_width": width,
          "features": pd.DataFrame(feats), "opacity": 1.0,
          "text": {"string": "{label}", "size": size, "color": {"feature": "text_color"}, "anchor": "center"},
          "metadata": _layers.result_meta("plate wells", name, shape=[rows, cols], cell=cell, **meta)}
    return rects, kw, "shapes"


# ------------------------------------------------------------------ the plugin's reader
def results_layers(out) -> list[tuple]:
    """The heatmap and grid of a plate results folder (wells.csv, and plate.json when there)."""
    res = read_results(out)
    view = prepare_plate(res.wells, res.fields, res.shape, kind=res.kind, name=res.name, complete=res.complete,
                         out=Path(out), build=False)
    return plate_layers(view)


def _attrs(path: Path) -> dict:
    """The OME metadata of a zarr group on disk, read as JSON (no zarr import)."""
    for name, key in (("zarr.json", "attributes"), (".zattrs", None)):
        f = path / name
        if f.is_file():
            try:
                doc = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
            attrs = doc.get(key, {}) if key else doc
            return dict(attrs.get("ome", attrs)) if isinstance(attrs, dict) else {}
    return {}


def is_hcs_plate(path) -> bool:
    """An OME-Zarr HCS plate on disk (its group says 'plate')."""
    p = Path(path)
    return p.is_dir() and "plate" in _attrs(p)


def overview_layers(path, thumb: int = 256) -> list[tuple]:
    """Each well's first field, at the coarsest resolution level and at most ``thumb`` px, in
    its square of the plate grid; the grid with the well names over it. The squares are the
    ones a heatmap of this plate covers (its fields' full-resolution size)."""
    coarse = read_zarr_plate(path, level=-1)
    full = read_zarr_plate(path, level=0)
    first = {}
    for f in coarse.fields:
        first.setdefault(f.well, f)
    side0 = max(full.fields[0].source.view().shape[1:])
    per_well = max(sum(1 for f in coarse.fields if f.well == w) for w in first)
    cell = well_side(side0, coarse.shape[1], per_well)
    thumbs = {}
    for well, f in first.items():
        view = f.source.view()
        k = max(1, math.ceil(max(view.shape[1:]) / thumb))
        thumbs[well] = np.asarray(view[:, ::k, ::k])
    t = max(max(a.shape[1:]) for a in thumbs.values())
    n_ch = max(a.shape[0] for a in thumbs.values())
    rows, cols = coarse.shape
    dtype = np.result_type(*[a.dtype for a in thumbs.values()])
    mosaic = np.zeros((n_ch, rows * t, cols * t), dtype)
    for well, a in thumbs.items():
        r, c = parse_well(well)
        mosaic[:a.shape[0], r * t:r * t + a.shape[1], c * t:c * t + a.shape[2]] = a
    s = cell / t
    meta = _layers.result_meta(OVERVIEW, coarse.name, plate=str(path), shape=[rows, cols], cell=cell)
    geom = {"scale": (s, s), "translate": (s / 2, s / 2)}
    colors = ("gray",) if n_ch == 1 else ("green", "magenta", "cyan", "yellow", "red", "blue")
    images = [(mosaic[k], {"name": OVERVIEW if n_ch == 1 else f"{OVERVIEW} ch{k}", "colormap": colors[k % len(colors)],
                           "blending": "translucent_no_depth" if k == 0 else "additive", "metadata": meta, **geom},
               "image") for k in range(n_ch)]
    wells = {w: {"n_fields": sum(1 for f in coarse.fields if f.well == w)} for w in first}
    grid = grid_layer((rows, cols), cell, wells, coarse.name, plate=str(path))
    for i, w in enumerate(grid[1]["features"]["well"]):  # white names over the (dark) fields
        if w in wells:
            grid[1]["features"].loc[i, "text_color"] = "#ffffff"
    return [*images, grid]
