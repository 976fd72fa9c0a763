"""Synthetic nuclei fields with known labels, for measuring segmentation at any object size.

:func:`nuclei_field` draws textured ellipses of a chosen typical diameter (equivalent
diameter ``2 * sqrt(area / pi)``) with size and shape variation, some of them touching,
a few small specks of debris, an uneven background and noise. Everything scales with the
diameter (the field's side, the texture grain, the blur), so fields of 10 px and of 120 px
objects pose the same problem at two scales.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError

__all__ = ["nuclei_field"]


def nuclei_field(diameter: float, shape: tuple[int, int] | None = None, seed: int = 0, *,
                 fill: float = 0.3, size_cv: float = 0.15, aspect: tuple[float, float] = (0.6, 1.0),
                 touching: float = 0.3, background: float = 0.3, noise: float = 0.06,
                 debris: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """A field of nuclei of typical ``diameter`` px -> (image float32, labels int32).

    shape: (H, W), default square with room for ~80 objects (at least 160 px).
    fill: fraction of the field covered by nuclei. size_cv: spread of the log diameter.
    aspect: range of minor/major axis ratios. touching: fraction of nuclei placed against an
    earlier one (their shared pixels go to the nearer one, in ellipse-normalised distance).
    background: amplitude of a smooth uneven background (objects are 0.5-1.0 above it).
    noise: Gaussian noise s.d. debris: small bright specks per nucleus (not in the labels).
    """
    if not diameter > 0:
        raise InputError(f"diameter must be > 0, got {diameter}")
    rng = np.random.default_rng(seed)
    d = float(diameter)
    if shape is None:
        side = int(max(160, round(np.sqrt(80 * np.pi * d * d / 4 / fill))))
        shape = (side, side)
    h, w = shape
    n = max(1, round(fill * h * w / (np.pi * d * d / 4)))
    objs: list[tuple[float, float, float, float, float]] = []  # (cy, cx, a, b, angle)
    for _ in range(n * 40):
        if len(objs) == n:
            break
        deq = d * float(np.clip(np.exp(rng.normal(0, size_cv)), 0.6, 1.6))
        q = rng.uniform(*aspect)
        a, b = deq / 2 / np.sqrt(q), deq / 2 * np.sqrt(q)
        r = (a + b) / 2
        if objs and rng.random() < touching:  # against an earlier nucleus
            cy0, cx0, a0, b0, _ = objs[rng.integers(len(objs))]
            t = rng.uniform(0, 2 * np.pi)
            gap = 0.92 * ((a0 + b0) / 2 + r)
            cy, cx, lone = cy0 + gap * np.sin(t), cx0 + gap * np.cos(t), False
        else:
            cy, cx, lone = rng.uniform(0, h), rng.uniform(0, w), True
        if not (0 <= cy < h and 0 <= cx < w):
            continue
        near = [np.hypot(cy - o[0], cx - o[1]) / ((o[2] + o[3]) / 2 + r) for o in objs]
        if near and min(near) < (1.05 if lone else 0.9):
            continue
        objs.append((cy, cx, a, b, rng.uniform(0, np.pi)))
    labels = np.zeros(shape, np.int32)
    best = np.full(shape, np.inf)
    for k, (cy, cx, a, b, ang) in enumerate(objs, 1):
        y0, y1 = max(0, int(cy - a) - 2), min(h, int(cy + a) + 3)
        x0, x1 = max(0, int(cx - a) - 2), min(w, int(cx + a) + 3)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        u = (xx - cx) * np.cos(ang) + (yy - cy) * np.sin(ang)
        v = -(xx - cx) * np.sin(ang) + (yy - cy) * np.cos(ang)
        rho = np.hypot(u / a, v / b)
        win = (rho <= 1) & (rho < best[y0:y1, x0:x1])
        best[y0:y1, x0:x1][win] = rho[win]
        labels[y0:y1, x0:x1][win] = k
    bright = np.concatenate([[0.0], rng.uniform(0.5, 1.0, len(objs))])
    grain = ndi.gaussian_filter(rng.normal(0, 1, shape), max(0.7, d / 12))
    grain /= grain.std() or 1.0
    img = bright[labels] * (1 + 0.2 * np.clip(grain, -2.5, 2.5)) * (labels > 0)
    for _ in range(int(debris * len(objs))):  # specks much smaller than a nucleus
        sy, sx, sr = rng.uniform(0, h), rng.uniform(0, w), max(1.0, d / 12)
        yy, xx = np.ogrid[:h, :w]
        speck = (yy - sy) ** 2 + (xx - sx) ** 2 <= sr * sr
        img[speck & (labels == 0)] = rng.uniform(0.6, 1.0)
    img = ndi.gaussian_filter(img, max(0.8, d / 50))  # optics
    yy, xx = np.mgrid[:h, :w] / max(h, w)
    ty, tx = rng.uniform(0, 1, 2)
    bg = 0.5 * (rng.uniform(-1, 1) * yy + rng.uniform(-1, 1) * xx) + np.exp(-((yy - ty) ** 2 + (xx - tx) ** 2) / 0.3)
    bg = (bg - bg.min()) / (np.ptp(bg) or 1.0)
    img = img + 0.1 + background * bg + rng.normal(0, noise, shape)
    return img.astype(np.float32), labels
