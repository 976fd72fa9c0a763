"""Synthetic yeast fields: files, labels vs crops, classes, patterns, determinism."""
from __future__ import annotations

import csv
import json
from collections import defaultdict

import numpy as np
import pytest
import tifffile

from napari_rarepheno.core.datasets.yeast import (
    YEAST_CLASSES,
    YeastConfig,
    simulate_yeast,
)
from napari_rarepheno.core.errors import InputError

SMALL = YeastConfig(height=256, width=256, n_cells=(14, 22))


@pytest.fixture(scope="module")
def yeast(tmp_path_factory):
    out = tmp_path_factory.mktemp("yeast") / "DATA"
    return out, simulate_yeast(out, n_proteins=24, seed=0, cfg=SMALL)


def test_classes_and_proteins(yeast):
    out, summary = yeast
    assert len(YEAST_CLASSES) == 12 and len(set(YEAST_CLASSES)) == 12
    assert all(c == c.lower() and " " not in c for c in YEAST_CLASSES)
    meta = json.loads((out / "yeast.json").read_text())
    per_class = defaultdict(list)
    for prot, cls in meta["proteins"].items():
        per_class[cls].append(prot)
    assert set(per_class) == set(YEAST_CLASSES)
    assert all(len(v) >= 2 for v in per_class.values())
    for cls in YEAST_CLASSES:
        crops = list((out / "crops" / cls).glob("*.tif"))
        assert crops, cls
        assert {c.name.split("_")[0] for c in crops} == set(per_class[cls])


def test_fields_labels_tables_and_crops_agree(yeast):
    out, summary = yeast
    n_crops = 0
    for field in sorted((out / "fields").glob("YP????_f?.tif")):
        stem = field.stem
        with tifffile.TiffFile(field) as tf:
            assert tf.series[0].axes == "CYX"
            image = tf.asarray()
        assert image.shape == (2, 256, 256) and image.dtype == np.uint16
        labels = tifffile.imread(out / "fields" / f"{stem}_labels.tif")
        assert labels.shape == (256, 256) and labels.dtype == np.uint16
        with open(out / "fields" / f"{stem}_cells.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert list(rows[0]) == ["id", "y", "x", "area", "class", "protein"]
        ids = np.unique(labels[labels > 0])
        assert sorted(int(r["id"]) for r in rows) == ids.tolist()
        area = np.bincount(labels.ravel())
        cls = rows[0]["class"]
        crops = sorted((out / "crops" / cls).glob(f"{stem}_*.tif"))
        assert len(crops) == len(ids)  # one crop per labelled cell
        n_crops += len(crops)
        for r in rows:
            assert r["protein"] == stem.split("_")[0] and r["class"] == cls
            assert int(r["area"]) == area[int(r["id"])]
            assert np.pi * 6 ** 2 < int(r["area"]) < np.pi * 15 ** 2
            assert labels[int(r["y"]), int(r["x"])] == int(r["id"])
        crop = tifffile.imread(crops[0])
        assert crop.shape == (2, 64, 64) and crop.dtype == np.uint16
        r = rows[0]
        y, x = int(r["y"]), int(r["x"])
        np.testing.assert_array_equal(tifffile.imread(out / "crops" / cls / f"{stem}_0001.tif"),
                                      image[:, y - 32:y + 32, x - 32:x + 32])
        # the red marker is brighter inside cells than outside
        assert image[0][labels > 0].mean() > 2 * image[0][labels == 0].mean()
    assert n_crops == summary["n_cells"]


def _radial_ratio(out, cls):
    """Green mean in the cell centre over green mean at the cell rim, per cell."""
    ratios = []
    for field in sorted((out / "fields").glob("YP????_f?.tif")):
        with open(out / "fields" / f"{field.stem}_cells.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows[0]["class"] != cls:
            continue
        green = tifffile.imread(field)[1].astype(float)
        labels = tifffile.imread(out / "fields" / f"{field.stem}_labels.tif")
        yy, xx = np.mgrid[:labels.shape[0], :labels.shape[1]]
        for r in rows:
            y, x, i = int(r["y"]), int(r["x"]), int(r["id"])
            rad = np.sqrt(int(r["area"]) / np.pi)
            d = np.hypot(yy - y, xx - x)
            rim = green[(labels == i) & (d > 0.75 * rad)].mean()
            centre = green[d < 0.3 * rad].mean()
            ratios.append(centre / rim)
    return np.array(ratios)


def test_patterns_differ_where_they_should(yeast):
    out, _ = yeast
    assert np.median(_radial_ratio(out, "cell_periphery")) < 0.8
    assert np.median(_radial_ratio(out, "nucleus")) > 1.2


def test_deterministic_and_fast(tmp_path, yeast):
    out, summary = yeast
    assert summary["seconds"] < 10
    again = simulate_yeast(tmp_path / "again", n_proteins=2, seed=0, cfg=SMALL)
    assert again["n_cells"] > 0
    for name in ("YP0000_f0.tif", "YP0001_f0_labels.tif", "YP0001_f0_cells.csv"):
        again_bytes = (tmp_path / "again/fields" / name).read_bytes()
        assert again_bytes == (out / "fields" / name).read_bytes(), name
    other = simulate_yeast(tmp_path / "other", n_proteins=1, seed=5, cfg=SMALL)
    assert other["n_cells"] > 0
    assert (tmp_path / "other/fields/YP0000_f0.tif").read_bytes() != \
        (out / "fields/YP0000_f0.tif").read_bytes()
    with pytest.raises(InputError, match="not empty"):
        simulate_yeast(tmp_path / "other", n_proteins=1, cfg=SMALL)
    with pytest.raises(InputError, match="n_proteins"):
        simulate_yeast(tmp_path / "zero", n_proteins=0)
