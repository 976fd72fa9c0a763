"""Labeled image folders -> in-memory arrays, one loader for every entry point.

Layouts:
* WSCNN: ``DATA/{train,val,test}/{negative,positive}/*.{tif,tiff,png}`` (or
  ``DATA/{negative,positive}`` without splits).
* Class folders (DeepYeast): ``ROOT/<class>/<file>``; one multi-channel file per crop, or
  one file per channel paired by a channel token (``channel_files=("rfp", "gfp")`` pairs
  ``X_rfp.tif`` with ``X_gfp.tif``).

Non-image files (notes, ``Thumbs.db``...) and subfolders inside a class folder are skipped
with a warning naming them (never opened, never executed); hidden files are ignored.
Unreadable images stop the load with a message naming the file (nothing is half-loaded).
Constant and duplicated images are loaded and reported in one warning each.
"""
from __future__ import annotations

import csv
import hashlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..progress import ProgressCallback, report_items
from .images import (
    IMAGE_SUFFIXES,
    check_fits_in_memory,
    is_constant,
    is_image_file,
    read_image,
    select_channels,
)

SPLITS = ("train", "val", "test")
WSCNN_CLASSES = ("negative", "positive")


@dataclass
class ImageSet:
    """Images of one split: ``images`` is (N, C, H, W) float32 (or uint8 when every file is 8-bit)."""

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    paths: list[Path]
    groups: list[str] = field(default_factory=list)
    root: Path | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_channels(self) -> int:
        return int(self.images.shape[1])

    def subset(self, idx) -> "ImageSet":
        idx = np.asarray(idx, dtype=int)
        return ImageSet(self.images[idx], self.labels[idx], list(self.class_names),
                        [self.paths[i] for i in idx], [self.groups[i] for i in idx] if self.groups else [],
                        self.root)

    def relpath(self, i: int) -> str:
        p = self.paths[i]
        return p.relative_to(self.root).as_posix() if self.root and p.is_relative_to(self.root) else p.name


def parse_channels(text: str | Sequence[int] | None) -> list[int] | None:
    if text is None or text == "":
        return None
    if isinstance(text, str):
        try:
            return [int(t) for t in text.replace(" ", "").split(",") if t != ""]
        except ValueError:
            raise InputError(f"--channels must be comma-separated integers like 0,1, got {text!r}") from None
    return [int(c) for c in text]


def list_class_files(root: Path, class_names: Sequence[str] | None = None,
                     channel_files: Sequence[str] | None = None) -> dict[str, list[Path | tuple[Path, ...]]]:
    """Files per class folder; with ``channel_files`` each entry is a tuple of per-channel files."""
    root = Path(root)
    if not root.exists():
        raise InputError("folder not found", root)
    if not root.is_dir():
        raise InputError("expected a folder of class subfolders, got a file", root)
    if class_names is None:
        class_names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not class_names:
            raise InputError("the folder has no class subfolders (expected ROOT/<class>/<images>)", root)
    out: dict[str, list] = {}
    for cls in class_names:
        folder = root / cls
        if not folder.is_dir():
            raise InputError(f"missing class folder '{cls}/' (found: "
                             f"{sorted(p.name for p in root.iterdir() if p.is_dir()) or 'nothing'})", root)
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        files = [p for p in entries if p.is_file()]
        images = [p for p in files if is_image_file(p)]
        skipped = [p.name for p in files if not is_image_file(p)]
        if skipped:
            warnings.warn(f"{folder}: skipped {len(skipped)} non-image file(s): {', '.join(skipped[:5])}"
                          f"{' ...' if len(skipped) > 5 else ''} (only {', '.join(IMAGE_SUFFIXES)} are read)",
                          stacklevel=2)
        subdirs = [p.name for p in entries if p.is_dir()]
        if subdirs:
            warnings.warn(f"{folder}: ignored {len(subdirs)} subfolder(s): {', '.join(subdirs[:5])}; images "
                          "must sit directly in the class folder", stacklevel=2)
        if channel_files:
            images = _pair_channel_files(folder, images, channel_files)
        out[cls] = images
    empty = [c for c, f in out.items() if not f]
    if empty:
        raise InputError(f"class folder(s) {', '.join(e + '/' for e in empty)} contain no images", root)
    return out


def _pair_channel_files(folder: Path, files: list[Path], tokens: Sequence[str]) -> list[tuple[Path, ...]]:
    first = tokens[0]
    pat = re.compile(rf"(.*)([_\-.]){re.escape(first)}$", re.IGNORECASE)
    pairs, orphans = [], []
    by_name = {p.name: p for p in files}
    for p in files:
        m = pat.match(p.stem)
        if not m:
            continue
        group = []
        for tok in tokens:
            name = f"{m.group(1)}{m.group(2)}{tok}{p.suffix}"
            if name not in by_name:
                orphans.append(f"{p.name} has no matching '{name}'")
                break
            group.append(by_name[name])
        else:
            pairs.append(tuple(group))
    if orphans:
        raise InputError(f"--channel-files {','.join(tokens)}: unpaired file(s): {'; '.join(orphans[:3])}", folder)
    if not pairs and files:
        raise InputError(f"--channel-files {','.join(tokens)}: no file name ends in _{first} "
                         f"(e.g. {files[0].name})", folder)
    return pairs


def _read_entry(entry, channels, min_size) -> np.ndarray:
    if isinstance(entry, tuple):  # one file per channel
        planes = [read_image(p, min_size=min_size, warn_constant=False) for p in entry]
        for p, pl in zip(entry, planes):
            if pl.shape[0] != 1:
                raise InputError(f"--channel-files expects single-channel files, this one has {pl.shape[0]}", p)
            if pl.shape[1:] != planes[0].shape[1:]:
                raise InputError(f"channel files differ in size: {pl.shape[1:]} vs {planes[0].shape[1:]} "
                                 f"in {entry[0].name}", p)
        img = np.concatenate(planes, 0)
        if channels is not None:
            img = select_channels(img, channels, entry[0])
        return img
    return read_image(entry, channels, min_size=min_size, warn_constant=False)


def group_of(path: Path, group_regex: str | None = None, table: dict[str, str] | None = None) -> str:
    """Group (protein / well) of a file: CSV table, a regex's first group, or the prefix before '_'."""
    if table is not None:
        return table.get(path.name, table.get(path.as_posix(), path.stem.split("_")[0]))
    if group_regex:
        m = re.search(group_regex, path.name)
        if not m:
            raise InputError(f"--group-regex {group_regex!r} does not match this file name", path)
        return m.group(1) if m.groups() else m.group(0)
    return path.stem.split("_")[0]


def read_groups_csv(path: Path) -> dict[str, str]:
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as e:
        raise InputError(f"cannot read the groups table ({e.strerror})", path) from None
    if not rows or not {"file", "group"} <= set(rows[0]):
        found = list(rows[0]) if rows else []
        raise InputError(f"groups CSV needs the columns file,group (found: {', '.join(found) or 'no rows'})", path)
    return {r["file"]: r["group"] for r in rows}


def load_class_folders(root: str | Path, class_names: Sequence[str] | None = None, *,
                       channels: Sequence[int] | None = None, channel_files: Sequence[str] | None = None,
                       group_regex: str | None = None, groups_csv: str | Path | None = None,
                       min_size: int = 1, min_per_class: int = 1, min_classes: int = 1,
                       callback: ProgressCallback = None) -> ImageSet:
    """Load every image of ``ROOT/<class>/`` into one (N, C, H, W) array.

    Images of different sizes are padded (bottom/right, zeros) to the largest with a warning.
    Constant images and duplicated images (identical pixels, e.g. one file copied into two
    class folders) are loaded but reported in one warning each. ``min_classes=2`` is for
    training a classifier (one class folder alone cannot teach anything).
    """
    root = Path(root)
    files = list_class_files(root, class_names, channel_files)
    class_names = list(files)
    if len(class_names) < min_classes:
        raise InputError(f"found only {len(class_names)} class folder(s) ({', '.join(c + '/' for c in class_names)}); "
                         f"training needs at least {min_classes} classes, one subfolder of images each", root)
    few = [f"{c}/ has {len(v)}" for c, v in files.items() if len(v) < min_per_class]
    if few:
        raise InputError(f"need at least {min_per_class} images per class for this step: {', '.join(few)}", root)
    table = read_groups_csv(Path(groups_csv)) if groups_csv else None
    arrays, labels, paths = [], [], []
    constant: list[Path] = []
    seen: dict[bytes, int] = {}
    dups: list[tuple[int, int]] = []
    entries = [(ci, e) for ci, c in enumerate(class_names) for e in files[c]]
    for k, (ci, entry) in enumerate(entries):
        img = _read_entry(entry, channels, min_size)
        path = entry[0] if isinstance(entry, tuple) else entry
        if k == 0:  # refuse a folder that cannot fit in memory before reading all of it
            check_fits_in_memory(len(entries) * img.size, 4, root,
                                 f"{len(entries)} images of {img.shape[0]}x{img.shape[1]}x{img.shape[2]}")
        if is_constant(img):
            constant.append(path)
        else:
            h = hashlib.blake2b(str(img.shape).encode(), digest_size=16)
            h.update(np.ascontiguousarray(img).tobytes())
            key = h.digest()
            if key in seen:
                dups.append((seen[key], k))
            else:
                seen[key] = k
        arrays.append(img)
        labels.append(ci)
        paths.append(path)
        report_items(callback, k + 1, len(entries))
    _warn_constant_and_duplicates(root, constant, dups, paths, labels, class_names)
    nch = {a.shape[0] for a in arrays}
    if len(nch) > 1:
        counts = {n: next(p for p, a in zip(paths, arrays) if a.shape[0] == n) for n in nch}
        detail = "; ".join(f"{n} channel(s), e.g. {p}" for n, p in sorted(counts.items()))
        raise InputError(f"images have different channel counts ({detail}); mixing RGB and grayscale? "
                         "choose channels with --channels", root)
    images = stack_padded(arrays, paths)
    groups = [group_of(p, group_regex, table) for p in paths]
    return ImageSet(images, np.asarray(labels, dtype=np.int64), class_names, paths, groups, root)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _warn_constant_and_duplicates(root, constant, dups, paths, labels, class_names) -> None:
    if constant:
        warnings.warn(f"{root}: {len(constant)} constant image(s) (every pixel equal, no signal): "
                      f"{', '.join(_rel(p, root) for p in constant[:5])}{' ...' if len(constant) > 5 else ''}",
                      stacklevel=3)
    if dups:
        clash = [(a, b) for a, b in dups if labels[a] != labels[b]]
        shown = (clash or dups)[:3]
        pairs = "; ".join(f"{_rel(paths[a], root)} = {_rel(paths[b], root)}" for a, b in shown)
        if clash:
            warnings.warn(f"{root}: {len(clash)} image(s) appear in two class folders with identical pixels "
                          f"(contradicting labels): {pairs}; remove the wrong copy", stacklevel=3)
        else:
            warnings.warn(f"{root}: {len(dups)} duplicated image(s) (identical pixels): {pairs}", stacklevel=3)


def stack_padded(arrays: list[np.ndarray], paths: list[Path]) -> np.ndarray:
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) == 1:
        return np.stack(arrays).astype(np.float32, copy=False)
    H = max(s[0] for s in shapes)
    W = max(s[1] for s in shapes)
    warnings.warn(f"images differ in size ({len(shapes)} sizes, e.g. {paths[0].name} is "
                  f"{arrays[0].shape[1]}x{arrays[0].shape[2]}); padding all to {H}x{W}", stacklevel=3)
    out = np.zeros((len(arrays), arrays[0].shape[0], H, W), np.float32)
    for i, a in enumerate(arrays):
        out[i, :, : a.shape[1], : a.shape[2]] = a
    return out


def find_splits(data: str | Path) -> dict[str, Path]:
    """The split folders of a WSCNN data set; a folder without splits counts as 'train' only."""
    data = Path(data)
    if not data.is_dir():
        raise InputError("data folder not found" if not data.exists() else "expected a folder", data)
    found = {s: data / s for s in SPLITS if (data / s).is_dir()}
    if found:
        return found
    present = [c for c in WSCNN_CLASSES if (data / c).is_dir()]
    if len(present) == len(WSCNN_CLASSES):
        return {"train": data}
    if present:
        missing = [c + "/" for c in WSCNN_CLASSES if c not in present]
        raise InputError(f"only one class: found {present[0]}/ but no {' or '.join(missing)}; a WSCNN data set "
                         "needs both negative/ and positive/ image folders", data)
    subs = sorted(p.name for p in data.iterdir() if p.is_dir())
    raise InputError("expected train/ val/ test/ subfolders, or negative/ and positive/ class folders "
                     f"(found: {', '.join(subs) or 'nothing'})", data)


def load_wscnn_split(folder: str | Path, channels: Sequence[int] | None = None, min_size: int = 1,
                     callback: ProgressCallback = None) -> ImageSet:
    folder = Path(folder)
    missing = [c for c in WSCNN_CLASSES if not (folder / c).is_dir()]
    if missing:
        raise InputError(f"missing {' and '.join(m + '/' for m in missing)} (a WSCNN split needs negative/ "
                         "and positive/ folders of images)", folder)
    return load_class_folders(folder, WSCNN_CLASSES, channels=channels, min_size=min_size, callback=callback)
