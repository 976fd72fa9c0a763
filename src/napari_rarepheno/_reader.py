"""npe2 reader: open napari-rarepheno results (a results folder or single result files).

* a folder with ``predictions.csv`` (``rarepheno predict`` or the docks' "Export all"):
  each listed image (when it still exists) with its saliency, object mask and peaks; a
  folder without it but with result TIFFs (e.g. DeepYeast's export: ``*_cells.tif``):
  every result found;
* ``X_saliency.tif`` -> saliency image (additive, over the image);
* ``X_mask.tif`` / ``X_cells.tif`` -> labels, with ``X_objects.csv`` / ``X_cells.csv``
  as ``features`` when present;
* a plate results folder (``wells.csv``: ``rarepheno plate``, the Plate dock) -> the plate
  heatmap and its well grid; an OME-Zarr HCS plate -> each well's first field, small, in the
  well grid (:mod:`._plate_layers`). The Plate dock takes the plate or results folder from
  these layers.

napari offers every reader that accepts folders for a folder (its own reads any folder as
an image stack: a plain grey image), and npe2 does not match ``filename_patterns`` against
folders; napari then uses the reader remembered for that folder (Preferences > Plugins,
``extension2reader``, keyed by the folder's path). :func:`claim_folder` remembers this
plugin for a folder the docks wrote, so File > Open (``viewer.open(folder)``) shows its
results.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ._layers import result_meta, safe_name, saliency_layer
from ._plate_layers import is_hcs_plate, overview_layers, results_layers
from .core.io.images import read_image

MAX_IMAGES = 50
PLUGIN = "napari-rarepheno"
#: result files that make a folder ours
RESULT_SUFFIXES = ("_saliency.tif", "_mask.tif", "_cells.tif")


def _stem(p: Path, suffix: str) -> str:
    return p.name[: -len(suffix)] if p.name.endswith(suffix) else p.stem


def get_reader(path):
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.is_dir():
        if (p / "wells.csv").is_file():
            return read_plate_results
        if is_hcs_plate(p):
            return read_plate_overview
        return read_folder if is_results_folder(p) else None
    if p.name == "wells.csv" and p.exists():
        return lambda path: read_plate_results(Path(path).parent)
    if p.name.endswith("predictions.csv") and p.exists():
        return lambda path: read_folder(Path(path).parent)
    if p.name.endswith(("_saliency.tif", "_mask.tif", "_cells.tif")) and p.exists():
        return read_file
    return None


def read_plate_results(path) -> list[tuple]:
    """A plate results folder (``rarepheno plate``, the Plate dock): its heatmap and well grid."""
    return results_layers(Path(path))


def read_plate_overview(path) -> list[tuple]:
    """An OME-Zarr HCS plate: each well's first field, small, in the well grid."""
    return overview_layers(Path(path))


def is_results_folder(folder: Path) -> bool:
    """A folder of napari-rarepheno results (predictions.csv or result TIFFs)."""
    folder = Path(folder)
    return (folder / "predictions.csv").exists() or any(
        any(folder.glob(f"*{suffix}")) for suffix in RESULT_SUFFIXES)


def claim_folder(folder, max_folders: int = 200) -> bool:
    """Make napari open ``folder`` with this plugin's reader (File > Open, ``viewer.open``):
    the per-folder reader preference napari's own "remember this choice" writes. Folders
    that no longer exist are forgotten (and at most ``max_folders`` of ours are kept).
    Returns whether the preference is set; never raises (a missing preference only means
    napari asks which reader to use)."""
    import os

    try:
        from napari.settings import get_settings

        key = os.path.realpath(str(folder))
        key = key if key.endswith(os.sep) else key + os.sep
        prefs = dict(get_settings().plugins.extension2reader)
        ours = [k for k, v in prefs.items() if v == PLUGIN and k.endswith(os.sep) and k != key]
        for k in ours:
            if not os.path.isdir(k):
                prefs.pop(k)
        ours = [k for k in ours if k in prefs]
        for k in ours[: max(0, len(ours) - max_folders + 1)]:
            prefs.pop(k)
        prefs[key] = PLUGIN
        get_settings().plugins.extension2reader = prefs
        return True
    except Exception:  # noqa: BLE001 - settings unavailable (no napari, read-only config)
        return False


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
        sorted({_stem(p, suffix) for suffix in RESULT_SUFFIXES for p in folder.glob(f"*{suffix}")})
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
        for suffix in RESULT_SUFFIXES:
            for stem in dict.fromkeys((name, safe_name(name))):  # "Export all" writes safe stems
                f = folder / f"{stem}{suffix}"
                if f.exists():
                    layers += read_file(f)
                    break
    return layers
