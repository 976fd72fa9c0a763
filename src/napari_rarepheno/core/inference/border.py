"""The band of background a global-max-pooling WSCNN sees around an image, and the
per-model decision whether to add it.

The paper's network has no padding in its first convolutions, so the outermost class-map
units sit 22.5 px inside the image and objects at the border get little evidence.
Prediction can add half a receptive field of background (each image's median) and crop the
maps back (:func:`border_margin`, :func:`pad_border`, :func:`crop_border`). Whether a model
does is decided on its validation split while it trains (:func:`border_decision`; older
models: :func:`decide_border`) and stored in ``meta.training["border_margin"]``.
"""
from __future__ import annotations

import numpy as np

from ..inputs.normalize import SAMPLE_PIXELS, sample_rows


def border_margin(loaded, recorded: bool = True) -> int:
    """Background (px) added around an image before a WSCNN with global max pooling sees it:
    half its receptive field (35 px for the paper's network). Without it the outermost
    class-map units sit ``unit_geometry`` offset (22.5 px) inside the image, and objects
    near the border get little evidence: on Sim Data 1 validation, localisation recall was
    9% for circles within 5 px of the border and 99.8% beyond 30 px; with the margin, >= 99%
    at every distance (docs/history.md). 0 for other heads and networks, whose score
    depends on the whole image or a fixed input size.

    Training checks the margin on the val split and records whether to use it
    (``training.border_margin``; mosaics of real crops are better without); that decision
    wins (``recorded=False``: the rule regardless). Models trained before it have none and
    get the rule."""
    model = loaded.model
    if loaded.meta.kind != "wscnn" or getattr(model.config, "head", "max") != "max":
        return 0
    decision = loaded.meta.training.get("border_margin") if recorded else None
    if decision is not None:
        return max(0, int(decision))
    return int(model.receptive_field()[0]) // 2


def pad_border(images: np.ndarray, margin: int) -> np.ndarray:
    """``images`` (..., H, W) with ``margin`` px added on each side, filled per image and
    channel with its median (the background of a microscopy field). Keeps the dtype of
    integer data (the median rounded) so the copy is read exactly as the original; float
    data comes back as float32."""
    if margin <= 0:
        return images
    images = np.asarray(images)
    integer = np.issubdtype(images.dtype, np.integer)
    med = np.median(images, axis=(-2, -1), keepdims=True)
    out = np.empty(images.shape[:-2] + (images.shape[-2] + 2 * margin, images.shape[-1] + 2 * margin),
                   images.dtype if integer else np.float32)
    out[...] = np.rint(med) if integer else med
    out[..., margin:margin + images.shape[-2], margin:margin + images.shape[-1]] = images
    return out


def crop_border(a: np.ndarray, margin: int) -> np.ndarray:
    """Undo :func:`pad_border` on maps of the padded image (..., H + 2m, W + 2m)."""
    return a[..., margin:a.shape[-2] - margin, margin:a.shape[-1] - margin] if margin > 0 else a


def border_decision(row: dict, margin: int) -> dict:
    """``meta.training`` entries saying whether prediction adds the border margin
    (``border_margin``, read by :func:`border_margin`), from a validation row with
    ``val_loss_plain`` / ``val_loss_border``: the lower loss wins.

    On the simulations (flat background) the margin is what lets objects at the edge count
    (Sim Data 1 test 99.2% -> 100%); on mosaics of real crops the flat fill is unlike anything
    the network saw and turned negatives positive (HeLa val 93.8% -> 72.5%)."""
    use = margin if row["val_loss_border"] <= row["val_loss_plain"] else 0
    return {"border_margin": use,
            "border_check": {"margin": margin, "val_loss_with": row["val_loss_border"],
                             "val_accuracy_with": row["val_accuracy_border"], "val_loss_without": row["val_loss_plain"],
                             "val_accuracy_without": row["val_accuracy_plain"]}}


def decide_border(model, val, norm, device, margin: int, *, batch_size: int = 64) -> dict:
    """:func:`border_decision` for a model trained before training made it: ``val`` (an
    ``ImageSet``) scored with and without the margin, ``norm`` the model's Normalization."""
    import torch

    from .arrays import evaluate_arrays  # deferred: loads torch

    dev = torch.device(device) if not isinstance(device, torch.device) else device
    row, scaled = {}, norm.scale_samples(val.images)
    for name, images in (("plain", scaled), ("border", pad_border(scaled, margin))):
        e = evaluate_arrays(model, images, val.labels, norm, dev, batch_size)
        row.update({f"val_loss_{name}": e["loss"], f"val_accuracy_{name}": e["accuracy"]})
    return border_decision(row, margin)


class LazyBorder:
    """:func:`pad_border` for images read tile by tile (``core.inference.tiling.LazyImage``): the image
    seen with ``margin`` px of background on each side, filled per channel with the median of
    the float image as ``predict_wscnn`` fills it (exact up to ``max_pixels``; bigger images:
    the median of every k-th row). ``read``
    takes windows in padded coordinates, as ``LazyImage.read`` does in its own."""

    def __init__(self, img, margin: int, max_pixels: int = SAMPLE_PIXELS):
        C, H, W = img.shape
        self.img, self.margin = img, int(margin)
        self.shape = (C, H + 2 * self.margin, W + 2 * self.margin)
        # as predict_wscnn: the median of the (scaled) float image
        self.fill = np.median(sample_rows(img.read, (C, H, W), max_pixels), axis=1).astype(np.float32)

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Window in padded coordinates, float32 (C, h, w) as ``LazyImage.read``."""
        m, (_, H, W) = self.margin, self.img.shape
        out = np.empty((self.shape[0], y1 - y0, x1 - x0), np.float32)
        out[...] = self.fill[:, None, None]
        iy0, iy1, ix0, ix1 = max(y0 - m, 0), min(y1 - m, H), max(x0 - m, 0), min(x1 - m, W)
        if iy0 < iy1 and ix0 < ix1:
            out[:, iy0 + m - y0:iy1 + m - y0, ix0 + m - x0:ix1 + m - x0] = self.img.read(iy0, iy1, ix0, ix1)
        return out


class CroppedRows:
    """Row-wise writer of a padded (H + 2m, W + 2m) map into ``out`` (H, W): ``w[r0:r1] = rows``
    keeps the rows and columns inside the image (the inverse of :class:`LazyBorder`)."""

    def __init__(self, out, margin: int, H: int, W: int):
        self.out, self.margin, self.H, self.W = out, int(margin), H, W

    def __setitem__(self, rows: slice, value: np.ndarray) -> None:
        m = self.margin
        a, b = max(rows.start, m), min(rows.stop, m + self.H)
        if a < b:
            self.out[a - m:b - m] = value[a - rows.start:b - rows.start, m:m + self.W]


__all__ = ["border_margin", "pad_border", "crop_border", "border_decision", "decide_border", "LazyBorder",
           "CroppedRows"]
