"""npe2 writers: labels -> uint16/uint32 TIFF, images (saliency) -> float32 TIFF.

napari's Save dialog asks before replacing a file; these functions then write
atomically (temporary file + rename) through :func:`~.core.io.images.write_tiff`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .core.io.images import write_tiff


def _tif(path: str) -> Path:
    p = Path(path)
    return p if p.suffix.lower() in (".tif", ".tiff") else p.with_name(p.name + ".tif")


def _axes(arr: np.ndarray, rgb: bool = False) -> str | None:
    if rgb:
        return "YXS" if arr.ndim == 3 else None
    return {2: "YX", 3: "ZYX"}.get(arr.ndim)


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """Labels as an integer TIFF (uint16 when the labels fit, else uint32)."""

    arr = np.asarray(data)
    if arr.size and (arr.min() < 0):
        arr = arr.astype(np.int32)
    else:
        arr = arr.astype(np.uint16 if (arr.max() if arr.size else 0) < 65536 else np.uint32)
    return [str(write_tiff(_tif(path), arr, axes=_axes(arr), overwrite=True))]


def write_image(path: str, data: Any, meta: dict) -> list[str]:
    """An image (e.g. a saliency map) as float32 TIFF, values unchanged."""

    arr = np.asarray(data[0] if meta.get("multiscale") else data).astype(np.float32)
    return [str(write_tiff(_tif(path), arr, axes=_axes(arr, bool(meta.get("rgb"))), overwrite=True))]
