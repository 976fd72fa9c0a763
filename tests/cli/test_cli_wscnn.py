"""The CLI contract for WSCNN: simulate -> train -> evaluate -> predict, on a tiny set."""
import csv
import json

import numpy as np
import pytest
import tifffile

from napari_rarepheno.cli import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = root / "sim"
    assert main(["simulate", str(data), "--n-per-class", "12", "--seed", "1"]) == 0
    model = root / "m.safetensors"
    assert main(["train", "wscnn", str(data), "--out", str(model), "--epochs", "1", "--batch-size", "4",
                 "--quiet"]) == 0
    return root, data, model


def test_simulate_layout(tiny):
    _, data, _ = tiny
    for split in ("train", "val", "test"):
        assert (data / split / "objects.csv").exists()
        assert len(list((data / split / "positive").glob("*.png"))) == 4


def test_train_writes_best_last_log(tiny):
    root, _, model = tiny
    assert model.exists()
    assert (root / "m.last.safetensors").exists()
    assert (root / "m.log.csv").exists()


def test_evaluate_json_keys(tiny, capsys):
    root, data, model = tiny
    out = root / "metrics.json"
    assert main(["evaluate", str(model), str(data / "test"), "--json", str(out), "--quiet"]) == 0
    res = json.loads(out.read_text())
    for k in ("accuracy", "precision", "recall", "n", "localization_accuracy", "localization_precision",
              "localization_recall"):
        assert k in res, k
    assert res["n"] == 8
    assert 0.0 <= res["accuracy"] <= 1.0


def test_predict_outputs_and_resume(tiny):
    root, data, model = tiny
    out = root / "pred"
    inputs = [str(data / "test" / "positive"), str(data / "test" / "negative")]
    assert main(["predict", str(model), *inputs, "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 8
    assert {"image", "p_negative", "p_positive", "predicted"} <= set(rows[0])
    p = float(rows[0]["p_positive"]) + float(rows[0]["p_negative"])
    assert p == pytest.approx(1.0, abs=1e-4)
    name = rows[0]["name"]
    sal = tifffile.imread(out / f"{name}_saliency.tif")
    mask = tifffile.imread(out / f"{name}_mask.tif")
    assert sal.dtype == np.float32 and sal.shape == (210, 280)
    assert mask.shape == (210, 280) and np.issubdtype(mask.dtype, np.integer)
    # a second run refuses to clobber, --resume skips what is done
    with pytest.raises(SystemExit):
        main(["predict", str(model), *inputs, "--out", str(out), "--quiet"])
    assert main(["predict", str(model), *inputs, "--out", str(out), "--resume", "--quiet"]) == 0
    assert len(list(csv.DictReader(open(out / "predictions.csv")))) == 8


def test_segmentation_options_reach_evaluate_and_predict(tiny):
    """--sigma/--threshold/... are the dock's sliders for batch work: evaluate records what it
    used, and an absolute threshold no saliency reaches leaves every mask empty."""
    root, data, model = tiny
    out = root / "metrics_seg.json"
    assert main(["evaluate", str(model), str(data / "test"), "--json", str(out), "--quiet", "--sigma", "1.5",
                 "--threshold", "0.4", "--min-distance", "9", "--min-area", "0", "--peak-fraction", "0.25"]) == 0
    seg = json.loads(out.read_text())["segmentation"]
    assert seg == {"sigma": 1.5, "threshold": 0.4, "threshold_mode": "relative", "min_distance": 9, "min_area": 0,
                   "peak_fraction": 0.25}
    pred = root / "pred_none"
    assert main(["predict", str(model), str(data / "test" / "positive"), "--out", str(pred), "--quiet",
                 "--threshold-mode", "absolute", "--threshold", "1e9"]) == 0
    rows = list(csv.DictReader(open(pred / "predictions.csv")))
    assert len(rows) == 4 and all(int(r["n_objects"]) == 0 for r in rows)
    assert all(not tifffile.imread(pred / f"{r['name']}_mask.tif").any() for r in rows)


def test_bad_segmentation_option_fails_before_writing(tiny, capsys):
    root, data, model = tiny
    out = root / "pred_bad"
    with pytest.raises(SystemExit) as e:
        main(["predict", str(model), str(data / "test" / "positive"), "--out", str(out), "--threshold", "2"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rarepheno: error:") and "relative threshold" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "wscnn", str(tmp_path / "nope"), "--out", str(tmp_path / "m.safetensors")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rarepheno: error:") and "nope" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m.safetensors").exists()


def test_predict_second_stage_error_keeps_earlier_images_in_order(tiny, monkeypatch):
    """Objects, files and the shift check of image k run beside the network on image k+1: an
    error there stops the run with the images before it written, in input order, and
    --resume finishes the rest."""
    from napari_rarepheno.core.wscnn import predict_files

    root, data, model = tiny
    out = root / "pred-stage"
    files = sorted((data / "test" / "positive").glob("*.png")) + sorted((data / "test" / "negative").glob("*.png"))
    real, calls = predict_files.segment_saliency, []

    def failing(sal, cfg):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk went away")
        return real(sal, cfg)

    monkeypatch.setattr(predict_files, "segment_saliency", failing)
    with pytest.raises(OSError, match="disk went away"):
        predict_files.predict_wscnn_files(model, files, out)
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert [r["image"] for r in rows] == [str(f) for f in files[:2]]
    monkeypatch.setattr(predict_files, "segment_saliency", real)
    predict_files.predict_wscnn_files(model, files, out, resume=True)
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert [r["image"] for r in rows] == [str(f) for f in files]
