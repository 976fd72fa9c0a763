"""The DeepYeast commands, run in-process on tiny synthetic yeast: JSON keys and files written."""
import csv
import json

import pytest

from napari_rarepheno.cli import main

pytestmark = [pytest.mark.filterwarnings("ignore:.*centre-cropping", "ignore:.*duplicated image"), pytest.mark.usefixtures("one_thread")]
SEEN = ("cell_periphery", "cytoplasm", "nucleus")
NEW = ("vacuole", "spindle_pole")
METRIC_KEYS = {"accuracy", "n", "per_class", "confusion"}


def run(*argv) -> int:
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """simulate-yeast (24 proteins = 2 per class), train/test by protein, a tiny model via the CLI."""
    root = tmp_path_factory.mktemp("cli_yeast")
    assert run("simulate-yeast", root / "sim", "--n-proteins", 24, "--size", 160, "--seed", 2, "--quiet") == 0
    for split, keep in (("train", lambda k: k < 12), ("test", lambda k: k >= 12)):
        for classes, folder in ((SEEN, split), (NEW, f"{split}_new")):  # the network never sees NEW
            for cls in classes:
                (root / folder / cls).mkdir(parents=True)
                for f in (root / "sim" / "crops" / cls).iterdir():
                    if keep(int(f.name[2:6])):
                        (root / folder / cls / f.name).symlink_to(f)
    model = root / "model.safetensors"
    assert run("train", "deepyeast", root / "train", "--out", model, "--epochs", 2, "--batch-size", 16,
               "--width", 0.125, "--val-split", "random", "--quiet") == 0
    return root, model


def test_simulate_yeast_layout(work):
    root, _ = work
    assert (root / "sim" / "yeast.json").exists()
    assert len(list((root / "sim" / "fields").glob("*.tif"))) == 24 * 2  # fields + labels
    assert len(list((root / "sim" / "fields").glob("*_cells.csv"))) == 24
    assert all((root / "sim" / "crops" / c).is_dir() for c in SEEN + NEW)


def test_train_writes_model_log_and_resume_state(work):
    root, model = work
    assert model.exists() and (root / "model.log.csv").exists() and (root / "model.last.safetensors").exists()
    assert run("info", model) == 0


def test_evaluate_json_keys(work, tmp_path):
    root, model = work
    assert run("evaluate", model, root / "test", "--json", tmp_path / "ev.json", "--device", "cpu") == 0
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert METRIC_KEYS | {"group_accuracy", "n_groups"} <= set(ev)
    assert set(ev["per_class"]) == set(SEEN) and set(ev["per_class"]["nucleus"]) == {"precision", "recall", "n"}
    assert ev["n_groups"] == 3


def test_baseline_json_keys(work, tmp_path):
    root, _ = work
    assert run("baseline", root / "train", root / "test", "--json", tmp_path / "bl.json", "--quiet",
               "--n-estimators", 50) == 0
    bl = json.loads((tmp_path / "bl.json").read_text())
    assert METRIC_KEYS | {"group_accuracy", "n_groups", "forest"} <= set(bl)
    assert bl["accuracy"] > 0.5  # chance is 1/3


def test_transfer_json_keys(work, tmp_path):
    root, model = work
    assert run("transfer", model, root / "train_new", root / "test_new", "--shots", "1,5", "--repeats", 1,
               "--json", tmp_path / "tr.json", "--device", "cpu", "--quiet") == 0
    tr = json.loads((tmp_path / "tr.json").read_text())
    assert {"shots", "deep", "hand", "layer", "classes"} <= set(tr)
    assert set(tr["deep"]) == set(tr["hand"]) == {"1", "5"} and tr["classes"] == sorted(NEW)
    assert tr["seen_by_network"] == []


def test_cells_predict_and_explore(work, tmp_path):
    root, model = work
    field = root / "sim" / "fields" / "YP0013_f0.tif"
    assert run("cells", field, "--channel", 0, "--out", tmp_path / "cells") == 0
    rows = list(csv.DictReader(open(tmp_path / "cells" / "cells.csv")))
    assert rows and {"id", "centroid_y", "centroid_x", "area"} <= set(rows[0])
    assert (tmp_path / "cells" / "labels.tif").exists()
    assert len(list((tmp_path / "cells" / "crops").glob("*.tif"))) == len(rows)

    assert run("predict", model, root / "sim" / "fields", "--out", tmp_path / "pred", "--device", "cpu",
               "--quiet") == 0
    cells = list(csv.DictReader(open(tmp_path / "pred" / "predictions.csv")))
    groups = list(csv.DictReader(open(tmp_path / "pred" / "groups.csv")))
    assert {"id", "class", "p_nucleus", "centroid_y", "group"} <= set(cells[0])
    assert len(groups) == 24 and {"group", "n_cells", "map_class", "p_nucleus", "lo_nucleus"} <= set(groups[0])
    assert run("predict", model, tmp_path / "cells" / "crops", "--out", tmp_path / "pred2", "--quiet") == 0
    assert len(list(csv.DictReader(open(tmp_path / "pred2" / "predictions.csv")))) == len(rows)

    assert run("explore", model, root / "test", "--out", tmp_path / "ex", "--max-points", 60, "--quiet") == 0
    assert {"confusion.png", "confusion.csv", "per_class.csv", "tsne_fc1.png", "tsne_fc1.csv"} <= \
        {p.name for p in (tmp_path / "ex").iterdir()}


def test_predict_fields_stored_one_file_per_channel(work, tmp_path):
    """A field written as one TIFF per channel (the microscope's _Crfp_/_Cgfp_ in mid-name)
    is one field of two channels: the same cells and classes as the two-channel file."""
    import tifffile

    root, model = work
    field = tifffile.imread(root / "sim" / "fields" / "YP0013_f0.tif")
    folder = tmp_path / "plate"
    folder.mkdir()
    for c, tok in enumerate(("Crfp", "Cgfp")):
        tifffile.imwrite(folder / f"w01_T0001_{tok}_Z1.tif", field[c])
    # the true cells, named after the field (the channel token taken out), as beside the original
    labels = tifffile.imread(root / "sim" / "fields" / "YP0013_f0_labels.tif")
    tifffile.imwrite(folder / "w01_T0001_Z1_labels.tif", labels)
    assert run("predict", model, folder, "--channel-files", "_Crfp,_Cgfp", "--as", "fields", "--out",
               tmp_path / "pc", "--device", "cpu", "--quiet") == 0
    assert run("predict", model, root / "sim" / "fields" / "YP0013_f0.tif", "--out", tmp_path / "one",
               "--device", "cpu", "--quiet") == 0
    got = list(csv.DictReader(open(tmp_path / "pc" / "predictions.csv")))
    ref = list(csv.DictReader(open(tmp_path / "one" / "predictions.csv")))
    assert len(got) == len(ref) > 5 and {r["source"] for r in got} == {"w01_T0001_Z1"}
    assert [r["class"] for r in got] == [r["class"] for r in ref]
    assert "shift_score" in got[0]
    (folder / "w01_T0001_Z1_labels.tif").unlink()  # without them: segmented, the labels written out
    assert run("predict", model, folder, "--channel-files", "_Crfp,_Cgfp", "--as", "fields", "--out",
               tmp_path / "seg", "--device", "cpu", "--quiet") == 0
    assert (tmp_path / "seg" / "labels" / "w01_T0001_Z1_labels.tif").exists()


def test_segmentation_options_refused_for_deepyeast(work, tmp_path, capsys):
    root, model = work
    with pytest.raises(SystemExit) as e:
        run("evaluate", model, root / "test", "--sigma", 2)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--sigma" in err and "DeepYeast" in err


def test_bad_input_is_one_line_error(work, tmp_path, capsys):
    root, model = work
    with pytest.raises(SystemExit) as e:
        run("train", "deepyeast", tmp_path / "nothing", "--out", tmp_path / "m.safetensors", "--quiet")
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rarepheno: error:") and "nothing" in err and "\n" not in err
    with pytest.raises(SystemExit):
        run("cells", root / "sim" / "fields" / "YP0013_f0.tif", "--channel", 5, "--out", tmp_path / "c")
    assert "--channel 5 is out of range" in capsys.readouterr().err
