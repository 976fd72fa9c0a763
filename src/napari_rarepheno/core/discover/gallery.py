"""Gallery of salient cells: crop what the network looks at, across many images.

WSCNN: for every image the model calls ``target`` (P >= ``min_probability``) the
gradient saliency of the target class map (``core.inference.saliency``, mode 'map': every rare
object lights up) is segmented into peaks; a ``crop_size`` window around each of the
``max_per_image`` strongest peaks becomes a gallery crop, and its *embedding* is the
network's own last convolutional features (the input of the class detectors)
max-pooled -- as the WSCNN head pools -- over the units centred within
``3/8 * crop_size`` of the peak (about one cell for 64 px crops of 20x HeLa cells;
max pooling and this radius separated mitotic stages best on the discovery
benchmark's mosaics, see docs/discovery.md). One forward and one backward pass per
batch; images are read lazily, only crops are kept.

DeepYeast: every crop is a cell; its embedding is the ``fc1`` layer (the paper's
transfer features); ``min_probability`` filters on the target class when one is given.

Clustering and the 2-D map come from :mod:`.clusters`; the montage and saving are in
:mod:`.gallery_files`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..deepyeast.classify import classify_crops, embed_crops
from ..deepyeast.data import fit_size
from ..device import resolve_device
from ..errors import InputError
from ..inference.predict import predict_wscnn
from ..inference.saliency import eval_mode, objective_weights, unit_geometry
from ..inference.segment import SaliencyConfig, segment_saliency
from ..inputs.normalize import Normalization
from ..io.images import read_image
from ..io.modelfile import as_loaded
from ..progress import CancelToken, ProgressCallback, report_items
from .clusters import cluster_features, embed_2d
from .scoring import batches, folder_files, probabilities, read_for_model, target_index


@dataclass
class GalleryConfig:
    crop_size: int = 64
    max_per_image: int = 3
    max_crops: int = 2000
    min_probability: float = 0.5      # images (WSCNN) or crops (DeepYeast) scored at least this for target
    target: str | None = None         # class to explain (default: WSCNN positive; DeepYeast: none, all crops)
    saliency: SaliencyConfig = field(default_factory=SaliencyConfig)
    n_clusters: int = 5
    method: str = "kmeans"            # kmeans | hdbscan
    layer: str = "fc1"                # DeepYeast embedding layer
    batch_size: int = 8
    seed: int = 0

    def validate(self) -> None:
        if self.crop_size < 8:
            raise InputError(f"crop size must be at least 8 px, got {self.crop_size}")
        if self.max_per_image < 1 or self.max_crops < 1:
            raise InputError("max_per_image and max_crops must be at least 1")
        if not 0.0 <= self.min_probability <= 1.0:
            raise InputError(f"min_probability must lie in 0..1, got {self.min_probability}")
        if self.method not in ("kmeans", "hdbscan"):
            raise InputError(f"clustering method must be kmeans or hdbscan, got {self.method!r}")
        if self.n_clusters < 1:
            raise InputError(f"number of clusters must be at least 1, got {self.n_clusters}")
        self.saliency.validate()


@dataclass
class Gallery:
    """Crops (N, C, s, s) float32 (scaled like the images, e.g. uint8 / 255) with one table
    row each (image, label, y, x, score, probability); ``features`` (N, D); after
    :func:`cluster_gallery` also ``clusters`` (N,) (-1: noise) and ``xy`` (N, 2)."""

    crops: np.ndarray
    table: dict[str, np.ndarray]
    features: np.ndarray
    class_names: list[str]
    kind: str
    source_dtype: str = "uint8"
    clusters: np.ndarray | None = None
    xy: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.crops)


def crop_at(img: np.ndarray, y: float, x: float, size: int) -> np.ndarray:
    """(C, size, size) window centred on (y, x), zero outside the image."""
    c, h, w = img.shape
    y0, x0 = int(round(y)) - size // 2, int(round(x)) - size // 2
    out = np.zeros((c, size, size), img.dtype)
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(h, y0 + size), min(w, x0 + size)
    if ye > ys and xe > xs:
        out[:, ys - y0:ye - y0, xs - x0:xe - x0] = img[:, ys:ye, xs:xe]
    return out


def feature_geometry(model) -> tuple[float, int]:
    """(offset, stride) in input pixels of the units of ``model.features``' output."""
    from types import SimpleNamespace

    from torch import nn

    return unit_geometry(SimpleNamespace(features=model.features, classifier=nn.Identity()))


def pool_around(fmap: np.ndarray, y: float, x: float, offset: float, stride: int, radius: float) -> np.ndarray:
    """Max of the (F, h, w) feature vectors of the units centred within ``radius`` px of
    (y, x) (the nearest unit when none is): (F,)."""
    _, h, w = fmap.shape
    cy = offset + stride * np.arange(h)
    cx = offset + stride * np.arange(w)
    near = (np.abs(cy - y)[:, None] <= radius) & (np.abs(cx - x)[None, :] <= radius)
    if not near.any():
        i = int(np.clip(np.argmin(np.abs(cy - y)), 0, h - 1))
        j = int(np.clip(np.argmin(np.abs(cx - x)), 0, w - 1))
        near[i, j] = True
    return fmap[:, near].max(1)


def _wscnn_batch(lm, x: np.ndarray, t: int, dev, norm):
    """Probabilities, saliency maps (B, H, W) and features (B, F, h, w) of one batch, from one
    forward and one backward pass (the saliency of ``core.inference.saliency.maps_and_saliency``)."""
    import torch

    model = lm.model
    xn = norm.apply_torch(torch.from_numpy(norm.scale_samples(x)).to(dev)).requires_grad_(True)
    with eval_mode(model), torch.enable_grad():
        feats = model.features(xn)
        maps = model.classifier(feats).float()
        w = objective_weights(maps, t, "map")
        (g,) = torch.autograd.grad((maps * w).sum(), xn)
        with torch.no_grad():
            probs = torch.softmax(model.pool(maps.detach()).float(), 1).cpu().numpy()
    return probs, g.abs().amax(1).cpu().numpy(), feats.detach().float().cpu().numpy()


def collect_wscnn(lm, files, cfg: GalleryConfig, device, callback: ProgressCallback = None, cancel=None):
    names = list(lm.meta.class_names)
    t = target_index(names, cfg.target, "wscnn")
    norm = Normalization.of_model(lm.meta)
    offset, stride = feature_geometry(lm.model)
    radius = max(float(stride), cfg.crop_size * 3 / 8)
    crops, feats, rows = [], [], []
    done = 0
    for group, x in batches(lm, files, cfg.batch_size):
        if (cancel is not None and cancel.cancelled) or len(crops) >= cfg.max_crops:
            break
        probs, sal, fmaps = _wscnn_batch(lm, x, t, device, norm)
        for j, f in enumerate(group):
            if probs[j, t] < cfg.min_probability:
                continue
            det = segment_saliency(sal[j], cfg.saliency)
            for k in range(min(len(det), cfg.max_per_image)):
                if len(crops) >= cfg.max_crops:
                    break
                y, xx = det.peaks[k]
                crops.append(crop_at(x[j], y, xx, cfg.crop_size))
                feats.append(pool_around(fmaps[j], y, xx, offset, stride, radius))
                rows.append((str(f.path), f.label, float(y), float(xx), float(det.scores[k]), float(probs[j, t]), k))
        done += len(group)
        report_items(callback, done, len(files))
    return crops, feats, rows


def collect_deepyeast(lm, files, cfg: GalleryConfig, device, callback: ProgressCallback = None, cancel=None):
    names = list(lm.meta.class_names)
    t = target_index(names, cfg.target, "deepyeast")
    crops, feats, rows = [], [], []
    done = 0
    for group, x in batches(lm, files, max(cfg.batch_size, 32)):
        if (cancel is not None and cancel.cancelled) or len(crops) >= cfg.max_crops:
            break
        probs = classify_crops(lm, x, device=str(device))
        keep = np.flatnonzero(probs[:, t] >= cfg.min_probability) if t is not None else np.arange(len(x))
        keep = keep[: cfg.max_crops - len(crops)]
        if len(keep):
            emb = embed_crops(lm, x[keep], cfg.layer, device=str(device))
            shown = fit_size(x[keep], cfg.crop_size) if x.shape[2:] != (cfg.crop_size,) * 2 else x[keep]
            for i, j in enumerate(keep):
                h, w = x.shape[2:]
                p = float(probs[j, t] if t is not None else probs[j].max())
                crops.append(shown[i])
                feats.append(emb[i])
                rows.append((str(group[j].path), group[j].label, h / 2, w / 2, p, p, 0))
        done += len(group)
        report_items(callback, done, len(files))
    return crops, feats, rows


def build_gallery(model, inputs: Sequence[str | Path], cfg: GalleryConfig | None = None, *, device: str = "auto",
                  cluster: bool = True, callback: ProgressCallback = None, cancel: CancelToken | None = None) -> Gallery:
    """Crops and embeddings of the salient cells (WSCNN) or of the cells (DeepYeast) of
    ``inputs`` (files or folders), clustered and mapped to 2-D unless ``cluster=False``."""

    cfg = cfg or GalleryConfig()
    cfg.validate()
    lm = as_loaded(model)
    names = list(lm.meta.class_names)
    files = folder_files(inputs, names)
    dev = resolve_device(device)
    lm.model.to(dev).eval()
    collect = collect_wscnn if lm.meta.kind == "wscnn" else collect_deepyeast
    crops, feats, rows = collect(lm, files, cfg, dev, callback, cancel)
    if not crops:
        raise InputError(f"no salient cells found in {len(files)} image(s): no image reached "
                         f"P >= {cfg.min_probability} for the target class, or its saliency had no peak; "
                         "lower the minimum probability or the saliency threshold", Path(inputs[0]))
    cols = ("image", "label", "y", "x", "score", "probability", "peak")
    table = {c: np.asarray([r[i] for r in rows]) for i, c in enumerate(cols)}
    table["index"] = np.arange(len(rows))
    dtype = str(read_image(files[0].path, as_float=False).dtype)
    g = Gallery(np.stack(crops).astype(np.float32), table, np.stack(feats).astype(np.float32), names,
                lm.meta.kind, dtype, info={"n_images": len(files), "crop_size": cfg.crop_size,
                                           "model": str(lm.path) if lm.path else "", "channels": lm.meta.channels})
    if cluster:
        cluster_gallery(g, cfg.n_clusters, cfg.method, cfg.seed)
    return g


def explain_file(model, path: str | Path, target: str | None = None, device: str = "auto",
                 tile: int | None = None):
    """One image for review: ``(pixels as read (C, H, W), probabilities, saliency (H, W) or None)``.
    WSCNN images get the target class's gradient saliency (``core.inference.predict.predict_wscnn``,
    tiled when ``tile`` is given); DeepYeast crops none."""

    lm = as_loaded(model)
    path = Path(path)
    raw = read_image(path, as_float=False)
    if lm.meta.kind != "wscnn":
        dev = resolve_device(device)
        lm.model.to(dev).eval()
        return raw, probabilities(lm, read_for_model(lm, path)[None], dev)[0], None

    t = target_index(lm.meta.class_names, target, "wscnn")
    pred = predict_wscnn(lm, raw, saliency=True, tile=tile, device=device, target=t, path=path)
    return raw, pred.probabilities, pred.saliency


def cluster_gallery(g: Gallery, n_clusters: int = 5, method: str = "kmeans", seed: int = 0) -> Gallery:
    """Fill ``g.clusters`` and ``g.xy`` (in place; returns ``g``).

    Runs with one OpenMP/BLAS thread: these problems are small, and on a busy machine
    scikit-learn's spinning thread pools made k-means and t-SNE 20-100x slower."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        g.clusters = cluster_features(g.features, n_clusters, method, seed)
        g.xy = embed_2d(g.features, seed)
    g.info.update(method=method, n_clusters=int(len(set(g.clusters.tolist()) - {-1})))
    return g
