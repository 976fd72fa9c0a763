"""Batch augmentation on tensors, on the training device (no per-image Python loops).

One random affine per image (flips, rotation, translation, scaling) applied with
``affine_grid`` + ``grid_sample``; then, when ``intensity`` is on, what differs between
plates, movies and microscopes after the model's per-sample scaling: a gain and an offset
per channel, a gamma, saturation (the bright end clipped, as in an over-exposed 8-bit
field), a Gaussian blur and Gaussian noise. Parameters are drawn for the *global* batch
from a seeded generator (intensity after geometry, so turning it on leaves the geometric
draws as they were), so single-process and DDP runs see the same augmented images.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    hflip: bool = True
    vflip: bool = True
    rotation_ranges: list[tuple[float, float]] = field(default_factory=list)  # degrees, one range picked per image
    rot90: bool = False            # multiples of 90 degrees (exact, for crops)
    translate_px: float = 0.0      # uniform in [-t, t] along each axis
    scale_px: float = 0.0          # image side changes by uniform [-s, s] px (isotropic)
    enabled: bool = True
    ramp_epochs: float = 0.0       # rotation/translation/scaling grow from none to full over these epochs
    # intensity (on the scaled images: 0..1 between the scaling percentiles)
    intensity: bool = False
    gain: float = 0.25             # per image and channel: x * exp(uniform(-g, g))
    offset: float = 0.05           # per image and channel: + uniform(-o, o)
    gamma: float = 0.4             # per image: x ** exp(uniform(-g, g)) (0.67..1.49 for 0.4)
    saturate: float = 0.5          # probability that values above uniform(saturate_low, 1) are clipped there
    saturate_low: float = 0.35     # (x2 on a contrast-stretched 8-bit crop clips at ~0.48 of its range)
    blur: float = 1.0              # Gaussian blur sigma uniform(0, b) px, for half the images
    noise: float = 0.03            # Gaussian noise, std uniform(0, n)

    def with_intensity(self, on: bool = True) -> "AugmentConfig":
        """A copy with intensity augmentation switched on (or off)."""
        return replace(self, intensity=on)

    def strength(self, epochs_done: float) -> float:
        """Fraction (0..1] of the rotation, translation and scaling ranges used after
        ``epochs_done`` (fractional) epochs; flips and 90-degree turns are always full."""
        if self.ramp_epochs <= 0:
            return 1.0
        return float(min(1.0, max(epochs_done, 0.0) / self.ramp_epochs))

    @classmethod
    def wscnn_paper(cls) -> "AugmentConfig":
        """Sailem et al. 3.3: flips, rotation in +-20 deg or 160-200 deg, translation +-40 px, scaling +-50 px."""
        return cls(rotation_ranges=[(-20.0, 20.0), (160.0, 200.0)], translate_px=40.0, scale_px=50.0)

    @classmethod
    def deepyeast(cls) -> "AugmentConfig":
        """Flips, 90-degree rotations and small shifts, as for DeepYeast crops."""
        return cls(rot90=True, translate_px=4.0)

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(hflip=False, vflip=False, enabled=False)

    def changes_statistics(self) -> bool:
        """Rotation, scaling or translation: interpolation and zero padding make augmented
        images darker at the borders and smoother than the images the model will be given,
        so batch-norm statistics collected on them do not fit real images (see
        ``TrainConfig.precise_bn``). Flips and 90-degree turns do not."""
        return not self.is_identity() and bool(self.rotation_ranges or self.scale_px or self.translate_px)

    def is_identity(self) -> bool:
        return not self.enabled or not (self.hflip or self.vflip or self.rotation_ranges or self.rot90
                                        or self.translate_px or self.scale_px or self.intensity)

    def _geometric(self) -> bool:
        return bool(self.hflip or self.vflip or self.rotation_ranges or self.rot90 or self.translate_px
                    or self.scale_px)


def sample_affine(n: int, h: int, w: int, cfg: AugmentConfig, gen: torch.Generator,
                  strength: float = 1.0) -> torch.Tensor:
    """(n, 2, 3) affine matrices in ``affine_grid``'s normalised coordinates (CPU, float32).

    ``strength`` (0..1) narrows each rotation range about its centre and the translation and
    scaling ranges about zero (see ``AugmentConfig.ramp_epochs``); the same random numbers are
    drawn whatever the strength."""
    u = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    angle = torch.zeros(n)
    if cfg.rotation_ranges:
        pick = (u(n) * len(cfg.rotation_ranges)).long().clamp_max(len(cfg.rotation_ranges) - 1)
        lo = torch.tensor([r[0] for r in cfg.rotation_ranges], dtype=torch.float32)[pick]
        hi = torch.tensor([r[1] for r in cfg.rotation_ranges], dtype=torch.float32)[pick]
        mid, half = (lo + hi) / 2, (hi - lo) / 2 * strength
        angle = mid - half + 2 * half * u(n)
    if cfg.rot90:
        angle = angle + 90.0 * (u(n) * 4).floor()
    theta = angle * math.pi / 180.0
    side = float(min(h, w))
    scale = 1.0 + (2 * u(n) - 1) * cfg.scale_px * strength / side if cfg.scale_px else torch.ones(n)
    sx = torch.where(u(n) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(n)
    sy = torch.where(u(n) < 0.5, -1.0, 1.0) if cfg.vflip else torch.ones(n)
    tx = (2 * u(n) - 1) * cfg.translate_px * strength if cfg.translate_px else torch.zeros(n)
    ty = (2 * u(n) - 1) * cfg.translate_px * strength if cfg.translate_px else torch.zeros(n)
    c, s = torch.cos(theta), torch.sin(theta)
    # pixel-space map output -> input: rotation @ flip / scale, then to normalised coords
    a = c * sx / scale
    b = -s * sy / scale
    d = s * sx / scale
    e = c * sy / scale
    mat = torch.zeros(n, 2, 3)
    mat[:, 0, 0] = a
    mat[:, 0, 1] = b * h / w
    mat[:, 1, 0] = d * w / h
    mat[:, 1, 1] = e
    mat[:, 0, 2] = 2 * tx / w
    mat[:, 1, 2] = 2 * ty / h
    return mat


def _is_exact(cfg: AugmentConfig) -> bool:
    """Flips/90-degree rotations with integer shifts need no interpolation."""
    return not cfg.rotation_ranges and not cfg.scale_px


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator,
                  select: slice | None = None, strength: float = 1.0) -> torch.Tensor:
    """Augment a batch (N, C, H, W) on its own device.

    Parameters are drawn for all N images from ``gen``; ``select`` then picks this rank's
    share (DDP), so every rank draws the same numbers as a single process would.
    """
    if cfg.is_identity():
        return x if select is None else x[select]
    n_total = x.shape[0]
    h, w = x.shape[-2:]
    geometric = cfg._geometric()
    mats = sample_affine(n_total, h, w, cfg, gen, strength) if geometric else None
    shade = sample_intensity(tuple(x.shape), cfg, gen) if cfg.intensity else None
    if select is not None:
        x = x[select]
        mats = None if mats is None else mats[select]
        shade = None if shade is None else {k: v[select] for k, v in shade.items()}
    if mats is None:
        out = x
    elif _is_exact(cfg) and h == w:
        out = _exact(x, mats, cfg)
    else:
        grid = F.affine_grid(mats.to(x.device, torch.float32), list(x.shape), align_corners=False)
        out = F.grid_sample(x.float(), grid.to(x.dtype if x.is_floating_point() else torch.float32),
                            mode="bilinear", padding_mode="zeros", align_corners=False)
        out = out.to(x.dtype) if x.is_floating_point() else out
    return out if shade is None else apply_intensity(out, shade)


def sample_intensity(shape: tuple[int, ...], cfg: AugmentConfig, gen: torch.Generator) -> dict:
    """Per-image intensity parameters (CPU tensors) for a batch of ``shape`` (N, C, H, W)."""
    n, c, h, w = shape
    u = lambda *s: torch.rand(*s, generator=gen)  # noqa: E731
    lo = float(cfg.saturate_low)
    sat = torch.where(u(n) < cfg.saturate, lo + (1 - lo) * u(n), torch.full((n,), math.inf))
    blur = torch.where(u(n) < 0.5, cfg.blur * u(n), torch.zeros(n))
    return {"gain": torch.exp((2 * u(n, c) - 1) * cfg.gain), "offset": (2 * u(n, c) - 1) * cfg.offset,
            "gamma": torch.exp((2 * u(n) - 1) * cfg.gamma), "saturate": sat, "blur": blur,
            "noise": cfg.noise * u(n)[:, None, None, None] * torch.randn(n, c, h, w, generator=gen)}


def apply_intensity(x: torch.Tensor, p: dict) -> torch.Tensor:
    """Gamma, saturation, gain/offset, blur and noise (:func:`sample_intensity`) on ``x``'s device."""
    dev = x.device
    x = x.float()
    v = lambda k: p[k].to(dev).view(-1, *([1] * (x.dim() - 1))) if p[k].dim() == 1 else p[k].to(dev)  # noqa: E731
    x = x.clamp_min(0) ** v("gamma")
    sat = v("saturate")
    x = torch.where(torch.isfinite(sat), torch.minimum(x, sat) / sat, x)
    x = x * p["gain"].to(dev)[..., None, None] + p["offset"].to(dev)[..., None, None]
    if bool((p["blur"] > 0).any()):
        x = _blur(x, p["blur"].to(dev))
    return x + p["noise"].to(dev)


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per image (0: unchanged), reflect padding."""
    n, c, h, w = x.shape
    r = max(1, int(math.ceil(3 * float(sigma.max()))))
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).clamp_min(1e-3)[:, None]
    k = torch.exp(-0.5 * (t[None] / s) ** 2)
    k = torch.where(sigma[:, None] > 0, k, (t[None] == 0).to(x.dtype))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n*c, 2r+1)
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k[:, None, None, :], groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def _exact(x: torch.Tensor, mats: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """Apply flips / 90-degree rotations / integer shifts by indexing (bit-exact)."""
    out = torch.empty_like(x)
    h, w = x.shape[-2:]
    for i in range(x.shape[0]):
        m = mats[i]
        img = x[i]
        k = int(round(math.degrees(math.atan2(float(m[1, 0]), float(m[0, 0]))) / 90.0)) % 4
        det = float(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0])
        if det < 0:
            img = img.flip(-1)
        img = torch.rot90(img, k, dims=(-2, -1))
        dx = int(round(float(m[0, 2]) * w / 2))
        dy = int(round(float(m[1, 2]) * h / 2))
        if dx or dy:
            img = torch.roll(img, shifts=(-dy, -dx), dims=(-2, -1))
            if dy > 0:
                img[:, h - dy:, :] = 0
            elif dy < 0:
                img[:, : -dy, :] = 0
            if dx > 0:
                img[:, :, w - dx:] = 0
            elif dx < 0:
                img[:, :, : -dx] = 0
        out[i] = img
    return out
