"""Region-aware splits, checked on the real CellCognition mitosis crops."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from napari_rarepheno.core.datasets.bundled import MITOSIS_CROPS
from napari_rarepheno.core.datasets.splits import (
    CellName,
    parse_cell_name,
    random_split,
    region_key,
    split_by_group,
    split_by_region,
    split_counts,
    track_regions,
)
from napari_rarepheno.core.errors import InputError

CROPS = MITOSIS_CROPS  # the real crops shipped in the package


def needs_crops(f):
    return f


def test_parse_cell_name_and_region_key():
    assert parse_cell_name("P0037_T00012_X0412_Y0633.png") == CellName(37, 12, 412, 633)
    assert parse_cell_name(Path("/x/pro/P0037_T00012_X0412_Y0633.png")).x == 412
    assert parse_cell_name("cell_0001.png") is None
    assert parse_cell_name("P0037_T00012_X0412.png") is None
    assert region_key("P0037_T00012_X0412_Y0633.png") == "P0037_bx01_by03"
    assert region_key("P0037_T00012_X0412_Y0633.png", block=(100, 100)) == "P0037_bx04_by06"
    with pytest.raises(InputError, match="cell_0001.png"):
        region_key("cell_0001.png")


def test_a_track_crossing_a_block_border_stays_in_one_region():
    names = [f"P0001_T{t:05d}_X{225 + 5 * t:04d}_Y0100.png" for t in range(1, 5)]  # 230 -> 245
    names.append("P0001_T00001_X0600_Y0100.png")                                    # far away
    regions = track_regions(names, block=(232, 208))
    assert len(set(regions[:4])) == 1 and regions[4] != regions[0]
    assert [region_key(n) for n in names[:4]] != [regions[0]] * 4  # the raw blocks differ


@needs_crops
def test_real_crops_split_by_region():
    files = [(p, p.parent.name) for p in sorted(CROPS.glob("*/*.png"))]
    result = split_by_region(files, fractions=(0.6, 0.2, 0.2), seed=0)
    counts = split_counts(result)
    print("\nmitosis crops per split:")
    for split, c in counts.items():
        print(f"  {split:5s} {len(result[split]):4d} {c}")
    assert sum(len(v) for v in result.values()) == len(files)
    classes = {c for _, c in files}
    for split in ("train", "val", "test"):
        assert set(counts[split]) == classes, f"a class is missing from {split}"
    # every class close to 60/20/20
    for c in classes:
        n = sum(counts[s][c] for s in counts)
        assert 0.4 <= counts["train"][c] / n <= 0.8, (c, counts)
    # no region in two splits
    names = [p for p, _ in files]
    region = dict(zip(names, track_regions(names)))
    owner = {}
    for split, items in result.items():
        for p, _ in items:
            assert owner.setdefault(region[p], split) == split
    # and no near-duplicate (same position, next frame, < 20 px) across splits
    where = {p: s for s, items in result.items() for p, _ in items}
    cells = [(parse_cell_name(p), where[p]) for p in names]
    arr = np.array([(c.position, c.time, c.x, c.y) for c, _ in cells])
    split_id = np.array([s for _, s in cells])
    dist = np.hypot(arr[:, None, 2] - arr[None, :, 2], arr[:, None, 3] - arr[None, :, 3])
    close = ((arr[:, None, 0] == arr[None, :, 0]) & (np.abs(arr[:, None, 1] - arr[None, :, 1]) <= 1)
             & (dist < 20))
    assert not (close & (split_id[:, None] != split_id[None, :])).any()
    # deterministic per seed
    assert split_by_region(files, seed=0) == result


def test_split_by_group_never_splits_a_group():
    rng = np.random.default_rng(1)
    items = [(f"g{g:02d}_{i}.png", "abc"[rng.integers(3)]) for g in range(30)
             for i in range(int(rng.integers(1, 12)))]
    result = split_by_group(items, lambda it: it[0].split("_")[0], (0.6, 0.2, 0.2), seed=4)
    owner = {}
    for split, part in result.items():
        for name, _ in part:
            assert owner.setdefault(name.split("_")[0], split) == split
    assert sorted(x for v in result.values() for x in v) == sorted(items)
    counts = split_counts(result)
    for s in result:
        assert set(counts[s]) == {"a", "b", "c"}
    frac = len(result["train"]) / len(items)
    assert 0.5 <= frac <= 0.7


def test_random_split_is_stratified_and_seeded():
    items = [(f"x{i}.png", "rare" if i % 10 == 0 else "common") for i in range(200)]
    result = random_split(items, (0.6, 0.2, 0.2), seed=0)
    counts = split_counts(result)
    assert counts["train"] == {"common": 108, "rare": 12}
    assert counts["val"] == {"common": 36, "rare": 4} == counts["test"]
    assert random_split(items, seed=0) == result != random_split(items, seed=1)
    plain = random_split([f"{i}.png" for i in range(10)], (0.5, 0.5), splits=("a", "b"))
    assert Counter({k: len(v) for k, v in plain.items()}) == Counter(a=5, b=5)


def test_bad_inputs():
    with pytest.raises(InputError, match="fractions"):
        random_split(["a.png"], fractions=(0.5, 0.5))
    with pytest.raises(InputError, match="do not follow"):
        split_by_region([("cell_1.png", "a"), ("P0001_T00001_X0001_Y0001.png", "a")])
