"""npe2 reader: open napari-rarepheno results (a results folder or single result files).

* a folder with ``predictions.csv`` (``rarepheno predict`` or the docks' "Export all"):
  each listed image (when it still exists) with its saliency, object mask and peaks;
* ``X_saliency.tif`` -> saliency image (additive, over the image);
* ``X_mask.tif`` / ``X_cells.tif`` -> labels, with ``X_objects.csv`` / ``X_cells.csv``
  as ``features`` when present.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ._layers import result_meta, safe_name, saliency_layer
from .core.io.images import read_image

MAX_IMAGES = 50


def _stem(p: Path, suffix: str) -> str:
    return p.name[: -len(suffix)] if p.name.endswith(suffix) else p.stem


def get_reader(path):
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.is_dir():
        return read_folder if (p / "predictions.csv").exists() or any(p.glob("*_saliency.tif")) else None
    if p.name.endswith("predictions.csv") and p.exists():
        return lambda path: read_folder(Path(path).parent)
    if p.name.endswith(("_saliency.tif", "_mask.tif", "_cells.tif")) and p.exists():
        return read_file
    return None


def _read_csv(path: Path) -> dict[str, list] | None:
    if not path.exists():
        return None
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    out: dict[str, list] = {k: [r[k] for r in rows] for k in rows[0]}
    for k, v in out.items():
        try:
            out[k] = np.asarray(v, dtype=float)
            if np.all(out[k] == np.round(out[k])) and k in ("index", "label", "id", "area", "object_id"):
                out[k] = out[k].astype(np.int64)
        except ValueError:
            out[k] = np.asarray(v, dtype=object)
    return out


def read_file(path) -> list[tuple]:
    p = Path(path)
    import tifffile

    arr = tifffile.imread(p)
    if p.name.endswith("_saliency.tif"):
        src = _stem(p, "_saliency.tif")

        return [saliency_layer(arr.astype(np.float32), src)]
    suffix, table, role = (("_mask.tif", "_objects.csv", "objects") if p.name.endswith("_mask.tif")
                           else ("_cells.tif", "_cells.csv", "cells"))
    src = _stem(p, suffix)
    kw = {"name": f"{src} {role}", "metadata": result_meta(role, src)}
    feats = _read_csv(p.with_name(src + table))
    if feats is None and role == "objects":  # `rarepheno predict` output: one objects.csv for all images
        allobj = _read_csv(p.with_name("objects.csv"))
        if allobj is not None and "image" in allobj:
            keep = np.array([Path(str(v)).stem == src for v in allobj["image"]])
            if keep.any():
                feats = {k: v[keep] for k, v in allobj.items() if k != "image"}
                if "object_id" in feats:
                    feats = {"index": feats.pop("object_id"), **feats}
    if feats is not None:
        if "index" not in feats:
            key = "id" if "id" in feats else "label" if "label" in feats else None
            if key is not None:
                feats = {"index": feats[key], **feats}
        kw["features"] = feats
    return [(arr.astype(np.int32), kw, "labels")]


def read_folder(path) -> list[tuple]:
    """Images listed in predictions.csv (capped at 50), each with its result files."""
    folder = Path(path)

    layers: list[tuple] = []
    rows = []
    if (folder / "predictions.csv").exists():
        with open(folder / "predictions.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
    names = [r.get("name") or Path(r.get("image", "")).stem for r in rows] if rows else \
        sorted(_stem(p, "_saliency.tif") for p in folder.glob("*_saliency.tif"))
    for i, name in enumerate(names[:MAX_IMAGES]):
        img_path = Path(rows[i]["image"]) if rows and rows[i].get("image") else None
        if img_path is not None and img_path.exists():
            img = read_image(img_path, as_float=False)
            kw = {"name": name, "metadata": {"rarepheno_image": str(img_path)}}
            if img.shape[0] == 3:
                layers.append((np.moveaxis(img, 0, -1), {**kw, "rgb": True}, "image"))
            elif img.shape[0] > 1:
                layers.append((img, {**kw, "channel_axis": 0, "name": [f"{name} ch{c}" for c in range(len(img))]},
                               "image"))
            else:
                layers.append((img[0], kw, "image"))
        for suffix in ("_saliency.tif", "_mask.tif", "_cells.tif"):
            for stem in dict.fromkeys((name, safe_name(name))):  # "Export all" writes safe stems
                f = folder / f"{stem}{suffix}"
                if f.exists():
                    layers += read_file(f)
                    break
    return layers
