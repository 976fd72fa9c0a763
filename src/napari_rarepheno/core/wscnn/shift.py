"""Are new images like the images a WSCNN was trained on? The model keeps its training
images' intensity levels and typical object size (:func:`image_input_stats`); every
prediction can compare an image with them (:func:`image_shift`), so that brighter plates or
another magnification are reported instead of silently giving other saliency.

The object size is :func:`core.cells.segment.estimate_diameter` on the first channel, on a
block-averaged copy for big images (the estimate is scale-free; measured on the shipped
HeLa field: 42.5 px at full size in 6.3 s, 42.7 px at half size in 1.5 s). Pixel noise is
smoothed away first (Gaussian, :data:`_NOISE_SIGMA` px): on mosaics of the curated HeLa crops,
whose camera noise is ~3x the raw field's, the estimate otherwise locked onto the grain
(11-16 px in 9 of 12 mosaics whose nuclei are ~40 px; 33-40 px smoothed), and a WSCNN
trained on them warned that the field's cells were 2.9x too large."""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from ..cells.segment import estimate_diameter
from ..inference.predict import prepare_image
from ..inputs.normalize import Normalization
from ..inputs.shift import ShiftReport, compare, fit_input_stats

#: images are block-averaged to about this many pixels before the size estimate
_SIZE_PIXELS = 600_000
#: at most this many pixels (a central window) go into the estimate: a 2048x2048 field whose
#: objects are too small for block averaging took 8 s a field in ``rarepheno predict``
_CROP_PIXELS = 360_000
#: Gaussian smoothing (px, after block averaging) against pixel noise before the size estimate
_NOISE_SIGMA = 2.0


def object_diameter(image_chw: np.ndarray, prior: float | None = None) -> float:
    """Typical object diameter (px) in the first channel, measured on a block-averaged copy
    of big images (never coarser than ``prior / 10`` px per block)."""
    img = np.asarray(image_chw, np.float32)
    img = img[0] if img.ndim == 3 else img
    h, w = img.shape
    k = max(1, math.ceil(math.sqrt(h * w / _SIZE_PIXELS)))
    if prior:
        k = max(1, min(k, int(prior // 10)))
    if k > 1:
        img = img[:h // k * k, :w // k * k].reshape(h // k, k, w // k, k).mean((1, 3))
    if img.size > _CROP_PIXELS:  # small objects forbid coarser blocks: a central window holds plenty
        side = int(math.sqrt(_CROP_PIXELS))
        y0, x0 = max(0, (img.shape[0] - side) // 2), max(0, (img.shape[1] - side) // 2)
        img = img[y0:y0 + side, x0:x0 + side]
    return float(estimate_diameter(ndi.gaussian_filter(img, _NOISE_SIGMA))) * k


def image_input_stats(images: np.ndarray, max_images: int = 24) -> dict:
    """:func:`core.inputs.shift.fit_input_stats` of training images (N, C, H, W, as read):
    intensity levels and the median object diameter of up to ``max_images`` images."""
    pick = np.linspace(0, len(images) - 1, min(len(images), max_images)).astype(int) if len(images) else []
    d = [object_diameter(images[i]) for i in pick]
    d = [v for v in d if np.isfinite(v)]
    return fit_input_stats(images, diameter=float(np.median(d)) if d else None)


def image_shift(loaded, image_chw: np.ndarray) -> ShiftReport:
    """How one image (C, H, W as read) compares with the model's training images: brightness
    per channel and object size (``summary['size_ratio']``, ``brightness``)."""
    stats = loaded.meta.input_stats
    if not stats:
        return ShiftReport()
    img = prepare_image(loaded, image_chw)
    prior = stats.get("object_diameter")
    d = object_diameter(img, prior) if prior else None
    return compare(stats, img[None], diameter=d, channel_names=loaded.meta.input_names(), what="images",
                   scaled=Normalization.of_model(loaded.meta).scale is not None)
