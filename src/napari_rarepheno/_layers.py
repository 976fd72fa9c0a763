"""Core results -> napari layer data tuples, and back.

Pure functions (numpy only, no Qt, no torch): every result layer carries
``metadata["rarepheno"]`` (its role and source layer) so the docks find and update
their own layers and "Export all" knows what to write; per-object tables live in
``layer.features`` with an ``index`` column equal to the label value (napari's rule
for showing a label's features under the cursor).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .core.errors import InputError
from .core.io.images import to_chw

LayerDataTuple = tuple  # (data, kwargs, layer_type)

META_KEY = "rarepheno"
#: colours for classes (tab20-like, colour-blind friendly first)
CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
                "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")


def safe_name(text: str) -> str:
    """A layer name as a file-name stem ("positive image" -> "positive_image")."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "image"


def class_color(i: int) -> str:
    return CLASS_COLORS[int(i) % len(CLASS_COLORS)]


def result_meta(role: str, source: str, **extra) -> dict:
    return {META_KEY: {"role": role, "source": source, **extra}}


def role_of(layer) -> str | None:
    return (getattr(layer, "metadata", None) or {}).get(META_KEY, {}).get("role")


def geometry_of(layer) -> dict:
    """The world placement of a 2-D source layer (scale/translate of its last two axes)."""
    if layer is None:
        return {}
    return {"scale": tuple(np.asarray(layer.scale)[-2:]), "translate": tuple(np.asarray(layer.translate)[-2:])}


# ------------------------------------------------------------------- WSCNN
def saliency_layer(saliency: np.ndarray, source: str, *, geometry: dict | None = None,
                   probability: float | None = None, colormap: str = "inferno",
                   contrast_limits: tuple[float, float] | None = None) -> LayerDataTuple:
    """Float saliency shown over the image: additive blending, transparent where zero;
    contrast up to its 99.9th percentile unless ``contrast_limits`` are given."""
    sal = np.asarray(saliency, np.float32)
    if contrast_limits is None:
        hi = float(np.percentile(sal, 99.9)) if sal.size else 1.0
        hi = hi if hi > 0 else (float(sal.max()) or 1.0)
        contrast_limits = (0.0, hi)
    kw = {"name": f"{source} saliency", "colormap": colormap, "blending": "additive", "opacity": 0.8,
          "contrast_limits": tuple(float(v) for v in contrast_limits),
          "metadata": result_meta("saliency", source, probability=probability)}
    kw.update(geometry or {})
    return sal, kw, "image"


def detection_features(det, evidence: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-object table of a :class:`~.core.inference.segment.Detections`: index (= label), y, x,
    score, area, and ``evidence`` (one value per object, e.g. :func:`object_evidence`) when given."""
    n = len(det.scores)
    labels = np.arange(1, n + 1, dtype=np.int32)
    areas = np.asarray(getattr(det, "areas", np.bincount(det.labels.ravel(), minlength=n + 1)[1:]))
    peaks = np.asarray(det.peaks, np.float64).reshape(-1, 2)
    out = {"index": labels, "y": peaks[:, 0], "x": peaks[:, 1],
           "score": np.asarray(det.scores, np.float64), "area": areas[:n].astype(np.int64)}
    if evidence is not None:
        out["evidence"] = np.round(np.asarray(evidence, np.float64).reshape(-1)[:n], 4)
    return out


def object_evidence(labels: np.ndarray, evidence_map: np.ndarray, n: int) -> np.ndarray:
    """The highest value of ``evidence_map`` inside each of the labels 1..n (numpy only)."""
    if n == 0:
        return np.zeros(0, np.float64)
    lab = np.asarray(labels).ravel()
    ev = np.asarray(evidence_map, np.float64).ravel()
    inside = lab > 0
    out = np.full(n + 1, -np.inf)
    np.maximum.at(out, lab[inside], ev[inside])
    out = out[1:]
    return np.where(np.isfinite(out), out, np.nan)


#: object outlines: one colour that stands out on the inferno saliency and on grey images
OUTLINE_COLOR = "#00e5ff"


def outline_colormap(color: str = OUTLINE_COLOR):
    """Every label in ``color`` (background transparent): no per-label colour table to build."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: color, 0: "transparent"})


def objects_layer(det, source: str, *, geometry: dict | None = None, evidence: np.ndarray | None = None,
                  features=None) -> LayerDataTuple:
    """Labels of the detected objects drawn as outlines in one contrasting colour; features
    (index, y, x, score, area[, evidence]) as a DataFrame (built here: call it in a worker)."""
    import pandas as pd

    feats = features if features is not None else pd.DataFrame(detection_features(det, evidence))
    kw = {"name": f"{source} objects", "features": feats, "opacity": 1.0, "contour": 2,
          "colormap": outline_colormap(),
          "metadata": result_meta("objects", source, threshold=float(getattr(det, "threshold", np.nan)))}
    kw.update(geometry or {})
    return np.asarray(det.labels, np.int32), kw, "labels"


def peaks_layer(det, source: str, *, geometry: dict | None = None) -> LayerDataTuple:
    """Points at the saliency peaks; features (label, score), size/colour by score."""
    peaks = np.asarray(det.peaks, np.float64).reshape(-1, 2)
    scores = np.asarray(det.scores, np.float64)
    kw = {"name": f"{source} peaks", "features": {"label": np.arange(1, len(scores) + 1, dtype=np.int32),
                                                   "score": scores},
          "size": 6, "symbol": "cross", "border_width": 0,
          "face_color": "score" if len(scores) > 1 and np.ptp(scores) > 0 else "cyan",
          "face_colormap": "viridis",
          "metadata": result_meta("peaks", source)}
    if kw["face_color"] != "score":
        kw.pop("face_colormap")
    kw.update(geometry or {})
    return peaks, kw, "points"


# ----------------------------------------------------------------- DeepYeast
def class_colormap(class_of_label: dict[int, int]):
    """A napari DirectLabelColormap painting each label with its class colour."""
    from napari.utils.colormaps import DirectLabelColormap

    colors: dict[Any, Any] = {None: "transparent", 0: "transparent"}
    colors.update({int(lab): class_color(c) for lab, c in class_of_label.items()})
    return DirectLabelColormap(color_dict=colors)


def cells_layer(labels: np.ndarray, table: dict[str, Sequence], class_names: Sequence[str], source: str, *,
                geometry: dict | None = None, class_column: str = "class") -> LayerDataTuple:
    """Cell labels coloured by predicted class; ``table`` holds one row per cell with an
    ``id`` (label value) and a ``class`` column (name); extra columns pass through. The
    features DataFrame and the colour table are built here (call it in a worker)."""
    import pandas as pd

    feats = {k: np.asarray(v) for k, v in table.items()}
    ids = np.asarray(feats.get("id", feats.get("index", [])), dtype=np.int64)
    feats = {"index": ids, **{k: v for k, v in feats.items() if k != "index"}}
    names = list(class_names)
    lookup = {c: i for i, c in enumerate(names)}
    cls = [lookup.get(c, 0) for c in np.asarray(feats.get(class_column, []), dtype=object).tolist()]
    kw = {"name": f"{source} cells", "features": pd.DataFrame(feats), "opacity": 1.0, "contour": 2,
          "colormap": class_colormap(dict(zip(ids.tolist(), cls))),
          "metadata": result_meta("cells", source, class_names=names)}
    kw.update(geometry or {})
    return np.asarray(labels).astype(np.int32, copy=False), kw, "labels"


# ------------------------------------------------------------------ overlays
def circle_layer(center_yx: Sequence[float], diameter: float, name: str = "cell diameter", *,
                 geometry: dict | None = None, color: str = "#ffff00") -> LayerDataTuple:
    """One circle of ``diameter`` px (data coordinates of the source layer) centred at
    ``center_yx``: a ruler to hold against the cells (role ``diameter``)."""
    r = float(diameter) / 2
    cy, cx = (float(v) for v in center_yx)
    box = np.array([[cy - r, cx - r], [cy - r, cx + r], [cy + r, cx + r], [cy + r, cx - r]])
    kw = {"name": name, "shape_type": "ellipse", "edge_color": color, "face_color": "transparent",
          "edge_width": max(2.0, float(diameter) / 15), "opacity": 1.0,
          "metadata": result_meta("diameter", "", diameter=float(diameter))}
    kw.update(geometry or {})
    return [box], kw, "shapes"


# -------------------------------------------------------------------- helpers
#: layer properties that are not constructor arguments; set after the layer exists
_AFTER = ("contour",)


def layer_type(layer) -> str:
    """'image', 'labels', 'points'... (public API only: plugin widgets get a proxied viewer)."""
    return layer.__class__.__name__.lower()


def _same(a, b) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a, float), np.asarray(b, float)))
    except (TypeError, ValueError):
        return a is b


def add_or_update(viewer, ldt: LayerDataTuple):
    """Add the layer, or update the existing layer of that name in place (keeps the
    user's visibility, opacity and position in the layer list); returns the layer.

    napari re-slices a visible layer (labels: colours and outlines of the whole plane)
    on every property set; here the layer is hidden while its data and properties are
    set, so it is sliced once, when shown again."""
    layer, later = add_or_update_hidden(viewer, ldt)
    if later:
        layer.visible = True
    return layer


def _same_colormap(a, b) -> bool:
    try:
        if isinstance(b, str):
            return getattr(a, "name", None) == b
        return type(a) is type(b) and a == b
    except Exception:  # noqa: BLE001 - incomparable: set it
        return False


def _changed(layer, key: str, value) -> bool:
    if key == "colormap":
        return not _same_colormap(layer.colormap, value)
    return not _same(getattr(layer, key), value)


def _restyled(layer, kw: dict, after: dict) -> bool:
    """Anything besides the data changes that makes napari slice the layer again."""
    return any(key in kw and _changed(layer, key, kw[key]) for key in ("colormap", "scale", "translate",
                                                                          "contrast_limits")) \
        or any(getattr(layer, key, None) != value for key, value in after.items())


def _update(layer, data, kw: dict, after: dict, ltype: str) -> None:
    for key in ("colormap", "scale", "translate"):
        if key in kw and _changed(layer, key, kw[key]):
            setattr(layer, key, kw[key])
    layer.data = data
    for key in ("features", "metadata"):
        if key in kw:
            setattr(layer, key, kw[key])
    if "contrast_limits" in kw and _changed(layer, "contrast_limits", kw["contrast_limits"]):
        layer.contrast_limits = kw["contrast_limits"]
    if ltype == "points" and "face_color" in kw and len(data):
        if "face_colormap" in kw:
            layer.face_colormap = kw["face_colormap"]
        layer.face_color = kw["face_color"]
    for key, value in after.items():
        if getattr(layer, key, None) != value:
            setattr(layer, key, value)


def build_layer(ldt: LayerDataTuple) -> tuple[Any, bool]:
    """A hidden napari layer object from a layer data tuple, and whether it should be
    shown: ``(layer, visible)``. napari's layer constructors are plain Python and numpy
    (features table, colour tables, no Qt), so a worker builds the layers a result adds;
    the GUI thread only appends them (:func:`add_or_update_hidden` with ``built``)."""
    import napari.layers as nl

    data, kw, ltype = ldt
    kw = dict(kw)
    after = {k: kw.pop(k) for k in _AFTER if k in kw}
    visible = bool(kw.pop("visible", True))
    cls = {"image": nl.Image, "labels": nl.Labels, "points": nl.Points, "shapes": nl.Shapes}[ltype]
    layer = cls(data, visible=False, **kw)
    for key, value in after.items():
        setattr(layer, key, value)
    return layer, visible


def add_or_update_hidden(viewer, ldt: LayerDataTuple, built: tuple[Any, bool] | None = None) -> tuple[Any, bool]:
    """:func:`add_or_update` that leaves the layer hidden: ``(layer, show)``, where ``show``
    says whether the caller should set ``layer.visible = True`` (in a later event-loop
    turn, so adding a layer and slicing it do not block the viewer in one go). A layer the
    user has hidden stays hidden. ``built``: :func:`build_layer`'s result for ``ldt``
    (made in a worker), appended when no layer of that name exists yet."""
    data, kw, ltype = ldt
    kw = dict(kw)
    after = {k: kw.pop(k) for k in _AFTER if k in kw}
    want_visible = bool(kw.pop("visible", True))
    name = kw.get("name")
    if name in viewer.layers and layer_type(viewer.layers[name]) == ltype:
        layer = viewer.layers[name]
        # hidden while more than the data changes (each change would slice the plane); not
        # points (sliced cheaply, and napari keeps a hidden points layer's last slice:
        # changing their number while hidden breaks its view)
        hide = bool(layer.visible) and ltype in ("labels", "image") and _restyled(layer, kw, after)
        if hide:
            layer.visible = False
        try:
            _update(layer, data, kw, after, ltype)
        except BaseException:
            if hide:
                layer.visible = True
            raise
        return layer, hide
    if built is not None and layer_type(built[0]) == ltype and built[0].name == name:
        viewer.layers.append(built[0])
        return viewer.layers[name], built[1]
    layer = getattr(viewer, f"add_{ltype}")(data, visible=False, **kw)
    for key, value in after.items():
        setattr(layer, key, value)
    return layer, want_visible


def channel_count(layer) -> int:
    """How many channels :func:`image_to_chw` gives for an image layer (from its shape only)."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(data.shape)
    if getattr(layer, "rgb", False):
        return 3
    if len(shape) == 3 and shape[0] <= 8:
        return int(shape[0])
    return 1


def image_to_chw(layer, step: Sequence[int] | None = None) -> np.ndarray:
    """The pixel data of an image layer as (C, H, W): RGB(A) -> 3 (4) channels; a 2-D
    image -> 1 channel; a channel-first (C<=8, H, W) stack -> C channels. Other stacks use
    the plane shown in the viewer (``step``)."""

    data = np.asarray(layer.data if not getattr(layer, "multiscale", False) else layer.data[0])
    if getattr(layer, "rgb", False):
        data = data[..., :3] if data.shape[-1] == 4 else data
        while data.ndim > 3:
            data = data[tuple(step[: data.ndim - 3])] if step is not None else data[0]
        return np.moveaxis(data, -1, 0)
    if data.ndim == 3 and data.shape[0] <= 8:
        return data
    if data.ndim > 2 and step is not None and data.ndim - 2 <= len(step):
        plane = data[tuple(int(s) for s in step[: data.ndim - 2])]
        return plane[None]
    try:
        return to_chw(data, layer.name)
    except InputError:
        raise InputError(f"layer '{layer.name}' has shape {data.shape}: choose a 2-D image (optionally with "
                         "channels)") from None
