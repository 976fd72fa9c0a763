"""DeepYeast on a whole field: segment cells in one channel (or take a labels image or a
list of centroids), cut crops centred on each cell (zero padding at the borders), classify
them, and aggregate the cells into a Dirichlet posterior (the field's protein)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..cells.crops import centre_diameters, extract_crops
from ..cells.segment import cells_from_labels, segment_field
from ..errors import InputError
from ..inputs.normalize import Normalization
from ..inputs.shift import ShiftReport, compare
from ..io.images import select_channels, to_float
from ..io.modelfile import as_loaded
from .aggregate import aggregate, posterior_table
from .classify import classify_crops, embed_crops


@dataclass
class FieldResult:
    """Cells of one field: ``labels`` (None when centroids were given), one row per cell
    (id, class, p_<class>..., centroid_y, centroid_x[, area]), the field's posterior rows."""

    labels: np.ndarray | None
    rows: list[dict]
    posterior: list[dict]
    probabilities: np.ndarray
    centroids: np.ndarray
    shift: ShiftReport = field(default_factory=ShiftReport)   # the cells against the training cells
    diameter: float | None = None   # px: the cell diameter the segmentation used (None: labels or centroids given)


def classify_field(loaded, field_chw, labels=None, segment_channel: int = 0, centroids=None, *,
                   group: str = "field", device: str = "auto", min_area: int | None = None,
                   method: str = "otsu", channels=None, diameter: float | None = None,
                   rescale: bool = True) -> FieldResult:
    """Segment (or take ``labels`` / ``centroids``), cut centred crops, classify, aggregate.

    ``field_chw`` is (C, H, W) in the file's channel order; ``segment_channel`` indexes it and
    ``channels`` (default: the model's stored ones) pick the classifier's input. The built-in
    segmentation adapts to the cells' ``diameter`` (px; None: measured from the image).
    ``rescale``: when the cells are more than 10% smaller or larger than the training cells
    (the size of the object at the centre of a crop, on the model's first channel, compared
    with the training set's most common class), the field is scaled to the training size
    before the crops are cut (another magnification or camera); the shift report says so."""
    lm = as_loaded(loaded, "deepyeast")
    f = np.asarray(field_chw)
    f = f[None] if f.ndim == 2 else f
    if f.ndim != 3:
        raise InputError(f"a field must be (C, H, W), got shape {f.shape}")
    size = lm.model.config.input_size
    area, seen, seg_diameter = None, diameter, None
    if centroids is not None:
        cen = np.asarray(centroids, np.float64).reshape(-1, 2)
        ids = np.arange(1, len(cen) + 1)
    else:
        if labels is None:
            if not 0 <= segment_channel < f.shape[0]:
                raise InputError(f"segment channel {segment_channel} is out of range: the field has "
                                 f"{f.shape[0]} channel(s)")
            seg = segment_field(f[segment_channel], method=method, min_area=min_area, diameter=diameter)
            labels, seen = seg.labels, seg.diameter
            seg_diameter = seg.diameter
        table = cells_from_labels(labels)
        ids, area = table["id"], table["area"]
        cen = np.stack([table["centroid_y"], table["centroid_x"]], 1) if len(ids) else np.zeros((0, 2))
        if seen is None and len(ids):
            seen = float(2 * np.sqrt(np.median(area) / np.pi))
    sel = to_float(select_channels(f, lm.meta.channels if channels is None else channels, "field"))
    factor, note = _size_factor(lm, sel, cen, seen or size) if rescale else (1.0, None)
    if factor != 1.0:
        sel, at = rescale_field(sel, factor), (cen + 0.5) * factor - 0.5
    else:
        at = cen
    crops = extract_crops(sel, at, size)
    names = lm.meta.class_names
    probs = classify_crops(lm, crops, device=device) if len(crops) else np.zeros((0, len(names)), np.float32)
    shift = crop_shift(lm, crops, device=device, probabilities=probs)
    if note:
        shift.messages.insert(0, note)
        shift.summary["rescaled_by"] = factor
    rows = []
    for i, cid in enumerate(ids):
        row = {"id": int(cid), "class": names[int(probs[i].argmax())]}
        row.update({f"p_{c}": float(probs[i, k]) for k, c in enumerate(names)})
        row.update(centroid_y=float(cen[i, 0]), centroid_x=float(cen[i, 1]))
        if area is not None:
            row["area"] = int(area[i])
        row.update(shift.columns(i))
        rows.append(row)
    post = posterior_table(aggregate(probs, [group] * len(probs), names)) if len(probs) else []
    return FieldResult(None if labels is None else np.asarray(labels), rows, post, probs, cen, shift, seg_diameter)


def crop_shift(lm, crops: np.ndarray, *, diameter: float | None = None, device: str = "auto",
               probabilities: np.ndarray | None = None) -> ShiftReport:
    """How ``crops`` (as read, float) compare with the model's training crops
    (:func:`core.inputs.shift.compare`): brightness, over-exposure, cell size, each cell's
    distance from the training cells in the network's fc1 features and, given the model's
    ``probabilities`` for them, how many are low-confidence calls."""
    stats = lm.meta.input_stats
    if not stats or not len(crops):
        return ShiftReport()
    emb = embed_crops(lm, crops, "fc1", device=device) if "embedding" in stats else None
    return compare(stats, crops, embeddings=emb, diameter=diameter, channel_names=lm.meta.input_names(),
                   scaled=Normalization.of_model(lm.meta).scale is not None, probabilities=probabilities)


#: cells within this factor of the training cells' size are not rescaled
SIZE_TOLERANCE = 1.1


def _size_factor(lm, sel: np.ndarray, cen: np.ndarray, guess: float) -> tuple[float, str | None]:
    """(scale factor that brings the field's cells to the training cells' size, message)."""
    d_train = lm.meta.input_stats.get("object_diameter")
    if not d_train or not len(cen):
        return 1.0, None
    # the centre object's size depends on how much background its window holds, so the field's
    # cells are measured in windows that hold them as the training crops hold theirs
    fill, d_field = float(d_train) / lm.model.config.input_size, float(guess)
    for _ in range(2):
        window = int(max(16, round(d_field / fill)))
        d_field = float(np.nanmedian(centre_diameters(extract_crops(sel[:1], cen, window)[:, 0])))
        if not np.isfinite(d_field) or d_field <= 0:
            return 1.0, None
    factor = float(d_train) / d_field
    if 1 / SIZE_TOLERANCE <= factor <= SIZE_TOLERANCE:
        return 1.0, None
    return factor, (f"the cells are {1 / factor:.2f}x the size of the training cells ({d_field:.0f} vs "
                    f"{d_train:.0f} px across): the field was scaled by {factor:.2f} before the crops were cut")


def rescale_field(chw: np.ndarray, factor: float) -> np.ndarray:
    """(C, H, W) float field resampled by ``factor`` (bilinear; smoothed first when shrinking)."""
    from skimage.transform import rescale  # deferred: loads skimage.transform

    return np.stack([rescale(c, factor, order=1, anti_aliasing=factor < 1, preserve_range=True)
                     for c in chw]).astype(np.float32)
