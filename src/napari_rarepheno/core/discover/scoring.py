"""Streaming batch scoring: class probabilities for many image files, a batch at a time.

Only ``batch_size`` images are in memory at once: files are read lazily, consecutive
images of the same size are stacked into a batch, the network scores the batch and
the caller gets one ``(path, probabilities)`` pair per file, in input order. Works for
both networks: a WSCNN scores whole fields (any size), DeepYeast scores crops (resized
around their centre to its input size).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..deepyeast.classify import classify_crops
from ..device import resolve_device
from ..errors import InputError
from ..inference.predict import classify_batch
from ..io.files import entry_path, image_entries
from ..io.folders import pair_channel_files, read_entry
from ..io.images import is_image_file
from ..io.modelfile import as_loaded
from ..progress import CancelToken, ProgressCallback, report_items

SCORES = ("probability", "entropy")


@dataclass
class LabeledFile:
    """One image and the class folder it sits in ('' when unlabeled)."""

    path: Path
    label: str = ""
    split: str = ""
    channels: tuple[Path, ...] | None = None   # one file per channel (``path`` is the first)

    @property
    def entry(self):
        return self.channels if self.channels else self.path


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))


def _labeled(entries, label: str, split: str = "") -> list[LabeledFile]:
    return [LabeledFile(entry_path(e), label, split, e if isinstance(e, tuple) else None) for e in entries]


def labeled_files(root: str | Path, class_names: Sequence[str],
                  channel_files: Sequence[str] | None = None) -> list[LabeledFile]:
    """Every image of ``root/<class>/`` for the model's classes; ``root`` may also be a data
    folder with ``train/ val/ test/`` splits (each split's class folders are read)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("folder not found" if not root.exists() else "expected a folder", root)
    subs = {p.name for p in root.iterdir() if p.is_dir()}
    if subs & set(class_names):
        splits = [("", root)]
    else:
        splits = [(s, root / s) for s in ("train", "val", "test") if s in subs]
        splits = [(s, d) for s, d in splits if {p.name for p in d.iterdir() if p.is_dir()} & set(class_names)]
    if not splits:
        raise InputError(f"expected class folders named like the model's classes ({', '.join(class_names)}) "
                         f"or train/ val/ test/ splits holding them (found: {', '.join(sorted(subs)) or 'nothing'})",
                         root)
    out: list[LabeledFile] = []
    for split, folder in splits:
        others = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in class_names
                        and not p.name.startswith("."))
        if others:
            raise InputError(f"class folder(s) {', '.join(o + '/' for o in others)} are not classes of the model "
                             f"({', '.join(class_names)}); move them out or use a model that knows them", folder)
        for c in class_names:
            if (folder / c).is_dir():
                files = _images_in(folder / c)
                entries = pair_channel_files(folder / c, files, channel_files) if channel_files else files
                out += _labeled(entries, c, split)
    if not out:
        raise InputError("no images in the class folders", root)
    return out


def folder_files(inputs: Sequence[str | Path], class_names: Sequence[str] = (),
                 channel_files: Sequence[str] | None = None) -> list[LabeledFile]:
    """Images of files/folders (recursive; one file per channel with ``channel_files``); the
    label is the parent folder's name when that is a class of the model (so a ranking of a
    labeled folder shows the labels)."""
    out = []
    for e in image_entries([Path(p) for p in inputs], channel_files):
        parent = entry_path(e).parent.name
        out += _labeled([e], parent if parent in class_names else "")
    return out


def entropy(probs: np.ndarray) -> np.ndarray:
    """Normalised entropy in [0, 1] of each row of (N, K) probabilities."""
    p = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    k = p.shape[1]
    return (-(p * np.log(p)).sum(1) / np.log(k)) if k > 1 else np.zeros(len(p))


def read_for_model(lm, entry) -> np.ndarray:
    """One image (a file, or a tuple of per-channel files) as the float (C, H, W) the model
    takes (its stored channel selection)."""
    min_size = lm.model.min_input_size if lm.meta.kind == "wscnn" else 1
    img = read_entry(entry, lm.meta.channels, min_size)
    want = int(lm.model.config.in_channels)
    if img.shape[0] != want:
        raise InputError(f"the model expects {want} channel(s) but this image has {img.shape[0]}",
                         entry_path(entry))
    return img


def batches(lm, files: Iterable[LabeledFile], batch_size: int,
            max_pixels: int = 2 ** 25) -> Iterator[tuple[list[LabeledFile], np.ndarray]]:
    """Consecutive same-size images stacked into (B, C, H, W) float32 batches, read lazily;
    a batch also ends before it would exceed ``max_pixels`` values (big fields go alone)."""
    group: list[LabeledFile] = []
    arrays: list[np.ndarray] = []
    for f in files:
        img = read_for_model(lm, f.entry)
        if arrays and (img.shape != arrays[0].shape or len(arrays) >= batch_size
                       or (len(arrays) + 1) * img.size > max_pixels):
            yield group, np.stack(arrays)
            group, arrays = [], []
        group.append(f)
        arrays.append(img)
    if arrays:
        yield group, np.stack(arrays)


def probabilities(lm, x: np.ndarray, device) -> np.ndarray:
    """(B, K) class probabilities of one float batch."""
    if lm.meta.kind == "deepyeast":
        return classify_crops(lm, x, device=str(device), batch_size=len(x))

    return classify_batch(lm, x, len(x), device)


def tta_probabilities(lm, x: np.ndarray, device) -> np.ndarray:
    """Probabilities averaged over the 8 flips and quarter turns of the batch (4 half-turns
    and flips when the images are not square and the network needs a fixed size)."""
    fixed = getattr(lm.model.config, "head", "max") == "fc" or lm.meta.kind == "deepyeast"
    turns = (0, 1, 2, 3) if x.shape[2] == x.shape[3] or not fixed else (0, 2)
    out = np.zeros((len(x), len(lm.meta.class_names)), np.float64)
    for k in turns:
        r = np.rot90(x, k, axes=(2, 3))
        for y in (r, r[..., ::-1]):
            out += probabilities(lm, np.ascontiguousarray(y), device)
    return out / (2 * len(turns))


def score_stream(model, files: Sequence[LabeledFile], *, batch_size: int = 16, device: str = "auto",
                 tta: bool = False, callback: ProgressCallback = None,
                 cancel: CancelToken | None = None) -> Iterator[tuple[LabeledFile, np.ndarray]]:
    """Yield ``(file, probabilities)`` for every file, in order, holding one batch at a time.
    ``tta``: average over flips and rotations (8x the work; steadier scores). Stops early
    (without error) when ``cancel`` is set."""

    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    lm = as_loaded(model)
    dev = resolve_device(device)
    lm.model.to(dev).eval()
    done = 0
    for group, x in batches(lm, files, batch_size):
        if cancel is not None and cancel.cancelled:
            return
        p = tta_probabilities(lm, x, dev) if tta else probabilities(lm, x, dev)
        for f, row in zip(group, p):
            yield f, np.asarray(row, np.float64)
        done += len(group)
        report_items(callback, done, len(files))


def target_index(class_names: Sequence[str], target: str | None, kind: str) -> int | None:
    """Index of the class to score; WSCNN defaults to its last class (positive), DeepYeast to
    None (the top class's probability)."""
    names = list(class_names)
    if target in (None, ""):
        return len(names) - 1 if kind == "wscnn" else None
    if target not in names:
        raise InputError(f"unknown class {target!r}; the model's classes are {', '.join(names)}")
    return names.index(target)
