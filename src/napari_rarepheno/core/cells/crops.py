"""From whole fields to one fixed-size crop per cell.

``segment_cells`` finds cells in one channel (smooth, Otsu or Li threshold,
drop small objects, split touching cells with a distance-transform watershed);
``cells_from_labels`` lists them; ``extract_crops`` cuts (C, size, size) crops
centred on given centroids. Centring is exact: the centroid, rounded to the
nearest pixel, lands on crop pixel (size // 2, size // 2), also at the border,
where the missing part is padded (``pad_mode`` as in ``numpy.pad``).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError

__all__ = ["segment_cells", "cells_from_labels", "extract_crops", "crops_from_labels"]

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


def segment_cells(image_2d, method: str = "otsu", min_area: int = 30, smooth_sigma: float = 1.0,
                  split_touching: bool = True, min_distance: int | None = None) -> np.ndarray:
    """Label cells (or nuclei) in one 2-D channel -> int32 labels, 0 = background, 1..n cells.

    method: 'otsu' or 'li' threshold. min_area: smaller objects (pixels) are dropped.
    split_touching: separate touching cells with a watershed on the distance transform,
    one seed per local maximum at least ``min_distance`` pixels apart (default: the radius
    of a disk of ``min_area`` pixels, at least 3).
    """
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_li, threshold_otsu
    from skimage.segmentation import watershed

    img = np.asarray(image_2d)
    if img.ndim != 2:
        raise InputError(f"segment_cells needs one 2-D channel, got shape {img.shape}; pick a channel first.")
    if method not in ("otsu", "li"):
        raise InputError(f"method must be 'otsu' or 'li', got {method!r}.")
    if min_area < 1 or smooth_sigma < 0:
        raise InputError(f"min_area must be >= 1 and smooth_sigma >= 0, got {min_area} and {smooth_sigma}.")
    img = img.astype(np.float64)
    if not np.all(np.isfinite(img)):
        raise InputError("the image contains NaN or infinite values.")
    if np.ptp(img) == 0:
        return np.zeros(img.shape, np.int32)  # flat image: no cells
    smooth = gaussian(img, smooth_sigma, preserve_range=True) if smooth_sigma > 0 else img
    thresh = threshold_otsu(smooth) if method == "otsu" else threshold_li(smooth)
    mask = ndi.binary_fill_holes(smooth > thresh)
    comps, _ = ndi.label(mask)  # drop small objects (works the same on every scikit-image version)
    mask &= (np.bincount(comps.ravel()) >= min_area)[comps]
    if not split_touching:
        labels = ndi.label(mask)[0]
    else:
        dist = ndi.gaussian_filter(ndi.distance_transform_edt(mask), 1.0)
        md = min_distance if min_distance is not None else max(3, int(np.sqrt(min_area / np.pi)))
        comps = ndi.label(mask)[0]
        peaks = peak_local_max(dist, min_distance=md, labels=comps, exclude_border=False)
        markers = np.zeros(mask.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        labels = watershed(-dist, markers, mask=mask)
        orphans = mask & (labels == 0)  # components that got no seed keep their own label
        if orphans.any():
            extra = ndi.label(orphans)[0]
            labels[orphans] = extra[orphans] + labels.max()
    areas = np.bincount(labels.ravel())
    labels[(areas < min_area)[labels]] = 0
    keep = np.unique(labels)
    relabel = np.zeros(labels.max() + 1, np.int32)
    relabel[keep] = np.arange(len(keep)) if keep[0] == 0 else np.arange(1, len(keep) + 1)
    return relabel[labels]


def cells_from_labels(labels) -> dict[str, np.ndarray]:
    """Table of labelled cells as columns: id, centroid_y, centroid_x, area (ordered by id)."""
    lab = _check_labels(labels)
    flat = lab.ravel()
    ids = np.unique(flat[flat > 0])
    area = np.bincount(flat, minlength=lab.max() + 1).astype(np.float64)
    yy, xx = np.indices(lab.shape)
    cy = np.bincount(flat, yy.ravel(), lab.max() + 1)
    cx = np.bincount(flat, xx.ravel(), lab.max() + 1)
    return {"id": ids, "centroid_y": cy[ids] / area[ids], "centroid_x": cx[ids] / area[ids],
            "area": area[ids].astype(np.int64)}


def _check_labels(labels, shape=None) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise InputError(f"labels must be a 2-D label image, got shape {lab.shape}.")
    if not np.issubdtype(lab.dtype, np.integer):
        if lab.dtype == bool or not np.all(np.mod(lab, 1) == 0):
            raise InputError(f"labels must hold integer cell ids, got dtype {lab.dtype}.")
        lab = lab.astype(np.int64)
    if lab.size and lab.min() < 0:
        raise InputError("labels must be >= 0 (0 = background).")
    if shape is not None and lab.shape != tuple(shape):
        raise InputError(f"labels of shape {lab.shape} do not match the field's (H, W) = {tuple(shape)}.")
    return lab


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
    lab = _check_labels(labels, f.shape[1:])
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
