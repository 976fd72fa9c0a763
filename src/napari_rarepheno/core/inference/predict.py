"""Batched and tiled inference.

WSCNN: image probabilities, class maps aligned to the image, gradient saliency.

Channels: a model stores the channel selection it was trained on (``meta.channels``).
An image with *more* channels than the model is reduced to that selection first; an
image that then still has the wrong number of channels is refused, naming both counts.
Integer images are scaled to [0, 1] like :func:`core.imageio.read_image` does.

Tiling (big fields): the image is cut into overlapping tiles whose origins lie on the
class-map grid (multiples of the stride, 8 px). Each class-map unit is taken from the
one tile in which it lies farthest from a tile edge, and only from a tile where it is
unaffected by the zero padding of the inner convolutions ("clean"), so the stitched
class maps equal the untiled ones up to float error; the image probability is the
softmax of their global maximum, which is exactly what a ``head='max'`` network
computes. Saliency gradients of a tile's own units are added into one canvas, which is
again exact. Average and FC heads depend on the whole map at once and are refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .border import border_margin, crop_border, pad_border
from ..errors import InputError
from ..inputs.normalize import Normalization
from ..progress import CancelToken, Progress, ProgressCallback
from .saliency import eval_mode, maps_and_saliency, objective_weights, unit_geometry, upsample_maps


# ------------------------------------------------------------------ inputs
def as_device(device: str | torch.device | None) -> torch.device:
    if isinstance(device, torch.device):
        return device
    from ..device import resolve_device
    return resolve_device(device or "cpu")


def positive_index(class_names) -> int:
    """Index of the class whose evidence saliency shows: 'positive' if named so, else the last."""
    names = [str(c).lower() for c in class_names]
    return names.index("positive") if "positive" in names else max(len(names) - 1, 0)


def prepare_image(loaded, image: np.ndarray, path=None) -> np.ndarray:
    """(C, H, W) float32 ready for the network: channel selection, size and value checks."""
    from ..io.images import to_float

    model, meta = loaded.model, loaded.meta
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[None]
    if img.ndim != 3:
        raise InputError(f"expected a (C, H, W) image, got an array of shape {img.shape}", path)
    expected, found = int(model.config.in_channels), int(img.shape[0])
    sel = list(meta.channels) if meta.channels else None
    if found > expected and sel is not None and len(sel) == expected:
        if not all(-found <= c < found for c in sel):
            raise InputError(f"the model uses channels {sel} but the image has only {found} channel(s)", path)
        img = img[sel]
    if img.shape[0] != expected:
        hint = f" (the model was trained on channels {sel} of its files)" if sel else ""
        raise InputError(f"the model expects {expected} channel(s) but the image has {found}{hint}; "
                         "choose the channel(s) with --channels", path)
    h, w = img.shape[1:]
    m = int(model.min_input_size)
    if min(h, w) < m:
        raise InputError(f"image is {h}x{w} px, smaller than the network's minimum input of {m}x{m} px", path)
    img = to_float(img)
    if not np.isfinite(img).all():
        raise InputError("image has NaN/inf pixels; replace them (e.g. by 0) before prediction", path)
    return np.ascontiguousarray(img, dtype=np.float32)


def _norm(loaded, norm: Normalization | None) -> Normalization:
    return norm if norm is not None else Normalization.from_dict(loaded.meta.normalization)


def _to_input(images: np.ndarray, norm: Normalization, dev: torch.device) -> torch.Tensor:
    x = norm.apply_torch(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(dev))
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


# ------------------------------------------------------------------ batches
def check_batch(loaded, images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) images with the model's channel count and at least its minimum size;
    integer data scaled to [0, 1]. Channels must already be selected."""
    from ..io.images import to_float

    model = loaded.model
    if images.ndim != 4:
        raise InputError(f"expected a batch of images (N, C, H, W), got an array of shape {images.shape}")
    expected, found = int(model.config.in_channels), int(images.shape[1])
    if found != expected:
        raise InputError(f"the model expects {expected} channel(s) but the images have {found}; "
                         "choose the channel(s) with --channels")
    if images.shape[0] and min(images.shape[2:]) < model.min_input_size:
        m = model.min_input_size
        raise InputError(f"images are {images.shape[2]}x{images.shape[3]} px, smaller than the network's "
                         f"minimum input of {m}x{m} px")
    return to_float(images) if images.dtype.kind in "uib" else images


def classify_batch(loaded, images: np.ndarray, batch_size: int = 16, device: str | torch.device = "cpu",
                   norm: Normalization | None = None) -> np.ndarray:
    """Class probabilities (N, K) float32 of same-sized (N, C, H, W) images."""
    images = pad_border(check_batch(loaded, np.asarray(images)), border_margin(loaded))
    dev, nrm = as_device(device), _norm(loaded, norm)
    loaded.model.to(dev)
    model = inference_model(loaded, dev)
    out = []
    with eval_mode(model), torch.no_grad():
        for s in range(0, len(images), max(1, batch_size)):
            logits = model(_to_input(images[s:s + batch_size], nrm, dev)).float()
            out.append(torch.softmax(logits, 1).cpu().numpy())
    k = len(loaded.meta.class_names)
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, k), np.float32)


def saliency_batch(loaded, images: np.ndarray, *, device: str | torch.device = "cpu", saliency: bool = True,
                   norm: Normalization | None = None, mode: str = "map", batch_size: int = 8,
                   target: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(probabilities (N, K), saliency (N, H, W) float32 or None) in one pass per batch."""
    if not saliency:
        return classify_batch(loaded, images, batch_size, device, norm), None
    margin = border_margin(loaded)
    images = pad_border(check_batch(loaded, np.asarray(images)), margin)
    dev, nrm = as_device(device), _norm(loaded, norm)
    loaded.model.to(dev)
    model = inference_model(loaded, dev)
    t = positive_index(loaded.meta.class_names) if target is None else target
    probs, sals = [], []
    for s in range(0, len(images), max(1, batch_size)):
        maps, sal = maps_and_saliency(model, _to_input(images[s:s + batch_size], nrm, dev), t, mode)
        with eval_mode(model), torch.no_grad():
            probs.append(torch.softmax(model.pool(maps).float(), 1).cpu().numpy())
        sals.append(crop_border(sal.cpu().numpy(), margin))
    return np.concatenate(probs).astype(np.float32), np.concatenate(sals).astype(np.float32)


# ------------------------------------------------------------------- tiling
def contaminated_units(model: nn.Module) -> int:
    """Class-map units at a tile edge that see the zero padding of inner convolutions."""
    c = 0
    for m in list(model.features) + [model.classifier]:
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
            p = m.padding[0] if isinstance(m.padding, tuple) else m.padding
            s = m.stride[0] if isinstance(m.stride, tuple) else m.stride
            c = math.ceil((c + p) / s)
    return c


def _map_len(model, n: int) -> int:
    return int(model.class_map_size(n, n)[0])


def min_overlap(model) -> int:
    """Smallest tile overlap (px) for which stitched class maps are exact."""
    _, stride = unit_geometry(model)
    big = 64 * stride
    return stride * (big // stride - _map_len(model, big) + 2 * contaminated_units(model))


def default_overlap(model) -> int:
    _, stride = unit_geometry(model)
    rf = model.receptive_field()[0]
    return max(min_overlap(model), -(-rf // stride) * stride) + stride


def plan_tiles(n: int, tile: int, overlap: int, stride: int) -> list[tuple[int, int]]:
    """Spans [start, end) along one axis; starts on the stride grid, the last span ends at n,
    neighbours overlap by at least ``overlap``.

    The fewest spans of at most ``tile`` px (the last may be up to ``stride - 1`` px longer),
    all about the same size: a 2048 px side with ``tile=1024`` and 80 px overlap becomes three
    736 px spans rather than two full tiles and a third that nearly repeats the second (1.9x
    less work for a 2048x2048 field)."""
    if n <= tile:
        return [(0, n)]
    k = max(2, math.ceil((n - overlap) / (tile - overlap)))
    while True:
        for size in range(math.ceil((n + (k - 1) * overlap) / k), tile + 1):
            step = (size - overlap) // stride * stride
            last = (n - size) // stride * stride
            if step <= 0 or last <= (k - 2) * step:
                continue
            if last - (k - 2) * step <= size - overlap:
                return [(i * step, i * step + size) for i in range(k - 1)] + [(last, n)]
        k += 1


def owned_units(model, n: int, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Global class-map unit range [lo, hi) each span contributes (clean and most central)."""
    _, stride = unit_geometry(model)
    c = contaminated_units(model)
    clean = []
    for s, e in spans:
        u0, m = s // stride, _map_len(model, e - s)
        clean.append((u0 + (0 if s == 0 else c), u0 + m - (0 if e == n else c)))
    out, lo = [], 0
    for k, (a, b) in enumerate(clean):
        hi = _map_len(model, n) if k == len(clean) - 1 else max(lo, (b + clean[k + 1][0]) // 2)
        if lo < hi and not (a <= lo and hi <= b):
            raise RuntimeError("tile overlap too small for exact stitching")  # guarded by min_overlap
        out.append((lo, hi))
        lo = hi
    return out


def _check_tiling(model, tile: int, overlap: int | None) -> tuple[int, int]:
    head = getattr(model.config, "head", "max")
    if head != "max":
        raise InputError(f"tiled prediction needs a network with global max pooling (head='max'); this model "
                         f"uses head='{head}', whose score depends on the whole image at once: predict without "
                         "tiling (tile=None)")
    _, stride = unit_geometry(model)
    ov = default_overlap(model) if overlap is None else int(overlap)
    need = min_overlap(model)
    if ov < need:
        raise InputError(f"tile overlap {ov} px is too small for this network: it needs at least {need} px "
                         f"(receptive field {model.receptive_field()[0]} px)")
    ov = -(-ov // stride) * stride
    t = int(tile) // stride * stride
    if t < ov + stride or t < model.min_input_size:
        raise InputError(f"tile size {tile} px is too small: use at least {max(ov + stride, model.min_input_size)}"
                         f" px with an overlap of {ov} px")
    return t, ov


def _tiled(model, image: np.ndarray, nrm: Normalization, dev: torch.device, tile: int, overlap: int | None,
           want_saliency: bool, target: int, mode: str, callback: ProgressCallback, cancel: CancelToken | None,
           net: nn.Module | None = None):
    """Stitched class maps (1, K, h, w) and saliency (H, W) or None; also the tile count.
    ``model`` gives the geometry; ``net`` (default: ``model``) computes."""
    net = model if net is None else net
    tile, overlap = _check_tiling(model, tile, overlap)
    _, stride = unit_geometry(model)
    C, H, W = image.shape
    ys, xs = plan_tiles(H, tile, overlap, stride), plan_tiles(W, tile, overlap, stride)
    oy, ox = owned_units(model, H, ys), owned_units(model, W, xs)
    jobs = [(ya, ua, xa, va) for ya, ua in zip(ys, oy) for xa, va in zip(xs, ox) if ua[0] < ua[1] and va[0] < va[1]]
    K = model.config.n_classes
    maps = torch.zeros((1, K, _map_len(model, H), _map_len(model, W)))
    canvas = torch.zeros((C, H, W)) if want_saliency else None
    single = want_saliency and mode == "map"  # per-unit weights: one pass; otherwise global weights first
    passes = [("maps", single)] + ([("grad", True)] if want_saliency and not single else [])
    weights = None
    n_steps, step = len(jobs) * len(passes), 0
    for kind, grad in passes:
        if kind == "grad":
            weights = objective_weights(maps, target, mode)
        for (y0, y1), (uy0, uy1), (x0, x1), (ux0, ux1) in jobs:
            if cancel is not None:
                cancel.raise_if_cancelled()
            step += 1
            if callback is not None:
                callback(Progress(stage="item", batch=step, n_batches=n_steps, message=f"tile {step}/{n_steps}"))
            ly, lx = slice(uy0 - y0 // stride, uy1 - y0 // stride), slice(ux0 - x0 // stride, ux1 - x0 // stride)
            if kind == "grad" and not weights[..., uy0:uy1, ux0:ux1].any():
                continue  # no unit of this tile carries weight (mode='max': all but one tile)
            x = _to_input(image[None, :, y0:y1, x0:x1], nrm, dev).requires_grad_(grad)
            with eval_mode(net), torch.set_grad_enabled(grad):
                m = net.class_maps(x).float()
                if kind == "maps":
                    maps[..., uy0:uy1, ux0:ux1] = m[..., ly, lx].detach().cpu()
                if grad:
                    own = torch.zeros_like(m)
                    own[..., ly, lx] = (objective_weights(m, target, mode)[..., ly, lx] if kind == "maps" else
                                        weights[..., uy0:uy1, ux0:ux1].to(m.device))
                    (g,) = torch.autograd.grad((m * own).sum(), x)
                    canvas[:, y0:y1, x0:x1] += g[0].cpu()
    sal = canvas.abs().amax(0).numpy().astype(np.float32) if want_saliency else None
    return maps, sal, len(jobs)


# ---------------------------------------------------------------- one image
@dataclass
class WSCNNPrediction:
    probabilities: np.ndarray           # (K,)
    class_maps: np.ndarray              # (K, H, W) float32, aligned to the image
    saliency: np.ndarray | None         # (H, W) float32; None when not asked for
    class_names: list[str]
    n_tiles: int = 1

    @property
    def predicted(self) -> str:
        return self.class_names[int(np.argmax(self.probabilities))]


def inference_model(loaded, dev: torch.device) -> nn.Module:
    """The network of ``loaded`` as prediction runs it: :func:`core.tiles.inference_copy`
    (batch norm folded into the convolutions, channels_last, parameters frozen: ~2x faster
    on CPU, same outputs up to float rounding), made once per model, device and weights and
    kept on the LoadedModel. Training ``loaded.model`` further (its parameters' in-place
    version counters move) makes a fresh copy."""
    from .tiling import inference_copy

    model = loaded.model
    key = (id(model), str(dev), tuple(p._version for p in model.parameters()),
           tuple(b._version for b in model.buffers()))
    cached = getattr(loaded, "_inference", None)
    if cached is None or cached[0] != key:
        cached = (key, inference_copy(model).to(dev))
        object.__setattr__(loaded, "_inference", cached)
    return cached[1]


def predict_wscnn(loaded, image_chw: np.ndarray, *, saliency: bool = True, tile: int | None = None,
                  overlap: int | None = None, device: str | torch.device = "cpu", saliency_mode: str = "map",
                  target: int | None = None, norm: Normalization | None = None, path=None,
                  callback: ProgressCallback = None, cancel: CancelToken | None = None,
                  border: bool = True) -> WSCNNPrediction:
    """Probabilities, aligned class maps and saliency of one (C, H, W) image.

    ``tile`` (px): process overlapping tiles of about this size (None: the whole image at
    once); ``overlap`` defaults to the smallest exact overlap plus one stride (80 px for the
    paper's network). ``target``: the class whose evidence saliency shows (default: the
    class named 'positive', else the last). ``border``: add :func:`border_margin` of
    background around the image first (False: the image as it is)."""
    from .saliency import SALIENCY_MODES

    model, names = loaded.model, list(loaded.meta.class_names)
    if saliency_mode not in SALIENCY_MODES:
        raise InputError(f"unknown saliency mode {saliency_mode!r}; choose one of {', '.join(SALIENCY_MODES)}")
    if cancel is not None:
        cancel.raise_if_cancelled()
    img = prepare_image(loaded, image_chw, path)
    margin = border_margin(loaded) if border else 0
    img = pad_border(img, margin)
    dev, nrm = as_device(device), _norm(loaded, norm)
    model.to(dev)
    net = inference_model(loaded, dev)  # computes; ``model`` keeps describing the geometry
    t = positive_index(names) if target is None else int(target)
    H, W = img.shape[1:]
    n_tiles = 1
    if tile is not None and max(H, W) > int(tile):
        maps, sal, n_tiles = _tiled(model, img, nrm, dev, int(tile), overlap, saliency, t, saliency_mode,
                                    callback, cancel, net)
        logits = maps.amax(dim=(2, 3))
    else:
        size = getattr(model.config, "input_size", None)
        if getattr(model.config, "head", "max") == "fc" and tuple(size) != (H, W):
            raise InputError(f"this model (head='fc') only takes {size[0]}x{size[1]} px images, got {H}x{W}", path)
        x = _to_input(img[None], nrm, dev)
        if saliency:
            maps, s = maps_and_saliency(net, x, t, saliency_mode)
            sal = s[0].cpu().numpy().astype(np.float32)
        else:
            with eval_mode(net), torch.no_grad():
                maps = net.class_maps(x).float()
            sal = None
        with eval_mode(net), torch.no_grad():
            logits = net.pool(maps).float()
        if callback is not None:
            callback(Progress(stage="item", batch=1, n_batches=1, message="whole image"))
    probs = torch.softmax(logits.float(), 1)[0].cpu().numpy().astype(np.float32)
    offset, stride = unit_geometry(model)
    cams = upsample_maps(maps.float().cpu(), (H, W), offset, stride)[0].numpy().astype(np.float32)
    cams, sal = crop_border(cams, margin), (None if sal is None else crop_border(sal, margin))
    return WSCNNPrediction(probs, cams, sal, names, n_tiles)


__all__ = ["WSCNNPrediction", "predict_wscnn", "classify_batch", "saliency_batch", "prepare_image", "check_batch",
           "positive_index", "plan_tiles", "owned_units", "min_overlap", "default_overlap", "contaminated_units"]
