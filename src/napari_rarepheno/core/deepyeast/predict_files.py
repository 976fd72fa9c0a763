"""DeepYeast prediction on files: crops and whole fields into two CSV tables.

:func:`predict_deepyeast_files` writes, for crops (class folders, loose crop files, DeepLoc
HDF5) and fields alike, ``OUT/predictions.csv`` (one row per cell: source, id, group, class,
p_<class>..., and centroid/area for fields, true_class where the folder names it) and
``OUT/groups.csv`` (one posterior row per group: MAP class, mixture, p_/lo_/hi_<class>).
A field ``X.tif`` uses ``X_labels.tif`` beside it when there is one, else it is segmented
(label images of segmented fields go to ``OUT/labels/``).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError, OutputError
from ..io.atomic import write_text
from ..io.files import entry_names, entry_path
from ..io.folders import (
    ImageSet,
    group_of,
    pair_channel_files,
    read_entry,
    stack_padded,
)
from ..io.images import _read_raw, is_image_file, read_image, to_chw, write_tiff
from ..io.modelfile import as_loaded
from ..io.tables import write_csv
from .aggregate import aggregate, posterior_table
from .classify import classify_crops, model_options
from .data import DeepYeastOptions, align_labels, fit_size, load_crops
from .fields import classify_field, crop_shift


def _is_field(path: Path, size: int) -> bool:
    h, w = to_chw(_read_raw(path), path).shape[1:]
    return max(h, w) > 2 * size


def _class_folder_tree(p: Path) -> bool:
    subs = [d for d in p.iterdir() if d.is_dir() and not d.name.startswith(".")]
    return bool(subs) and not any(is_image_file(f) for f in p.iterdir() if f.is_file())


def _crop_rows(lm, data, source: str, device: str, known: bool, notes: dict) -> list[dict]:
    probs = classify_crops(lm, data.images, device=device)
    shift = crop_shift(lm, data.images, device=device, probabilities=probs)
    if shift.messages:
        notes[source] = shift.messages
    names, rows = lm.meta.class_names, []
    single = len(set(data.paths)) == 1 and len(data) > 1  # HDF5: one file, many rows
    for i in range(len(data)):
        row = {"source": source, "id": f"row{i}" if single else data.relpath(i),
               "group": data.groups[i] if data.groups else "", "class": names[int(probs[i].argmax())]}
        row.update({f"p_{c}": float(probs[i, k]) for k, c in enumerate(names)})
        if known:
            row["true_class"] = data.class_names[int(data.labels[i])]
        row.update(shift.columns(i))
        rows.append(row)
    return rows


def predict_deepyeast_files(model, inputs: Sequence[str | Path], out: str | Path, *,
                            opts: DeepYeastOptions | None = None, device: str = "auto", treat_as: str = "auto",
                            segment_channel: int = 0, diameter: float | None = None, overwrite: bool = False) -> dict:
    """Classify crops and fields into ``out/predictions.csv`` and ``out/groups.csv`` (module doc);
    inputs unlike the training cells are reported in ``out/shift.json`` and as warnings, and
    every row carries its ``shift_score`` (> 1: outside the training distribution).

    ``inputs``: class-folder trees, DeepLoc HDF5 files, folders of loose images or image files.
    ``treat_as``: loose images are 'crops', 'fields' or decided by size ('auto': a side more
    than twice the network's input is a field). ``segment_channel``/``diameter``: the built-in
    segmentation of fields without a ``_labels`` image. ``opts``: how crops are read (channels,
    channel files, groups); unset options come from the model."""
    lm = as_loaded(model, "deepyeast")
    opts = model_options(lm, opts)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pred_csv, group_csv = out / "predictions.csv", out / "groups.csv"
    for p in (pred_csv, group_csv):
        if p.exists() and not overwrite:
            raise OutputError("exists already; pass --overwrite to replace it", p)
    size, mode, seg_ch = opts.input_size, treat_as or "auto", int(segment_channel or 0)
    if mode not in ("auto", "crops", "fields"):
        raise InputError(f"treat images as 'auto', 'crops' or 'fields', not {mode!r}")
    rows: list[dict] = []
    notes: dict[str, list[str]] = {}
    for inp in map(Path, inputs):
        if not inp.exists():
            raise InputError("not found", inp)
        if inp.is_dir() and _class_folder_tree(inp) or inp.suffix.lower() in (".h5", ".hdf5", ".hdf"):
            data = align_labels(load_crops(inp, opts), lm.meta.class_names)
            rows += _crop_rows(lm, data, inp.name, device, True, notes)
            continue
        files = sorted(f for f in inp.iterdir() if f.is_file() and is_image_file(f)) if inp.is_dir() else [inp]
        files = [f for f in files if not f.stem.endswith("_labels")]
        if not files:
            raise InputError("no images (.tif, .tiff, .png) here", inp)
        folder = inp if inp.is_dir() else inp.parent
        entries = pair_channel_files(folder, files, opts.channel_files) if opts.channel_files else files
        names = entry_names(entries, opts.channel_files)
        is_field = [(mode == "fields") if mode != "auto" else _is_field(entry_path(e), size) for e in entries]
        crops = [e for e, fld in zip(entries, is_field) if not fld]
        if crops:
            arrays = [read_entry(e, opts.channels, 1) for e in crops]
            paths = [entry_path(e) for e in crops]
            data = ImageSet(fit_size(stack_padded(arrays, paths), size, inp), np.zeros(len(paths), np.int64),
                            list(lm.meta.class_names), paths, [group_of(p, opts.group_regex) for p in paths],
                            folder)
            rows += _crop_rows(lm, data, inp.name, device, False, notes)
        for e, name in ((e, n) for e, n, fld in zip(entries, names, is_field) if fld):
            f = entry_path(e)
            raw = read_entry(e, as_float=False)  # the files' channels, in --channel-files order
            lab_path = next((p for p in (folder / f"{name}_labels{f.suffix}", f.with_name(f"{f.stem}_labels{f.suffix}"))
                             if p.exists()), None)
            labels = read_image(lab_path, as_float=False)[0] if lab_path is not None else None
            grp = group_of(f, opts.group_regex)
            res = classify_field(lm, raw, labels, seg_ch, group=grp, device=device, diameter=diameter,
                                 channels=opts.channels)
            if labels is None and res.labels is not None:
                write_tiff(out / "labels" / f"{name}_labels.tif", res.labels.astype(np.uint16 if
                           res.labels.max() < 65536 else np.uint32), axes="YX", overwrite=overwrite)
            rows += [{"source": name, "group": grp, **r} for r in res.rows]
            if res.shift.messages:
                notes[name] = res.shift.messages
    if not rows:
        raise InputError("no cells or crops found in the inputs", Path(inputs[0]) if inputs else None)
    names = lm.meta.class_names
    probs = np.array([[r[f"p_{c}"] for c in names] for r in rows])
    post = posterior_table(aggregate(probs, [r["group"] for r in rows], names), intervals=True)
    write_csv(pred_csv, rows, what="the predictions")
    write_csv(group_csv, post, what="the group table")
    write_text(out / "shift.json", json.dumps({"inputs_unlike_training": notes}, indent=2), "the shift report")
    for source, messages in notes.items():
        for m in messages:
            warnings.warn(f"{source}: {m}", stacklevel=2)
    return {"predictions": str(pred_csv), "groups": str(group_csv), "n_cells": len(rows), "n_groups": len(post),
            "shift": notes}
