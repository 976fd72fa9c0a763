"""Cells in a field: ``segment_cells`` finds cells (or nuclei) in one channel, at any size;
``cells_from_labels`` lists the cells of any label image (this one's, or one from cellpose,
StarDist or CellProfiler) as a table.

Segmentation scales with the objects: every length in it comes from one typical object
diameter ``d`` (given, or measured by :func:`estimate_diameter`), so one call works from
~10 px to ~120 px nuclei:

1. background: a grey opening wider than a nucleus (2.5 d, on a block-averaged copy),
   smoothed, is subtracted (uneven illumination);
2. foreground: Gaussian smoothing (sigma 0.04 d, at least 0.5 px), Otsu or Li threshold,
   holes smaller than half a nucleus filled (not the background that a ring of cells
   encloses), objects under ``min_area`` (15% of a nucleus) dropped;
3. splitting touching objects: a watershed on the sum of the smoothed distance transform
   (sigma 0.08 d; in units of d / 2) and the scale-normalised Laplacian of Gaussian at the
   nucleus scale (sigma d / 2.83, on a block-averaged copy with >= 4 px per sigma; in
   units of its 95th percentile inside the foreground),
   seeded at its local maxima at least ``min_distance`` (0.2 d) apart. The distance term
   splits at necks, the blob term at the dark seams between touching nuclei of no neck.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from .size import block_mean, log_diameter

__all__ = ["segment_cells", "segment_field", "estimate_diameter", "Segmentation", "cells_from_labels",
           "check_labels"]

#: the diameter used when the image offers none (no bright blob, or a tiny image)
FALLBACK_DIAMETER = 16.0
#: lengths and areas as fractions of the diameter d (areas: of a disk of diameter d)
SMOOTH = 0.04
MIN_AREA = 0.15
MIN_DISTANCE = 0.2
DIST_SMOOTH = 0.08
BACKGROUND = 2.5
HOLES = 0.5
#: the refined size: this percentile of the LoG response inside the first guess's foreground
FOREGROUND_PERCENTILE = 90.0


@dataclass
class Segmentation:
    """Labels (int32, 0 = background) and the settings that made them: ``diameter`` (px;
    ``estimated`` says whether it came from the image) and the lengths derived from it or
    given by the caller."""

    labels: np.ndarray
    diameter: float
    estimated: bool
    smooth_sigma: float
    min_area: int
    min_distance: int
    threshold: float = float("nan")
    params: dict = field(default_factory=dict)


def _check_image(image_2d, what: str = "segment_cells") -> np.ndarray:
    img = np.asarray(image_2d)
    if img.ndim != 2:
        raise InputError(f"{what} needs one 2-D channel, got shape {img.shape}; pick a channel first.")
    img = img.astype(np.float64)
    if not np.all(np.isfinite(img)):
        raise InputError("the image contains NaN or infinite values.")
    return img


def _first_guess(img: np.ndarray) -> float:
    d = log_diameter(img)
    return d if np.isfinite(d) else min(FALLBACK_DIAMETER, min(img.shape) / 2)


def estimate_diameter(image_2d, refine: bool = True) -> float:
    """Typical diameter (px) of the bright objects in one 2-D channel, from the image alone.

    A first guess is the scale of the strongest Laplacian-of-Gaussian blobs over the whole
    image (:func:`.size.log_diameter`); the estimate is the same search restricted to the
    foreground that segmentation at the first guess finds (90th percentile of the response
    there), which stays right when the objects cover little of the image. ``refine=False``
    returns the first guess. Within ~10% of the median equivalent diameter
    ``2 * sqrt(area / pi)`` on hand-masked nuclei and synthetic fields of 10-120 px objects
    (benchmarks/segmentation.py); proportional to the image's scale. A flat image gives
    ``nan``; an image without bright blobs (or under 16 px) gives a fallback of 16 px (at
    most half the image)."""
    img = _check_image(image_2d, "estimate_diameter")
    if np.ptp(img) == 0:
        return float("nan")
    d0 = _first_guess(img)
    if not refine:
        return float(d0)
    fg = _foreground(img - _background(img, d0), d0, "otsu", _lengths(d0, None, None, None))[0]
    d1 = log_diameter(img, mask=fg, percentile=FOREGROUND_PERCENTILE) if fg.any() else float("nan")
    return float(d1) if np.isfinite(d1) else float(d0)


def segment_field(image_2d, method: str = "otsu", min_area: int | None = None, smooth_sigma: float | None = None,
                  split_touching: bool = True, min_distance: int | None = None, *, diameter: float | None = None,
                  subtract_background: bool = True) -> Segmentation:
    """Label cells (or nuclei) in one 2-D channel, with every length taken from the objects'
    typical ``diameter`` in px (None: :func:`estimate_diameter`); see the module docstring.

    method: 'otsu' or 'li' threshold. min_area: smaller objects (pixels) are dropped
    (default 15% of a disk of the diameter, at least 4 px). smooth_sigma: Gaussian smoothing
    before the threshold (default 0.04 x diameter, at least 0.5; 0 = none). split_touching:
    separate touching cells with a watershed seeded at maxima at least ``min_distance`` px
    apart (default 0.2 x diameter, at least 1). subtract_background: remove an uneven
    background wider than 2.5 diameters first. Arguments given explicitly win over the
    values derived from the diameter.
    """
    img = _check_image(image_2d)
    if method not in ("otsu", "li"):
        raise InputError(f"method must be 'otsu' or 'li', got {method!r}.")
    if (min_area is not None and min_area < 1) or (smooth_sigma is not None and smooth_sigma < 0):
        raise InputError(f"min_area must be >= 1 and smooth_sigma >= 0, got {min_area} and {smooth_sigma}.")
    if min_distance is not None and min_distance < 1:
        raise InputError(f"min_distance must be >= 1, got {min_distance}.")
    if diameter is not None and not (np.isfinite(diameter) and diameter > 0):
        raise InputError(f"diameter must be a positive number of pixels, got {diameter}.")
    flat = np.ptp(img) == 0
    estimated = diameter is None
    if estimated:
        d = FALLBACK_DIAMETER if flat else estimate_diameter(img)
    else:
        d = float(diameter)
    if flat:  # flat image: no cells
        labels, thresh, used = np.zeros(img.shape, np.int32), float("nan"), _lengths(d, min_area, smooth_sigma,
                                                                                      min_distance)
    else:
        labels, thresh, used = _segment(img, d, method, min_area, smooth_sigma, split_touching, min_distance,
                                        subtract_background)
    return Segmentation(labels, float(d), estimated, used["smooth_sigma"], used["min_area"], used["min_distance"],
                        float(thresh), dict(used, method=method, split_touching=split_touching,
                                            subtract_background=subtract_background))


def segment_cells(image_2d, method: str = "otsu", min_area: int | None = None, smooth_sigma: float | None = None,
                  split_touching: bool = True, min_distance: int | None = None, *, diameter: float | None = None,
                  subtract_background: bool = True) -> np.ndarray:
    """Label cells (or nuclei) in one 2-D channel -> int32 labels, 0 = background, 1..n cells.

    The arguments are :func:`segment_field`'s (which also returns the diameter and the
    lengths used): every length comes from the objects' typical ``diameter`` in px,
    measured from the image when None; explicit arguments win."""
    return segment_field(image_2d, method, min_area, smooth_sigma, split_touching, min_distance,
                         diameter=diameter, subtract_background=subtract_background).labels


def _lengths(d: float, min_area, smooth_sigma, min_distance) -> dict:
    return {"smooth_sigma": float(max(0.5, SMOOTH * d) if smooth_sigma is None else smooth_sigma),
            "min_area": int(max(4, round(MIN_AREA * np.pi * d * d / 4)) if min_area is None else min_area),
            "min_distance": int(max(1, round(MIN_DISTANCE * d)) if min_distance is None else min_distance),
            "dist_sigma": float(DIST_SMOOTH * d), "blob_sigma": float(d / (2 * np.sqrt(2)))}


def _background(img: np.ndarray, d: float) -> np.ndarray:
    """Grey opening wider than an object (on a block-averaged copy), smoothed, full size."""
    f = max(1, int(d / 4))
    small = block_mean(img, f)
    size = max(3, int(np.ceil(BACKGROUND * d / f)) | 1)
    bg = ndi.gaussian_filter(ndi.grey_opening(small, size=(size, size)), size / 2)
    if f == 1 and bg.shape == img.shape:
        return bg
    h, w = img.shape
    return ndi.zoom(bg, (h / bg.shape[0], w / bg.shape[1]), order=1, mode="nearest", grid_mode=True)[:h, :w]


def _foreground(img: np.ndarray, d: float, method: str, used: dict):
    """The objects' mask (smooth, threshold, small holes filled, small objects dropped) and the threshold."""
    from skimage.filters import (  # deferred: loads scikit-image
        threshold_li,
        threshold_otsu,
    )

    sigma = used["smooth_sigma"]
    smooth = ndi.gaussian_filter(img, sigma) if sigma > 0 else img
    if np.ptp(smooth) == 0:
        return np.zeros(img.shape, bool), float("nan")
    thresh = float(threshold_otsu(smooth) if method == "otsu" else threshold_li(smooth))
    mask = smooth > thresh
    holes = ndi.binary_fill_holes(mask) & ~mask  # fill holes smaller than half an object
    hl, _ = ndi.label(holes)
    mask |= (np.bincount(hl.ravel()) <= HOLES * np.pi * d * d / 4)[hl] & holes
    comps, _ = ndi.label(mask)
    mask &= (np.bincount(comps.ravel()) >= used["min_area"])[comps]
    return mask, thresh


def _segment(img: np.ndarray, d: float, method: str, min_area, smooth_sigma, split_touching: bool, min_distance,
             subtract_background: bool):
    from skimage.feature import peak_local_max  # deferred: loads scikit-image
    from skimage.segmentation import watershed  # deferred: loads scikit-image

    used = _lengths(d, min_area, smooth_sigma, min_distance)
    if subtract_background:
        img = img - _background(img, d)
    mask, thresh = _foreground(img, d, method, used)
    if not split_touching:
        labels = ndi.label(mask)[0].astype(np.int32)
    else:
        comps = ndi.label(mask)[0]
        dist = ndi.distance_transform_edt(mask)
        if used["dist_sigma"] > 0:
            dist = ndi.gaussian_filter(dist, used["dist_sigma"])
        s = used["blob_sigma"]
        f = max(1, int(s / 4))  # the blob term on a block-averaged copy (>= 4 px per sigma), then full size
        blob = -s * s * ndi.gaussian_laplace(block_mean(img, f), s / f)
        if blob.shape != img.shape:
            blob = ndi.zoom(blob, (img.shape[0] / blob.shape[0], img.shape[1] / blob.shape[1]), order=1,
                            mode="nearest", grid_mode=True)[:img.shape[0], :img.shape[1]]
        scale = np.percentile(blob[mask], 95) if mask.any() else 0.0
        land = dist / (d / 2) + (blob / scale if scale > 0 else 0.0)
        peaks = peak_local_max(land, min_distance=used["min_distance"], labels=comps, exclude_border=False)
        markers = np.zeros(mask.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        labels = watershed(-land, markers, mask=mask).astype(np.int32)
        orphans = mask & (labels == 0)  # components that got no seed keep their own label
        if orphans.any():
            extra = ndi.label(orphans)[0]
            labels[orphans] = extra[orphans] + labels.max()
    areas = np.bincount(labels.ravel())
    labels[(areas < used["min_area"])[labels]] = 0
    keep = np.unique(labels)
    relabel = np.zeros(labels.max() + 1, np.int32)
    relabel[keep] = np.arange(len(keep)) if keep[0] == 0 else np.arange(1, len(keep) + 1)
    return relabel[labels], thresh, used


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
