"""Reading microscopy images into (C, H, W) arrays, with clear errors.

PNG and TIFF (including LZW/deflate/zstd compressed TIFF through ``imagecodecs``),
8/16-bit integer, signed and float data. Layout is detected (HWC, CHW or 2-D) and
``channels`` selects and orders channels. Anything that is not a 2-D image with a few
channels (a 3-D stack, a time series) is refused with a message naming the file.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError, OutputError, ensure_writable_dir
from .atomic import atomic_path

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
MAX_CHANNELS = 8
MAX_PIXELS = 20000 * 20000  # beyond this, use tiled/lazy reading (predict --tile)
# PNG/JPEG are decoded by Pillow restricted to the format their suffix names: a file that
# is really EPS/PDF/... (formats whose decoders call external programs) is refused.
_PIL_FORMATS = {".png": ["PNG"], ".jpg": ["JPEG"], ".jpeg": ["JPEG"]}
_MEMORY_FRACTION = 0.8      # refuse an image whose raw + float32 copies need more of the free RAM


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def available_memory() -> int | None:
    """Bytes of RAM available to this process now (None when the OS does not tell)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _gb(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1e3:.0f} kB"


def check_fits_in_memory(n_values: int, itemsize: int, path: Path | str, what: str = "this image") -> None:
    """Refuse (instead of crashing the machine) data that cannot be held in memory."""
    need = int(n_values) * (int(itemsize) + 4)  # the file's data + its float32 copy
    avail = available_memory()
    if avail is not None and need > _MEMORY_FRACTION * avail:
        raise InputError(f"{what} needs about {_gb(need)} of memory but only {_gb(avail)} is free; "
                         "use smaller images (crop or bin them), fewer images, or a machine with more "
                         "memory; for big fields use tiled prediction (--tile)", path)


def _check_size(shape: Sequence[int], itemsize: int, path: Path) -> None:
    if int(np.prod(shape)) > MAX_PIXELS * MAX_CHANNELS:
        raise InputError(f"image of shape {tuple(shape)} is too large to load at once; "
                         "use tiled prediction (rarepheno predict --tile) for such fields", path)
    check_fits_in_memory(int(np.prod(shape)), itemsize, path, f"image of shape {tuple(shape)}")


_AXIS_NAMES = {"Z": ("a 3-D z-stack", "planes", "one plane or a projection (e.g. maximum intensity)"),
               "T": ("a time series", "frames", "one frame")}


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        if not tf.series:
            raise InputError("cannot read this image, the file is corrupt, truncated or not an image "
                             "(the TIFF holds no image data)", path)
        series = tf.series[0]
        for ax, n in zip(series.axes, series.shape):
            if ax in _AXIS_NAMES and n > 1:
                kind, unit, keep = _AXIS_NAMES[ax]
                raise InputError(f"is {kind} ({n} {unit}, axes {series.axes}, shape {tuple(series.shape)}) where "
                                 f"a 2-D image is expected; save {keep} per file", path)
        _check_size(series.shape, series.dtype.itemsize, path)
        return series.asarray()


def _pil_array(im) -> np.ndarray:
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA" if ("transparency" in im.info or im.mode == "PA") else "RGB")
    elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    return np.asarray(im)


def _read_pil(path: Path, formats: list[str]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path, formats=formats)
        except Image.DecompressionBombError as e:
            raise InputError(f"image is too large to decode safely ({e}); save such fields as TIFF and use "
                             "tiled prediction (--tile)", path) from None
        except UnidentifiedImageError:
            raise InputError(f"cannot read this image: the file is corrupt, truncated or not a "
                             f"{formats[0]} file despite its name", path) from None
        with im:
            bands = len(im.getbands())
            itemsize = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}.get(im.mode, 1)
            _check_size((im.height, im.width, bands), itemsize, path)
            return _pil_array(im)


def _read_raw(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError("is a folder, expected an image file", path)
    if path.stat().st_size == 0:
        raise InputError("the file is empty (0 bytes); was the copy interrupted?", path)
    try:
        if suffix in (".tif", ".tiff"):
            return _read_tiff(path)
        if suffix in _PIL_FORMATS:
            return _read_pil(path, _PIL_FORMATS[suffix])
        raise InputError(f"unsupported image type {suffix or '(no suffix)'}; use "
                         f"{', '.join(IMAGE_SUFFIXES)}", path)
    except InputError:
        raise
    except MemoryError:
        raise InputError("not enough memory to load this image; use smaller images or tiled prediction "
                         "(--tile)", path) from None
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
        raise InputError(f"channels {','.join(map(str, channels))} are out of range: the image has {n} "
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


def is_constant(chw: np.ndarray) -> bool:
    return bool(chw.size) and float(chw.max()) == float(chw.min())


def read_image(path: str | Path, channels: Sequence[int] | None = None, *, min_size: int = 1,
               as_float: bool = True, warn_constant: bool = True) -> np.ndarray:
    """Read one image file as (C, H, W), selecting ``channels``; float32 in [0, 1] by default.

    A constant image (every pixel equal) is accepted with a warning: a blank field is real
    data in a screen, and normalisation guards against its zero spread."""
    path = Path(path)
    chw = to_chw(_read_raw(path), path)
    chw = select_channels(chw, channels, path)
    check_finite(chw, path)
    h, w = chw.shape[1:]
    if min(h, w) < min_size:
        raise InputError(f"image is {h}x{w} px, smaller than the network's minimum input of "
                         f"{min_size}x{min_size} px (its receptive field); use larger images or pad them", path)
    if warn_constant and is_constant(chw):
        warnings.warn(f"{path}: image is constant (every pixel {chw.flat[0]}); it carries no signal",
                      stacklevel=2)
    return to_float(chw) if as_float else chw


def write_tiff(path: str | Path, data: np.ndarray, *, axes: str | None = None, overwrite: bool = False) -> Path:
    """Atomic TIFF write (temp file + rename); refuses to overwrite unless asked.

    On failure (disk full, folder not writable) the temp file is removed, an existing
    file is left as it was, and an :class:`OutputError` names the file."""
    import tifffile  # deferred: only writers need it

    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputError("file exists; use --overwrite (CLI) or confirm (GUI) to replace it", path)
    ensure_writable_dir(path.parent)
    with atomic_path(path, "the image") as tmp:
        tifffile.imwrite(tmp, data, metadata={"axes": axes} if axes else None,
                         compression="zlib" if data.dtype != np.float32 else None)
    return path


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 grayscale (HxW) or RGB (HxWx3) array as PNG (libpng via imagecodecs).

    Uses OpenCV's fast settings (zlib level 1, RLE strategy, SUB filter): several
    times faster than the defaults and, for noisy microscopy-like images, no larger.
    """
    import imagecodecs  # deferred (a declared dependency, slow to import); releases the GIL

    data = imagecodecs.png_encode(np.ascontiguousarray(image), level=1, strategy=3, filter=16)
    Path(path).write_bytes(data)


def read_png(path: str | Path) -> np.ndarray:
    """Read a PNG as a numpy array (uint8 for 8-bit files)."""
    import imagecodecs  # deferred, as in write_png

    try:
        return np.asarray(imagecodecs.png_decode(Path(path).read_bytes()))
    except Exception as exc:  # a missing file, a truncated or non-PNG file
        raise InputError(f"cannot read image {path}: {exc}", path) from exc
