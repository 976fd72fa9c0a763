"""Reading microscopy images into (C, H, W) arrays, with clear errors.

PNG and TIFF (including LZW/deflate/zstd compressed TIFF through ``imagecodecs``),
8/16-bit integer, signed and float data. Layout is detected (HWC, CHW or 2-D) and
``channels`` selects and orders channels. Anything that is not a 2-D image with a few
channels (a 3-D stack, a time series) is refused with a message naming the file.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import InputError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
MAX_CHANNELS = 8
MAX_PIXELS = 20000 * 20000  # beyond this, use tiled/lazy reading (predict --tile)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _read_raw(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if not path.exists():
        raise InputError("file not found", path)
    if path.stat().st_size == 0:
        raise InputError("the file is empty (0 bytes); was the copy interrupted?", path)
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tf:
                series = tf.series[0]
                if int(np.prod(series.shape)) > MAX_PIXELS * MAX_CHANNELS:
                    raise InputError(f"image of shape {series.shape} is too large to load at once; "
                                     "use tiled prediction (rarepheno predict --tile) for such fields", path)
                return series.asarray()
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    except InputError:
        raise
    except Exception as e:  # every decoder has its own error types
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InputError(f"cannot read this image, the file is corrupt, truncated or not an image ({msg})",
                         path) from None


def to_chw(arr: np.ndarray, path: Path | str = "<array>") -> np.ndarray:
    """Bring a 2-D or 3-D array into (C, H, W); refuse stacks and time series."""
    arr = np.squeeze(arr) if arr.ndim > 3 else arr
    if arr.ndim == 2:
        return arr[None]
    if arr.ndim != 3:
        raise InputError(f"expected a 2-D image (optionally with channels) but got an array of shape "
                         f"{arr.shape}: looks like a 3-D stack or time series; save one plane or a "
                         "projection per file", path)
    if arr.shape[-1] <= MAX_CHANNELS and arr.shape[0] > MAX_CHANNELS:
        return np.moveaxis(arr, -1, 0)
    if arr.shape[0] <= MAX_CHANNELS and arr.shape[-1] > MAX_CHANNELS:
        return arr
    if arr.shape[0] <= MAX_CHANNELS and arr.shape[-1] <= MAX_CHANNELS:
        # tiny image: trust the usual PNG/TIFF convention (channels last if 3 or 4)
        return np.moveaxis(arr, -1, 0) if arr.shape[-1] in (3, 4) else arr
    raise InputError(f"array of shape {arr.shape} has {arr.shape[0]} planes: looks like a 3-D stack or a "
                     "time series where a 2-D image is expected; save one plane or a projection per file", path)


def select_channels(chw: np.ndarray, channels: Sequence[int] | None, path: Path | str) -> np.ndarray:
    if channels is None:
        return chw
    n = chw.shape[0]
    bad = [c for c in channels if not -n <= c < n]
    if bad:
        raise InputError(f"--channels {','.join(map(str, channels))} is out of range: the image has {n} "
                         f"channel{'s' if n != 1 else ''} (0..{n - 1})", path)
    return chw[list(channels)]


def to_float(chw: np.ndarray) -> np.ndarray:
    """Scale integer data to [0, 1] (signed: [-1, 1]) by its dtype range; float stays as is."""
    if chw.dtype == np.bool_:
        return chw.astype(np.float32)
    if np.issubdtype(chw.dtype, np.integer):
        info = np.iinfo(chw.dtype)
        return (chw.astype(np.float32) / float(info.max)).astype(np.float32)
    return chw.astype(np.float32, copy=False)


def check_finite(chw: np.ndarray, path: Path | str) -> np.ndarray:
    if np.issubdtype(chw.dtype, np.floating):
        bad = ~np.isfinite(chw)
        if bad.any():
            raise InputError(f"image has {int(bad.sum())} NaN/inf pixels; replace them (e.g. by 0) before "
                             "training or prediction", path)
    return chw


def read_image(path: str | Path, channels: Sequence[int] | None = None, *, min_size: int = 1,
               as_float: bool = True) -> np.ndarray:
    """Read one image file as (C, H, W), selecting ``channels``; float32 in [0, 1] by default."""
    path = Path(path)
    chw = to_chw(_read_raw(path), path)
    chw = select_channels(chw, channels, path)
    check_finite(chw, path)
    h, w = chw.shape[1:]
    if min(h, w) < min_size:
        raise InputError(f"image is {h}x{w} px, smaller than the network's minimum input of "
                         f"{min_size}x{min_size} px", path)
    if np.issubdtype(chw.dtype, np.floating) or chw.dtype.itemsize > 1:
        if chw.size and float(chw.max()) == float(chw.min()):
            warnings.warn(f"{path}: image is constant (every pixel {chw.flat[0]}); it carries no signal",
                          stacklevel=2)
    return to_float(chw) if as_float else chw


def write_tiff(path: str | Path, data: np.ndarray, *, axes: str | None = None, overwrite: bool = False) -> Path:
    """Atomic TIFF write (temp file + rename); refuses to overwrite unless asked."""
    import os
    import tempfile

    import tifffile

    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError("file exists; use --overwrite (CLI) or confirm (GUI) to replace it", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tif.tmp", dir=path.parent)
    os.close(fd)
    try:
        tifffile.imwrite(tmp, data, metadata={"axes": axes} if axes else None,
                         compression="zlib" if data.dtype != np.float32 else None)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
