"""The network of a napari-rarepheno model as a bioimage.io package runs it.

bioimage.io runs the package's preprocessing, then this module's ``forward``. The model's
normalisation (:class:`core.inputs.normalize.Normalization`) is split between the two:

* the rdf's preprocessing: ``scale_range`` per sample and channel over (y, x) with the model's
  scaling percentiles (when ``scale == 'percentile'``), then ``fixed_zero_mean_unit_variance``
  along the channel axis with the model's per-channel mean and std;
* here, what bioimage.io preprocessing cannot say, on the standardised input ``z``:

  1. ``smooth`` > 0 (DeepYeast crops): the per-sample Gaussian smoothing comes *before* the
     percentile scaling, so it is redone here: ``y = z * std + mean`` (the scaled sample,
     up to an affine map per sample and channel), smoothed like
     ``scipy.ndimage.gaussian_filter(mode='reflect')``, scaled again by its own percentiles
     (affine-invariant, so the result is the scaling of the smoothed raw sample), and
     standardised again;
  2. WSCNN with a border margin: ``border`` px of each sample's per-channel median around it
     (napari-rarepheno pads the scaled image with its median; the median commutes with the
     standardisation, an increasing affine map);
  3. per-channel clipping (``clip``: the scaled-space bounds, moved to standardised space);
  4. the network, then a softmax: class probabilities (N, K); a WSCNN also returns its class
     maps bilinearly upsampled onto the input grid (N, K, H, W), as napari-rarepheno shows them.

This file is copied into the package after the networks' own source (``core/nets``), with its
package-relative imports removed, so the package needs nothing but torch.
"""
from __future__ import annotations

import torch
from torch import nn

from ..nets.deepyeast import DeepYeast, DeepYeastConfig
from ..nets.wscnn import WSCNN, WSCNNConfig

_EPS = 1e-6


def quantile(flat: torch.Tensor, q: float) -> torch.Tensor:
    """``numpy.percentile(flat, 100 * q, axis=-1)`` (linear interpolation) of (..., n), shape (...)."""
    n = flat.shape[-1]
    pos = q * (n - 1)
    i = min(int(pos), n - 1)
    t = pos - i
    a = torch.kthvalue(flat, i + 1, dim=-1).values
    if t == 0 or i + 1 >= n:
        return a
    b = torch.kthvalue(flat, i + 2, dim=-1).values
    return a + (b - a) * t if t < 0.5 else b - (b - a) * (1 - t)


def gaussian_taps(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """The 1-D kernel of ``scipy.ndimage.gaussian_filter`` (radius ``int(truncate * sigma + 0.5)``)."""
    r = int(truncate * float(sigma) + 0.5)
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / float(sigma)) ** 2)
    return w / w.sum()


def smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Each (H, W) plane of (N, C, H, W) ``x`` smoothed with a Gaussian of ``sigma`` px, mirrored at
    the edges like scipy's ``mode='reflect'`` (d c b a | a b c d | d c b a); float64 inside."""
    if sigma <= 0:
        return x
    w = gaussian_taps(sigma).to(x.device)
    r = (len(w) - 1) // 2
    out = x.double()
    for dim in (2, 3):
        n = out.shape[dim]
        i = torch.arange(-r, n + r, device=x.device) % (2 * n)
        padded = out.index_select(dim, torch.where(i >= n, 2 * n - 1 - i, i))
        acc = torch.zeros_like(out)
        for k in range(len(w)):
            acc = acc + w[k] * padded.narrow(dim, k, n)
        out = acc
    return out.to(x.dtype)


def percentile_scale(y: torch.Tensor, percentiles) -> torch.Tensor:
    """Each sample's channels of (N, C, H, W) ``y`` mapped so that its ``percentiles`` become 0 and 1
    (``Normalization.scale_samples``)."""
    flat = y.flatten(2)
    lo = quantile(flat, float(percentiles[0]) / 100)[..., None, None]
    hi = quantile(flat, float(percentiles[1]) / 100)[..., None, None]
    return (y - lo) / torch.maximum(hi - lo, _EPS * hi.abs().clamp(min=1.0))


def pad_median(x: torch.Tensor, margin: int) -> torch.Tensor:
    """``margin`` px around each (H, W) plane, filled with that plane's median (``inference.border.pad_border``)."""
    if margin <= 0:
        return x
    n, c, h, w = x.shape
    med = quantile(x.flatten(2), 0.5)
    out = med[..., None, None].expand(n, c, h + 2 * margin, w + 2 * margin).clone()
    out[..., margin:margin + h, margin:margin + w] = x
    return out


def unit_geometry(net: nn.Module) -> tuple[float, int]:
    """(offset, stride) in input px of the class-map units (``inference.saliency.unit_geometry``)."""
    offset, jump = 0.0, 1
    for m in list(net.features) + [net.classifier]:
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p, d = (int(v[0]) if isinstance(v, (tuple, list)) else int(v)
                          for v in (m.kernel_size, m.stride, m.padding, getattr(m, "dilation", 1)))
            offset += ((k - 1) * d / 2.0 - p) * jump
            jump *= s
    return offset, jump


def _lerp_axis(t: torch.Tensor, dim: int, n_out: int, offset: float, stride: int) -> torch.Tensor:
    n_in = t.shape[dim]
    u = ((torch.arange(n_out, device=t.device, dtype=torch.float64) - offset) / stride).clamp(0, n_in - 1)
    i0 = u.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    shape = [1] * t.dim()
    shape[dim] = n_out
    f = (u - i0).to(t.dtype).view(shape)
    return t.index_select(dim, i0) * (1 - f) + t.index_select(dim, i1) * f


class RarephenoNet(nn.Module):
    """WSCNN or DeepYeast behind bioimage.io's preprocessing: the rest of the model's
    normalisation, the network, softmax (and a WSCNN's class maps on the input grid)."""

    def __init__(self, kind: str, config: dict, mean: list, std: list, scale: str | None = "percentile",
                 percentiles: list | None = None, smooth: float = 0.0, clip: list | None = None,
                 border: int = 0, class_maps: bool = False):
        super().__init__()
        if kind == "wscnn":
            self.net = WSCNN(WSCNNConfig(**config))
        elif kind == "deepyeast":
            self.net = DeepYeast(DeepYeastConfig(**config))
        else:
            raise ValueError(f"unknown network kind {kind!r}")
        self.kind, self.scale = kind, scale
        self.percentiles = [float(p) for p in (percentiles or (1.0, 99.8))]
        self.sigma, self.border, self.class_maps = float(smooth), int(border), bool(class_maps) and kind == "wscnn"
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.has_clip = clip is not None and len(clip) > 0
        lo_hi = torch.tensor(clip if self.has_clip else [[0.0, 0.0]] * len(mean), dtype=torch.float32)
        self.register_buffer("clip_lo", lo_hi[:, 0].view(1, -1, 1, 1), persistent=False)
        self.register_buffer("clip_hi", lo_hi[:, 1].view(1, -1, 1, 1), persistent=False)

    def prepare(self, z: torch.Tensor) -> torch.Tensor:
        """The standardised input (bioimage.io's preprocessing done) as the network sees it."""
        if self.sigma > 0:
            y = smooth(z * self.std + self.mean, self.sigma)
            if self.scale == "percentile":
                y = percentile_scale(y, self.percentiles)
            z = (y - self.mean) / self.std
        z = pad_median(z, self.border)
        if self.has_clip:
            z = torch.maximum(torch.minimum(z, (self.clip_hi - self.mean) / self.std), (self.clip_lo - self.mean) / self.std)
        return z

    def forward(self, x: torch.Tensor):
        x = self.prepare(x.float())
        if self.kind != "wscnn":
            return torch.softmax(self.net(x), 1)
        maps = self.net.class_maps(x)
        probs = torch.softmax(self.net.pool(maps), 1)
        if not self.class_maps:
            return probs
        offset, stride = unit_geometry(self.net)
        h, w = x.shape[-2:]
        up = _lerp_axis(_lerp_axis(maps, 2, h, offset, stride), 3, w, offset, stride)
        m = self.border
        return probs, up[..., m:h - m, m:w - m] if m > 0 else up
