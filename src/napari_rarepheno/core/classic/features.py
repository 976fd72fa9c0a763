"""Hand-made per-cell features and the classical heads that use them.

The random-forest baseline of Pärnamaa & Parts (2017) used 435 CellProfiler
features (intensity, geometry, Haralick texture, Gabor, Zernike). This module
computes a compact set of the same families (~115 numbers for a 2-channel crop)
directly from (C, H, W) crops, fast enough to run on every cell of a screen
(a few ms per 64x64 crop on one core), plus the heads: a random forest with a
reduced version of the paper's hyperparameter grid, a standardised logistic
regression for transfer, and the few-shot learning curve.

Channels: ``marker_channel`` (the cell/cytoplasm or chromatin marker) gives the
cell mask (Otsu) when none is given; ``protein_channel`` is the tagged protein
for Zernike and radial-profile features. Texture (Haralick, Gabor) and Zernike
features are normalised per crop, so they describe the pattern, not the
brightness; intensity features keep the raw units.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from math import factorial

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError
from skimage.feature import graycomatrix
from skimage.filters import threshold_otsu
from skimage.measure import perimeter

from ..errors import InputError

__all__ = ["FeatureConfig", "FeatureReport", "extract_features"]

FAMILIES = ("intensity", "shape", "haralick", "zernike", "gabor", "correlation", "radial")
_GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "asm", "entropy", "correlation")
_STATS = ("mean", "std", "p05", "p25", "p50", "p75", "p95", "max", "integrated", "bg_mean")
_SHAPE = ("area", "perimeter", "eccentricity", "solidity", "major_axis", "minor_axis", "extent",
          "form_factor", "centre_offset")


@dataclass
class FeatureConfig:
    """What to compute. Dropping families from ``families`` makes extraction faster."""

    marker_channel: int = 0
    protein_channel: int = 1
    families: tuple[str, ...] = FAMILIES
    glcm_levels: int = 16
    glcm_distances: tuple[int, ...] = (1, 2, 4)
    zernike_degree: int = 8
    gabor_frequencies: tuple[float, ...] = (0.05, 0.1, 0.2, 0.35)  # cycles per pixel
    gabor_orientations: int = 4
    radial_edges: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.5)  # in units of the cell radius
    batch_size: int = 256


@dataclass
class FeatureReport:
    """What happened during extraction: replaced non-finite values, crops without a cell mask."""

    n_crops: int = 0
    n_nonfinite: int = 0
    n_empty_masks: int = 0
    seconds: float = 0.0

    @property
    def ms_per_crop(self) -> float:
        return 1000 * self.seconds / max(self.n_crops, 1)


# --------------------------------------------------------------------------- filter banks
def _zernike_basis(h: int, w: int, degree: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Conjugate Zernike polynomials on the crop's inscribed disk, (n_moments, h*w) without Z00,
    the disk as a flat 0/1 weight, and the moment names."""
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    radius = min(h, w) / 2
    y, x = (yy - (h - 1) / 2) / radius, (xx - (w - 1) / 2) / radius
    rho, theta = np.hypot(y, x), np.arctan2(y, x)
    inside = rho <= 1
    rows, names = [], []
    for n in range(1, degree + 1):
        for m in range(n % 2, n + 1, 2):
            radial = sum((-1) ** s * factorial(n - s) / (factorial(s) * factorial((n + m) // 2 - s)
                         * factorial((n - m) // 2 - s)) * rho ** (n - 2 * s) for s in range((n - m) // 2 + 1))
            rows.append(((n + 1) / np.pi) * radial * np.exp(-1j * m * theta) * inside)
            names.append(f"zernike_n{n}_m{m}")
    return np.stack(rows).reshape(len(rows), -1), inside.ravel().astype(np.float64), names


def _gabor_bank(h: int, w: int, freqs, n_orient: int) -> np.ndarray:
    """Squared Gabor transfer functions (len(freqs) * n_orient, h*w), bandwidth ~ one octave."""
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    bank = []
    for f in freqs:
        for k in range(n_orient):
            t = np.pi * k / n_orient
            g = np.exp(-((fy - f * np.sin(t)) ** 2 + (fx - f * np.cos(t)) ** 2) / (2 * (0.4 * f) ** 2))
            bank.append(g ** 2)
    return np.stack(bank).reshape(len(bank), -1)


# --------------------------------------------------------------------------- per-crop parts
def _cell_mask(marker: np.ndarray) -> np.ndarray:
    """Otsu on the marker; keep the component under the centre (or the largest); fill holes."""
    if marker.max() - marker.min() <= 1e-12:
        return np.zeros(marker.shape, bool)
    mask = marker > threshold_otsu(marker)
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    h, w = marker.shape
    centre_label = lab[h // 2, w // 2]
    if centre_label == 0:
        centre_label = np.argmax(np.bincount(lab.ravel())[1:]) + 1
    return ndi.binary_fill_holes(lab == centre_label)


def _shape(mask: np.ndarray) -> list[float]:
    area = float(mask.sum())
    if area < 3:
        return [area] + [0.0] * (len(_SHAPE) - 1)
    yx = np.argwhere(mask).astype(np.float64)
    centre = yx.mean(0)
    d = yx - centre
    cov = d.T @ d / len(d)  # inertia tensor as in skimage regionprops
    ev = np.sort(np.linalg.eigvalsh(cov))[::-1]
    major, minor = 4 * np.sqrt(ev)
    ecc = np.sqrt(max(0.0, 1 - ev[1] / ev[0]))
    edge = mask ^ ndi.binary_erosion(mask)
    grid = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), bool)  # pixel corners of the outline
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        grid[dy:dy + mask.shape[0], dx:dx + mask.shape[1]] |= edge
    corners = np.argwhere(grid)
    try:
        solidity = min(1.0, area / ConvexHull(corners).volume)
    except QhullError:
        solidity = 1.0
    per = float(perimeter(mask))
    ext = area / float(np.ptp(yx[:, 0]) + 1) / float(np.ptp(yx[:, 1]) + 1)
    h, w = mask.shape
    offset = float(np.hypot(centre[0] - (h - 1) / 2, centre[1] - (w - 1) / 2))
    return [area, per, ecc, solidity, major, minor, ext, 4 * np.pi * area / max(per, 1) ** 2, offset]


def _haralick(img: np.ndarray, mask: np.ndarray, lo: float, hi: float, levels: int, distances) -> np.ndarray:
    """Rotation-averaged GLCM statistics of the in-mask pixels quantised between lo and hi, (len(distances) * 6,)."""
    vals = img[mask]
    q = np.zeros(img.shape, np.uint8)
    scale = (levels - 1e-6) / (hi - lo) if hi > lo else 0.0
    q[mask] = 1 + np.clip((vals - lo) * scale, 0, levels - 1).astype(np.uint8)
    glcm = graycomatrix(q, distances, (0, np.pi / 4, np.pi / 2, 3 * np.pi / 4), levels=levels + 1, symmetric=True)
    p = glcm[1:, 1:].sum(3).astype(np.float64)  # level 0 = outside the cell; average over angles
    p /= np.maximum(p.sum((0, 1), keepdims=True), 1)
    i, j = np.ogrid[:levels, :levels]
    i, j = i[..., None].astype(float), j[..., None].astype(float)
    mu_i, mu_j = (p * i).sum((0, 1)), (p * j).sum((0, 1))
    sd_i = np.sqrt((p * (i - mu_i) ** 2).sum((0, 1)))
    sd_j = np.sqrt((p * (j - mu_j) ** 2).sum((0, 1)))
    cov = (p * (i - mu_i) * (j - mu_j)).sum((0, 1))
    denom = sd_i * sd_j
    corr = np.divide(cov, denom, out=np.zeros_like(cov), where=denom > 1e-12)
    ent = -(p * np.log2(p, out=np.zeros_like(p), where=p > 0)).sum((0, 1))
    props = [(p * (i - j) ** 2).sum((0, 1)), (p * np.abs(i - j)).sum((0, 1)),
             (p / (1 + (i - j) ** 2)).sum((0, 1)), (p ** 2).sum((0, 1)), ent, corr]
    return np.stack(props, 1).ravel()  # distance-major


def _per_crop(crop: np.ndarray, mask: np.ndarray, cfg: FeatureConfig, fam: set) -> list[float]:
    c = crop.shape[0]
    use = mask if mask.any() else np.ones(mask.shape, bool)
    out: list[float] = []
    pct = [np.percentile(crop[ch][use], (1, 5, 25, 50, 75, 95, 99)) for ch in range(c)]
    if "intensity" in fam:
        for ch in range(c):
            v, bg = crop[ch][use], crop[ch][~use]
            out += [v.mean(), v.std(), *pct[ch][1:6], v.max(), v.sum(), bg.mean() if bg.size else 0.0]
    if "shape" in fam:
        out += _shape(mask)
    if "haralick" in fam:
        for ch in range(c):
            lo, hi = pct[ch][0], pct[ch][6]
            out += _haralick(crop[ch], use, lo, hi, cfg.glcm_levels, cfg.glcm_distances).tolist()
    if "correlation" in fam and c > 1:
        a, b = crop[cfg.marker_channel], crop[cfg.protein_channel]
        for sel in (use, slice(None)):
            x, y = a[sel].ravel(), b[sel].ravel()
            sx, sy = x.std(), y.std()
            out.append(float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy)) if sx * sy > 1e-12 else 0.0)
    if "radial" in fam:
        prot = crop[cfg.protein_channel]
        h, w = prot.shape
        if mask.any():
            cy, cx = np.argwhere(mask).mean(0)
            radius = np.sqrt(mask.sum() / np.pi)
            bg = prot[~mask].mean() if (~mask).any() else 0.0
        else:
            cy, cx, radius, bg = (h - 1) / 2, (w - 1) / 2, min(h, w) / 4, 0.0
        f = np.clip(prot - bg, 0, None)
        yy, xx = np.ogrid[:h, :w]
        r = np.hypot(yy - cy, xx - cx) / max(radius, 1.0)
        bins = np.digitize(r, cfg.radial_edges)
        total = f.sum()
        frac = np.bincount(bins.ravel(), f.ravel(), len(cfg.radial_edges) + 1) / total if total > 0 \
            else np.zeros(len(cfg.radial_edges) + 1)
        if total > 0:
            gy, gx = (f * yy).sum() / total, (f * xx).sum() / total
            gyr = np.sqrt((f * ((yy - gy) ** 2 + (xx - gx) ** 2)).sum() / total) / max(radius, 1.0)
            off = np.hypot(gy - cy, gx - cx) / max(radius, 1.0)
        else:
            gyr = off = 0.0
        out += [*frac, gyr, off]
    return out


def _names(c: int, cfg: FeatureConfig, zern_names: list[str]) -> list[str]:
    fam, names = set(cfg.families), []
    if "intensity" in fam:
        names += [f"ch{ch}_{s}" for ch in range(c) for s in _STATS]
    if "shape" in fam:
        names += [f"shape_{s}" for s in _SHAPE]
    if "haralick" in fam:
        names += [f"ch{ch}_glcm_d{d}_{p}" for ch in range(c) for d in cfg.glcm_distances for p in _GLCM_PROPS]
    if "correlation" in fam and c > 1:
        names += ["corr_in_cell", "corr_whole_crop"]
    if "radial" in fam:
        edges = ("0",) + tuple(f"{e:g}" for e in cfg.radial_edges) + ("inf",)
        names += [f"radial_frac_{a}_{b}" for a, b in zip(edges[:-1], edges[1:])] + ["radial_gyration",
                                                                                 "radial_offset"]
    if "zernike" in fam:
        names += zern_names
    if "gabor" in fam:
        names += [f"ch{ch}_gabor_f{f:g}_{k}" for ch in range(c) for f in cfg.gabor_frequencies
                  for k in ("energy", "anisotropy")]
    return names


def extract_features(crops: np.ndarray, masks: np.ndarray | None = None,
                     config: FeatureConfig | None = None, return_report: bool = False):
    """Hand-made features of (N, C, H, W) crops -> ((N, F) float32, F names[, FeatureReport]).

    masks: optional (N, H, W) boolean cell masks; else Otsu on the marker channel.
    Non-finite values (constant or empty crops) become 0 and are counted in the report.
    """
    cfg = config or FeatureConfig()
    x = np.asarray(crops)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or min(x.shape[1:]) < 1 or x.shape[2] < 8 or x.shape[3] < 8:
        raise InputError(f"crops must be (N, C, H, W) with H, W >= 8, got shape {x.shape}.")
    n, c, h, w = x.shape
    bad = set(cfg.families) - set(FAMILIES)
    if bad:
        raise InputError(f"unknown feature families {sorted(bad)}; choose from {FAMILIES}.")
    for name in ("marker_channel", "protein_channel"):
        if not 0 <= getattr(cfg, name) < c:
            raise InputError(f"{name}={getattr(cfg, name)} but the crops have {c} channel(s).")
    if masks is not None:
        masks = np.asarray(masks).astype(bool)
        if masks.shape != (n, h, w):
            raise InputError(f"masks must be (N, H, W) = {(n, h, w)}, got {masks.shape}.")
    fam = set(cfg.families)
    zbasis, zdisk, znames = _zernike_basis(h, w, cfg.zernike_degree) if "zernike" in fam else (None, None, [])
    gbank = _gabor_bank(h, w, cfg.gabor_frequencies, cfg.gabor_orientations) if "gabor" in fam else None
    names = _names(c, cfg, znames)
    report = FeatureReport(n_crops=n)
    t0 = time.perf_counter()
    out = np.zeros((n, len(names)), np.float32)
    for start in range(0, n, cfg.batch_size):
        xb = x[start:start + cfg.batch_size].astype(np.float64)
        nb = len(xb)
        if not np.all(np.isfinite(xb)):
            report.n_nonfinite += int((~np.isfinite(xb)).sum())
            xb = np.nan_to_num(xb, nan=0.0, posinf=0.0, neginf=0.0)
        rows = []
        for i in range(nb):
            m = masks[start + i] if masks is not None else _cell_mask(xb[i, cfg.marker_channel])
            report.n_empty_masks += int(not m.any())
            rows.append(_per_crop(xb[i], m, cfg, fam))
        parts = [np.asarray(rows, np.float64).reshape(nb, -1)]
        if zbasis is not None:
            prot = xb[:, cfg.protein_channel].reshape(nb, -1)
            prot = prot - prot.min(1, keepdims=True)
            mass = prot @ zdisk[:, None]  # intensity inside the disk: magnitudes ignore brightness
            z = np.abs(prot @ zbasis.T) / np.where(mass > 0, mass, np.inf)
            parts.append(z)
        if gbank is not None:
            spec = np.abs(np.fft.fft2(xb - xb.mean((2, 3), keepdims=True))) ** 2  # (nb, c, h, w)
            spec = spec.reshape(nb, c, -1)
            total = spec.sum(-1, keepdims=True)
            e = (spec @ gbank.T) / np.where(total > 0, total, np.inf)  # (nb, c, F*O)
            e = e.reshape(nb, c, len(cfg.gabor_frequencies), cfg.gabor_orientations)
            emax, emin = e.max(-1), e.min(-1)
            aniso = np.divide(emax - emin, emax + emin, out=np.zeros_like(emax), where=emax + emin > 0)
            parts.append(np.stack([e.mean(-1), aniso], -1).reshape(nb, -1))
        block = np.concatenate(parts, 1)
        finite = np.isfinite(block)
        if not finite.all():
            report.n_nonfinite += int((~finite).sum())
            block[~finite] = 0.0
        out[start:start + nb] = block
    report.seconds = time.perf_counter() - t0
    return (out, names, report) if return_report else (out, names)
