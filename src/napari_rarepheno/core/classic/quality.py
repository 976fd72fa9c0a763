"""Cell / non-cell quality filter for crops.

Pärnamaa & Parts (2017) removed ~12% of crops as "non-cells" (bad segmentation,
empty areas, imaging artefacts) with a random forest on hand-made features,
trained on 1,200 good cells and 118 hand-picked non-cells. Hand-picking is the
expensive part, so here the non-cells are synthesised from the good crops
themselves (``make_negative_crops``): empty background, noise, partial cells cut
at the crop edge, debris, saturated blobs and out-of-focus blur. Real non-cells,
when the user has some, can be added with ``fit(good, bad_crops=...)``.

Persistence: the filter is not saved. It retrains deterministically (fixed seed)
from the good crops in a few seconds (feature extraction ~4 ms per crop plus a
small forest), so a project stores the crops or their paths, not a pickle.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from .features import FeatureConfig, extract_features

__all__ = ["NEGATIVE_KINDS", "make_negative_crops", "QualityConfig", "QualityFilter"]

NEGATIVE_KINDS = ("empty", "noise", "partial", "debris", "saturated", "blur")


def _check_crops(crops, what: str = "crops") -> np.ndarray:
    x = np.asarray(crops)
    if x.ndim != 4 or x.shape[0] == 0 or min(x.shape[2:]) < 8:
        raise InputError(f"{what} must be a non-empty (N, C, H, W) stack with H, W >= 8, got shape {x.shape}.")
    return x


def make_negative_crops(crops, rng: np.random.Generator, n: int | None = None,
                        kinds: tuple[str, ...] = NEGATIVE_KINDS, return_kinds: bool = False):
    """Synthesise ``n`` (default: as many as ``crops``) non-cell crops that look like ``crops``.

    Background level and noise are measured on the crops' outer frame, the bright level
    (saturation) on their 99.9th percentile, per channel, so negatives share the crops'
    intensity scale. Kinds are used in turn. Returns float32 (n, C, H, W)[, kinds list].
    """
    x = _check_crops(crops).astype(np.float32)
    bad = set(kinds) - set(NEGATIVE_KINDS)
    if not kinds or bad:
        raise InputError(f"unknown negative kinds {sorted(bad)}; choose from {NEGATIVE_KINDS}.")
    n = len(x) if n is None else int(n)
    _, c, h, w = x.shape
    frame = np.concatenate([x[:, :, :4].reshape(len(x), c, -1), x[:, :, -4:].reshape(len(x), c, -1),
                            x[:, :, :, :4].reshape(len(x), c, -1), x[:, :, :, -4:].reshape(len(x), c, -1)], 2)
    frame = frame.transpose(1, 0, 2).reshape(c, -1)
    bg = np.median(frame, 1)[:, None, None]
    bg_sd = np.maximum(1.4826 * np.median(np.abs(frame - bg[:, :, 0]), 1), 1e-3)[:, None, None]
    sat = np.percentile(x.transpose(1, 0, 2, 3).reshape(c, -1), 99.9, axis=1)[:, None, None]
    top = x.max(axis=(0, 2, 3))[:, None, None]
    sat = np.minimum(np.maximum(sat, bg + 10 * bg_sd), np.maximum(top, bg + 1e-3))
    yy, xx = np.mgrid[:h, :w]

    def background():
        return bg + rng.normal(0, 1, (c, h, w)) * bg_sd

    out, names = np.empty((n, c, h, w), np.float32), []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "empty":
            img = background()
        elif kind == "noise":
            img = bg + rng.random((c, h, w)) ** rng.uniform(1, 4) * (sat - bg)
            img = ndi.gaussian_filter(img, (0, rng.uniform(0, 1.5), rng.uniform(0, 1.5)))
        elif kind == "partial":  # a real cell pushed against the edge, the rest background
            src = x[rng.integers(len(x))]
            ang, frac = rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 0.55)
            dy, dx = int(np.sin(ang) * frac * h), int(np.cos(ang) * frac * w)
            img = background()
            img[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
                src[:, max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
        elif kind == "debris":
            img = background()
            for _ in range(rng.integers(1, 6)):
                cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.8, 3.5)
                blob = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.float32)
                chans = rng.random(c) < 0.7
                img[chans] += blob * (rng.uniform(0.3, 1.0, (c, 1, 1)) * (sat - bg))[chans]
        elif kind == "saturated":
            img = background()
            cy, cx = rng.normal(h / 2, h / 8), rng.normal(w / 2, w / 8)
            ry, rx = rng.uniform(0.1, 0.3) * h, rng.uniform(0.1, 0.3) * w
            blob = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            img[:, blob] = sat[:, 0]
            img = ndi.gaussian_filter(img, (0, 0.7, 0.7))
        else:  # "blur": out of focus
            src = x[rng.integers(len(x))]
            sigma = rng.uniform(3, 6)
            img = bg + rng.uniform(0.3, 0.8) * (ndi.gaussian_filter(src, (0, sigma, sigma)) - bg)
            img += rng.normal(0, 1, (c, h, w)) * bg_sd
        out[i] = np.clip(img, min(0.0, float(x.min())), sat)
        names.append(kind)
    return (out, names) if return_kinds else out


@dataclass
class QualityConfig:
    """Forest and training-set settings of the quality filter."""

    n_estimators: int = 200
    min_samples_leaf: int = 1
    negatives_per_cell: float = 1.0
    seed: int = 0
    n_jobs: int = 1
    features: FeatureConfig = field(default_factory=FeatureConfig)


class QualityFilter:
    """Random forest on hand-made features that tells cells from non-cells.

    >>> qf = QualityFilter().fit(good_crops)          # negatives are synthesised
    >>> keep = qf.keep(new_crops, threshold=0.5)     # bool mask, True = a real cell
    """

    def __init__(self, config: QualityConfig | None = None):
        self.config = config or QualityConfig()
        self.model = None
        self.feature_names: list[str] = []

    @property
    def fitted(self) -> bool:
        return self.model is not None

    def fit(self, good_crops, bad_crops=None) -> QualityFilter:
        """Train on good cells, synthetic non-cells and, if given, real non-cells ``bad_crops``."""
        from sklearn.ensemble import RandomForestClassifier

        cfg = self.config
        good = _check_crops(good_crops, "good_crops").astype(np.float32)
        if len(good) < 5:
            raise InputError(f"the quality filter needs at least 5 good cell crops, got {len(good)}.")
        rng = np.random.default_rng(cfg.seed)
        n_neg = max(len(NEGATIVE_KINDS), int(round(cfg.negatives_per_cell * len(good))))
        neg = make_negative_crops(good, rng, n_neg)
        if bad_crops is not None:
            bad = _check_crops(bad_crops, "bad_crops").astype(np.float32)
            if bad.shape[1:] != good.shape[1:]:
                raise InputError(f"bad_crops {bad.shape[1:]} and good_crops {good.shape[1:]} differ in shape.")
            neg = np.concatenate([neg, bad])
        feats, self.feature_names = extract_features(np.concatenate([good, neg]), config=cfg.features)
        y = np.r_[np.ones(len(good)), np.zeros(len(neg))].astype(int)
        self.model = RandomForestClassifier(n_estimators=cfg.n_estimators, min_samples_leaf=cfg.min_samples_leaf,
                                            random_state=cfg.seed, n_jobs=cfg.n_jobs).fit(feats, y)
        self._shape = good.shape[1:]
        return self

    def predict_proba(self, crops) -> np.ndarray:
        """(N,) probability that each crop shows a proper cell."""
        if not self.fitted:
            raise InputError("the quality filter is not trained yet; call fit(good_crops) first.")
        x = _check_crops(crops)
        if x.shape[1:] != self._shape:
            raise InputError(f"crops of shape {x.shape[1:]} differ from the training crops {self._shape}.")
        feats, _ = extract_features(x.astype(np.float32), config=self.config.features)
        return self.model.predict_proba(feats)[:, list(self.model.classes_).index(1)]

    def keep(self, crops, threshold: float = 0.5) -> np.ndarray:
        """Boolean mask, True where p_cell >= threshold."""
        if not 0 <= threshold <= 1:
            raise InputError(f"threshold must be in [0, 1], got {threshold}.")
        return self.predict_proba(crops) >= threshold
