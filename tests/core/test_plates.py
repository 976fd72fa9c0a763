"""Plates: reading folder plates (well folders, names by a regex, per-channel files) and
OME-Zarr HCS plates written by ome-zarr's writer; per-well scores and tables on a tiny
simulated plate; Dask workers giving the same rows as one process; resuming."""
from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_rarepheno.core.datasets.synthetic import SimConfig
from napari_rarepheno.core.errors import InputError, OutputError
from napari_rarepheno.core.plates.layout import canonical_well, plate_shape, row_letters, well_name
from napari_rarepheno.core.plates.reading import read_plate
from napari_rarepheno.core.plates.synthetic import PlateSim, render_plate_field, simulate_plate

#: small fields a briefly trained WSCNN tells apart: few, elongated ellipses; half the objects
#: of a positive field are circles
PLATE_SIM = dict(height=64, width=80, grid=(2, 3), n_objects=(3, 6), size=(14, 18), rare_fraction=0.5,
                 ellipse_ratio=(0.35, 0.55))
POSITIVE = ("A02", "B04", "C01")


def tiny_plate(**kw) -> PlateSim:
    """A 3x4 plate, 2 fields per well, the rare phenotype in three wells."""
    args = dict(sim=SimConfig(seed=11, **PLATE_SIM), rows=3, cols=4, fields=2, positive_wells=POSITIVE)
    args.update(kw)
    return PlateSim(**args)


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------ layout
def test_well_names():
    assert canonical_well("a1") == canonical_well("A-01") == canonical_well("A/1") == "A01"
    assert well_name(15, 23) == "P24" and row_letters(26) == "AA" and canonical_well("AF48") == "AF48"
    assert plate_shape(["A01", "H12"]) == (8, 12) and plate_shape(["P24"]) == (16, 24)
    with pytest.raises(InputError, match="not a well name"):
        canonical_well("12A")


# ------------------------------------------------------------------ folder plates
def _write(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, arr)


def test_folder_plate_with_well_folders_and_channel_files(tmp_path):
    rng = np.random.default_rng(0)
    planes = {}
    for well in ("B2", "A01", "A02"):  # folder names spelled freely
        for s in (2, 10, 1):
            for ch in ("w1", "w2"):
                a = rng.integers(0, 4000, (20, 24), dtype=np.uint16)
                planes[(canonical_well(well), str(s), ch)] = a
                _write(tmp_path / "plate" / well / f"scr_{canonical_well(well)}_s{s}_{ch}.tif", a)
    (tmp_path / "plate" / "notes.txt").write_text("not an image")
    plate = read_plate(tmp_path / "plate", channel_files=["_w1", "_w2"])
    assert plate.kind == "folder" and plate.shape == (2, 3)  # A..B, 1..2 -> the 6-well format
    assert [f.key for f in plate.fields] == [f"{w}/{s}" for w in ("A01", "A02", "B02") for s in ("1", "2", "10")]
    assert plate.wells == ["A01", "A02", "B02"]
    f = plate.fields[5]  # A02, field 10
    img = f.read()
    assert img.shape == (2, 20, 24) and img.dtype == np.uint16
    assert np.array_equal(img[0], planes[("A02", "10", "w1")]) and np.array_equal(img[1], planes[("A02", "10", "w2")])
    assert f.lazy().read_raw(3, 7, 0, 5).shape == (2, 4, 5)


def test_folder_plate_by_regex_and_numbered_fields(tmp_path):
    root = tmp_path / "flat"
    for name in ("run1_A01_site3.tif", "run1_A01_site1.tif", "run1_H12_site1.tif", "thumbnail.tif"):
        _write(root / "sub" / name, np.zeros((16, 16), np.uint8) + len(name))
    with pytest.warns(UserWarning, match="skipped 1 image.*thumbnail"):
        plate = read_plate(root, regex=r"_(?P<well>[A-P]\d{2})_site(?P<field>\d+)")
    assert [f.key for f in plate.fields] == ["A01/1", "A01/3", "H12/1"] and plate.shape == (8, 12)
    # without a field group the fields of a well are numbered in name order
    with pytest.warns(UserWarning):
        plate = read_plate(root, regex=r"_([A-P]\d{2})_")
    assert [f.key for f in plate.fields] == ["A01/1", "A01/2", "H12/1"]
    assert plate.fields[1].source.describe().endswith("run1_A01_site3.tif")
    with pytest.raises(InputError, match="no image names its well"):
        read_plate(root, regex=r"_(?P<well>Z\d{2})_")
    with pytest.raises(InputError, match="not a valid regular expression"):
        read_plate(root, regex="_(?P<well>")
    with pytest.raises(InputError, match="needs a group for the well"):
        read_plate(root, regex="_A01_")
    # two files claiming one field are refused, naming both
    _write(root / "other" / "run2_A01_site3.tif", np.zeros((16, 16), np.uint8))
    with pytest.raises(InputError, match="two images are field 3 of well A01"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read_plate(root, regex=r"_(?P<well>[A-P]\d{2})_site(?P<field>\d+)")


def test_folder_plate_default_regex_and_refusals(tmp_path):
    simulate_plate(tmp_path / "flat", tiny_plate(), "flat")
    plate = read_plate(tmp_path / "flat")  # sim_B04_s2.png: the default regex
    assert len(plate) == 24 and plate.fields[0].key == "A01/1" and plate.fields[-1].key == "C04/2"
    with pytest.raises(InputError, match="plate folder not found"):
        read_plate(tmp_path / "nope")
    with pytest.raises(InputError, match="--level and --z are for OME-Zarr plates"):
        read_plate(tmp_path / "flat", level=1)


# ------------------------------------------------------------------ OME-Zarr HCS plates
@pytest.mark.parametrize("ngff", ["0.5", "0.4"])
def test_zarr_plate_written_by_ome_zarr(tmp_path, ngff):
    cfg = tiny_plate()
    simulate_plate(tmp_path / "p.zarr", cfg, "zarr", ngff=ngff)
    assert (tmp_path / "p.zarr" / ("zarr.json" if ngff == "0.5" else ".zattrs")).is_file()
    plate = read_plate(tmp_path / "p.zarr")
    assert plate.kind == "ome-zarr" and plate.shape == (3, 4) and len(plate) == 24
    assert [f.key for f in plate.fields[:3]] == ["A01/0", "A01/1", "A02/0"]
    f = plate.fields[3]  # A02, field 1: a positive well
    full = f.read()
    assert full.shape == (1, 64, 80) and full.dtype == np.uint8
    assert np.array_equal(full[0], render_plate_field(cfg, "A02", 1))  # the pixels the simulation drew
    lazy = f.lazy()
    assert lazy.shape == (1, 64, 80) and np.array_equal(lazy.read_raw(10, 20, 30, 45), full[:, 10:20, 30:45])
    low = read_plate(tmp_path / "p.zarr", level=-1)
    assert low.level == -1 and low.fields[3].read().shape == (1, 32, 40)
    with pytest.raises(InputError, match="resolution level 2 asked for.*2 level"):
        read_plate(tmp_path / "p.zarr", level=2)
    with pytest.raises(InputError, match="one well of a plate"):
        read_plate(str(tmp_path / "p.zarr" / "A" / "1"))
    with pytest.raises(InputError, match="--regex and --channel-files are for folder plates"):
        read_plate(tmp_path / "p.zarr", regex="_(?P<well>x)")


def test_zarr_plate_with_z_and_t_axes(tmp_path):
    import zarr
    from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    root = zarr.open_group(str(tmp_path / "tz.zarr"), mode="w")
    write_plate_metadata(root, ["A"], ["1"], ["A/1"])
    well = root.require_group("A").require_group("1")
    write_well_metadata(well, ["0"])
    stack = np.arange(2 * 3 * 2 * 16 * 16, dtype=np.uint16).reshape(2, 3, 2, 16, 16)  # t, c, z, y, x
    write_image(stack, well.require_group("0"), axes="tczyx", scale_factors=[])
    plate = read_plate(tmp_path / "tz.zarr", z=1)
    img = plate.fields[0].read()
    assert img.shape == (3, 16, 16) and np.array_equal(img, stack[0, :, 1])
    assert np.array_equal(plate.fields[0].lazy().read_raw(2, 5, 3, 9), stack[0, :, 1, 2:5, 3:9])
    with pytest.raises(InputError, match="plane z=2 asked for.*2 plane"):
        read_plate(tmp_path / "tz.zarr", z=2).fields[0].read()
