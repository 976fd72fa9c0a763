"""The input normalisation stored in every model file, applied the same way on every path.

Two steps, both recorded in the model (``meta.normalization``):

1. **Per-sample intensity scaling** (``scale``), on the arrays before anything else
   (after an optional Gaussian ``smooth`` of each sample, for crops: it evens out the camera
   noise that curated crops and raw fields differ by): with
   ``scale='percentile'`` each sample's channels are mapped so that their
   ``scale_percentiles`` (default 1st and 99.8th) become 0 and 1. A *sample* is what the
   network classifies: a crop for DeepYeast, a whole image or field for WSCNN (a tiled or
   lazily read field is scaled with the percentiles of the whole field, measured once,
   :func:`sample_ranges`). Brightness, offset and exposure differences between plates,
   movies and microscopes disappear here, and crops cut from a raw field look like curated
   crops that were contrast-stretched one by one (``docs/performance.md``, transfer).
   ``scale=None`` keeps the intensities (the papers; models written before this field).
2. **Per-channel statistics** (``mean``/``std``, optional clipping as DeepLoc does),
   measured on the scaled training data and applied on the device (:meth:`apply_torch`).
   A per-channel mean rather than a mean image keeps one model valid for any field size.

Every path goes through :meth:`Normalization.scale_samples` (in-memory crops and images) or
:meth:`Normalization.scale_window` with the field's :func:`sample_ranges` (tiles), then
:meth:`apply_torch`: training crops, validation images, crops cut from fields, mosaics,
whole fields and tiles. ``tests/core/test_normalize.py`` checks that a crop cut from a
field and the same crop on its own reach the network identically.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage as ndi

SCALES = (None, "percentile")
#: pixels per channel read to measure a big field's percentiles (bigger fields: every k-th row band)
SAMPLE_PIXELS = 4_000_000
_EPS = 1e-6


@dataclass
class Normalization:
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    clip_percentiles: tuple[float, float] | None = None
    clip_values: list[tuple[float, float]] | None = None  # per channel, measured on training data
    scale: str | None = None                               # per-sample scaling: None | 'percentile'
    scale_percentiles: tuple[float, float] = (1.0, 99.8)
    smooth: float = 0.0                                    # Gaussian sigma (px) per sample first; 0: none

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"intensity scaling must be 'percentile' or none, got {self.scale!r}")
        self.scale_percentiles = tuple(float(p) for p in self.scale_percentiles)
        lo, hi = self.scale_percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"scaling percentiles must satisfy 0 <= low < high <= 100, got {lo}, {hi}")

    # ------------------------------------------------------------ step 1: per sample
    def ranges(self, sample: np.ndarray) -> np.ndarray:
        """(C, 2) low/high intensity of one (C, H, W) sample (smoothed as the model smooths,
        when it does) for :meth:`scale_window` (the scaling percentiles of each channel;
        every k-th row band of huge samples)."""
        if self.smooth > 0 and not hasattr(sample, "read"):
            sample = self.smoothed(sample)
        return sample_ranges(sample, self.scale_percentiles)

    def smoothed(self, x: np.ndarray) -> np.ndarray:
        """``x`` (..., H, W) with each plane smoothed by ``smooth`` px (a copy; as is when 0)."""
        x = np.asarray(x, np.float32)
        if self.smooth <= 0:
            return x
        sigma = (0,) * (x.ndim - 2) + (self.smooth, self.smooth)
        return ndi.gaussian_filter(x, sigma, mode="reflect").astype(np.float32)

    def scale_window(self, x: np.ndarray, ranges: np.ndarray | None) -> np.ndarray:
        """(C, h, w) window of a sample scaled with that sample's ``ranges`` (float32)."""
        x = self.smoothed(x)
        return x if self.scale is None else _scaled(x, ranges)

    def scale_samples(self, x: np.ndarray) -> np.ndarray:
        """(N, C, H, W) samples or one (C, H, W) sample, each scaled by its own percentiles
        (float32; unchanged but for the dtype when ``scale`` is None)."""
        x = self.smoothed(x) if self.smooth > 0 else np.asarray(x)
        if self.scale is None:
            return x.astype(np.float32, copy=False)
        if x.ndim == 3:
            return _scaled(x, sample_ranges(x, self.scale_percentiles))
        if x.ndim != 4:
            raise ValueError(f"expected (N, C, H, W) or (C, H, W) samples, got shape {x.shape}")
        out = np.empty(x.shape, np.float32)
        for i in range(0, len(x), 256):  # percentiles of a block of samples at once
            blk = x[i:i + 256].astype(np.float32, copy=False)
            if blk.shape[-1] * blk.shape[-2] <= SAMPLE_PIXELS:
                lo, hi = np.percentile(blk, self.scale_percentiles, axis=(-2, -1), keepdims=True)
                out[i:i + 256] = (blk - lo) / np.maximum(hi - lo, _EPS * np.maximum(1.0, np.abs(hi)))
            else:
                for j, s in enumerate(blk):
                    out[i + j] = _scaled(s, sample_ranges(s, self.scale_percentiles))
        return out

    # ------------------------------------------------------------ step 2: statistics
    @classmethod
    def fit(cls, images: np.ndarray, clip_percentiles: tuple[float, float] | None = None,
            max_pixels: int = 20_000_000, seed: int = 0, scale: str | None = None,
            scale_percentiles: tuple[float, float] = (1.0, 99.8), smooth: float = 0.0) -> "Normalization":
        """Measure per-channel statistics on (N, C, H, W) training images (subsampled if
        huge), after the per-sample ``scale`` the model will use (``images`` are as read,
        not yet scaled)."""
        norm = cls(scale=scale, scale_percentiles=scale_percentiles, smooth=float(smooth))
        n = images.shape[0]
        per_img = int(np.prod(images.shape[1:]))
        take = max(1, min(n, max_pixels // max(per_img, 1)))
        idx = np.random.default_rng(seed).choice(n, take, replace=False) if take < n else np.arange(n)
        sub = norm.scale_samples(images[np.sort(idx)])
        if clip_percentiles is not None:
            lo, hi = clip_percentiles
            norm.clip_percentiles = (float(lo), float(hi))
            norm.clip_values = [(float(np.percentile(sub[:, c], lo)), float(np.percentile(sub[:, c], hi)))
                                for c in range(sub.shape[1])]
            sub = np.stack([np.clip(sub[:, c], *norm.clip_values[c]) for c in range(sub.shape[1])], 1)
        norm.mean = sub.mean(axis=(0, 2, 3)).astype(float).tolist()
        norm.std = [max(float(s), 1e-6) for s in sub.std(axis=(0, 2, 3))]
        return norm

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        d = dict(d)
        if d.get("clip_percentiles") is not None:
            d["clip_percentiles"] = tuple(d["clip_percentiles"])
        if d.get("clip_values") is not None:
            d["clip_values"] = [tuple(v) for v in d["clip_values"]]
        if d.get("scale_percentiles") is not None:
            d["scale_percentiles"] = tuple(d["scale_percentiles"])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    @classmethod
    def of_model(cls, meta) -> "Normalization":
        """The normalisation of a model's metadata. DeepYeast files written before the
        scaling moved here kept it as ``training.input.crop_scale`` (1st..99.9th percentile)."""
        norm = cls.from_dict(meta.normalization)
        if "scale" not in meta.normalization and meta.training.get("input", {}).get("crop_scale") == "percentile":
            norm.scale, norm.scale_percentiles = "percentile", (1.0, 99.9)
        return norm

    def apply_torch(self, x):
        """Clip and standardise a float tensor (N, C, H, W) of *scaled* samples on its device."""
        import torch  # deferred: this module is read without torch (e.g. to scale crops for a table)

        if self.clip_values:
            lo = torch.tensor([v[0] for v in self.clip_values], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
            hi = torch.tensor([v[1] for v in self.clip_values], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
            x = torch.maximum(torch.minimum(x, hi), lo)
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    def apply_numpy(self, x: np.ndarray) -> np.ndarray:
        """:meth:`apply_torch` in numpy."""
        x = x.astype(np.float32, copy=True)
        if self.clip_values:
            for c, (lo, hi) in enumerate(self.clip_values):
                np.clip(x[:, c], lo, hi, out=x[:, c])
        mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        return (x - mean) / std


def _scaled(x: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    lo, hi = ranges[:, 0, None, None], ranges[:, 1, None, None]
    return ((x - lo) / np.maximum(hi - lo, _EPS * np.maximum(1.0, np.abs(hi)))).astype(np.float32)


def sample_rows(read, shape: tuple[int, int, int], max_pixels: int = SAMPLE_PIXELS) -> np.ndarray:
    """(C, n) pixels of a (C, H, W) image read through ``read(y0, y1, x0, x1)``: all of them up
    to ``max_pixels`` per channel, else every k-th band of rows (the same rows whatever reads
    them, so a field in memory and the same field read tile by tile give the same numbers)."""
    C, H, W = shape
    step = max(1, math.ceil(H * W / max_pixels))
    band = max(1, max_pixels // max(W, 1)) if step == 1 else 1
    rows = [np.asarray(read(y, min(y + band, H), 0, W), np.float32) for y in range(0, H, step * band)]
    return np.concatenate(rows, axis=1).reshape(C, -1)


def sample_ranges(sample, percentiles: tuple[float, float] = (1.0, 99.8),
                  max_pixels: int = SAMPLE_PIXELS) -> np.ndarray:
    """(C, 2) ``percentiles`` of each channel of a (C, H, W) array or anything with ``shape``
    and a ``read(y0, y1, x0, x1)`` method (a lazily read field)."""
    if hasattr(sample, "read"):
        pix = sample_rows(sample.read, tuple(sample.shape), max_pixels)
    else:
        a = np.asarray(sample)
        pix = sample_rows(lambda y0, y1, x0, x1: a[:, y0:y1, x0:x1], a.shape, max_pixels)
    return np.percentile(pix, percentiles, axis=1).T.astype(np.float32)
