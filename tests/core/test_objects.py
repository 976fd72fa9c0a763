"""The objects.csv contract: round trip, validation messages, atomic writes."""
from __future__ import annotations

import numpy as np
import pytest

from napari_rarepheno.core.errors import InputError
from napari_rarepheno.core.io.atomic import staged_dir
from napari_rarepheno.core.io.boxes import COLUMNS, Box, read_objects, write_objects
from napari_rarepheno.core.io.images import read_png, write_png

HEADER = ",".join(COLUMNS)


def _boxes():
    return [Box("positive/img_00001.png", 1, 2, 18, 20, "rare"),
            Box("positive/img_00001.png", 40, 50, 55, 70, "common"),
            Box("negative/img_00000.png", 0, 0, 10, 10, "common")]


def test_round_trip_groups_by_image_and_keeps_order(tmp_path):
    path = write_objects(tmp_path / "objects.csv", _boxes())
    lines = path.read_text().splitlines()
    assert lines[0] == "image,x0,y0,x1,y1,kind"
    assert lines[1] == "positive/img_00001.png,1,2,18,20,rare"
    table = read_objects(path, {"positive/img_00001.png": (210, 280),
                                "negative/img_00000.png": (210, 280)})
    assert list(table) == ["positive/img_00001.png", "negative/img_00000.png"]
    assert table["positive/img_00001.png"] == _boxes()[:2]
    assert table["negative/img_00000.png"][0].width == 10
    assert [p.name for p in tmp_path.iterdir()] == ["objects.csv"]  # no temp file left


def test_write_is_atomic_on_bad_box(tmp_path):
    write_objects(tmp_path / "objects.csv", _boxes())
    before = (tmp_path / "objects.csv").read_text()
    with pytest.raises(InputError, match="kind"):
        write_objects(tmp_path / "objects.csv", [Box("a.png", 0, 0, 5, 5, "weird")])
    assert (tmp_path / "objects.csv").read_text() == before
    assert len(list(tmp_path.iterdir())) == 1


def test_columns_in_any_order_are_accepted(tmp_path):
    p = tmp_path / "objects.csv"
    p.write_text("kind,image,y0,x0,y1,x1\nrare,a.png,2,1,9,8\n")
    assert read_objects(p)["a.png"] == [Box("a.png", 1, 2, 8, 9, "rare")]


@pytest.mark.parametrize("header,expect", [
    ("image,x0,y0,x1,y1", "missing column(s) kind"),
    ("image,x0,y0,x1,y1,kind,score", "unexpected column(s) score"),
    ("image,x,y0,x1,y1,kind", "missing column(s) x0"),
])
def test_bad_header_names_file_and_columns(tmp_path, header, expect):
    p = tmp_path / "my_objects.csv"
    p.write_text(header + "\n")
    with pytest.raises(InputError) as err:
        read_objects(p)
    assert "my_objects.csv" in str(err.value)
    assert expect in str(err.value)


@pytest.mark.parametrize("row,expect", [
    ("a.png,1,2,8,9,circle", "kind 'circle'"),
    ("a.png,1.5,2,8,9,rare", "column x0 must be an integer"),
    ("a.png,1,2,,9,rare", "column x1 must be an integer"),
    ("a.png,8,2,8,9,rare", "box is empty"),
    ("a.png,-1,2,8,9,rare", "negative"),
    ("a.png,1,2,8,9", "expected 6 values"),
])
def test_bad_rows_name_file_and_line(tmp_path, row, expect):
    p = tmp_path / "objects.csv"
    p.write_text(f"{HEADER}\na.png,0,0,4,4,common\n{row}\n")
    with pytest.raises(InputError) as err:
        read_objects(p)
    msg = str(err.value)
    assert "objects.csv" in msg and "line 3" in msg and expect in msg


def test_box_outside_image_names_file_line_and_image(tmp_path):
    p = tmp_path / "objects.csv"
    p.write_text(f"{HEADER}\npositive/a.png,0,0,4,4,common\npositive/a.png,270,10,281,20,rare\n")
    read_objects(p, {"positive/a.png": (210, 290)})  # fits a wider image
    with pytest.raises(InputError) as err:
        read_objects(p, {"positive/a.png": (210, 280)})
    msg = str(err.value)
    assert "objects.csv" in msg and "line 3" in msg and "positive/a.png" in msg
    assert "outside" in msg
    with pytest.raises(InputError, match="not among the images"):
        read_objects(p, {"positive/b.png": (210, 280)})


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_objects(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="empty"):
        read_objects(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text(HEADER + "\n")
    assert read_objects(tmp_path / "header.csv") == {}


def test_staged_dir_refuses_non_empty_and_cleans_up(tmp_path):
    out = tmp_path / "data"
    with staged_dir(out) as stage:
        (stage / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1"
    with pytest.raises(InputError, match="not empty"):
        with staged_dir(out):
            pass
    with pytest.raises(RuntimeError):
        with staged_dir(out, overwrite=True) as stage:
            (stage / "b.txt").write_text("2")
            raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]  # untouched
    with staged_dir(out, overwrite=True) as stage:
        (stage / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no hidden leftovers


def test_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (21, 30), dtype=np.uint8)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    write_png(tmp_path / "g.png", gray)
    write_png(tmp_path / "c.png", rgb)
    np.testing.assert_array_equal(read_png(tmp_path / "g.png"), gray)
    np.testing.assert_array_equal(read_png(tmp_path / "c.png"), rgb)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="bad.png"):
        read_png(tmp_path / "bad.png")
