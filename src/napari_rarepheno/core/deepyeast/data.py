"""DeepYeast inputs: options, the one crop loader, sizing, scaling and validation splits.

:func:`load_crops` reads class folders (``ROOT/<class>/<file>``, multi-channel files or
``channel_files`` pairs, groups from the name, a regex or a CSV) or a DeepLoc-layout
HDF5 file, and brings the crops to the network's ``input_size`` (centre-crop / pad).
:func:`holdout` splits off a validation set by position/region/group or at random.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..datasets.splits import (
    parse_cell_name,
    random_split,
    split_by_group,
    track_regions,
)
from ..errors import InputError
from ..io.deeploc_h5 import is_h5, load_deeploc_h5
from ..io.folders import ImageSet, load_class_folders
from ..progress import ProgressCallback
from ..training.augment import AugmentConfig


@dataclass
class DeepYeastOptions:
    """How crops are read and the network built (the rest comes from the data)."""

    channels: list[int] | None = None
    channel_files: list[str] | None = None
    group_regex: str | None = None
    groups_csv: str | None = None
    classes: list[str] | None = None               # class names for HDF5 files without them
    model_classes: list[str] | None = None         # a model's classes: HDF5 fallback when counts match
    val_split: str | None = "position"             # used without val_dir: 'position' | 'random' | None
    val_fraction: float = 0.15
    clip_percentiles: tuple[float, float] | None = None
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig.deepyeast().with_intensity())
    input_size: int = 64
    width: float = 1.0                             # < 1 shrinks every layer (tests, demos); 1 = paper
    crop_scale: str | None = "percentile"          # 'percentile': each crop's channels scaled | None (paper)
    scale_percentiles: tuple[float, float] = (1.0, 99.8)  # ... from these percentiles to 0..1 (model-stored)
    channel_names: list[str] | None = None         # what each channel is ("H2B", "tubulin"), kept in the model
    smooth: float = 1.0                            # Gaussian sigma (px) on each crop before scaling (model-stored)


# ------------------------------------------------------------------------ loading
def fit_size(images: np.ndarray, size: int, where=None) -> np.ndarray:
    """Centre-crop or zero-pad (N, C, H, W) crops to (N, C, size, size)."""
    h, w = images.shape[2:]
    if (h, w) == (size, size):
        return images
    warnings.warn(f"{where or 'crops'}: crops are {h}x{w} px, the network takes {size}x{size}; "
                  "centre-cropping/padding them", stacklevel=3)
    out = np.zeros(images.shape[:2] + (size, size), images.dtype)
    sy, sx = max(0, (h - size) // 2), max(0, (w - size) // 2)
    dy, dx = max(0, (size - h) // 2), max(0, (size - w) // 2)
    ch, cw = min(h, size), min(w, size)
    out[:, :, dy:dy + ch, dx:dx + cw] = images[:, :, sy:sy + ch, sx:sx + cw]
    return out


def load_crops(path: str | Path, opts: DeepYeastOptions | None = None, callback: ProgressCallback = None) -> ImageSet:
    """Crops of a class-folder tree or a DeepLoc HDF5 file, sized to ``opts.input_size``."""
    opts = opts or DeepYeastOptions()
    if is_h5(path):
        data = load_deeploc_h5(path, opts.classes, channels=opts.channels, size=opts.input_size,
                               callback=callback, fallback_names=opts.model_classes)
    else:
        data = load_class_folders(path, channels=opts.channels, channel_files=opts.channel_files,
                                  group_regex=opts.group_regex, groups_csv=opts.groups_csv, callback=callback)
    data.images = fit_size(data.images, opts.input_size, path)
    return data


def align_labels(data: ImageSet, class_names: Sequence[str]) -> ImageSet:
    """Re-index ``data.labels`` to ``class_names`` (a test set may hold a subset of the classes)."""
    index = {c: i for i, c in enumerate(class_names)}
    unknown = [c for c in data.class_names if c not in index]
    if unknown:
        raise InputError(f"class(es) {', '.join(unknown)} are not known to the model (it knows "
                         f"{', '.join(class_names)})", data.root)
    lut = np.array([index[c] for c in data.class_names], np.int64)
    data.labels, data.class_names = lut[data.labels], list(class_names)
    return data


def split_keys(data: ImageSet) -> list[str]:
    """Blocks that must stay on one side of a split: field regions (linked over time) for
    ``P<pos>_T<t>_X<x>_Y<y>`` names, otherwise the groups (protein / well / position)."""

    names = [p.name for p in data.paths]
    if names and all(parse_cell_name(n) for n in names):
        return track_regions(names)
    return list(data.groups) if data.groups else [str(i) for i in range(len(data))]


def holdout(data: ImageSet, how: str, fraction: float, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """(train, val): whole positions/regions/groups (``how='position'``) or cells at random."""

    if not 0 < fraction < 1:
        raise InputError(f"validation fraction must be between 0 and 1, got {fraction}")
    idx, lab = list(range(len(data))), data.labels
    parts = dict(fractions=(1 - fraction, fraction), seed=seed, splits=("train", "val"),
                 class_of=lambda i: int(lab[i]))
    if how == "random":
        got = random_split(idx, **parts)
    elif how == "position":
        keys = split_keys(data)
        if len(set(keys)) < 2:
            raise InputError(f"--val-split position needs crops from at least 2 groups/positions, all are "
                             f"'{keys[0]}'; give --val VAL, --group-regex or --val-split random", data.root)
        got = split_by_group(idx, lambda i: keys[i], **parts)
    else:
        raise InputError(f"val split must be 'position', 'random' or none, got {how!r}")
    if not got["val"] or not got["train"]:
        raise InputError("too few crops/groups to hold out a validation set; give --val VAL", data.root)
    return data.subset(got["train"]), data.subset(got["val"])
