"""Where a WSCNN sees the rare phenotype: class maps, gradient saliency, object masks.

Sailem et al. 2017 (section 2.2, 4.2) back-propagate the class score to the input
(Simonyan-style saliency), then smooth, suppress non-maxima and threshold to get
one segment per rare object. Two details matter here:

* **Alignment.** Class-map unit ``(i, j)`` is centred on input pixel
  ``(offset + stride * i, offset + stride * j)``; :func:`unit_geometry` derives both
  numbers from the layers (depth 4, conv2 3x3: offset 22.5 px, stride 8 px), and
  :func:`upsample_maps` interpolates the maps at exactly those positions, so a CAM
  overlays the image without a shift.
* **Which score to back-propagate.** With global max pooling the gradient of the
  pooled score reaches only the single arg-max unit, i.e. one object per image
  (``mode="max"``). ``mode="map"`` (the default) back-propagates the positive
  evidence of the whole class map, ``1/2 sum_u relu(e_u)^2`` with the margin
  ``e_u = a_t(u) - max_{k != t} a_k(u)``: every unit that votes for the target class
  (the red pixels of the paper's Fig. 3) contributes its input gradient weighted by
  its margin, so all rare objects of an image light up, confident ones brighter, and
  an image without positive evidence gets an all-zero map. Every objective is a
  function of the class maps only, so its gradient is ``sum_u w_u * d a_u / d x``
  with ``w = d objective / d maps`` (:func:`objective_weights`); tiled prediction uses
  this to stitch exact saliency from tiles.

Benchmark (paper's metric, 90% box cover; simulated circles among ellipses, 60
positive test images, 228 circles; a (16, 32, 32) WSCNN at 99.2% test accuracy;
default :class:`SaliencyConfig`): ``map`` precision 0.92 / recall 0.59; unit weights
``sum_u relu(e_u)`` 0.72 / 0.66 (best F1 0.70 over the grid vs 0.72 for ``map``);
``max`` 0.97 / 0.26. Recall is bounded by the class map itself: only 68% of the
circles had a unit of positive margin centred in their box. Segmenting the class-map
margin directly (:func:`evidence_map`) gave 0.97 / 0.62 with the same settings.

Post-processing (:func:`segment_saliency`) is numpy/scipy only and cheap, so the
GUI can re-run it on every slider change without touching the network.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

#: 'map' and 'max': gradient saliency (one backward pass); 'cam': the positive evidence of the
#: class maps themselves, upsampled to the image (forward only: about half the work, and no
#: input gradient to keep in memory), the fast interactive default of the Infer dock
SALIENCY_MODES = ("map", "max", "cam")
GRADIENT_MODES = ("map", "max")


# ------------------------------------------------------------------ geometry
def positive_index(class_names) -> int:
    """Index of the class whose evidence saliency shows: 'positive' if named so, else the last."""
    names = [str(c).lower() for c in class_names]
    return names.index("positive") if "positive" in names else max(len(names) - 1, 0)


def unit_geometry(model: nn.Module) -> tuple[float, int]:
    """(offset, stride) in input pixels: class-map unit i is centred on input pixel
    ``offset + stride * i`` (pixel centres at integer coordinates)."""
    offset, jump = 0.0, 1
    layers = list(model.features) + [model.classifier]
    for m in layers:
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s, p, d = (_first(getattr(m, a, 1)) for a in ("kernel_size", "stride", "padding", "dilation"))
            offset += ((k - 1) * d / 2.0 - p) * jump
            jump *= s
    return offset, jump


def _first(v) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def _lerp_axis(t: torch.Tensor, dim: int, n_out: int, offset: float, stride: int) -> torch.Tensor:
    """Linear interpolation of ``t`` along ``dim`` at map coordinates (y - offset) / stride,
    y = 0..n_out-1, clamped to the map (constant extension beyond the outer units)."""
    n_in = t.shape[dim]
    u = (torch.arange(n_out, device=t.device, dtype=torch.float64) - offset) / stride
    u = u.clamp(0, n_in - 1)
    i0 = u.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    f = (u - i0).to(t.dtype)
    shape = [1] * t.dim()
    shape[dim] = n_out
    f = f.view(shape)
    return t.index_select(dim, i0) * (1 - f) + t.index_select(dim, i1) * f


def upsample_maps(maps: torch.Tensor, out_hw: tuple[int, int], offset, stride: int) -> torch.Tensor:
    """(N, K, h, w) class maps -> (N, K, H, W) bilinear, aligned to the input grid;
    ``offset`` one number or (rows, columns) (:func:`cam_offsets`)."""
    H, W = out_hw
    oy, ox = (offset, offset) if np.isscalar(offset) else offset
    return _lerp_axis(_lerp_axis(maps, 2, H, oy, stride), 3, W, ox, stride)


# ------------------------------------------------- class-map evidence alignment
#: how far (px, per axis, in units of the map stride) a calibration may move the evidence
CAM_MAX_SHIFT_UNITS = 3
#: side (px) of the window a model without a stored calibration is calibrated on
CAM_CALIBRATION_SIDE = 384


def calibrate_cam(model: nn.Module, x_norm: torch.Tensor, target: int = 1) -> tuple[int, int] | None:
    """(dy, dx) px that moves the class maps' upsampled evidence onto the gradient saliency
    of the same normalised images (N, C, H, W): the shift of the largest cross-correlation
    within :data:`CAM_MAX_SHIFT_UNITS` map strides; None when the images have no positive
    evidence.

    A class-map unit is centred on its receptive field (:func:`unit_geometry`), but a
    learned detector does not fire hardest when the object sits at that centre: on Sim Data
    1 the evidence peaked (-12, +7) px off the circles (gradient saliency is on them), and
    segmenting it found none of them (Table 3 precision and recall 0%). The offset is a
    property of the trained weights, measured once per model (training stores it,
    ``training.cam_shift``)."""
    x = _as_batch(x_norm)
    offset, stride = unit_geometry(model)
    maps, grad = maps_and_saliency(model, x, target, "map")
    up = upsample_maps(maps.float().cpu(), x.shape[-2:], offset, stride).numpy()
    ev = np.stack([evidence_map(u, target) for u in up])
    g = grad.float().cpu().numpy()
    if not ev.any() or not g.any():
        return None
    m = int(CAM_MAX_SHIFT_UNITS * stride)
    H, W = ev.shape[1:]
    shape = (H + 2 * m, W + 2 * m)
    total = np.zeros(shape)
    for a, b in zip(g, ev):  # r(d) = sum_p g(p) ev(p - d): ev moved by d matches g best
        fa = np.fft.rfft2(a - a.mean(), shape)
        fb = np.fft.rfft2(b - b.mean(), shape)
        total += np.fft.irfft2(fa * np.conj(fb), shape)
    ds = np.arange(-m, m + 1)
    window = total[np.ix_(ds % shape[0], ds % shape[1])]
    iy, ix = np.unravel_index(int(np.argmax(window)), window.shape)
    return int(ds[iy]), int(ds[ix])


def cam_offsets(loaded, x_norm: torch.Tensor | None = None, target: int = 1):
    """(row, column) offsets for :func:`upsample_maps` that put the class maps' evidence on
    the objects: the geometric offset plus the model's calibrated shift
    (``meta.training['cam_shift']``, measured in training). A model trained before that is
    calibrated on each image itself (its central :data:`CAM_CALIBRATION_SIDE` px window, one
    gradient pass): never on whichever image came first, so that results do not depend on
    the order of the images or on how they are shared out between processes."""
    offset, _ = unit_geometry(loaded.model)
    shift = (loaded.meta.training or {}).get("cam_shift")
    if shift is None and x_norm is not None:
        x = _as_batch(x_norm)[:1]
        H, W = x.shape[-2:]
        side = CAM_CALIBRATION_SIDE
        y0, x0 = max(0, (H - side) // 2), max(0, (W - side) // 2)
        x = x[..., y0:y0 + side, x0:x0 + side].float()
        if min(x.shape[-2:]) >= getattr(loaded.model, "min_input_size", 1):
            shift = calibrate_cam(loaded.model, x, target)
    dy, dx = shift if shift is not None else (0, 0)
    return offset + dy, offset + dx


# ----------------------------------------------------------- network passes
@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Eval mode (BatchNorm running statistics) for the block; the previous mode after."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise ValueError(f"expected a (N, C, H, W) or (C, H, W) tensor, got shape {tuple(x.shape)}")
    return x


def class_activation_maps_batch(model: nn.Module, x_norm: torch.Tensor) -> np.ndarray:
    """Class maps of normalised (N, C, H, W) input, upsampled and aligned: (N, K, H, W) float32."""
    x = _as_batch(x_norm)
    offset, stride = unit_geometry(model)
    with eval_mode(model), torch.no_grad():
        maps = model.class_maps(x).float()
        up = upsample_maps(maps, x.shape[-2:], offset, stride)
    return up.cpu().numpy().astype(np.float32, copy=False)


def class_activation_maps(model: nn.Module, x_norm: torch.Tensor) -> np.ndarray:
    """CAM of one normalised image (1, C, H, W): (K, H, W) float32."""
    x = _as_batch(x_norm)
    if x.shape[0] != 1:
        raise ValueError("class_activation_maps takes one image; use class_activation_maps_batch")
    return class_activation_maps_batch(model, x)[0]


def evidence_map(class_maps: np.ndarray, target: int = 1) -> np.ndarray:
    """Positive margin ``relu(a_t - max_{k != t} a_k)`` of aligned class maps (K, H, W) -> (H, W);
    an alternative input for :func:`segment_saliency`."""
    cm = np.asarray(class_maps, np.float32)
    rival = np.delete(cm, target, axis=0).max(0) if cm.shape[0] > 1 else 0.0
    return np.maximum(cm[target] - rival, 0.0).astype(np.float32)


def objective_weights(maps: torch.Tensor, target: int = 1, mode: str = "map") -> torch.Tensor:
    """d objective / d maps for the saliency objective (see the module docstring); (N, K, h, w)."""
    if mode not in GRADIENT_MODES:
        raise ValueError(f"unknown gradient saliency mode {mode!r}; choose one of {', '.join(GRADIENT_MODES)}")
    n, k = maps.shape[:2]
    if not 0 <= target < k:
        raise ValueError(f"target class {target} out of range for a {k}-class model")
    with torch.enable_grad():
        m = maps.detach().float().requires_grad_(True)
        if mode == "max":
            obj = m[:, target].amax(dim=(1, 2))
        else:
            if k > 1:
                rival = torch.cat([m[:, :target], m[:, target + 1:]], 1).amax(1)
            else:
                rival = torch.zeros_like(m[:, target])
            obj = 0.5 * torch.relu(m[:, target] - rival).pow(2).sum(dim=(1, 2))
        (w,) = torch.autograd.grad(obj.sum(), m)
    return w


def saliency_from_weights(model: nn.Module, x_norm: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Signed input gradient of ``sum(maps * weights)`` with fixed weights (N, K, h, w):
    any objective of the class maps, linearised; (N, C, H, W)."""
    x = _as_batch(x_norm).detach().float().requires_grad_(True)
    with eval_mode(model), torch.enable_grad():
        maps = model.class_maps(x).float()
        (g,) = torch.autograd.grad((maps * weights.to(maps.device, maps.dtype)).sum(), x)  # no param .grad
    return g


def maps_and_saliency(model: nn.Module, x_norm: torch.Tensor, target: int = 1,
                      mode: str = "map") -> tuple[torch.Tensor, torch.Tensor]:
    """One forward and one backward pass: (class maps (N, K, h, w), saliency (N, H, W)),
    both detached, on the input's device. Saliency is ``|d objective / d x|``, max over channels."""
    x = _as_batch(x_norm).detach().float().requires_grad_(True)
    with eval_mode(model), torch.enable_grad():
        maps = model.class_maps(x).float()
        w = objective_weights(maps, target, mode)
        (g,) = torch.autograd.grad((maps * w).sum(), x)  # no parameter .grad is touched
    return maps.detach(), g.abs().amax(1)


def gradient_saliency_batch(model: nn.Module, x_norm: torch.Tensor, target: int = 1, mode: str = "map",
                            batch_size: int = 8) -> np.ndarray:
    """Gradient saliency of N normalised images: (N, H, W) float32 (see :func:`maps_and_saliency`)."""
    x = _as_batch(x_norm)
    out = [maps_and_saliency(model, x[s:s + batch_size], target, mode)[1].cpu().numpy()
           for s in range(0, x.shape[0], max(1, batch_size))]
    return np.concatenate(out).astype(np.float32, copy=False)


def gradient_saliency(model: nn.Module, x_norm: torch.Tensor, target: int = 1, mode: str = "map") -> np.ndarray:
    """Gradient saliency of one normalised image (1, C, H, W) for class ``target``: (H, W) float32.

    ``mode="map"``: positive evidence of the whole target class map (all rare objects);
    ``mode="max"``: the pooled score itself (only the single strongest unit)."""
    x = _as_batch(x_norm)
    if x.shape[0] != 1:
        raise ValueError("gradient_saliency takes one image; use gradient_saliency_batch")
    return gradient_saliency_batch(model, x, target, mode)[0]


__all__ = ["SALIENCY_MODES", "positive_index", "unit_geometry", "upsample_maps", "calibrate_cam", "cam_offsets",
           "eval_mode",
           "class_activation_maps", "class_activation_maps_batch", "evidence_map", "objective_weights",
           "saliency_from_weights", "maps_and_saliency", "gradient_saliency", "gradient_saliency_batch"]
