"""DeepYeast on a whole field: segment cells in one channel (or take a labels image or a
list of centroids), cut crops centred on each cell (zero padding at the borders), classify
them, and aggregate the cells into a Dirichlet posterior (the field's protein)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cells.crops import extract_crops
from ..cells.segment import cells_from_labels, segment_cells
from ..errors import InputError
from ..io.images import select_channels
from ..io.modelfile import as_loaded
from .aggregate import aggregate, posterior_table
from .classify import classify_crops


@dataclass
class FieldResult:
    """Cells of one field: ``labels`` (None when centroids were given), one row per cell
    (id, class, p_<class>..., centroid_y, centroid_x[, area]), the field's posterior rows."""

    labels: np.ndarray | None
    rows: list[dict]
    posterior: list[dict]
    probabilities: np.ndarray
    centroids: np.ndarray


def classify_field(loaded, field_chw, labels=None, segment_channel: int = 0, centroids=None, *,
                   group: str = "field", device: str = "auto", min_area: int = 30,
                   method: str = "otsu", channels=None) -> FieldResult:
    """Segment (or take ``labels`` / ``centroids``), cut centred crops, classify, aggregate.

    ``field_chw`` is (C, H, W) in the file's channel order; ``segment_channel`` indexes it and
    ``channels`` (default: the model's stored ones) pick the classifier's input."""
    lm = as_loaded(loaded, "deepyeast")
    f = np.asarray(field_chw)
    f = f[None] if f.ndim == 2 else f
    if f.ndim != 3:
        raise InputError(f"a field must be (C, H, W), got shape {f.shape}")
    size = lm.model.config.input_size
    area = None
    if centroids is not None:
        cen = np.asarray(centroids, np.float64).reshape(-1, 2)
        ids = np.arange(1, len(cen) + 1)
    else:
        if labels is None:
            if not 0 <= segment_channel < f.shape[0]:
                raise InputError(f"segment channel {segment_channel} is out of range: the field has "
                                 f"{f.shape[0]} channel(s)")
            labels = segment_cells(f[segment_channel], method=method, min_area=min_area)
        table = cells_from_labels(labels)
        ids, area = table["id"], table["area"]
        cen = np.stack([table["centroid_y"], table["centroid_x"]], 1) if len(ids) else np.zeros((0, 2))
    sel = select_channels(f, lm.meta.channels if channels is None else channels, "field")
    crops = extract_crops(sel, cen, size)
    names = lm.meta.class_names
    probs = classify_crops(lm, crops, device=device) if len(crops) else np.zeros((0, len(names)), np.float32)
    rows = []
    for i, cid in enumerate(ids):
        row = {"id": int(cid), "class": names[int(probs[i].argmax())]}
        row.update({f"p_{c}": float(probs[i, k]) for k, c in enumerate(names)})
        row.update(centroid_y=float(cen[i, 0]), centroid_x=float(cen[i, 1]))
        if area is not None:
            row["area"] = int(area[i])
        rows.append(row)
    post = posterior_table(aggregate(probs, [group] * len(probs), names)) if len(probs) else []
    return FieldResult(None if labels is None else np.asarray(labels), rows, post, probs, cen)
