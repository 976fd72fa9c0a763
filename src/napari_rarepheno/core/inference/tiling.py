"""Tiles: which windows of a big image to run the network on, and how to stitch them.

Tiling (big fields): the image is cut into overlapping tiles whose origins lie on the
class-map grid (multiples of the stride, 8 px). Each class-map unit is taken from the
one tile in which it lies farthest from a tile edge, and only from a tile where it is
unaffected by the zero padding of the inner convolutions ("clean"), so the stitched
class maps equal the untiled ones up to float error; the image probability is the
softmax of their global maximum, which is exactly what a ``head='max'`` network
computes. Saliency gradients of a tile's own units are added into one canvas, which is
again exact. Average and FC heads depend on the whole map at once and are refused.

:class:`LazyImage` wraps anything with ``shape``, ``dtype`` and numpy slicing -- a
``numpy.memmap`` (``tifffile.memmap``), a zarr array, a dask array, an h5py dataset --
as (C, H, W) and reads one window at a time, scaled to [0, 1] like ``io.images.to_float``;
:func:`iter_tiles` walks overlapping windows in row-major order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
from torch import nn

from ..errors import InputError
from .saliency import unit_geometry


# ------------------------------------------------------------ tile plan
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


def check_tiling(model, tile: int, overlap: int | None) -> tuple[int, int]:
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


def tile_spans(n: int, tile: int, overlap: int, stride: int = 1) -> list[tuple[int, int]]:
    """[start, end) windows of about ``tile`` px along an axis of ``n`` px, overlapping by at
    least ``overlap``, starts on multiples of ``stride``, the last ending at ``n``."""
    if tile <= overlap:
        raise InputError(f"tile size {tile} px must be larger than the overlap {overlap} px")
    return plan_tiles(int(n), int(tile), int(overlap), max(1, int(stride)))


@dataclass(frozen=True)
class Tile:
    y0: int
    y1: int
    x0: int
    x1: int


def iter_tiles(image: Any, tile: int, overlap: int = 0, stride: int = 1,
               channels: Sequence[int] | None = None) -> Iterator[tuple[Tile, np.ndarray]]:
    """Yield (window, float32 (C, h, w) pixels) over ``image`` in row-major order, one read each."""
    img = image if isinstance(image, LazyImage) else LazyImage(image, channels)
    _, H, W = img.shape
    for y0, y1 in tile_spans(H, tile, overlap, stride):
        for x0, x1 in tile_spans(W, tile, overlap, stride):
            yield Tile(y0, y1, x0, x1), img.read(y0, y1, x0, x1)


# ------------------------------------------------------------------ reading
class LazyImage:
    """(C, H, W) view of an array-like that reads only the windows asked for.

    ``array``: (H, W) or (C, H, W) with numpy-style slicing (numpy/memmap, zarr, dask,
    h5py). ``channels``: keep only these channels (applied per window, never to the
    whole array)."""

    def __init__(self, array: Any, channels: Sequence[int] | None = None):
        shape = tuple(int(s) for s in array.shape)
        if len(shape) not in (2, 3):
            raise InputError(f"expected a (H, W) or (C, H, W) image, got an array of shape {shape}")
        self.array, self.is_2d = array, len(shape) == 2
        n_ch = 1 if self.is_2d else shape[0]
        self.channels = None if channels is None else [int(c) for c in channels]
        if self.channels is not None and not all(-n_ch <= c < n_ch for c in self.channels):
            raise InputError(f"channels {self.channels} asked for, but the image has {n_ch} channel(s)")
        self.dtype = np.dtype(array.dtype)
        self.shape = (len(self.channels) if self.channels is not None else n_ch,) + shape[-2:]

    def read_raw(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Window [y0:y1, x0:x1] as (C, h, w) in the array's own dtype."""
        win = self.array[y0:y1, x0:x1] if self.is_2d else self.array[:, y0:y1, x0:x1]
        if hasattr(win, "compute"):  # dask
            win = win.compute()
        win = np.asarray(win)
        win = win[None] if self.is_2d else win
        return win[self.channels] if self.channels is not None else win

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Window [y0:y1, x0:x1] as float32 (C, h, w): integers scaled to [0, 1] by their dtype."""
        win = self.read_raw(y0, y1, x0, x1)
        if win.dtype == np.bool_:
            out = win.astype(np.float32)
        elif np.issubdtype(win.dtype, np.integer):
            out = win.astype(np.float32) / np.float32(np.iinfo(win.dtype).max)
        else:
            out = win.astype(np.float32)
            if not np.isfinite(out).all():
                raise InputError(f"image has NaN/inf pixels in rows {y0}-{y1}, columns {x0}-{x1}; replace them "
                                 "(e.g. by 0) before prediction")
        return np.ascontiguousarray(out)
