"""What the Plate dock shows, prepared in workers: the plate's layers and table, a well's fields.

:func:`prepare_plate` turns a run's (or a results folder's) wells and fields into the two
plate layers and the wells table's rows:

* "plate heatmap": an Image of rows x columns wells coloured by the well's score (viridis,
  0..1, with napari's colour bar);
* "plate wells": a Shapes layer of one square per well of the plate format: the grid, wells
  without fields in grey, the best wells outlined and labelled with their rank, the well
  names (up to 384 wells); each square's features are its well's row (hover a well: its
  score, rank, fields).

The fields of a well open below the plate at their own pixel size
(:meth:`PlateView.field_translates`); a well's square is as large as the largest field on
small plates, and smaller on large ones, so that the open well's fields take about half the
plate's width (:func:`well_side`).

:func:`prepare_well` predicts a well's fields the way the WSCNN dock's Infer tab predicts an
image (``predict_wscnn`` with class-map localisation, at the precision the plate was scored
with, so the probabilities are the ones in fields.csv; objects at the command line's default
saliency settings) or classifies their cells (DeepYeast), and builds every layer. The GUI
thread only appends them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import _layers
from ..core.errors import InputError
from ..core.inference.segment import SaliencyConfig
from ..core.plates.heatmap import score_grid
from ..core.plates.layout import parse_well, well_name
from ..core.plates.wells import LAZY_PIXELS, LAZY_TILE
from ..core.progress import CancelToken, Progress
from .deepyeast_classify import prepare_cells
from .wscnn_results import cached_from_prediction, prepare_segmentation, saliency_tuple

HEATMAP, GRID = "plate heatmap", "plate wells"
#: wells outlined and labelled with their rank (as in plate.png)
TOP = 10
#: well names are written on the plate up to this many wells (beyond, the ranks only)
NAMED_WELLS = 384
EMPTY_WELL = "#c8c8c8"
#: colours of a field's channels when it has several (one additive layer each)
CHANNEL_COLORS = ("green", "magenta", "cyan", "yellow", "red", "blue")
WELL_COLUMNS = ("rank", "well", "score")
FIELD_COLUMNS = {"wscnn": ("field", "score", "predicted", "objects", "peak_y", "peak_x"),
                 "deepyeast": ("field", "score", "class", "n_cells")}


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
                  complete: bool = True, out: Path | None = None, label: str = "well score") -> PlateView:
    """The plate's layers (built) and the wells table (call it in a worker)."""
    side = field_side(fields)
    per_well = max((int(w.get("n_fields") or 0) for w in wells), default=1)
    cell = well_side(side, int(shape[1]), per_well)
    view = PlateView(name, kind, (int(shape[0]), int(shape[1])), cell, list(wells), list(fields), complete, out,
                     side=side)
    cols = well_columns(view.wells)
    view.table = (cols, [[w.get(c, "") for c in cols] for w in view.wells])
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
    import pandas as pd  # deferred: loads pandas

    by_well = {w["well"]: w for w in view.wells}
    named = rows * cols <= NAMED_WELLS
    rects, face, edge, width = [], [], [], []
    feats: dict[str, list] = {"well": [], "score": [], "rank": [], "n_fields": [], "label": [], "text_color": []}
    thin, thick = 0.02 * cell, 0.08 * cell
    for r in range(rows):
        for c in range(cols):
            well = well_name(r, c)
            w = by_well.get(well)
            y0, x0 = r * cell, c * cell
            rects.append(np.array([[y0, x0], [y0, x0 + cell], [y0 + cell, x0 + cell], [y0 + cell, x0]]))
            score = float(w["score"]) if w is not None else np.nan
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
          "metadata": _layers.result_meta("plate wells", view.name, shape=[rows, cols], cell=cell)}
    return [heat, (rects, kw, "shapes")]


# ------------------------------------------------------------------ a well's fields
@dataclass
class PreparedWell:
    """A well's fields as the GUI thread hands them to napari."""

    well: str
    layers: list[tuple]                        # (layer data tuple, built layer), in the order to add them
    table: tuple[list[str], list[list]]        # the fields table
    boxes: dict[str, tuple[float, float, float, float]]   # field name -> world (y0, x0, y1, x1)
    summary: str = ""

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The world extent of all the well's fields."""
        b = np.array(list(self.boxes.values()))
        return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


def _tag(ldt, well: str, field_name: str):
    ldt[1].setdefault("metadata", {}).setdefault(_layers.META_KEY, {}).update(plate_well=well, field=field_name)
    return ldt


def field_image_layers(chw: np.ndarray, name: str, geometry: dict, channel_names=None) -> list[tuple]:
    """The field's pixels: one grey layer, or one additive layer per channel."""
    meta = _layers.result_meta("plate field", name)
    if chw.shape[0] == 1:
        return [(chw[0], {"name": name, "colormap": "gray", "metadata": meta, **geometry}, "image")]
    names = list(channel_names or [])
    names = names if len(names) == chw.shape[0] else [f"ch{k}" for k in range(chw.shape[0])]
    return [(chw[k], {"name": f"{name} {names[k]}", "colormap": CHANNEL_COLORS[k % len(CHANNEL_COLORS)],
                      "blending": "additive", "metadata": meta, **geometry}, "image") for k in range(chw.shape[0])]


def prepare_well(lm, well: str, plate_fields: list, view: PlateView, *, device: str = "auto",
                 cancel: CancelToken | None = None, report=None, cfg: SaliencyConfig | None = None,
                 positive_only: bool = True) -> PreparedWell:
    """Read, predict and lay out the fields of ``well`` (call it in a worker): WSCNN: image,
    saliency, objects and peaks layers; DeepYeast: image and cells layers."""
    cancel = cancel or CancelToken()
    fields = [f for f in plate_fields if f.well == well]
    if not fields:
        raise InputError(f"the plate has no fields of well {well}: is it the plate these results are of?")
    n, kind = len(fields), lm.meta.kind
    rows = {str(r["field"]): r for r in view.fields_of(well)}

    def step(k: int, what: str) -> None:
        cancel.raise_if_cancelled()
        if report is not None:
            report(Progress(stage="item", batch=k, n_batches=n, message=f"{well}: {what}"))

    images = []
    for k, f in enumerate(fields):
        step(k, "reading")
        images.append(np.asarray(f.read()))
    spots = view.field_translates([img.shape[1:] for img in images])
    cfg = cfg or SaliencyConfig()
    layers, table, boxes, saliency, notes = [], [], {}, [], []
    for k, (f, chw, (ty, tx)) in enumerate(zip(fields, images, spots)):
        step(k, "predicting" if kind == "wscnn" else "classifying cells")
        geom = {"scale": (1.0, 1.0), "translate": (float(ty), float(tx))}
        H, W = chw.shape[1:]
        boxes[f.field] = (float(ty), float(tx), float(ty + H), float(tx + W))
        mine = field_image_layers(chw, f.key, geom, lm.meta.channel_names)
        row = rows.get(str(f.field), {})
        if kind == "wscnn":
            from ..core.inference.predict import predict_wscnn  # deferred: loads torch

            head = getattr(lm.model.config, "head", "max")
            pred = predict_wscnn(lm, chw, saliency=True, saliency_mode="cam", device=device, precision="auto",
                                 tile=LAZY_TILE if H * W > LAZY_PIXELS and head == "max" else None,
                                 path=f.source.describe(), cancel=cancel)
            c = cached_from_prediction(lm, f.key, pred, geom)
            del pred
            seg = prepare_segmentation(c, cfg, positive_only)
            sal = saliency_tuple(c)
            saliency.append((sal, c.scale()))
            mine += [sal, seg.objects, seg.peaks]
            counted = seg.n_counted if seg.n_counted is not None else seg.n_objects
            table.append([f.field, row.get("score", round(c.p_positive, 6)), c.predicted, counted,
                          row.get("peak_y", ""), row.get("peak_x", "")])
            notes.append(f"field {f.field}: P = {c.p_positive:.3f}, {counted} object(s)")
        else:
            from ..core.deepyeast.fields import classify_field  # deferred: loads torch

            res = classify_field(lm, chw, device=device, group=f.key)
            cells = prepare_cells(res, list(lm.meta.class_names), f.key, geom)
            mine.append(cells.layer)
            cls = res.posterior[0].get("map_class", "") if res.posterior else ""
            table.append([f.field, row.get("score", ""), cls, len(res.rows)])
            notes.append(f"field {f.field}: {len(res.rows)} cell(s), {cls or '-'}")
        layers += [_tag(ldt, well, f.key) for ldt in mine]
    if saliency:  # one brightness scale for the well's saliency layers: weak evidence looks weak
        hi = max(s for _, s in saliency)
        for sal, _ in saliency:
            sal[1]["contrast_limits"] = (0.0, float(hi))
    step(n, "layers")
    built = [(ldt, _layers.build_layer(ldt)) for ldt in layers]
    return PreparedWell(well, built, (list(FIELD_COLUMNS[kind]), table), boxes, f"{well}: " + "; ".join(notes))
