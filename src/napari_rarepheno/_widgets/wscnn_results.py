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


def prepare_input(chw: np.ndarray, meta, name: str) -> np.ndarray:
    """Layer pixels (C, H, W) -> the float channels the model was trained on."""

    want = int(meta.config.get("in_channels", chw.shape[0]))
    if meta.channels and chw.shape[0] != want:
        chw = select_channels(chw, meta.channels, name)
    if chw.shape[0] != want:
        raise InputError(f"the model expects {want} channel(s) but layer '{name}' has {chw.shape[0]}; "
                         f"choose a layer with {want} channel(s)")
    check_finite(chw, name)
    return to_float(chw)


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
