"""A well's fields as the Plate dock opens them, prepared in a worker.

:func:`prepare_well` predicts a well's fields the way the WSCNN dock's Infer tab predicts an
image (``predict_wscnn`` with class-map localisation, at the precision the plate was scored
with, so the probabilities are the ones in fields.csv; objects at the command line's default
saliency settings) or classifies their cells (DeepYeast), lays them out below the plate
(:meth:`.._plate_layers.PlateView.field_translates`) and builds every layer. The GUI thread
only appends them. The plate's own layers are built in :mod:`.._plate_layers` (the plugin's
reader shows them too).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _layers
from .._plate_layers import PlateView
from ..core.errors import InputError
from ..core.inference.segment import SaliencyConfig
from ..core.plates.wells import LAZY_PIXELS, LAZY_TILE
from ..core.progress import CancelToken, Progress
from .deepyeast_classify import prepare_cells
from .wscnn_results import cached_from_prediction, prepare_segmentation, saliency_tuple

#: colours of a field's channels when it has several (one additive layer each)
CHANNEL_COLORS = ("green", "magenta", "cyan", "yellow", "red", "blue")
FIELD_COLUMNS = {"wscnn": ("field", "score", "predicted", "objects", "peak_y", "peak_x"),
                 "deepyeast": ("field", "score", "class", "n_cells")}


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
