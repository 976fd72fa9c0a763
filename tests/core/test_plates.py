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
from napari_rarepheno.core.plates.layout import (
    canonical_well,
    plate_shape,
    row_letters,
    well_name,
)
from napari_rarepheno.core.plates.reading import read_plate
from napari_rarepheno.core.plates.synthetic import (
    SMALL_FIELDS,
    PlateSim,
    render_plate_field,
    simulate_plate,
)

#: small fields a briefly trained WSCNN tells apart (few, elongated ellipses; half the objects
#: of a positive field are circles)
PLATE_SIM = SMALL_FIELDS
POSITIVE = ("A02", "B04", "C01")


def tiny_plate(**kw) -> PlateSim:
    """A 3x4 plate, 2 fields per well, the rare phenotype in three wells."""
    args = {"sim": SimConfig(seed=11, **PLATE_SIM), "rows": 3, "cols": 4, "fields": 2, "positive_wells": POSITIVE}
    return PlateSim(**{**args, **kw})


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
    with pytest.raises(InputError, match="two images are field 3 of well A01"), warnings.catch_warnings():
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
    assert plate.kind == "ome-zarr" and plate.shape == (3, 4) and len(plate) == 24 and plate.name == "p.zarr"
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


# ------------------------------------------------------------------ per-well results
@pytest.fixture(scope="module")
def plate_model(tmp_path_factory) -> Path:
    """A WSCNN trained briefly (8 epochs, 96 images per class) on fields like the plate's."""
    from napari_rarepheno.core.datasets.synthetic import simulate
    from napari_rarepheno.core.training.augment import AugmentConfig
    from napari_rarepheno.core.training.trainer import TrainConfig
    from napari_rarepheno.core.wscnn.train import WSCNNOptions, train_wscnn

    root = tmp_path_factory.mktemp("plate-model")
    simulate(root / "data", SimConfig(n_per_class=96, seed=5, **PLATE_SIM))
    aug = AugmentConfig(rotation_ranges=[(-20.0, 20.0), (160.0, 200.0)], translate_px=8.0)
    train_wscnn(root / "data", root / "m.safetensors", WSCNNOptions(augment=aug),
                TrainConfig(epochs=8, device="cpu", seed=0, batch_size=16))
    return root / "m.safetensors"


@pytest.fixture(scope="module")
def plates(tmp_path_factory) -> dict[str, Path]:
    """The tiny plate (seed 12) as well folders and as OME-Zarr (read-only for the tests)."""
    root = tmp_path_factory.mktemp("plates")
    cfg = tiny_plate(sim=SimConfig(seed=12, **PLATE_SIM))
    return {form: simulate_plate(root / form, cfg, form) for form in ("folder", "zarr")}


@pytest.mark.slow  # the module's WSCNN trains for ~25-50 s once
def test_wells_rank_the_positive_wells_first(plate_model, plates, tmp_path):
    from napari_rarepheno.core.plates.wells import score_plate

    seen = []
    res = score_plate(plate_model, plates["folder"], tmp_path / "out", device="cpu", callback=seen.append)
    assert res.complete and res.n_scored == 24 and seen[-1].batch == seen[-1].n_batches == 24
    wells = rows_of(tmp_path / "out" / "wells.csv")
    assert list(wells[0])[:4] == ["well", "n_fields", "n_positive_fields", "score"]
    assert len(wells) == 12 and {w["well"] for w in wells[:3]} == set(POSITIVE)
    scores = [float(w["score"]) for w in wells]
    assert scores == sorted(scores, reverse=True) and [int(w["rank"]) for w in wells] == list(range(1, 13))
    assert scores[2] > 0.5 > scores[3]
    assert all(int(w["n_fields"]) == 2 for w in wells)
    assert all(int(w["n_positive_fields"]) >= 1 for w in wells[:3])
    assert sum(int(w["n_positive_fields"]) for w in wells[3:]) == 0
    fields = rows_of(tmp_path / "out" / "fields.csv")
    assert len(fields) == 24 and fields[0]["well"] == "A01" and fields[-1]["well"] == "C04"
    for w in wells:  # the well's score is the max of its fields'
        assert float(w["score"]) == max(float(f["score"]) for f in fields if f["well"] == w["well"])
    png = (tmp_path / "out" / "plate.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and res.heatmap == tmp_path / "out" / "plate.png"
    assert not (tmp_path / "out" / "fields.partial.csv").exists()
    # the same plate as OME-Zarr gives the same numbers (same pixels)
    z = score_plate(plate_model, plates["zarr"], None, device="cpu")
    assert [(w["well"], w["score"]) for w in z.wells] == [(w["well"], float(w["score"])) for w in wells]
    with pytest.raises(OutputError, match="exist already.*--resume"):
        score_plate(plate_model, plates["folder"], tmp_path / "out", device="cpu")


@pytest.mark.slow  # the module's WSCNN trains for ~25-50 s once
def test_dask_workers_give_the_same_rows_and_load_the_model_once_each(plate_model, plates, tmp_path, monkeypatch):
    from napari_rarepheno.core.io import modelfile
    from napari_rarepheno.core.plates.wells import score_plate

    one = score_plate(plate_model, plates["zarr"], tmp_path / "one", device="cpu")
    loads = []
    real = modelfile.load_model
    monkeypatch.setattr(modelfile, "load_model", lambda *a, **k: loads.append(a[0]) or real(*a, **k))
    two = score_plate(plate_model, plates["zarr"], tmp_path / "two", device="cpu", workers=2, processes=False)
    assert two.complete and two.n_scored == 24
    for name in ("wells.csv", "fields.csv"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()
    assert one.wells == two.wells
    # the client loads it once (as_loaded), each of the 2 worker threads once: not once per field
    assert 2 <= len(loads) <= 3


@pytest.mark.slow  # the module's WSCNN trains for ~25-50 s once
def test_a_stopped_run_resumes_to_the_same_rows(plate_model, plates, tmp_path):
    from napari_rarepheno.core.plates.wells import score_plate
    from napari_rarepheno.core.progress import CancelToken

    full = score_plate(plate_model, plates["folder"], None, device="cpu")
    token = CancelToken()

    def stop_after_7(p):
        if p.batch >= 7:
            token.cancel()
    out = tmp_path / "out"
    part = score_plate(plate_model, plates["folder"], out, device="cpu", callback=stop_after_7, cancel=token)
    assert not part.complete and len(part.fields) == 7
    assert len(rows_of(out / "fields.partial.csv")) == 7 and len(rows_of(out / "wells.csv")) == 4
    with open(out / "fields.partial.csv", "a") as fh:  # a kill cut the last line
        fh.write("B01,1,/x")
    with pytest.raises(InputError, match="choose one"):
        score_plate(plate_model, plates["folder"], out, resume=True, overwrite=True)
    done = score_plate(plate_model, plates["folder"], out, device="cpu", resume=True)
    assert done.complete and done.n_scored == 24 - 7
    assert done.wells == full.wells and done.fields == full.fields
    assert not (out / "fields.partial.csv").exists()
    again = score_plate(plate_model, plates["folder"], out, device="cpu", resume=True)  # nothing left to do
    assert again.n_scored == 0 and again.wells == full.wells


def test_well_scores_from_field_rows():
    from napari_rarepheno.core.plates.wells import FieldSpec, well_rows

    spec = FieldSpec("wscnn", ("negative", "positive"))

    def f(well, field, p):
        return {"well": well, "field": field, "p_negative": f"{1 - p:.6f}", "p_positive": f"{p:.6f}"}
    rows = [f("A01", "1", 0.9), f("A01", "2", 0.1), f("A01", "3", 0.1),
            f("B01", "1", 0.6), f("B01", "2", 0.6), f("B01", "3", 0.6),
            f("A02", "1", 0.9), f("A02", "2", 0.7), f("A02", "3", 0.2)]
    by_max = well_rows(spec, rows)
    # A01 and A02 tie on the max: the one with more positive fields comes first
    assert [r["well"] for r in by_max] == ["A02", "A01", "B01"]
    assert [r["n_positive_fields"] for r in by_max] == [2, 1, 3] and by_max[1]["top_field"] == "1"
    assert by_max[0]["mean_score"] == pytest.approx(0.6)
    assert [r["well"] for r in well_rows(spec, rows, well_score="mean")] == ["B01", "A02", "A01"]
    q = well_rows(spec, rows, well_score="q50")
    assert [r["well"] for r in q] == ["A02", "B01", "A01"] and q[0]["score"] == pytest.approx(0.7)
    assert well_rows(spec, rows, target="negative")[0]["well"] == "A01"
    with pytest.raises(InputError, match="--well-score must be"):
        well_rows(spec, rows, well_score="median")
    with pytest.raises(InputError, match="unknown class"):
        well_rows(spec, rows, target="mitotic")


def test_a_results_folder_reads_back_with_its_plate(tmp_path):
    """plate.json says which plate was scored and how it was read: the folder alone opens the
    run again (tables as score_plate returned them, the plate's fields); older results without
    it still open, the plate format taken from their wells."""
    import json
    import shutil

    from helpers import random_wscnn

    from napari_rarepheno.core.plates.results import INFO, read_results
    from napari_rarepheno.core.plates.wells import score_plate

    model = random_wscnn(tmp_path / "m.safetensors")  # random weights: the rows only have to come back
    plate = simulate_plate(tmp_path / "flat", tiny_plate(rows=2, cols=3, fields=2, positive_wells=("A02",)), "flat")
    regex = r"sim_(?P<well>[A-H]\d\d)_s(?P<field>\d)"
    res = score_plate(model, plate, tmp_path / "out", device="cpu", regex=regex, well_score="mean")
    back = read_results(tmp_path / "out")
    assert back.wells == res.wells and back.fields == res.fields and back.kind == "wscnn" and back.complete
    assert back.shape == (2, 3) and back.name == "flat" and [w["rank"] for w in back.wells] == list(range(1, 7))
    info = json.loads((tmp_path / "out" / INFO).read_text())
    assert info["plate"] == str(plate) and info["regex"] == regex and info["well_score"] == "mean"
    assert info["model"] == str(model) and info["n_fields"] == 12 and info["form"] == "folder"
    again = back.read_plate()  # read as the run read it (its regex)
    assert [f.key for f in again.fields] == [f"{r['well']}/{r['field']}" for r in back.fields]
    moved = shutil.copytree(plate, tmp_path / "moved")
    assert back.read_plate(moved).fields[0].source.describe().startswith(str(moved))
    (tmp_path / "out" / INFO).unlink()  # results of an older run
    old = read_results(tmp_path / "out")
    assert old.wells == res.wells and old.shape == (2, 3) and old.info == {}
    with pytest.raises(InputError, match="which plate"):
        old.read_plate()
    with pytest.raises(InputError, match="no wells.csv"):
        read_results(tmp_path)


def test_deepyeast_wells_are_the_papers_aggregation_of_their_cells(deepyeast_model, yeast_data, tmp_path):
    import shutil

    from napari_rarepheno.core.deepyeast.aggregate import aggregate, posterior_table
    from napari_rarepheno.core.plates.wells import score_plate

    fields = sorted(p for p in (yeast_data / "fields").glob("*.tif") if not p.stem.endswith("_labels"))
    assert len(fields) == 4
    for k, p in enumerate(fields):  # two wells of two fields
        dest = tmp_path / "plate" / ("A01" if k < 2 else "B03")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest / p.name)
    res = score_plate(deepyeast_model, tmp_path / "plate", tmp_path / "out", device="cpu")
    wells, cells = rows_of(tmp_path / "out" / "wells.csv"), rows_of(tmp_path / "out" / "cells.csv")
    names = [c[2:] for c in wells[0] if c.startswith("p_")]
    assert len(names) == len(res.fields[0]) - 8 and {"class", "compartments", "n_cells"} <= set(wells[0])
    assert [w["well"] for w in wells] != [] and sorted(w["well"] for w in wells) == ["A01", "B03"]
    assert sum(int(w["n_cells"]) for w in wells) == len(cells) > 10
    for w in wells:
        mine = [c for c in cells if c["well"] == w["well"]]
        p = np.array([[float(c[f"p_{n}"]) for n in names] for c in mine])
        post = posterior_table(aggregate(p / p.sum(1, keepdims=True), [w["well"]] * len(p), names))[0]
        assert w["class"] == post["map_class"]
        assert float(w[f"p_{post['map_class']}"]) == pytest.approx(post[f"p_{post['map_class']}"], abs=1e-6)
        assert float(w["score"]) == pytest.approx(post["map_prob"], abs=1e-6)


@pytest.mark.slow  # the module's WSCNN trains for ~25-50 s once
def test_big_fields_go_through_the_lazy_tiled_path_with_the_same_scores(plate_model, plates, monkeypatch):
    from napari_rarepheno.core.inference import lazy
    from napari_rarepheno.core.plates import wells
    from napari_rarepheno.core.plates.reading import read_plate

    plate = read_plate(plates["zarr"])
    plate.fields = plate.fields[:4]
    whole = wells.score_plate(plate_model, plate, None, device="cpu", precision="fp32")
    calls = []
    monkeypatch.setattr(wells, "LAZY_PIXELS", 0)  # every field counts as big
    orig = lazy.predict_wscnn_lazy
    monkeypatch.setattr(lazy, "predict_wscnn_lazy", lambda *a, **k: calls.append(k["tile"]) or orig(*a, **k))
    tiled = wells.score_plate(plate_model, plate, None, device="cpu", precision="fp32")
    assert calls == [wells.LAZY_TILE] * 4
    for a, b in zip(whole.fields, tiled.fields):
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
        assert abs(a["peak_y"] - b["peak_y"]) <= 1 and abs(a["peak_x"] - b["peak_x"]) <= 1
