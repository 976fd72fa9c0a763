"""The CLI contract for plates: ``rarepheno simulate-plate`` and ``rarepheno plate`` (folder
plates by regex, OME-Zarr plates, --workers 2 on a local Dask cluster giving the same rows)."""
from __future__ import annotations

import csv
import json

import pytest
from helpers import random_wscnn

from napari_rarepheno.cli import main


def rows_of(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """Random weights: the rows only have to be the same, not right."""
    return random_wscnn(tmp_path_factory.mktemp("m") / "wscnn.safetensors")


def _plate(tmp_path, form: str):
    out = tmp_path / form
    assert main(["simulate-plate", str(out), "--form", form, "--rows", "2", "--cols", "3", "--fields", "2",
                 "--positive", "a2", "--quiet"]) == 0
    return out


def test_plate_on_two_dask_workers_writes_the_same_rows(model, tmp_path, capsys):
    plate = _plate(tmp_path, "zarr")
    assert json.loads((plate / "simulation.json").read_text())["positive_wells"] == ["A02"]
    assert main(["plate", str(model), str(plate), "--out", str(tmp_path / "one"), "--device", "cpu"]) == 0
    printed = capsys.readouterr()
    assert "rank" in printed.out and "wrote" in printed.err and "6 well(s), 12 field(s)" in printed.err
    assert main(["plate", str(model), str(plate), "--out", str(tmp_path / "two"), "--device", "cpu",
                 "--workers", "2", "--quiet"]) == 0
    for name in ("wells.csv", "fields.csv"):
        one, two = (tmp_path / "one" / name).read_text(), (tmp_path / "two" / name).read_text()
        assert one == two and len(one.splitlines()) == (7 if name == "wells.csv" else 13)
    assert (tmp_path / "two" / "plate.png").stat().st_size > 1000


def test_plate_from_a_folder_by_regex_level_and_refusals(model, tmp_path, capsys):
    plate = _plate(tmp_path, "flat")  # sim_A01_s1.png ...
    out = tmp_path / "out"
    assert main(["plate", str(model), str(plate), "--out", str(out), "--regex", r"sim_(?P<well>[A-H]\d\d)_s(?P<field>\d)",
                 "--device", "cpu", "--quiet", "--well-score", "mean", "--no-heatmap"]) == 0
    fields = rows_of(out / "fields.csv")
    assert [(f["well"], f["field"]) for f in fields[:3]] == [("A01", "1"), ("A01", "2"), ("A02", "1")]
    assert not (out / "plate.png").exists() and len(rows_of(out / "wells.csv")) == 6
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # results exist: neither --resume nor --overwrite
        main(["plate", str(model), str(plate), "--out", str(out), "--quiet"])
    assert e.value.code == 2 and "--resume" in capsys.readouterr().err
    assert main(["plate", str(model), str(plate), "--out", str(out), "--resume", "--quiet"]) == 0
    assert "0 scored now" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["plate", str(model), str(plate), "--out", str(out), "--overwrite", "--level", "1"])
    assert e.value.code == 2 and "--level and --z are for OME-Zarr plates" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["plate", str(model), str(plate), "--out", str(out), "--overwrite", "--well-score", "median"])
    assert e.value.code == 2 and "--well-score must be" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["plate", str(model), str(plate), "--out", str(out), "--workers", "2", "--scheduler", "tcp://x:1"])
    assert e.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_rank_on_two_dask_workers_writes_the_same_rows(model, tmp_path):
    images = _plate(tmp_path, "folder")  # 12 images in well folders
    assert main(["rank", str(model), str(images), "--out", str(tmp_path / "one.csv"), "--device", "cpu",
                 "--batch-size", "5", "--quiet"]) == 0
    assert main(["rank", str(model), str(images), "--out", str(tmp_path / "two.csv"), "--device", "cpu",
                 "--batch-size", "5", "--workers", "2", "--quiet"]) == 0
    one, two = (tmp_path / "one.csv").read_text(), (tmp_path / "two.csv").read_text()
    assert one == two and len(one.splitlines()) == 13
