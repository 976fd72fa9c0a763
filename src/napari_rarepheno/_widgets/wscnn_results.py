"""What the WSCNN Infer tab keeps per image, and the steps a worker prepares for it.

The network runs once per image; :class:`Cached` holds its saliency, probabilities and
evidence. :func:`prepare_segmentation` turns them into objects with the current slider
values (no network) and builds everything the GUI thread only hands to napari: the
objects and peaks layer data tuples (features DataFrames included) and the objects
table's rows (:class:`Segmented`). Both run in workers.

Which objects count: a weak model on a real field gives hundreds of objects at the
default settings (the threshold is relative to the image's own maximum, so every image
has objects). An object *counts* when its evidence would make the image positive on its
own: the positive class map inside the object exceeds the image's strongest rival class
score (the max-pooled score of any other class). That is the network's own decision rule
(its max-pool head calls an image positive when the positive map's maximum beats the
others'), read per object; an image called negative has no counted object, an image
called positive has at least its strongest one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import _layers
from ..core.errors import InputError
from ..core.inference.segment import segment_saliency
from ..core.io.images import check_finite, select_channels, to_float
from ._table import table_rows

#: the Infer tab's localisation choices -> ``predict_wscnn(saliency_mode=...)``
LOCALISATIONS = {"class maps (fast)": "cam", "gradient saliency (precise)": "map"}

#: what the Images table's "objects" column counts (its header tooltip)
OBJECTS_TIP = ("objects whose evidence alone would make the image positive: inside the object the positive "
               "class map exceeds the image's strongest other class score (the network's own max-pool rule). "
               "An image called negative has none. Blank: not known (a folder result opened from files).")
SEGMENTED_TIP = "every object the sliders cut from the saliency (threshold, smoothing, extent, min area)"
EVIDENCE_TIP = ("positive class map at the object minus the image's strongest other class score (logit units): "
                "> 0: the object alone would make the image positive (counted in the Images table)")


@dataclass
class Cached:
    """One inferred image: what the sliders need to re-segment without the network."""

    source: str
    saliency: np.ndarray
    probabilities: np.ndarray
    class_names: list[str]
    geometry: dict = field(default_factory=dict)
    path: str = ""
    shift: list[str] = field(default_factory=list)  # how the image differs from the training images
    brightness: float | None = None                  # its 99th percentile over the training median
    size_ratio: float | None = None                  # its objects' size over the training objects'
    evidence: np.ndarray | None = None               # (H, W) positive class map - strongest rival score
    hi: float | None = None                          # the saliency's 99.9th percentile (layer brightness)

    @property
    def positive(self) -> int:
        names = [c.lower() for c in self.class_names]
        return names.index("positive") if "positive" in names else len(names) - 1

    @property
    def p_positive(self) -> float:
        return float(self.probabilities[self.positive])

    @property
    def predicted(self) -> str:
        return self.class_names[int(np.argmax(self.probabilities))]

    @property
    def called_positive(self) -> bool:
        return int(np.argmax(self.probabilities)) == self.positive

    def scale(self) -> float:
        """The saliency's display maximum (computed once)."""
        if self.hi is None:
            self.hi = saliency_scale(self.saliency)
        return self.hi


@dataclass
class Segmented:
    """One image's objects at some slider values, ready for the layers and tables."""

    source: str
    objects: tuple                    # labels layer data tuple (features DataFrame included)
    peaks: tuple                      # points layer data tuple
    table: tuple[list[str], list[list]]  # the Objects table (columns, rows)
    n_objects: int                    # every object cut
    n_counted: int | None             # objects whose evidence reaches the call (None: unknown)
    params: dict = field(default_factory=dict)


def saliency_scale(saliency: np.ndarray) -> float:
    sal = np.asarray(saliency, np.float32)
    hi = float(np.percentile(sal, 99.9)) if sal.size else 1.0
    return hi if hi > 0 else (float(sal.max()) if sal.size else 0.0) or 1.0


def rival_evidence(class_maps: np.ndarray, target: int) -> np.ndarray:
    """(H, W) float32: the ``target`` class map minus the strongest other class's max-pooled
    score (> 0 where the target evidence alone beats every rival)."""
    cams = np.asarray(class_maps, np.float32)
    rival = max(float(cams[k].max()) for k in range(cams.shape[0]) if k != target) if cams.shape[0] > 1 else 0.0
    return cams[target] - np.float32(rival)


def cached_from_prediction(loaded, name: str, pred, geometry: dict, shift=None) -> Cached:
    """A :class:`Cached` from ``predict_wscnn``'s result (in the worker: the saliency
    scale and the evidence map are computed here)."""
    c = Cached(name, np.asarray(pred.saliency, np.float32), np.asarray(pred.probabilities),
               list(pred.class_names), geometry, **(shift_fields(shift) if shift is not None else {}))
    c.scale()
    head = getattr(getattr(loaded.model, "config", None), "head", "max")
    if head == "max" and getattr(pred, "class_maps", None) is not None:
        c.evidence = rival_evidence(pred.class_maps, c.positive)
    return c


def prepare_input(chw: np.ndarray, meta, name: str, as_float: bool = True) -> np.ndarray:
    """Layer pixels (C, H, W) -> the channels the model was trained on (float in [0, 1], or
    as read with ``as_float=False``: what the shift check compares with the training images)."""

    want = int(meta.config.get("in_channels", chw.shape[0]))
    if meta.channels and chw.shape[0] != want:
        chw = select_channels(chw, meta.channels, name)
    if chw.shape[0] != want:
        raise InputError(f"the model expects {want} channel(s) but layer '{name}' has {chw.shape[0]}; "
                         f"choose a layer with {want} channel(s), or map the model's channels to layers")
    check_finite(chw, name)
    return to_float(chw) if as_float else chw


def shift_fields(report) -> dict:
    """:class:`Cached` keyword arguments from a ShiftReport (messages, brightness, size ratio)."""
    return {"shift": list(report.messages),
            "brightness": None if report.brightness is None else float(report.brightness[0]),
            "size_ratio": report.summary.get("size_ratio")}


def segment(c: Cached, cfg, positive_only: bool):
    """``(c, Detections)`` of a cached image; an image called negative gets no objects when
    ``positive_only`` (the paper segments positive images only)."""
    sal = c.saliency if c.called_positive or not positive_only else np.zeros_like(c.saliency)
    return c, segment_saliency(sal, cfg)


def prepare_segmentation(c: Cached, cfg, positive_only: bool) -> Segmented:
    """Objects of ``c`` at ``cfg`` with their layers' data and table rows (numpy, pandas;
    call it in a worker)."""
    _, det = segment(c, cfg, positive_only)
    n = len(det)
    ev = _layers.object_evidence(det.labels, c.evidence, n) if c.evidence is not None else None
    objects = _layers.objects_layer(det, c.source, geometry=c.geometry, evidence=ev)
    peaks = _layers.peaks_layer(det, c.source, geometry=c.geometry)
    counted = int(np.count_nonzero(ev > 0)) if ev is not None else None
    params = {k: getattr(cfg, k) for k in ("sigma", "threshold", "peak_fraction", "min_area", "min_distance")}
    return Segmented(c.source, objects, peaks, table_rows(objects[1]["features"]), n, counted,
                     {**params, "positive_only": bool(positive_only)})


def saliency_tuple(c: Cached) -> tuple:
    """The saliency layer data tuple of ``c`` (its own brightness scale; the panel then gives
    every saliency layer the same one)."""
    data, kw, kind = _layers.saliency_layer(c.saliency, c.source, geometry=c.geometry, probability=c.p_positive,
                                            contrast_limits=(0.0, c.scale()))
    return data, kw, kind


def common_contrast(viewer, cache: dict[str, Cached]) -> None:
    """One brightness scale for every saliency layer, so weak evidence looks weak."""
    names = [k for k in cache if f"{k} saliency" in viewer.layers]
    if not names:
        return
    hi = max(cache[k].scale() for k in names)
    if hi > 0:
        for k in names:
            layer = viewer.layers[f"{k} saliency"]
            if tuple(layer.contrast_limits) != (0.0, hi):
                layer.contrast_limits = (0.0, hi)
