"""Big images in bounded memory: streamed WSCNN prediction.

A 10k x 10k stitched plate image is 400 MB as float32 per channel, and a prediction that
holds the whole image, a gradient canvas and full-resolution class maps needs ~10x that.
:func:`predict_wscnn_lazy` never holds anything image-sized: windows are read one at a time
(:class:`.tiling.LazyImage`), class maps are kept at class-map resolution (1/8 of the image
per side), and the saliency is accumulated in a band of one tile row and written row by row
into ``out`` (any writable array-like: ``np.lib.format.open_memmap``, zarr, or None for an
in-memory array). The tile plan and exact stitching are :mod:`.tiling`'s.

Peak memory is then ~ the network's working set for one tile plus one band of
``tile x W`` float32 per channel, independent of the image height
(``tests/core/test_bigimage.py`` measures it). :func:`.predict.predict_wscnn` runs its tiled
case through here too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..device import as_device, resolve_precision
from ..errors import InputError
from ..inputs.normalize import Normalization
from ..nets.folding import inference_copy, inference_model
from ..progress import CancelToken, Progress, ProgressCallback
from .border import CroppedRows, LazyBorder, border_margin
from .saliency import (
    CAM_CALIBRATION_SIDE,
    SALIENCY_MODES,
    cam_offsets,
    eval_mode,
    evidence_map,
    objective_weights,
    positive_index,
    unit_geometry,
)
from .tiling import LazyImage, check_tiling, owned_units, tile_spans


# --------------------------------------------------------------- prediction
@dataclass
class LazyPrediction:
    probabilities: np.ndarray     # (K,)
    class_maps: np.ndarray        # (K, h, w) float32 at class-map resolution
    saliency: Any                 # (H, W) float32: ``out`` or a new array; None when not asked for
    class_names: list[str]
    offset: float                 # class-map unit (i, j) is centred on pixel (offset + stride*i, ...)
    stride: int
    n_tiles: int

    @property
    def predicted(self) -> str:
        return self.class_names[int(np.argmax(self.probabilities))]

    def class_maps_window(self, y0: int, y1: int, x0: int, x1: int, offsets=None) -> np.ndarray:
        """Class maps interpolated at the pixels of one window, aligned to the image (as
        ``saliency.upsample_maps`` does for the whole image): (K, y1-y0, x1-x0) float32.
        ``offsets``: (rows, columns) instead of ``offset`` (``saliency.cam_offsets``)."""
        oy, ox = (self.offset, self.offset) if offsets is None else offsets
        maps = torch.from_numpy(self.class_maps)
        rows = _lerp(maps, 1, np.arange(y0, y1), oy, self.stride)
        return _lerp(rows, 2, np.arange(x0, x1), ox, self.stride).numpy()


def _lerp(t: torch.Tensor, dim: int, pixels: np.ndarray, offset: float, stride: int) -> torch.Tensor:
    n_in = t.shape[dim]
    u = ((torch.from_numpy(pixels).double() - offset) / stride).clamp(0, n_in - 1)
    i0 = u.floor().long().clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    shape = [1] * t.dim()
    shape[dim] = len(pixels)
    f = (u - i0).to(t.dtype).view(shape)
    return t.index_select(dim, i0) * (1 - f) + t.index_select(dim, i1) * f


def predict_wscnn_lazy(loaded, image: Any, *, tile: int = 512, overlap: int | None = None, saliency: bool = True,
                       out: Any = None, device: str | torch.device = "cpu", precision: str = "fp32",
                       channels_last: bool = True, fast: bool = True, saliency_mode: str = "map",
                       target: int | None = None,
                       norm: Normalization | None = None, callback: ProgressCallback = None,
                       cancel: CancelToken | None = None, border: bool = True) -> LazyPrediction:
    """WSCNN probabilities, class maps and saliency of a big (C, H, W) or (H, W) array-like,
    read and processed tile by tile (see the module docstring).

    ``out``: writable (H, W) float32 array-like that receives the saliency (e.g. a
    ``np.lib.format.open_memmap`` or zarr array); None allocates an in-memory array.
    ``precision``: 'fp32' (default; equals ``predict_wscnn`` up to float error) or 'auto' /
    'bf16' (faster on CPUs with bf16 units, ~1e-2 relative deviation of the saliency).
    ``fast``: predict with :func:`inference_copy` (batch norm folded; same results up to
    float rounding). ``border``: as ``predict_wscnn``, add the model's border margin
    (``core.inference.border.border_margin``) of background around the field (read lazily:
    ``core.inference.border.LazyBorder``); ``class_maps`` then include the margin's units and
    ``offset`` is relative to the field's own pixel (0, 0)."""
    if saliency_mode not in SALIENCY_MODES:
        raise InputError(f"unknown saliency mode {saliency_mode!r}; choose one of {', '.join(SALIENCY_MODES)}")
    model, meta = loaded.model, loaded.meta
    names = list(meta.class_names)
    img = image if isinstance(image, LazyImage) else LazyImage(image, _channel_selection(model, meta, image))
    C, H, W = img.shape
    if C != int(model.config.in_channels):
        raise InputError(f"the model expects {model.config.in_channels} channel(s) but the image has {C}; "
                         "choose the channel(s) with channels=")
    if min(H, W) < model.min_input_size:
        m = model.min_input_size
        raise InputError(f"image is {H}x{W} px, smaller than the network's minimum input of {m}x{m} px")
    nrm = norm if norm is not None else Normalization.of_model(meta)
    if nrm.scale is not None:  # per-image scaling with the whole field's percentiles, measured once
        img = ScaledImage(img, nrm)
    margin = border_margin(loaded) if border else 0
    if margin:
        img, (H0, W0) = LazyBorder(img, margin), (H, W)
        H, W = img.shape[1:]
    dev = as_device(device)
    amp = resolve_precision(precision, dev)
    t = positive_index(names) if target is None else int(target)
    offset, stride = unit_geometry(model)
    K = int(model.config.n_classes)
    hm, wm = model.class_map_size(H, W)
    if int(tile) >= max(H, W):  # one window: the whole image
        ys, xs, oy, ox = [(0, H)], [(0, W)], [(0, hm)], [(0, wm)]
    else:
        tsize, ov = check_tiling(model, int(tile), overlap)
        ys, xs = tile_spans(H, tsize, ov, stride), tile_spans(W, tsize, ov, stride)
        oy, ox = owned_units(model, H, ys), owned_units(model, W, xs)
    maps = torch.zeros((1, K, hm, wm))
    loaded.model.to(dev)
    if fast and channels_last:
        model = inference_model(loaded, dev)  # made once per model and device
    else:
        model = inference_copy(model, channels_last) if fast else model
        model.to(dev)
        if channels_last:
            model.to(memory_format=torch.channels_last)
    size = (H0, W0) if margin else (H, W)
    if saliency and out is None:
        out = np.zeros(size, np.float32)
    elif saliency and tuple(out.shape) != size:
        raise InputError(f"out has shape {tuple(out.shape)}, the saliency of this image needs {size}")
    sink = CroppedRows(out, margin, *size) if saliency and margin else out

    rows = [(ya, ua) for ya, ua in zip(ys, oy) if ua[0] < ua[1]]
    cols = [(xa, va) for xa, va in zip(xs, ox) if va[0] < va[1]]
    cam = saliency and saliency_mode == "cam"  # forward only: the evidence of the stitched maps
    single = saliency and saliency_mode == "map"
    passes = [("maps", single)] + ([("grad", True)] if saliency and not single and not cam else [])
    n_steps, step = len(rows) * len(cols) * len(passes), 0

    def run(x: torch.Tensor, grad: bool):
        with torch.set_grad_enabled(grad), torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            return model.class_maps(x).float()

    with eval_mode(model):  # (no device.cpu_allocator_tuned here: it trades ~50 MB of heap for speed)
        weights = None
        for kind, grad in passes:
            if kind == "grad":
                weights = objective_weights(maps, t, saliency_mode)
            band = _Band(C, max(b - a for a, b in ys), W, sink) if grad else None
            for (y0, y1), (uy0, uy1) in rows:
                if grad:
                    band.start(y0, y1)
                for (x0, x1), (ux0, ux1) in cols:
                    if cancel is not None:
                        cancel.raise_if_cancelled()
                    step += 1
                    if callback is not None:
                        callback(Progress(stage="item", batch=step, n_batches=n_steps,
                                          message=f"tile {step}/{n_steps}"))
                    if kind == "grad" and not weights[..., uy0:uy1, ux0:ux1].any():
                        continue
                    ly = slice(uy0 - y0 // stride, uy1 - y0 // stride)
                    lx = slice(ux0 - x0 // stride, ux1 - x0 // stride)
                    x = nrm.apply_torch(torch.from_numpy(img.read(y0, y1, x0, x1))[None].to(dev))
                    if channels_last:
                        x = x.contiguous(memory_format=torch.channels_last)
                    x.requires_grad_(grad)
                    m = run(x, grad)
                    if kind == "maps":
                        maps[..., uy0:uy1, ux0:ux1] = m[..., ly, lx].detach().cpu()
                    if grad:
                        own = torch.zeros_like(m)
                        own[..., ly, lx] = (objective_weights(m.detach(), t, saliency_mode)[..., ly, lx]
                                            if kind == "maps" else weights[..., uy0:uy1, ux0:ux1].to(m.device))
                        (g,) = torch.autograd.grad((m * own).sum(), x)
                        band.add(y0, y1, x0, x1, g[0].float().cpu().numpy())
            if grad:
                band.flush(H)
    probs = torch.softmax(maps.amax(dim=(2, 3)), 1)[0].numpy().astype(np.float32)
    pred = LazyPrediction(probs, maps[0].numpy(), out if saliency else None, names, offset, stride,
                          len(rows) * len(cols))
    if cam:  # row bands of the upsampled evidence, in padded coordinates, cropped by the sink
        offsets = cam_offsets(loaded, _calibration_window(loaded, img, nrm, dev), t)
        for r in range(0, H, 256):
            e = min(r + 256, H)
            sink[r:e] = evidence_map(pred.class_maps_window(r, e, 0, W, offsets), t)
    pred.offset = offset - margin
    return pred


def _calibration_window(loaded, img, nrm, dev) -> torch.Tensor | None:
    """The central window of a lazily read image, normalised, for ``saliency.cam_offsets``
    of a model without a stored calibration (None when the model has one: nothing read)."""
    if (loaded.meta.training or {}).get("cam_shift") is not None:
        return None
    H, W = img.shape[1:]
    side = CAM_CALIBRATION_SIDE
    y0, x0 = max(0, (H - side) // 2), max(0, (W - side) // 2)
    window = img.read(y0, min(H, y0 + side), x0, min(W, x0 + side))
    return nrm.apply_torch(torch.from_numpy(np.ascontiguousarray(window, np.float32))[None].to(dev))


class ScaledImage:
    """A lazily read image seen through the model's per-image intensity scaling: the
    percentiles of the whole image (:func:`~..inputs.normalize.sample_ranges`, measured once)
    applied to every window, as :meth:`Normalization.scale_samples` does to an image in memory."""

    def __init__(self, img, norm: Normalization):
        self.img, self.norm, self.shape = img, norm, img.shape
        self.ranges = norm.ranges(img)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.norm.scale_window(self.img.read(y0, y1, x0, x1), self.ranges)


def _channel_selection(model, meta, image) -> list[int] | None:
    """The model's stored channels when the image has more channels than the model takes."""
    n = 1 if len(image.shape) == 2 else int(image.shape[0])
    sel = list(meta.channels) if meta.channels else None
    if n > int(model.config.in_channels) and sel is not None and len(sel) == int(model.config.in_channels):
        return sel
    return None


class _Band:
    """Gradient rows of the current tile row, (C, tile rows, W) float32, reused row after row."""

    def __init__(self, C: int, rows: int, W: int, out):
        self.buf = np.zeros((C, rows, W), np.float32)
        self.b0 = self.b1 = 0
        self.out = out

    def start(self, y0: int, y1: int) -> None:
        """Start the tile row [y0, y1): rows above y0 are final, written out and dropped."""
        self.flush(y0)
        keep = self.b1 - y0 if self.b1 > y0 else 0
        if keep:
            self.buf[:, :keep] = self.buf[:, y0 - self.b0:self.b1 - self.b0]
        self.buf[:, keep:] = 0
        self.b0, self.b1 = y0, max(y1, self.b1)

    def add(self, y0: int, y1: int, x0: int, x1: int, grad: np.ndarray) -> None:
        self.buf[:, y0 - self.b0:y1 - self.b0, x0:x1] += grad

    def flush(self, upto: int, chunk: int = 64) -> None:
        """Write rows [b0, upto) as saliency: |gradient|, max over channels."""
        for r in range(self.b0, min(upto, self.b1), chunk):
            e = min(r + chunk, upto, self.b1)
            self.out[r:e] = np.abs(self.buf[:, r - self.b0:e - self.b0]).max(0)
