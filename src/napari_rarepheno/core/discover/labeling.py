"""Labels from "more like this" and the labelling loop: cells copied into class folders.

A labeled cell is a crop file in ``ROOT/<class>/`` -- the class-folder layout that
``rarepheno train deepyeast``, the DeepYeast dock and ``retrain`` read. Accepting the cells
a similarity search found makes (or joins) a class folder; rejecting them files them as
negatives (``ROOT/not_<class>/`` unless named otherwise). Pool files are copied, never
moved (the pool and its index stay as they are); a cell cut from a field is written as a
new crop file. Every copy is atomic, and names never overwrite: ``x.png``, ``x_1.png``, ...
:func:`unlabel` removes what a call wrote (the docks' undo).
"""
from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_path
from ..io.images import write_png, write_tiff


def check_class_name(name: str) -> str:
    name = str(name).strip()
    if not name or name in (".", "..") or any(c in name for c in "/\\") or name.startswith("."):
        raise InputError(f"a class name must be a plain folder name, got {name!r}")
    return name


def _free(path: Path) -> Path:
    k = 1
    out = path
    while out.exists():
        out = path.with_name(f"{path.stem}_{k}{path.suffix}")
        k += 1
    return out


def crop_file_data(crop: np.ndarray, dtype: str = "uint8") -> tuple[np.ndarray, str]:
    """A (C, H, W) crop scaled to [0, 1] back to the source's integers: PNG for 8-bit grey or
    RGB, TIFF otherwise (float crops stay float32)."""
    dt = np.dtype(dtype)
    crop = np.asarray(crop)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        data = np.clip(np.round(crop.astype(np.float64) * info.max), info.min, info.max).astype(dt)
    else:
        data = crop.astype(np.float32)
    if dt == np.uint8 and crop.shape[0] in (1, 3):
        return (data[0] if crop.shape[0] == 1 else np.moveaxis(data, 0, -1)), ".png"
    return data, ".tif"


def add_to_class(items: Sequence, root: str | Path, name: str, *, dtype: str = "uint8") -> list[list[Path]]:
    """Copy each item into ``root/name/`` and return the files written per item. An item is an
    image file, a tuple of per-channel files (all copied, names kept), or ``(stem, crop)``
    with a (C, H, W) crop scaled to [0, 1] (written as ``stem.png`` / ``stem.tif``)."""
    folder = Path(root) / check_class_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[list[Path]] = []
    for it in items:
        if isinstance(it, tuple) and len(it) == 2 and isinstance(it[1], np.ndarray):
            data, ext = crop_file_data(it[1], dtype)
            dst = _free(folder / f"{Path(str(it[0])).stem}{ext}")
            if ext == ".png":
                with atomic_path(dst, "the crop") as tmp:
                    write_png(tmp, data)
            else:
                write_tiff(dst, data)  # atomic itself
            written.append([dst])
            continue
        files = [Path(f) for f in (it if isinstance(it, tuple) else (it,))]
        out = []
        for f in files:
            if not f.is_file():
                raise InputError("image file not found", f)
            dst = _free(folder / f.name)
            with atomic_path(dst, "the crop") as tmp:
                shutil.copyfile(f, tmp)
            out.append(dst)
        written.append(out)
    return written


def accept_reject(entries: Sequence, accepted: Sequence[int], rejected: Sequence[int], root: str | Path,
                  name: str, negative: str | None = None) -> dict[str, list[list[Path]]]:
    """File the verdicts on a similarity result: ``entries[i]`` for ``i`` in ``accepted`` go to
    ``root/name/`` (a new class or one that exists), those in ``rejected`` to
    ``root/<negative>/`` (default ``not_<name>``). Returns the files written per cell."""
    name = check_class_name(name)
    negative = check_class_name(negative or f"not_{name}")
    if negative == name:
        raise InputError("the negatives need a folder of their own, not the class's")
    both = set(map(int, accepted)) & set(map(int, rejected))
    if both:
        raise InputError(f"cell(s) {sorted(both)} are both accepted and rejected")
    return {"accepted": add_to_class([entries[i] for i in accepted], root, name),
            "rejected": add_to_class([entries[i] for i in rejected], root, negative)}


def unlabel(written: Sequence[Path] | Sequence[Sequence[Path]]) -> int:
    """Remove files an earlier call wrote (undo), and a class folder left empty (training
    refuses empty class folders); returns how many files were removed."""
    n = 0
    for w in written:
        for p in ([w] if isinstance(w, (str, Path)) else w):
            p = Path(p)
            if p.is_file():
                p.unlink()
                n += 1
            if p.parent.is_dir() and not any(p.parent.iterdir()):
                p.parent.rmdir()
    return n
