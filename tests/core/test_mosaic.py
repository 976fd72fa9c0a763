"""Mosaic fields from the real mitosis crops: layout, tiles, ground truth, split hygiene."""
from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict

import numpy as np
import pytest

from napari_rarepheno.core.datasets.bundled import MITOSIS_CROPS, bundled
from napari_rarepheno.core.datasets.mosaic import (
    MosaicConfig,
    build_mosaics,
    crop_split_table,
)
from napari_rarepheno.core.datasets.splits import track_regions
from napari_rarepheno.core.errors import InputError
from napari_rarepheno.core.io.boxes import COLUMNS, read_objects
from napari_rarepheno.core.io.images import read_png

CROPS = bundled(MITOSIS_CROPS)  # the real crops shipped in the package
CFG = MosaicConfig(n_per_class=20, seed=1)


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    out = tmp_path_factory.mktemp("mosaic") / "DATA"
    summary = build_mosaics(CROPS, out, CFG)
    return out, summary


def _tiles(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_layout_and_contract_columns(mosaic):
    out, summary = mosaic
    assert summary["split_method"] == "region"
    assert summary["fields"] == {"train": {"negative": 12, "positive": 12},
                                 "val": {"negative": 4, "positive": 4},
                                 "test": {"negative": 4, "positive": 4}}
    meta = json.loads((out / "mosaic.json").read_text())
    assert meta["config"]["grid"] == [4, 4]
    for split in ("train", "val", "test"):
        first = (out / split / "objects.csv").read_text().splitlines()[0]
        assert first == ",".join(COLUMNS)  # exactly the six contract columns
        images = sorted((out / split).glob("*/*.png"))
        shapes = {}
        for f in images:
            img = read_png(f)
            assert img.shape == (256, 256, 3) and img.dtype == np.uint8
            assert img[..., 2].max() == 0  # blue stays empty
            shapes[f"{f.parent.name}/{f.name}"] = img.shape
        table = read_objects(out / split / "objects.csv", shapes)
        assert set(table) == set(shapes)
        for name, boxes in table.items():
            assert len(boxes) == 16
            n_rare = sum(b.kind == "rare" for b in boxes)
            if name.startswith("positive/"):
                assert 1 <= n_rare <= 3
            else:
                assert n_rare == 0


def test_tiles_match_objects_and_pixels(mosaic):
    out, _ = mosaic
    for split in ("train", "val", "test"):
        table = read_objects(out / split / "objects.csv")
        tiles = _tiles(out / split / "tiles.csv")
        assert list(tiles[0]) == ["image", "x0", "y0", "x1", "y1", "class", "source"]
        boxes = [(b.image, b.x0, b.y0, b.x1, b.y1, b.kind) for v in table.values() for b in v]
        from_tiles = [(t["image"], int(t["x0"]), int(t["y0"]), int(t["x1"]), int(t["y1"]),
                       "rare" if t["class"] in CFG.rare else "common") for t in tiles]
        assert sorted(boxes) == sorted(from_tiles)
        for t in tiles:
            assert t["source"].split("/")[0] == t["class"]
            assert t["class"] in CFG.rare + CFG.common
        # the pixels of each rare tile are its source crop, flipped/rotated
        for t in [t for t in tiles if t["class"] in CFG.rare][:40]:
            field = read_png(out / split / t["image"])
            tile = field[int(t["y0"]):int(t["y1"]), int(t["x0"]):int(t["x1"])]
            src = read_png(CROPS / t["source"])
            variants = [np.rot90(v, k) for v in (src, src[:, ::-1]) for k in range(4)]
            assert any(np.array_equal(tile, v) for v in variants), t


def test_no_crop_or_region_feeds_two_splits(mosaic):
    out, summary = mosaic
    used = defaultdict(set)
    for split in ("train", "val", "test"):
        for t in _tiles(out / split / "tiles.csv"):
            used[split].add(t["source"])
    assert not (used["train"] & used["val"]) and not (used["train"] & used["test"])
    assert not (used["val"] & used["test"])
    all_sources = sorted(set().union(*used.values()))
    regions = dict(zip(all_sources, track_regions(all_sources)))
    owner = {}
    for split, sources in used.items():
        for s in sources:
            assert owner.setdefault(regions[s], split) == split
    # every rare and common class appears in every split's crop pool
    for split, counts in summary["crops"].items():
        assert all(counts[c] > 0 for c in CFG.rare + CFG.common), (split, counts)
    assert crop_split_table(CROPS, CFG)["val"] == summary["crops"]["val"]


def test_unknown_class_lists_the_classes_found(tmp_path):
    with pytest.raises(InputError) as err:
        build_mosaics(CROPS, tmp_path / "out", MosaicConfig(rare=("mitosis",)))
    msg = str(err.value)
    assert "mitosis" in msg and "inter" in msg and "apo" in msg and "telo" in msg
    assert not (tmp_path / "out").exists()


def test_class_without_crops_in_a_split(tmp_path):
    crops = tmp_path / "crops"
    for cls, names in {"inter": sorted((CROPS / "inter").glob("*.png"))[:60],
                       "pro": sorted((CROPS / "pro").glob("*.png"))[:1]}.items():
        (crops / cls).mkdir(parents=True)
        for f in names:
            shutil.copy(f, crops / cls / f.name)
    with pytest.raises(InputError, match="no crops of class"):
        build_mosaics(crops, tmp_path / "out", MosaicConfig(rare=("pro",), n_per_class=5))
    assert not (tmp_path / "out").exists()
