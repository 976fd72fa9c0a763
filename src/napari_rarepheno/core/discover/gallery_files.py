"""A gallery as pictures and files: the montage, the table, saving and loading, and turning a
cluster into labeled crops for a new class."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..deepyeast.explore import plot_scatter
from ..errors import InputError
from ..io.atomic import write_text
from ..io.images import write_png, write_tiff
from ..io.tables import write_csv
from .clusters import cluster_color
from .gallery import Gallery


def display_crops(crops: np.ndarray) -> np.ndarray:
    """(N, C, s, s) -> (N, s, s) grey or (N, s, s, 3) RGB in [0, 1] (channel 0 red, 1 green,
    2 blue), each channel stretched from its 1st to its 99.5th percentile over the gallery."""
    x = np.asarray(crops, np.float32)
    if x.size:
        lo, hi = np.percentile(x, [1.0, 99.5], axis=(0, 2, 3))
        x = np.clip((x - lo[None, :, None, None]) / np.maximum(hi - lo, 1e-6)[None, :, None, None], 0, 1)
    if x.shape[1] == 1:
        return x[:, 0]
    rgb = np.zeros((len(x), x.shape[2], x.shape[3], 3), np.float32)
    rgb[..., : min(3, x.shape[1])] = np.moveaxis(x[:, :3], 1, -1)
    return rgb


def gallery_order(g: Gallery) -> np.ndarray:
    """Tile order: by cluster (noise last), then by decreasing score."""
    cl = g.clusters if g.clusters is not None else np.zeros(len(g), np.int64)
    key = np.where(cl < 0, np.iinfo(np.int64).max, cl)
    return np.lexsort((-np.asarray(g.table["score"], float), key))


def montage(g: Gallery, n_cols: int | None = None, pad: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The gallery as one image: (H, W) or (H, W, 3) float, a label image (tile of crop i
    has label i + 1, background 0) and (N, 2) top-left corners (y, x) of every crop."""
    disp = display_crops(g.crops)
    n, s = len(disp), g.crops.shape[-1]
    n_cols = n_cols or max(1, int(np.ceil(np.sqrt(n * 1.5))))
    n_rows = int(np.ceil(n / n_cols))
    step = s + pad
    H, W = n_rows * step + pad, n_cols * step + pad
    img = np.zeros((H, W) + disp.shape[3:], np.float32)
    labels = np.zeros((H, W), np.int32)
    corners = np.zeros((n, 2), np.int64)
    for pos, i in enumerate(gallery_order(g)):
        r, c = divmod(pos, n_cols)
        y, x = pad + r * step, pad + c * step
        img[y:y + s, x:x + s] = disp[i]
        labels[y - pad // 2:y + s + pad // 2, x - pad // 2:x + s + pad // 2] = i + 1
        corners[i] = (y, x)
    return img, labels, corners


def montage_rgb(g: Gallery, n_cols: int | None = None, pad: int = 4) -> np.ndarray:
    """uint8 RGB montage with each crop framed in its cluster's colour (for PNG files)."""
    img, labels, corners = montage(g, n_cols, pad)
    rgb = np.repeat(img[..., None], 3, -1) if img.ndim == 2 else img.copy()
    s = g.crops.shape[-1]
    b = max(1, pad // 2)
    for i, (y, x) in enumerate(corners):
        col = np.array([int(cluster_color(int(g.clusters[i]) if g.clusters is not None else 0)[k:k + 2], 16)
                        for k in (1, 3, 5)], np.float32) / 255
        y0, x0, y1, x1 = y - b, x - b, y + s + b, x + s + b
        rgb[y0:y0 + b, x0:x1] = col
        rgb[y1 - b:y1, x0:x1] = col
        rgb[y0:y1, x0:x0 + b] = col
        rgb[y0:y1, x1 - b:x1] = col
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


# --------------------------------------------------------------- save / load
TABLE_COLUMNS = ("index", "image", "label", "y", "x", "score", "probability", "peak")


def gallery_rows(g: Gallery) -> list[dict]:
    rows = []
    for i in range(len(g)):
        r = {c: g.table[c][i].item() if hasattr(g.table[c][i], "item") else g.table[c][i] for c in TABLE_COLUMNS}
        r["cluster"] = int(g.clusters[i]) if g.clusters is not None else ""
        if g.xy is not None:
            r["map_x"], r["map_y"] = float(g.xy[i, 0]), float(g.xy[i, 1])
        rows.append(r)
    return rows


def save_gallery(g: Gallery, out_dir: str | Path, overwrite: bool = False) -> dict[str, Path]:
    """gallery.csv, gallery.png (montage), scatter.png (2-D map by cluster), crops.npy,
    features.npy and gallery.json in ``out_dir``."""

    out = Path(out_dir)
    if (out / "gallery.csv").exists() and not overwrite:
        raise InputError("holds a gallery already; use --overwrite to replace it", out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "gallery.csv", "png": out / "gallery.png", "crops": out / "crops.npy",
             "features": out / "features.npy", "json": out / "gallery.json"}
    rows = gallery_rows(g)
    write_csv(files["csv"], rows, what="the gallery table")
    write_png(files["png"], montage_rgb(g))
    np.save(files["crops"], g.crops)
    np.save(files["features"], g.features)
    if g.clusters is not None and g.xy is not None and len(g) >= 2:
        ids = sorted(set(g.clusters.tolist()))
        files["scatter"] = plot_scatter(g.xy, np.searchsorted(ids, g.clusters), [
            "noise" if k < 0 else f"cluster {k}" for k in ids], out / "scatter.png",
            f"t-SNE of {len(g)} salient crops, coloured by cluster")
    meta = {"class_names": g.class_names, "kind": g.kind, "source_dtype": g.source_dtype, **g.info}
    write_text(files["json"], json.dumps(meta, indent=2, default=str), "the gallery description")
    return files


def load_gallery(out_dir: str | Path) -> Gallery:
    out = Path(out_dir)
    if not (out / "gallery.csv").exists():
        raise InputError("not a gallery folder (no gallery.csv); run rarepheno gallery first", out)
    meta = json.loads((out / "gallery.json").read_text())
    with open(out / "gallery.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    num = {"index": int, "y": float, "x": float, "score": float, "probability": float, "peak": int}
    table = {c: np.asarray([num.get(c, str)(r[c]) for r in rows]) for c in TABLE_COLUMNS}
    g = Gallery(np.load(out / "crops.npy"), table, np.load(out / "features.npy"), meta.pop("class_names"),
                meta.pop("kind"), meta.pop("source_dtype"), info=meta)
    if rows and rows[0].get("cluster", "") != "":
        g.clusters = np.asarray([int(r["cluster"]) for r in rows])
    if rows and "map_x" in rows[0]:
        g.xy = np.asarray([[float(r["map_x"]), float(r["map_y"])] for r in rows], np.float32)
    return g


# ------------------------------------------------------------- cluster -> class
def _crop_file_data(crop: np.ndarray, dtype: str) -> tuple[np.ndarray, str]:
    """Undo the [0, 1] scaling of integer images; PNG for 8-bit grey/RGB, TIFF otherwise."""
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        data = np.clip(np.round(crop * np.iinfo(dt).max), np.iinfo(dt).min, np.iinfo(dt).max).astype(dt)
    else:
        data = crop.astype(np.float32)
    if dt == np.uint8 and crop.shape[0] in (1, 3):
        return (data[0] if crop.shape[0] == 1 else np.moveaxis(data, 0, -1)), ".png"
    return data, ".tif"


def save_crops(g: Gallery, indices: Sequence[int], folder: str | Path) -> list[Path]:
    """Write crops ``indices`` into ``folder`` as ``<image>_y<y>_x<x>`` files (never overwriting)."""

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i in indices:
        data, ext = _crop_file_data(g.crops[i], g.source_dtype)
        stem = f"{Path(str(g.table['image'][i])).stem}_y{int(round(float(g.table['y'][i])))}" \
               f"_x{int(round(float(g.table['x'][i])))}"
        path, k = folder / f"{stem}{ext}", 1
        while path.exists():
            path, k = folder / f"{stem}_{k}{ext}", k + 1
        if ext == ".png":
            write_png(path, data)
        else:
            write_tiff(path, data)
        written.append(path)
    return written


def name_cluster(g: Gallery, cluster: int, name: str, out_dir: str | Path,
                 members: Sequence[int] | None = None) -> list[Path]:
    """Write the crops of ``cluster`` (or the gallery indices ``members``) as labeled crops of a
    new class: ``out_dir/<name>/``, a class folder DeepYeast (and ``train deepyeast``) reads."""
    if not name or name in (".", "..") or any(c in name for c in "/\\"):
        raise InputError(f"a class name must be a plain folder name, got {name!r}")
    if members is None:
        if g.clusters is None:
            raise InputError("the gallery is not clustered yet")
        members = np.flatnonzero(g.clusters == int(cluster)).tolist()
        if not members:
            raise InputError(f"cluster {cluster} has no members (clusters: {sorted(set(g.clusters.tolist()))})")
    return save_crops(g, members, Path(out_dir) / name)
