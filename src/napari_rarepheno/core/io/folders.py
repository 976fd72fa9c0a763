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

from ..errors import CHOOSE_CHANNELS, InputError
from ..progress import ProgressCallback, report_items
from .images import (
    IMAGE_SUFFIXES,
    check_fits_in_memory,
    is_constant,
    is_image_file,
    read_image,
    select_channels,
    to_float,
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
            images = pair_channel_files(folder, images, channel_files)
        out[cls] = images
    empty = [c for c, f in out.items() if not f]
    if empty:
        raise InputError(f"class folder(s) {', '.join(e + '/' for e in empty)} contain no images", root)
    return out


_REGEX_CHARS = set("^$*+?[](){}|\\")


def token_pattern(token: str) -> re.Pattern:
    """A channel token: a regex when it uses regex syntax, else a literal substring."""
    try:
        return re.compile(token if _REGEX_CHARS & set(token) else re.escape(token), re.IGNORECASE)
    except re.error as e:
        raise InputError(f"channel file pattern {token!r} is not a valid regular expression ({e})") from None


def pair_channel_files(folder: Path, files: Sequence[Path], tokens: Sequence[str]) -> list[tuple[Path, ...]]:
    """Group one-file-per-channel images: ``tokens`` name each channel's file by a substring
    (``_Crfp``, ``_Cgfp``) or a regex, anywhere in the file name; files whose names are equal
    once the token is taken out belong to one image, in the order of ``tokens``. Files that
    match no token are left out (label images, notes); an image missing a channel is an error."""
    pats = [token_pattern(t) for t in tokens]
    groups: dict[str, dict[int, Path]] = {}
    order: list[str] = []
    for p in files:
        hits = [(k, m) for k, pat in enumerate(pats) if (m := pat.search(p.name))]
        if not hits:
            continue
        if len(hits) > 1:
            raise InputError(f"channel files {','.join(tokens)}: the name matches several channels "
                             f"({', '.join(tokens[k] for k, _ in hits)}); make the patterns more specific", p)
        k, m = hits[0]
        key = p.name[:m.start()] + "\0" + p.name[m.end():]
        if key not in groups:
            groups[key] = {}
            order.append(key)
        if k in groups[key]:
            raise InputError(f"channel files {','.join(tokens)}: {groups[key][k].name} and {p.name} are the same "
                             "channel of one image", folder)
        groups[key][k] = p
    incomplete = [(key, g) for key, g in groups.items() if len(g) != len(tokens)]
    if incomplete:
        key, g = incomplete[0]
        have = next(iter(g.values())).name
        missing = [tokens[k] for k in range(len(tokens)) if k not in g]
        raise InputError(f"channel files {','.join(tokens)}: unpaired file {have}: no matching file for channel(s) "
                         f"{', '.join(missing)} ({len(incomplete)} image(s) incomplete)", folder)
    if not groups and files:
        raise InputError(f"channel files {','.join(tokens)}: no file name contains {tokens[0]!r} "
                         f"(e.g. {files[0].name})", folder)
    return [tuple(groups[key][k] for k in range(len(tokens))) for key in order]


def read_entry(entry, channels=None, min_size: int = 1, as_float: bool = True) -> np.ndarray:
    """One image as (C, H, W): a file, or a tuple of one single-channel file per channel
    (``as_float=False`` keeps the files' dtype when they share one, else scales each to [0, 1])."""
    if isinstance(entry, tuple):  # one file per channel
        planes = [read_image(p, min_size=min_size, warn_constant=False, as_float=False) for p in entry]
        for p, pl in zip(entry, planes):
            if pl.shape[0] != 1:
                raise InputError(f"channel files must hold one channel each; this one has {pl.shape[0]}", p)
            if pl.shape[1:] != planes[0].shape[1:]:
                raise InputError(f"channel files differ in size: {pl.shape[1:]} vs {planes[0].shape[1:]} "
                                 f"in {entry[0].name}", p)
        if as_float or len({pl.dtype for pl in planes}) > 1:
            planes = [to_float(pl) for pl in planes]
        img = np.concatenate(planes, 0)
        if channels is not None:
            img = select_channels(img, channels, entry[0])
        return img
    return read_image(entry, channels, min_size=min_size, warn_constant=False, as_float=as_float)


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
        img = read_entry(entry, channels, min_size)
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
                         + CHOOSE_CHANNELS, root)
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


def drop_empty_channels(data: ImageSet, channels: Sequence[int] | None) -> tuple[ImageSet, list[int] | None]:
    """With no channel selection given, drop the channels that are zero in every image (the
    empty blue of an RGB file): a model must never demand a channel nobody records. Returns
    the data and the selection to keep in the model (indices into the files' channels; None
    when all are kept). A selection the user gave is kept as it is."""
    if channels is not None or data.n_channels < 2:
        return data, None if channels is None else list(channels)
    keep = [c for c in range(data.n_channels) if np.any(data.images[:, c])]
    if not keep or len(keep) == data.n_channels:
        return data, None
    warnings.warn(f"{data.root}: channel(s) {', '.join(str(c) for c in range(data.n_channels) if c not in keep)} "
                  f"are empty in every image and are not used; the model takes channels {keep} of these files",
                  stacklevel=2)
    data.images = np.ascontiguousarray(data.images[:, keep])
    return data, keep


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
                     callback: ProgressCallback = None, channel_files: Sequence[str] | None = None) -> ImageSet:
    folder = Path(folder)
    missing = [c for c in WSCNN_CLASSES if not (folder / c).is_dir()]
    if missing:
        raise InputError(f"missing {' and '.join(m + '/' for m in missing)} (a WSCNN split needs negative/ "
                         "and positive/ folders of images)", folder)
    return load_class_folders(folder, WSCNN_CLASSES, channels=channels, min_size=min_size, callback=callback,
                              channel_files=channel_files)
