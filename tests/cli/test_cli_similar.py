"""The CLI contract of ``rarepheno similar`` (more like this) and ``rarepheno suggest`` (what to
label next): the CSV columns and order, the query first, per-channel files, refusals."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_rarepheno.cli import main


def rows_of(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_similar_writes_rank_image_distance_nearest_first(deepyeast_model, yeast_data, tmp_path, capsys):
    crops = yeast_data / "crops"
    query = sorted((crops / "endosome").iterdir())[2]
    out = tmp_path / "similar.csv"
    assert main(["similar", str(deepyeast_model), str(query), str(crops), "--top", "8", "--out", str(out),
                 "--device", "cpu", "--show", "3"]) == 0
    with open(out, newline="") as fh:
        assert next(csv.reader(fh)) == ["rank", "image", "distance"]
    rows = rows_of(out)
    assert len(rows) == 8 and [int(r["rank"]) for r in rows] == list(range(1, 9))
    assert Path(rows[0]["image"]) == query and float(rows[0]["distance"]) == 0.0
    d = [float(r["distance"]) for r in rows]
    assert d == sorted(d) and d[-1] > 0
    assert {Path(r["image"]).parent.parent for r in rows} == {crops}  # every class folder is one pool
    assert "... 5 more" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["similar", str(deepyeast_model), str(query), str(crops), "--out", str(out), "--quiet"])
    assert e.value.code == 2 and "exists already" in capsys.readouterr().err


def test_similar_hand_made_features_and_channel_files(tmp_path):
    pool = tmp_path / "pool"
    rng = np.random.default_rng(0)
    for cls, r in (("small", 5), ("large", 11)):
        (pool / cls).mkdir(parents=True)
        for i in range(5):
            yy, xx = np.mgrid[:32, :32] - 15.5 + rng.uniform(-1, 1, 2)[:, None, None]
            img = (30 + 150 * (np.hypot(yy, xx) < r + rng.uniform(-0.5, 0.5)) + rng.normal(0, 5, yy.shape))
            img = np.clip(img, 0, 255).astype(np.uint8)
            tifffile.imwrite(pool / cls / f"{cls}{i}_w1.tif", img)
            tifffile.imwrite(pool / cls / f"{cls}{i}_w2.tif", img[::-1])
    out = tmp_path / "s.csv"
    assert main(["similar", "features", str(pool / "large" / "large3_w2.tif"), str(pool), "--top", "5",
                 "--out", str(out), "--channel-files", "_w1,_w2", "--quiet"]) == 0
    rows = rows_of(out)
    assert Path(rows[0]["image"]).name == "large3_w1.tif" and float(rows[0]["distance"]) == 0.0
    assert [Path(r["image"]).parent.name for r in rows] == ["large"] * 5
    with pytest.raises(SystemExit) as e:
        main(["similar", "features", str(tmp_path / "missing.tif"), str(pool), "--out", str(tmp_path / "x.csv"),
              "--quiet"])
    assert e.value.code == 2


def test_suggest_writes_ordered_csv(deepyeast_model, yeast_data, tmp_path, capsys):
    out = tmp_path / "suggest.csv"
    assert main(["suggest", str(deepyeast_model), str(yeast_data / "crops"), "--n", "6", "--out", str(out),
                 "--device", "cpu"]) == 0
    with open(out, newline="") as fh:
        assert next(csv.reader(fh)) == ["rank", "image", "predicted", "uncertainty", "margin", "entropy", "novelty"]
    rows = rows_of(out)
    assert [int(r["rank"]) for r in rows] == list(range(1, 7)) and len({r["image"] for r in rows}) == 6
    assert all(0 <= float(r["uncertainty"]) <= 1 for r in rows)
    assert "6 image(s) to label next" in capsys.readouterr().err
    plain = tmp_path / "plain.csv"
    assert main(["suggest", str(deepyeast_model), str(yeast_data / "crops"), "--n", "6", "--out", str(plain),
                 "--diversity", "none", "--quiet", "--device", "cpu"]) == 0
    u = [float(r["uncertainty"]) for r in rows_of(plain)]
    assert u == sorted(u, reverse=True)  # without diversity: the least sure first
