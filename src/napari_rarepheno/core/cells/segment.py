"""Cells in a field: ``segment_cells`` finds cells (or nuclei) in one channel (smooth, Otsu
or Li threshold, drop small objects, split touching cells with a distance-transform
watershed); ``cells_from_labels`` lists the cells of any label image (this one's, or one
from cellpose, StarDist or CellProfiler) as a table."""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError

__all__ = ["segment_cells", "cells_from_labels", "check_labels"]


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
    lab = check_labels(labels)
    flat = lab.ravel()
    ids = np.unique(flat[flat > 0])
    area = np.bincount(flat, minlength=lab.max() + 1).astype(np.float64)
    yy, xx = np.indices(lab.shape)
    cy = np.bincount(flat, yy.ravel(), lab.max() + 1)
    cx = np.bincount(flat, xx.ravel(), lab.max() + 1)
    return {"id": ids, "centroid_y": cy[ids] / area[ids], "centroid_x": cx[ids] / area[ids],
            "area": area[ids].astype(np.int64)}


def check_labels(labels, shape=None) -> np.ndarray:
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
