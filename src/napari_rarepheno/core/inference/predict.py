"""WSCNN prediction on images in memory: probabilities, class maps aligned to the image,
gradient saliency; for one image or a batch of same-sized images.

Channels: a model stores the channel selection it was trained on (``meta.channels``).
An image with *more* channels than the model is reduced to that selection first; an
image that then still has the wrong number of channels is refused, naming both counts.
Integer images are scaled to [0, 1] like :func:`core.io.images.read_image` does.
A big image is predicted in exact tiles (``tile=``: :mod:`.tiling`, streamed by :mod:`.lazy`).
"""
from __future__ import annotations

import numpy as np
import torch

from ..device import as_device, resolve_precision
from ..errors import CHOOSE_CHANNELS, InputError
from ..inputs.normalize import Normalization
from ..io.images import to_float
from ..nets.folding import inference_model
from ..progress import CancelToken, Progress, ProgressCallback
from .border import border_margin, crop_border, pad_border
from .lazy import predict_wscnn_lazy
from .saliency import (
    SALIENCY_MODES,
    cam_offsets,
    eval_mode,
    evidence_map,
    maps_and_saliency,
    positive_index,
    unit_geometry,
    upsample_maps,
)


# ------------------------------------------------------------------ inputs
def prepare_image(loaded, image: np.ndarray, path=None) -> np.ndarray:
    """(C, H, W) float32 ready for the network: channel selection, size and value checks."""
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
                         + CHOOSE_CHANNELS, path)
    h, w = img.shape[1:]
    m = int(model.min_input_size)
    if min(h, w) < m:
        raise InputError(f"image is {h}x{w} px, smaller than the network's minimum input of {m}x{m} px", path)
    img = to_float(img)
    if not np.isfinite(img).all():
        raise InputError("image has NaN/inf pixels; replace them (e.g. by 0) before prediction", path)
    return np.ascontiguousarray(img, dtype=np.float32)


def _norm(loaded, norm: Normalization | None) -> Normalization:
    return norm if norm is not None else Normalization.of_model(loaded.meta)


def _to_input(images: np.ndarray, norm: Normalization, dev: torch.device) -> torch.Tensor:
    """Scaled (and border-padded) images -> the standardised network input on ``dev``."""
    x = norm.apply_torch(torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(dev))
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


# ------------------------------------------------------------------ batches
def check_batch(loaded, images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) images with the model's channel count and at least its minimum size;
    integer data scaled to [0, 1]. Channels must already be selected."""
    model = loaded.model
    if images.ndim != 4:
        raise InputError(f"expected a batch of images (N, C, H, W), got an array of shape {images.shape}")
    expected, found = int(model.config.in_channels), int(images.shape[1])
    if found != expected:
        raise InputError(f"the model expects {expected} channel(s) but the images have {found}; "
                         + CHOOSE_CHANNELS)
    if images.shape[0] and min(images.shape[2:]) < model.min_input_size:
        m = model.min_input_size
        raise InputError(f"images are {images.shape[2]}x{images.shape[3]} px, smaller than the network's "
                         f"minimum input of {m}x{m} px")
    return to_float(images) if images.dtype.kind in "uib" else images


def classify_batch(loaded, images: np.ndarray, batch_size: int = 16, device: str | torch.device = "cpu",
                   norm: Normalization | None = None) -> np.ndarray:
    """Class probabilities (N, K) float32 of same-sized (N, C, H, W) images (as read: the
    model's normalisation, per-image scaling included, is applied here)."""
    dev, nrm = as_device(device), _norm(loaded, norm)
    images = pad_border(nrm.scale_samples(check_batch(loaded, np.asarray(images))), border_margin(loaded))
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
    dev, nrm = as_device(device), _norm(loaded, norm)
    images = pad_border(nrm.scale_samples(check_batch(loaded, np.asarray(images))), margin)
    loaded.model.to(dev)
    model = inference_model(loaded, dev)
    t = positive_index(loaded.meta.class_names) if target is None else target
    probs, sals = [], []
    offset, stride = unit_geometry(loaded.model)
    for s in range(0, len(images), max(1, batch_size)):
        x = _to_input(images[s:s + batch_size], nrm, dev)
        if mode == "cam":  # forward only: the positive evidence of the upsampled class maps
            with eval_mode(model), torch.no_grad():
                maps = model.class_maps(x).float()
            up = np.concatenate([upsample_maps(maps[i:i + 1].cpu(), images.shape[2:], cam_offsets(loaded, x[i:i + 1], t),
                                               stride).numpy() for i in range(len(maps))])
            sal = np.stack([evidence_map(crop_border(u, margin), t) for u in up])
        else:
            maps, g = maps_and_saliency(model, x, t, mode)
            sal = crop_border(g.cpu().numpy(), margin)
        with eval_mode(model), torch.no_grad():
            probs.append(torch.softmax(model.pool(maps).float(), 1).cpu().numpy())
        sals.append(sal)
    return np.concatenate(probs).astype(np.float32), np.concatenate(sals).astype(np.float32)


# ---------------------------------------------------------------- one image
class WSCNNPrediction:
    """What :func:`predict_wscnn` returns for one image.

    ``class_maps`` (K, H, W) float32, aligned to the image: given as an array, or as a
    function that computes it on first use (the batch command only needs the probabilities
    and the saliency: upsampling every class map of a 2048x2048 field costs ~0.1 s it
    never reads)."""

    def __init__(self, probabilities: np.ndarray, class_maps, saliency: np.ndarray | None,
                 class_names: list[str], n_tiles: int = 1):
        self.probabilities, self.saliency = probabilities, saliency
        self.class_names, self.n_tiles = class_names, n_tiles
        self._class_maps = class_maps

    @property
    def class_maps(self) -> np.ndarray:
        if callable(self._class_maps):
            self._class_maps = self._class_maps()
        return self._class_maps

    @property
    def predicted(self) -> str:
        return self.class_names[int(np.argmax(self.probabilities))]


def cam_evidence(maps: torch.Tensor, out_hw: tuple[int, int], offsets, stride: int, target: int) -> np.ndarray:
    """:func:`.saliency.evidence_map` of the class maps (1, K, h, w) upsampled to ``out_hw``
    at ``offsets``: (H, W) float32. With two classes the margin ``a_t - a_other`` is formed
    on the maps and only it is upsampled (interpolation is linear, so this is the same map,
    one upsampling instead of two)."""
    if maps.shape[1] == 2:
        margin = maps[:, target:target + 1] - maps[:, 1 - target:2 - target]
        return torch.relu(upsample_maps(margin, out_hw, offsets, stride))[0, 0].numpy().astype(np.float32)
    return evidence_map(upsample_maps(maps, out_hw, offsets, stride)[0].numpy().astype(np.float32), target)


def predict_wscnn(loaded, image_chw: np.ndarray, *, saliency: bool = True, tile: int | None = None,
                  overlap: int | None = None, device: str | torch.device = "cpu", saliency_mode: str = "map",
                  target: int | None = None, norm: Normalization | None = None, path=None,
                  callback: ProgressCallback = None, cancel: CancelToken | None = None,
                  border: bool = True, precision: str = "fp32") -> WSCNNPrediction:
    """Probabilities, aligned class maps and saliency of one (C, H, W) image.

    ``saliency_mode``: 'map' (gradient saliency of the class map's positive evidence: one
    backward pass; the paper's localisation), 'max', or 'cam' (the positive evidence of the
    class maps themselves, forward only: about half the work, the fast interactive default).
    ``precision``: 'fp32' (default: float32 exactly), 'auto' or 'bf16' (bf16 autocast where
    the device computes it in hardware: ~2x faster on such CPUs, ~1e-2 relative deviation).

    ``tile`` (px): process overlapping tiles of about this size (None: the whole image at
    once); ``overlap`` defaults to the smallest exact overlap plus one stride (80 px for the
    paper's network). ``target``: the class whose evidence saliency shows (default: the
    class named 'positive', else the last). ``border``: add :func:`border_margin` of
    background around the image first (False: the image as it is). The image is as read:
    the model's normalisation (per-image scaling included) is applied here."""
    model, names = loaded.model, list(loaded.meta.class_names)
    if saliency_mode not in SALIENCY_MODES:
        raise InputError(f"unknown saliency mode {saliency_mode!r}; choose one of {', '.join(SALIENCY_MODES)}")
    if cancel is not None:
        cancel.raise_if_cancelled()
    img = prepare_image(loaded, image_chw, path)
    margin = border_margin(loaded) if border else 0
    dev, nrm = as_device(device), _norm(loaded, norm)
    model.to(dev)
    t = positive_index(names) if target is None else int(target)
    if tile is not None and max(img.shape[1:]) + 2 * margin > int(tile):
        # exact tiles (head='max' only), streamed: the one tiled path (scaling and border included)
        lazy = predict_wscnn_lazy(loaded, img, tile=int(tile), overlap=overlap, saliency=saliency, device=dev,
                                  saliency_mode=saliency_mode, target=t, norm=nrm, callback=callback,
                                  cancel=cancel, border=border, precision=precision)
        probs = lazy.probabilities
        cams = upsample_maps(torch.from_numpy(lazy.class_maps)[None], img.shape[1:], lazy.offset, lazy.stride)
        return WSCNNPrediction(probs, cams[0].numpy().astype(np.float32), lazy.saliency, names, lazy.n_tiles)
    img = pad_border(nrm.scale_samples(img), margin)
    net = inference_model(loaded, dev)  # computes; ``model`` keeps describing the geometry
    H, W = img.shape[1:]
    size = getattr(model.config, "input_size", None)
    if getattr(model.config, "head", "max") == "fc" and tuple(size) != (H, W):
        raise InputError(f"this model (head='fc') only takes {size[0]}x{size[1]} px images, got {H}x{W}", path)
    x = _to_input(img[None], nrm, dev)
    amp = resolve_precision(precision, dev)
    with torch.autocast(dev.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
        if saliency and saliency_mode != "cam":
            maps, s = maps_and_saliency(net, x, t, saliency_mode)
            sal = s[0].float().cpu().numpy().astype(np.float32)
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
    maps = maps.float().cpu()

    inner = (H - 2 * margin, W - 2 * margin)  # the image without the border: upsampled only there

    def aligned_maps() -> np.ndarray:
        return upsample_maps(maps, inner, offset - margin, stride)[0].numpy().astype(np.float32)

    sal = None if sal is None else crop_border(sal, margin)
    if saliency and saliency_mode == "cam":  # the evidence where the objects are (calibrated offsets)
        oy, ox = cam_offsets(loaded, x, t)
        sal = cam_evidence(maps, inner, (oy - margin, ox - margin), stride, t)
    return WSCNNPrediction(probs, aligned_maps, sal, names, 1)


__all__ = ["WSCNNPrediction", "cam_evidence", "predict_wscnn", "classify_batch", "saliency_batch", "prepare_image",
           "check_batch"]
