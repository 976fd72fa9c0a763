"""The CLI contract for discovery: rank, mislabels, apply-decisions / undo-decisions,
gallery, name-cluster."""
from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import pytest

from napari_rarepheno.cli import main
from napari_rarepheno.core.discover.decisions import record_decision


def rows_of(path):
    return list(csv.DictReader(open(path)))


def test_rank_writes_sorted_csv_and_refuses_overwrite(wscnn_model, wscnn_data, tmp_path, capsys):
    out = tmp_path / "ranking.csv"
    assert main(["rank", str(wscnn_model), str(wscnn_data / "test"), "--out", str(out), "--device", "cpu",
                 "--show", "3"]) == 0
    rows = rows_of(out)
    assert len(rows) == 10 and list(rows[0])[:6] == ["rank", "image", "label", "predicted", "score", "entropy"]
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    printed = capsys.readouterr().out
    assert "rank" in printed and "... 7 more" in printed
    with pytest.raises(SystemExit) as e:
        main(["rank", str(wscnn_model), str(wscnn_data / "test"), "--out", str(out), "--quiet"])
    assert e.value.code == 2 and "exists already" in capsys.readouterr().err
    assert main(["rank", str(wscnn_model), str(wscnn_data / "test"), "--out", str(out), "--overwrite",
                 "--score", "entropy", "--quiet"]) == 0


def test_mislabels_apply_and_undo(wscnn_model, wscnn_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(wscnn_data, data)
    sus = tmp_path / "suspects.csv"
    assert main(["mislabels", str(wscnn_model), str(data / "train"), "--out", str(sus), "--top", "3",
                 "--device", "cpu", "--quiet"]) == 0
    rows = rows_of(sus)
    assert len(rows) == 3 and {"image", "label", "suggested", "suspicion"} <= set(rows[0])
    dec = tmp_path / "decisions.csv"
    for r, d in zip(rows, ("confirm", "reject", "confirm")):
        record_decision(dec, r["image"], r["label"], r["suggested"], d)
    capsys.readouterr()
    assert main(["apply-decisions", str(data), str(dec)]) == 0  # preview
    out = capsys.readouterr()
    assert "2 to move, 1 skipped, 0 problem(s)" in out.err and "nothing was moved" in out.err
    assert all(Path(r["image"]).exists() for r in rows)
    assert main(["apply-decisions", str(data), str(dec), "--apply"]) == 0
    err = capsys.readouterr().err
    assert "2 moved" in err
    undo_file = re.search(r"undo-decisions (\S+)", err).group(1)
    assert not Path(rows[0]["image"]).exists() and Path(rows[1]["image"]).exists()
    assert main(["undo-decisions", undo_file]) == 0
    assert all(Path(r["image"]).exists() for r in rows)
    with pytest.raises(SystemExit):
        main(["undo-decisions", undo_file])
    assert "used already" in capsys.readouterr().err


def test_gallery_and_name_cluster(wscnn_model, wscnn_data, tmp_path, capsys):
    out = tmp_path / "gallery"
    assert main(["gallery", str(wscnn_model), str(wscnn_data / "test" / "positive"), "--out", str(out),
                 "--clusters", "2", "--min-probability", "0", "--per-image", "1", "--device", "cpu", "--quiet"]) == 0
    for name in ("gallery.csv", "gallery.png", "crops.npy", "features.npy", "gallery.json"):
        assert (out / name).exists(), name
    rows = rows_of(out / "gallery.csv")
    assert 1 <= len(rows) <= 5 and {"image", "y", "x", "score", "cluster", "map_x"} <= set(rows[0])
    k = rows[0]["cluster"]
    assert main(["name-cluster", str(out), "--cluster", k, "--name", "round", "--out", str(tmp_path / "crops")]) == 0
    assert len(list((tmp_path / "crops" / "round").glob("*.png"))) == sum(r["cluster"] == k for r in rows)
    with pytest.raises(SystemExit) as e:
        main(["gallery", str(wscnn_model), str(tmp_path / "nothing"), "--out", str(tmp_path / "g2")])
    assert e.value.code == 2 and "not found" in capsys.readouterr().err
