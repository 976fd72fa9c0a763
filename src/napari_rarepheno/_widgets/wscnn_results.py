"""What the WSCNN Infer tab keeps per image, and the cheap steps the sliders re-run.

The network runs once per image; :class:`Cached` holds its saliency and probabilities,
and :func:`segment` turns them into objects with the current slider values (no network).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.errors import InputError
from ..core.inference.segment import segment_saliency
from ..core.io.images import check_finite, select_channels, to_float

#: images up to this many pixels are re-segmented in the GUI thread (a few ms);
#: bigger ones in a worker, latest request wins
SYNC_PIXELS = 300_000


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

    called_positive = int(np.argmax(c.probabilities)) == c.positive
    sal = c.saliency if called_positive or not positive_only else np.zeros_like(c.saliency)
    return c, segment_saliency(sal, cfg)


def common_contrast(viewer, cache: dict[str, Cached]) -> None:
    """One brightness scale for every saliency layer, so weak evidence looks weak."""
    names = [k for k in cache if f"{k} saliency" in viewer.layers]
    if not names:
        return
    hi = max(float(np.percentile(cache[k].saliency, 99.9)) for k in names)
    if hi > 0:
        for k in names:
            viewer.layers[f"{k} saliency"].contrast_limits = (0.0, hi)
