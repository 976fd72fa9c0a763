"""Input normalisation stored in the model file (so prediction matches training).

``mode='mean'`` is the papers' training-mean subtraction (per channel, divided by the
per-channel std so learning rates transfer between 8-bit, 16-bit and float data).
Optional per-channel percentile clipping (as DeepLoc does) is applied first.
A per-channel mean rather than a full mean image keeps one model valid for any field
size (tiled prediction of big fields); with the papers' random translations the
pixel-wise training mean is nearly flat anyway.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class Normalization:
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    clip_percentiles: tuple[float, float] | None = None
    clip_values: list[tuple[float, float]] | None = None  # per channel, measured on training data

    @classmethod
    def fit(cls, images: np.ndarray, clip_percentiles: tuple[float, float] | None = None,
            max_pixels: int = 20_000_000, seed: int = 0) -> "Normalization":
        """Measure per-channel statistics on (N, C, H, W) training images (subsampled if huge)."""
        n = images.shape[0]
        per_img = int(np.prod(images.shape[1:]))
        take = max(1, min(n, max_pixels // max(per_img, 1)))
        idx = np.random.default_rng(seed).choice(n, take, replace=False) if take < n else np.arange(n)
        sub = images[np.sort(idx)].astype(np.float32, copy=False)
        clip_values = None
        if clip_percentiles is not None:
            lo, hi = clip_percentiles
            clip_values = [(float(np.percentile(sub[:, c], lo)), float(np.percentile(sub[:, c], hi)))
                           for c in range(sub.shape[1])]
            sub = np.stack([np.clip(sub[:, c], *clip_values[c]) for c in range(sub.shape[1])], 1)
        mean = sub.mean(axis=(0, 2, 3)).astype(float).tolist()
        std = [max(float(s), 1e-6) for s in sub.std(axis=(0, 2, 3))]
        return cls(mean, std, tuple(clip_percentiles) if clip_percentiles else None, clip_values)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Normalization":
        d = dict(d)
        if d.get("clip_percentiles") is not None:
            d["clip_percentiles"] = tuple(d["clip_percentiles"])
        if d.get("clip_values") is not None:
            d["clip_values"] = [tuple(v) for v in d["clip_values"]]
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def apply_torch(self, x):
        """Normalise a float tensor (N, C, H, W) on its device."""
        import torch

        if self.clip_values:
            lo = torch.tensor([v[0] for v in self.clip_values], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
            hi = torch.tensor([v[1] for v in self.clip_values], device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
            x = torch.maximum(torch.minimum(x, hi), lo)
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    def apply_numpy(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32, copy=True)
        if self.clip_values:
            for c, (lo, hi) in enumerate(self.clip_values):
                np.clip(x[:, c], lo, hi, out=x[:, c])
        mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        return (x - mean) / std
