"""npe2 sample data (File > Open Sample > Rare phenotypes).

* WSCNN simulated images (circles among ellipses; the positive one with its rare-object
  boxes as a Shapes layer);
* a synthetic two-channel yeast field with its ground-truth cell labels;
* a mitosis mosaic: 4x4 tiles of real HeLa crops (a positive field: a few mitotic cells
  among interphase cells), built at first use from the crops folder named by
  ``RAREPHENO_MITOSIS_CROPS`` (or ``~/napari-rarepheno/mitosis-crops``). Without crops a
  synthetic mosaic is built from synthetic yeast cells instead. Crops are never shipped
  in the wheel; the built mosaic is cached in ``~/.cache/napari-rarepheno``.

All are generated with fixed seeds: the same images every time. No torch.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from ._layers import result_meta
from .core.datasets.bundled import MITOSIS_CROPS, mitosis_field_files
from .core.datasets.mosaic import MosaicConfig, build_mosaics
from .core.datasets.synthetic import SimConfig, image_rng, render_image
from .core.io.images import read_image, read_png, write_png


def cache_dir() -> Path:
    env = os.environ.get("RAREPHENO_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "napari-rarepheno"


def boxes_layer(boxes, name: str, color: str, edge_width: float = 1.5) -> tuple:
    """A Shapes layer-data tuple ``(data, kwargs, "shapes")`` of outlined rectangles, one per
    ``(x0, y0, x1, y1)`` box (ground-truth objects); add it with ``viewer.add_shapes(data, **kwargs)``."""
    rects = [np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], float) for (x0, y0, x1, y1) in boxes]
    return (rects, {"name": name, "shape_type": "rectangle", "edge_color": color, "face_color": "transparent",
                    "edge_width": edge_width, "metadata": result_meta("truth", name)}, "shapes")




def wscnn_image(positive: bool, index: int = 7) -> tuple[np.ndarray, list]:
    """One simulated image (uint8, 210x280) and its rare-object boxes (x0, y0, x1, y1)."""

    cfg = SimConfig(seed=2024)
    image, boxes = render_image(image_rng(cfg, positive, index), cfg, positive)
    return image, [b[:4] for b in boxes if b[4] == "rare"]


def wscnn_positive() -> list[tuple]:
    image, rare = wscnn_image(True)
    layers = [(image, {"name": "WSCNN positive", "colormap": "gray"}, "image")]
    if rare:
        layers.append(boxes_layer(rare, "rare objects (truth)", "#ff4040"))
    return layers


def wscnn_negative() -> list[tuple]:
    image, _ = wscnn_image(False)
    return [(image, {"name": "WSCNN negative", "colormap": "gray"}, "image")]


def yeast_field_arrays(cls: str = "nucleus", seed: int = 3, size: int = 256):
    """(2xHxW uint16 image, HxW labels, class name) of one synthetic yeast field."""
    from .core.datasets.yeast import (  # deferred: loads scipy
        YeastConfig,
        _protein_params,
        render_field,
    )

    cfg = YeastConfig(height=size, width=size, n_cells=(18, 26))
    pp = _protein_params(np.random.default_rng([seed, 0]), cls)
    image, labels, _ = render_field(np.random.default_rng([seed, 1]), cls, pp, cfg)
    return image, labels, cls


def yeast_field() -> list[tuple]:
    image, labels, cls = yeast_field_arrays()
    return [(image, {"name": ["yeast cytoplasm marker", "yeast protein"], "channel_axis": 0,
                     "colormap": ["magenta", "green"], "blending": ["additive", "additive"],
                     "metadata": {"true_class": cls}}, "image"),
            (labels.astype(np.int32), {"name": "yeast cells (truth)", "opacity": 0.3, "visible": False},
             "labels")]


# ------------------------------------------------------------------ mosaic
def mitosis_crops_dir() -> Path | None:
    """The mitosis crops folder (``CROPS/<class>/*.png``): the user's own
    (``RAREPHENO_MITOSIS_CROPS`` or ``~/napari-rarepheno/mitosis-crops``), else the real
    CellCognition crops shipped with the plugin."""
    for cand in (os.environ.get("RAREPHENO_MITOSIS_CROPS"), Path.home() / "napari-rarepheno" / "mitosis-crops",
                 MITOSIS_CROPS):
        if cand and Path(cand).is_dir() and any(Path(cand).glob("*/*.png")):
            return Path(cand)
    return None


def _synthetic_crops(root: Path) -> Path:
    """8-bit RGB crops of synthetic yeast cells: 'inter' (cytoplasm) and 'rare' (nucleolus)."""
    from .core.cells.crops import extract_crops  # deferred: loads scipy

    for cls, name, seed in (("cytoplasm", "inter", 11), ("nucleolus", "rare", 12)):
        out = root / name
        out.mkdir(parents=True, exist_ok=True)
        image, labels, _ = yeast_field_arrays(cls, seed, size=320)
        ids = np.unique(labels)[1:]
        yy, xx = np.indices(labels.shape)
        cen = np.array([[yy[labels == i].mean(), xx[labels == i].mean()] for i in ids])
        crops = extract_crops(image, cen, 64).astype(np.float32)
        hi = np.percentile(image.reshape(2, -1), 99.5, axis=1)[:, None, None]
        lo = np.percentile(image.reshape(2, -1), 1, axis=1)[:, None, None]
        for k, crop in enumerate(crops):
            rgb = np.zeros((64, 64, 3), np.uint8)
            rgb[..., :2] = np.moveaxis(np.clip((crop - lo) / (hi - lo) * 255, 0, 255), 0, -1).astype(np.uint8)
            write_png(out / f"cell_{k:03d}.png", rgb)
    return root


def build_mosaic_sample(crops: Path | None = None, out: Path | None = None) -> Path:
    """Build (once) a tiny mosaic data set; returns its folder (``test/positive/*.png`` ...)."""

    crops = crops or mitosis_crops_dir()
    kind = "mitosis" if crops is not None else "synthetic"
    out = out or cache_dir() / f"{kind}-mosaic"
    if (out / "mosaic.json").exists():
        return out
    if crops is None:
        crops = _synthetic_crops(cache_dir() / "synthetic-crops")
        cfg = MosaicConfig(rare=("rare",), common=("inter",), n_per_class=1, fractions=(1.0,), splits=("test",),
                           seed=1)
    else:
        classes = {p.name for p in crops.iterdir() if p.is_dir()}
        rare = tuple(c for c in MosaicConfig().rare if c in classes)
        cfg = MosaicConfig(rare=rare, common=("inter",), n_per_class=1, fractions=(1.0,), splits=("test",),
                           seed=1)
    build_mosaics(crops, out, cfg, overwrite=True)
    return out


def mitosis_mosaic() -> list[tuple]:
    folder = build_mosaic_sample()
    img_path = sorted((folder / "test" / "positive").glob("*.png"))[0]
    image = read_png(img_path)
    kind = "mitosis" if folder.name.startswith("mitosis") else "synthetic"
    boxes = []
    with open(folder / "test" / "tiles.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if Path(r["image"]).name == img_path.name and r["class"] not in ("inter",):
                boxes.append((int(r["x0"]), int(r["y0"]), int(r["x1"]), int(r["y1"])))
    layers = [(image, {"name": f"{kind} mosaic (positive)", "rgb": image.ndim == 3}, "image")]
    if boxes:
        layers.append(boxes_layer(boxes, "rare tiles (truth)", "#ffd040"))
    return layers


# ------------------------------------------------------------------- field
def hela_field() -> list[tuple]:
    """A real HeLa field as a microscope writes it, one TIFF per channel (H2B, tubulin):
    two image layers named after their files, as File > Open gives them."""
    layers = []
    for path, colour in zip(mitosis_field_files(), ("red", "green")):
        layers.append((read_image(path, as_float=False)[0], {"name": path.stem, "colormap": colour,
                                                            "blending": "additive"}, "image"))
    return layers
