"""DeepLoc-layout HDF5 crops -> the same :class:`ImageSet` as the class-folder loader.

Layout (Kraus et al. 2017, DeepLoc; also used for the DeepYeast data):

* ``data1``: (N, C*S*S) one crop per row, the channels flattened one after another
  (all of channel 0 row-major, then all of channel 1 ...), S = 64 by default;
* ``Index1``: (N, K) one-hot labels (the argmax of a row is its class);
* class names from an attribute (``class_names`` / ``classes`` / ``labels`` on ``Index1``
  or on the file), else from ``class_names=`` (``--classes``), else ``class_0`` ...;
* optional ``groups`` (or ``protein``) dataset: one group key per crop.

Integer data are scaled by their dtype range exactly as image files are
(``imageio.to_float``), so a crop stored here and as a PNG/TIFF gives the same tensor.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..progress import ProgressCallback, report_items
from .folders import ImageSet
from .images import select_channels, to_float

H5_SUFFIXES = (".h5", ".hdf5", ".hdf")
_NAME_ATTRS = ("class_names", "classes", "labels", "label_names")
_GROUP_SETS = ("groups", "protein", "proteins")


def is_h5(path: str | Path) -> bool:
    p = Path(path)
    return p.suffix.lower() in H5_SUFFIXES and not p.is_dir()


def _decode(values) -> list[str]:
    out = []
    for v in np.atleast_1d(np.asarray(values)).ravel():
        out.append(v.decode("utf-8") if isinstance(v, (bytes, np.bytes_)) else str(v))
    return out


def _names_from_attrs(f, index) -> list[str] | None:
    for obj in (index, f):
        for key in _NAME_ATTRS:
            if key in obj.attrs:
                names = _decode(obj.attrs[key])
                if len(names) == 1 and "," in names[0]:
                    names = [n.strip() for n in names[0].split(",")]
                return names
    return None


def load_deeploc_h5(path: str | Path, class_names: Sequence[str] | None = None, *,
                    channels: Sequence[int] | None = None, size: int = 64,
                    data_key: str = "data1", index_key: str = "Index1", callback: ProgressCallback = None,
                    chunk: int = 4096, fallback_names: Sequence[str] | None = None) -> ImageSet:
    """Read a DeepLoc-layout HDF5 file into (N, C, size, size) float32 crops with labels.

    ``class_names`` override the stored names; ``fallback_names`` (e.g. a model's classes)
    are used only when the file stores none and their number matches the label columns."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise InputError("HDF5 file not found", path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(f"cannot open as HDF5 ({str(e).splitlines()[0]})", path) from None
    with f:
        missing = [k for k in (data_key, index_key) if k not in f]
        if missing:
            raise InputError(f"no dataset {' or '.join(repr(m) for m in missing)} (a DeepLoc-layout file has "
                             f"'{data_key}' crops and '{index_key}' one-hot labels; found: "
                             f"{', '.join(sorted(f.keys())) or 'nothing'})", path)
        data, index = f[data_key], f[index_key]
        if data.ndim != 2 or index.ndim != 2:
            raise InputError(f"'{data_key}' must be (N, C*{size}*{size}) and '{index_key}' (N, K) one-hot; "
                             f"got {data.shape} and {index.shape}", path)
        n, d = data.shape
        if index.shape[0] != n:
            raise InputError(f"'{data_key}' has {n} crops but '{index_key}' has {index.shape[0]} label rows; "
                             "the two must have one row per crop", path)
        plane = size * size
        if d % plane:
            raise InputError(f"rows of '{data_key}' have {d} values, not a whole number of {size}x{size} "
                             f"channels ({plane} values each); is the crop size {size}?", path)
        n_ch = d // plane
        onehot = np.asarray(index[()])
        names = _names_from_attrs(f, index)
        groups = None
        for key in _GROUP_SETS:
            if key in f:
                if f[key].shape[:1] != (n,):  # silently dropping it would make every crop its own protein
                    raise InputError(f"'{key}' has {f[key].shape[0] if f[key].shape else 0} entries but "
                                     f"'{data_key}' has {n} crops; give one group per crop", path)
                groups = _decode(f[key][()])
                break
        images = np.empty((n, len(channels) if channels else n_ch, size, size), np.float32)
        for s in range(0, n, chunk):
            block = np.asarray(data[s:s + chunk]).reshape(-1, n_ch, size, size)
            if np.issubdtype(block.dtype, np.floating) and not np.all(np.isfinite(block)):
                raise InputError(f"'{data_key}' has NaN/inf values in rows {s}..{s + len(block) - 1}", path)
            block = np.stack([select_channels(b, channels, path) for b in block]) if channels else block
            images[s:s + len(block)] = to_float(block)
            report_items(callback, min(s + chunk, n), n)
    k = onehot.shape[1]
    labels = onehot.argmax(1).astype(np.int64)
    bad = np.flatnonzero(~np.isclose(onehot.max(1), 1.0) | (np.abs(onehot).sum(1) > 1 + 1e-6))
    if len(bad):
        raise InputError(f"'{index_key}' must be one-hot; {len(bad)} row(s) are not, e.g. row {bad[0]}: "
                         f"{onehot[bad[0]].tolist()}", path)
    if class_names:
        names = list(class_names)
    if names is None and fallback_names is not None and len(fallback_names) == k:
        names = list(fallback_names)
    if names is None:
        names = [f"class_{i}" for i in range(k)]
        warnings.warn(f"{path}: no class names stored; calling the {k} classes class_0..class_{k - 1} "
                      "(give names with --classes)", stacklevel=2)
    if len(names) != k:
        raise InputError(f"{len(names)} class names ({', '.join(names)}) for {k} label columns in "
                         f"'{index_key}'", path)
    paths = [path] * n
    return ImageSet(images, labels, list(names), paths, groups or [f"row{i}" for i in range(n)], path)


def write_deeploc_h5(path: str | Path, images: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                     groups: Sequence[str] | None = None) -> Path:
    """Write (N, C, S, S) crops and integer labels in the DeepLoc layout (for tests and exchange)."""
    import h5py

    images = np.asarray(images)
    if images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise InputError(f"images must be (N, C, S, S), got {images.shape}", path)
    labels = np.asarray(labels, dtype=np.int64)
    onehot = np.zeros((len(labels), len(class_names)), np.float32)
    onehot[np.arange(len(labels)), labels] = 1
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("data1", data=images.reshape(len(images), -1))
        ds = f.create_dataset("Index1", data=onehot)
        ds.attrs["class_names"] = np.array([str(c) for c in class_names], dtype=h5py.string_dtype())
        if groups is not None:
            f.create_dataset("groups", data=np.array([str(g) for g in groups], dtype=h5py.string_dtype()))
    return path
