"""docs/images/normalisation.png: curated training crops beside crops cut from a raw field,
as read and after the model's normalisation (each crop scaled by its own percentiles).

    .venv/bin/python scripts/figure_normalisation.py

Training crops: one per class from the shipped CellCognition crops (contrast-stretched one by
one by whoever cut them). Field crops: cells of the shipped HeLa field (another movie
position, one TIFF per channel) found by the built-in segmentation, the field scaled to the
training cells' size first (the crops' cells are ~1.2x larger than this field's), cut as
``classify_field`` cuts them. After normalisation the two rows must look alike.
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from napari_rarepheno.core.cells.crops import centre_diameters, extract_crops  # noqa: E402
from napari_rarepheno.core.cells.segment import cells_from_labels, segment_field  # noqa: E402
from napari_rarepheno.core.datasets.bundled import MITOSIS_CLASSES, MITOSIS_CROPS, mitosis_field_files  # noqa: E402
from napari_rarepheno.core.deepyeast.data import DeepYeastOptions, load_crops  # noqa: E402
from napari_rarepheno.core.deepyeast.fields import rescale_field  # noqa: E402
from napari_rarepheno.core.inputs.normalize import Normalization  # noqa: E402
from napari_rarepheno.core.io.images import read_image  # noqa: E402


def rgb(crop: np.ndarray) -> np.ndarray:
    """(2, H, W) -> (H, W, 3): H2B red, tubulin green, each clipped to [0, 1]."""
    c = np.clip(crop, 0, 1)
    return np.stack([c[0], c[1], np.zeros_like(c[0])], -1)


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_crops(MITOSIS_CROPS, DeepYeastOptions(channels=[0, 1]))
    pick = [int(np.flatnonzero(data.labels == data.class_names.index(c))[5]) for c in MITOSIS_CLASSES]
    train = data.images[pick]
    d_train = float(np.nanmedian(centre_diameters(data.images[data.labels == data.class_names.index("inter"), 0])))

    h2b, tub = mitosis_field_files()
    field = np.concatenate([read_image(h2b), read_image(tub)])
    seg = segment_field(field[0])
    cells = cells_from_labels(seg.labels)
    cen = np.stack([cells["centroid_y"], cells["centroid_x"]], 1)
    d_field = seg.diameter  # measured as classify_field measures it: in windows that hold a cell as
    for _ in range(2):      # the training crops hold theirs
        window = int(round(d_field * 64 / d_train))
        d_field = float(np.nanmedian(centre_diameters(extract_crops(field[:1], cen, window)[:, 0])))
    factor = d_train / d_field
    scaled = rescale_field(field, factor)
    rng = np.random.default_rng(0)
    show = rng.choice(len(cen), 8, replace=False)
    crops = extract_crops(scaled, (cen[show] + 0.5) * factor - 0.5, 64)

    norm = Normalization(scale="percentile")
    rows = [("training crops\nas read", train), ("training crops\nnormalised", norm.scale_samples(train)),
            ("field cells\nas read", crops), ("field cells\nnormalised", norm.scale_samples(crops))]
    fig, axes = plt.subplots(4, 8, figsize=(12.5, 6.8))
    for r, (title, imgs) in enumerate(rows):
        for k in range(8):
            ax = axes[r, k]
            ax.imshow(rgb(imgs[k]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(MITOSIS_CLASSES[k], fontsize=9)
            if r == 2 and k == 0:
                ax.set_title("(any cells of the field, unlabeled)", fontsize=8, loc="left")
        axes[r, 0].set_ylabel(title, fontsize=9)
    fig.suptitle(f"Training crops and cells cut from a raw field (field scaled by {factor:.2f} to the training "
                 f"cell size: {d_field:.0f} -> {d_train:.0f} px)", fontsize=10)
    fig.tight_layout()
    out = ROOT / "docs" / "images" / "normalisation.png"
    fig.savefig(out, dpi=90)
    print(f"wrote {out}; field cells {d_field:.1f} px, training interphase {d_train:.1f} px, factor {factor:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
