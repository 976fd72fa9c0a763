"""DeepYeast on whole fields and the ``predict`` command's CSV output.

:func:`classify_field`: segment cells in one channel (or take a labels image or a list
of centroids), cut crops centred on each cell (zero padding at the borders), classify
them, and aggregate the cells into a Dirichlet posterior (the field's protein).

:func:`predict_deepyeast_cli` writes, for crops (class folders, loose crop files, DeepLoc HDF5)
and fields alike, ``OUT/predictions.csv`` (one row per cell: source, id, group, class,
p_<class>..., and centroid/area for fields, true_class where the folder names it) and
``OUT/groups.csv`` (one posterior row per group: MAP class, mixture, p_/lo_/hi_<class>).
A field ``X.tif`` uses ``X_labels.tif`` beside it when there is one, else it is segmented.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError
from ..io.images import is_image_file, read_image, select_channels


@dataclass
class FieldResult:
    """Cells of one field: ``labels`` (None when centroids were given), one row per cell
    (id, class, p_<class>..., centroid_y, centroid_x[, area]), the field's posterior rows."""

    labels: np.ndarray | None
    rows: list[dict]
    posterior: list[dict]
    probabilities: np.ndarray
    centroids: np.ndarray


def classify_field(loaded, field_chw, labels=None, segment_channel: int = 0, centroids=None, *,
                   group: str = "field", device: str = "auto", min_area: int = 30,
                   method: str = "otsu", channels=None) -> FieldResult:
    """Segment (or take ``labels`` / ``centroids``), cut centred crops, classify, aggregate.

    ``field_chw`` is (C, H, W) in the file's channel order; ``segment_channel`` indexes it and
    ``channels`` (default: the model's stored ones) pick the classifier's input."""
    from .aggregate import aggregate, posterior_table
    from ..cells.crops import cells_from_labels, extract_crops, segment_cells
    from .classify import as_loaded, classify_crops

    lm = as_loaded(loaded)
    f = np.asarray(field_chw)
    f = f[None] if f.ndim == 2 else f
    if f.ndim != 3:
        raise InputError(f"a field must be (C, H, W), got shape {f.shape}")
    size = lm.model.config.input_size
    area = None
    if centroids is not None:
        cen = np.asarray(centroids, np.float64).reshape(-1, 2)
        ids = np.arange(1, len(cen) + 1)
    else:
        if labels is None:
            if not 0 <= segment_channel < f.shape[0]:
                raise InputError(f"segment channel {segment_channel} is out of range: the field has "
                                 f"{f.shape[0]} channel(s)")
            labels = segment_cells(f[segment_channel], method=method, min_area=min_area)
        table = cells_from_labels(labels)
        ids, area = table["id"], table["area"]
        cen = np.stack([table["centroid_y"], table["centroid_x"]], 1) if len(ids) else np.zeros((0, 2))
    sel = select_channels(f, lm.meta.channels if channels is None else channels, "field")
    crops = extract_crops(sel, cen, size)
    names = lm.meta.class_names
    probs = classify_crops(lm, crops, device=device) if len(crops) else np.zeros((0, len(names)), np.float32)
    rows = []
    for i, cid in enumerate(ids):
        row = {"id": int(cid), "class": names[int(probs[i].argmax())]}
        row.update({f"p_{c}": float(probs[i, k]) for k, c in enumerate(names)})
        row.update(centroid_y=float(cen[i, 0]), centroid_x=float(cen[i, 1]))
        if area is not None:
            row["area"] = int(area[i])
        rows.append(row)
    post = posterior_table(aggregate(probs, [group] * len(probs), names)) if len(probs) else []
    return FieldResult(None if labels is None else np.asarray(labels), rows, post, probs, cen)


def _is_field(path: Path, size: int) -> bool:
    from ..io.images import _read_raw, to_chw

    h, w = to_chw(_read_raw(path), path).shape[1:]
    return max(h, w) > 2 * size


def _class_folder_tree(p: Path) -> bool:
    subs = [d for d in p.iterdir() if d.is_dir() and not d.name.startswith(".")]
    return bool(subs) and not any(is_image_file(f) for f in p.iterdir() if f.is_file())


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    tmp = path.with_name("." + path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def _crop_rows(lm, data, source: str, device: str, known: bool) -> list[dict]:
    from .classify import classify_crops

    probs = classify_crops(lm, data.images, device=device)
    names, rows = lm.meta.class_names, []
    single = len(set(data.paths)) == 1 and len(data) > 1  # HDF5: one file, many rows
    for i in range(len(data)):
        row = {"source": source, "id": f"row{i}" if single else data.relpath(i),
               "group": data.groups[i] if data.groups else "", "class": names[int(probs[i].argmax())]}
        row.update({f"p_{c}": float(probs[i, k]) for k, c in enumerate(names)})
        if known:
            row["true_class"] = data.class_names[int(data.labels[i])]
        rows.append(row)
    return rows


def predict_deepyeast_cli(args) -> dict:
    """``rarepheno predict MODEL INPUTS... --out DIR`` for DeepYeast models (see module doc)."""
    from ..io.folders import ImageSet, _pair_channel_files, _read_entry, group_of, stack_padded
    from .classify import align_labels, as_loaded, fit_size, load_crops, model_options, options_from_args
    from .aggregate import aggregate, posterior_table
    from ..io.images import write_tiff

    lm = as_loaded(args.model)
    opts = model_options(lm, options_from_args(args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pred_csv, group_csv = out / "predictions.csv", out / "groups.csv"
    overwrite = bool(getattr(args, "overwrite", False))
    for p in (pred_csv, group_csv):
        if p.exists() and not overwrite:
            raise OutputError("exists already; pass --overwrite to replace it", p)
    device, size = getattr(args, "device", "auto"), opts.input_size
    mode = getattr(args, "as_", None) or "auto"
    seg_ch, min_area = int(getattr(args, "segment_channel", 0) or 0), int(getattr(args, "min_area", 30) or 30)
    rows: list[dict] = []
    for inp in map(Path, args.inputs):
        if not inp.exists():
            raise InputError("not found", inp)
        if inp.is_dir() and _class_folder_tree(inp) or inp.suffix.lower() in (".h5", ".hdf5", ".hdf"):
            data = align_labels(load_crops(inp, opts), lm.meta.class_names)
            rows += _crop_rows(lm, data, inp.name, device, known=True)
            continue
        files = sorted(f for f in inp.iterdir() if f.is_file() and is_image_file(f)) if inp.is_dir() else [inp]
        files = [f for f in files if not f.stem.endswith("_labels")]
        if not files:
            raise InputError("no images (.tif, .tiff, .png) here", inp)
        kinds = {f: (mode == "fields") if mode != "auto" else _is_field(f, size) for f in files}
        crops = [f for f in files if not kinds[f]]
        if crops:
            entries = _pair_channel_files(inp if inp.is_dir() else inp.parent, crops, opts.channel_files) \
                if opts.channel_files else crops
            arrays = [_read_entry(e, opts.channels, 1) for e in entries]
            paths = [e[0] if isinstance(e, tuple) else e for e in entries]
            data = ImageSet(fit_size(stack_padded(arrays, paths), size, inp), np.zeros(len(paths), np.int64),
                            list(lm.meta.class_names), paths, [group_of(p, opts.group_regex) for p in paths],
                            inp if inp.is_dir() else inp.parent)
            rows += _crop_rows(lm, data, inp.name, device, known=False)
        for f in (f for f in files if kinds[f]):
            raw = read_image(f, as_float=False)
            lab_path = f.with_name(f.stem + "_labels" + f.suffix)
            labels = read_image(lab_path, as_float=False)[0] if lab_path.exists() else None
            res = classify_field(lm, raw, labels, seg_ch, group=group_of(f, opts.group_regex),
                                 device=device, min_area=min_area, channels=opts.channels)
            if labels is None and res.labels is not None:
                write_tiff(out / "labels" / f"{f.stem}_labels.tif", res.labels.astype(np.uint16 if
                           res.labels.max() < 65536 else np.uint32), axes="YX", overwrite=overwrite)
            grp = group_of(f, opts.group_regex)
            rows += [{"source": f.name, "group": grp, **r} for r in res.rows]
    if not rows:
        raise InputError("no cells or crops found in the inputs", Path(args.inputs[0]))
    names = lm.meta.class_names
    probs = np.array([[r[f"p_{c}"] for c in names] for r in rows])
    post = posterior_table(aggregate(probs, [r["group"] for r in rows], names), intervals=True)
    _write_csv(pred_csv, rows)
    _write_csv(group_csv, post)
    return {"predictions": str(pred_csv), "groups": str(group_csv), "n_cells": len(rows), "n_groups": len(post)}
