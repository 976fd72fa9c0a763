"""One fixed-size crop per cell: ``extract_crops`` cuts (C, size, size) crops centred on
given centroids, ``crops_from_labels`` on the cells of a label image. Centring is exact: the centroid, rounded to the
nearest pixel, lands on crop pixel (size // 2, size // 2), also at the border,
where the missing part is padded (``pad_mode`` as in ``numpy.pad``).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import gaussian, threshold_otsu

from ..errors import InputError
from .segment import cells_from_labels, check_labels

__all__ = ["extract_crops", "crops_from_labels", "centre_diameters"]

_PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


def _as_field(field) -> np.ndarray:
    f = np.asarray(field)
    if f.ndim == 2:
        return f[None]
    if f.ndim != 3:
        raise InputError(f"a field must be (C, H, W) or (H, W), got shape {f.shape}.")
    if f.shape[-1] <= 4 < min(f.shape[:2]):
        raise InputError(f"the field of shape {f.shape} looks channels-last (H, W, C); "
                         "pass numpy.moveaxis(field, -1, 0) to make it (C, H, W).")
    return f


def extract_crops(field, centroids, size: int = 64, pad_mode: str = "constant", cval: float = 0) -> np.ndarray:
    """(N, C, size, size) crops, the rounded centroid (y, x) at crop pixel (size // 2, size // 2).

    field: (C, H, W) or (H, W); dtype is kept. centroids: (N, 2) in pixels, inside the image.
    pad_mode: numpy.pad mode for parts outside the field ('constant' fills with ``cval``).
    """
    f = _as_field(field)
    _, h, w = f.shape
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise InputError(f"crop size must be a positive integer, got {size!r}.")
    if pad_mode not in _PAD_MODES:
        raise InputError(f"pad_mode must be one of {_PAD_MODES}, got {pad_mode!r}.")
    cen = np.asarray(centroids, dtype=np.float64)
    if cen.size == 0:
        return np.zeros((0, f.shape[0], size, size), f.dtype)
    if cen.ndim != 2 or cen.shape[1] != 2:
        raise InputError(f"centroids must be (N, 2) as (y, x), got shape {cen.shape}.")
    yx = np.floor(cen + 0.5).astype(np.int64)
    outside = ~np.isfinite(cen).all(1) | (yx[:, 0] < 0) | (yx[:, 0] >= h) | (yx[:, 1] < 0) | (yx[:, 1] >= w)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise InputError(f"{int(outside.sum())} centroid(s) lie outside the {h}x{w} image, "
                         f"e.g. #{i} at (y, x) = {tuple(cen[i])}; centroids are (y, x), not (x, y).")
    half = size // 2
    out = np.empty((len(yx), f.shape[0], size, size), f.dtype)
    if pad_mode != "constant":  # reflections need the whole field: pad it once, then slice
        padded = np.pad(f, ((0, 0), (half, size - half), (half, size - half)), mode=pad_mode)
        for n, (y, x) in enumerate(yx):
            out[n] = padded[:, y:y + size, x:x + size]
        return out
    for n, (y, x) in enumerate(yx):
        y0, x0 = y - half, x - half
        y1, x1 = y0 + size, x0 + size
        piece = f[:, max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
        pads = ((0, 0), (max(0, -y0), max(0, y1 - h)), (max(0, -x0), max(0, x1 - w)))
        out[n] = np.pad(piece, pads, constant_values=cval) if any(map(any, pads)) else piece
    return out


def crops_from_labels(field, labels, size: int = 64, mask_others: bool = False, pad_mode: str = "constant",
                      return_masks: bool = False):
    """One crop per labelled cell -> (crops (N, C, size, size), ids (N,), centroids (N, 2) yx[, masks]).

    mask_others: zero the pixels that belong to other cells. return_masks: also return
    (N, size, size) boolean masks of each crop's own cell (for ``extract_features``).
    """
    f = _as_field(field)
    lab = check_labels(labels, f.shape[1:])
    table = cells_from_labels(lab)
    ids = table["id"]
    cen = np.stack([table["centroid_y"], table["centroid_x"]], 1) if len(ids) else np.zeros((0, 2))
    crops = extract_crops(f, cen, size, pad_mode)
    need_lab = mask_others or return_masks
    lab_crops = extract_crops(lab, cen, size, pad_mode)[:, 0] if need_lab else None
    if mask_others:
        other = (lab_crops != 0) & (lab_crops != ids[:, None, None])
        crops[np.broadcast_to(other[:, None], crops.shape)] = 0
    if return_masks:
        return crops, ids, cen, lab_crops == ids[:, None, None]
    return crops, ids, cen


def centre_diameters(crops_2d: np.ndarray, smooth_sigma: float = 1.5) -> np.ndarray:
    """(N,) equivalent diameter (px) of the object at the centre of each (H, W) crop of one
    channel: smoothed, Otsu-thresholded, holes filled, the component under the centre (or
    the nearest one). The one size measure for curated crops and for cells cut from a field,
    so that the two compare (NaN for a crop with no object)."""
    x = np.asarray(crops_2d, np.float64)
    if x.ndim == 2:
        x = x[None]
    out = np.full(len(x), np.nan)
    for i, c in enumerate(x):
        s = gaussian(c, smooth_sigma) if smooth_sigma > 0 else c
        if np.ptp(s) == 0:
            continue
        lab, n = ndi.label(ndi.binary_fill_holes(s > threshold_otsu(s)))
        if n == 0:
            continue
        cy, cx = c.shape[0] // 2, c.shape[1] // 2
        k = lab[cy, cx]
        if k == 0:
            iy, ix = ndi.distance_transform_edt(lab == 0, return_distances=False, return_indices=True)
            k = lab[iy[cy, cx], ix[cy, cx]]
        out[i] = 2 * np.sqrt((lab == k).sum() / np.pi)
    return out
