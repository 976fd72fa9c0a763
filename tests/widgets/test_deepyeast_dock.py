"""DeepYeast dock: classify a synthetic yeast field and the bundled HeLa field (one TIFF per
channel) in a real viewer: channel mapping, segmentation channel and cell diameter, shift
warnings, the cells table; training with channel files and names."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile
from screens import CHANNELS, DIAMETER, PATTERNS, brighter

from napari_rarepheno import _sample_data
from napari_rarepheno._widgets.deepyeast_classify import CIRCLE, SEGMENT
from napari_rarepheno._widgets.deepyeast_dock import DeepYeastDock

pytestmark = pytest.mark.gui


@pytest.fixture
def dock_with_model(make_napari_viewer, qtbot, deepyeast_model):
    viewer = make_napari_viewer()
    dock = DeepYeastDock(viewer)
    viewer.window.add_dock_widget(dock, name="DeepYeast")
    dock.load_model(deepyeast_model)
    qtbot.waitUntil(lambda: dock.model.ready, timeout=30_000)
    assert "deepyeast" in dock.train.model_label.value
    return viewer, dock


def test_classify_field_with_builtin_segmentation(dock_with_model, qtbot):
    viewer, dock = dock_with_model
    image, truth, cls = _sample_data.yeast_field_arrays()
    viewer.add_image(image, channel_axis=0, name=["marker", "protein"])
    panel = dock.classify
    # a model without channel names: its channels take the layers in order
    assert [r.label for r in panel.channels.rows] == ["channel 0", "channel 1"]
    assert [r.value for r in panel.channels.rows] == ["marker", "protein"]
    assert panel.cells.value == SEGMENT and panel.segment_on.value == "channel 0"
    panel.run_btn.native.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    layer = viewer.layers["protein cells"]
    feats = layer.features
    names = dock.model.class_names
    assert {"index", "id", "class", "centroid_y", "centroid_x", "area"} <= set(feats.columns)
    assert {f"p_{c}" for c in names} <= set(feats.columns)
    assert len(feats) >= 5 and set(feats["class"]) <= set(names)
    assert np.allclose(feats[[f"p_{c}" for c in names]].sum(1), 1, atol=1e-4)
    assert set(np.unique(layer.data)) - {0} == set(feats["index"])
    # coloured by class: the colormap paints each label with its class colour
    lab = int(feats["index"].iloc[0])
    colour = layer.colormap.map(np.array([lab]))[0]
    from napari.utils.colormaps.standardize_color import transform_color

    k = names.index(feats["class"].iloc[0])
    from napari_rarepheno._layers import class_color

    assert np.allclose(colour[:3], transform_color(class_color(k))[0][:3], atol=1e-3)
    assert "Cells by class" in panel.legend.value
    assert panel.posterior_table.rows and panel.posterior_table.rows[0][0] == "protein"
    assert len(panel.posterior_plot.names) == len(names)

    # table row -> cell selected; cell click -> row selected
    panel.cells_table.select_row(2, emit=True)
    assert layer.selected_label == int(panel.cells_table.column("index")[2])
    link = panel.cells_table._links[0]
    target = int(feats["index"].iloc[4])
    yx = np.argwhere(layer.data == target)[0]

    class Ev:
        position = tuple(float(v) for v in yx)
        view_direction = None
        dims_displayed = [0, 1]

    link.on_click(layer, Ev())
    assert panel.cells_table.selected_row() == 4


def test_cells_export_opens_with_file_open(dock_with_model, qtbot, tmp_path, monkeypatch, make_napari_viewer):
    """DeepYeast's export (cells masks and tables, no predictions.csv) opens with File > Open."""
    from napari_rarepheno._widgets import _paths

    viewer, dock = dock_with_model
    image, truth, cls = _sample_data.yeast_field_arrays()
    viewer.add_image(image, channel_axis=0, name=["marker", "protein"])
    panel = dock.classify
    states = []
    panel.job.changed.connect(lambda new, old: states.append(new.value))
    panel.run_btn.native.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    assert states == ["running", "done"]  # DONE once the layer and the tables are shown
    assert viewer.layers["protein cells"].visible and panel.cells_table.rows
    monkeypatch.setattr(_paths, "ask_folder", lambda *a: tmp_path / "cells-export")
    written = {p.name for p in panel.export_dialog()}
    assert {"protein_cells.tif", "protein_cells.csv", "posterior.csv"} <= written
    other = make_napari_viewer()
    (layer,) = other.open(str(tmp_path / "cells-export"), plugin=None)
    assert layer.name == "protein cells" and type(layer).__name__ == "Labels"
    assert len(layer.features) == len(viewer.layers["protein cells"].features)


def test_classify_one_layer_with_user_labels(dock_with_model, qtbot):
    viewer, dock = dock_with_model
    image, truth, cls = _sample_data.yeast_field_arrays()
    viewer.add_image(image, name="field")  # (2, H, W) in one layer
    viewer.add_labels(truth, name="my cells")
    panel = dock.classify
    assert [r.value for r in panel.channels.rows] == ["field [0]", "field [1]"]  # the channels of the one layer
    panel.cells.value = "my cells"
    assert not panel.segment_on.enabled and not panel.diameter_row.enabled  # for the built-in segmentation only
    panel.run_btn.native.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    feats = viewer.layers["field cells"].features
    assert sorted(feats["index"]) == sorted(set(np.unique(truth)) - {0})


def test_wrong_channel_is_a_clear_error(dock_with_model, qtbot, monkeypatch):
    from napari_rarepheno import _workers

    viewer, dock = dock_with_model
    shown = []
    monkeypatch.setattr(_workers, "notify_error", lambda exc, context="": shown.append(str(exc)))
    viewer.add_image(np.zeros((64, 64), np.uint16), name="gray")
    panel = dock.classify
    panel.run_btn.native.click()  # two model channels, one layer of one channel
    assert shown and "both read 'gray'" in shown[0] and panel.worker is None


def test_train_deepyeast_through_the_widget(make_napari_viewer, qtbot, yeast_data, tmp_path):
    from napari_rarepheno.core.io.modelfile import load_model

    viewer = make_napari_viewer()
    dock = DeepYeastDock(viewer)
    viewer.window.add_dock_widget(dock, name="DeepYeast")
    p = dock.train
    p.data.path = yeast_data / "crops"
    assert p.data.hint.value.startswith("4 classes")
    p.width.value = "quarter (fast)"
    p.val_split.value = "random"
    p.epochs.value = 1
    p.device.value = "cpu"
    p.out.path = tmp_path / "dy.safetensors"
    p.start_btn.native.click()
    qtbot.waitUntil(lambda: not p.running, timeout=90_000)
    assert dock.model.ready and load_model(tmp_path / "dy.safetensors").meta.kind == "deepyeast"
    assert len(dock.model.class_names) == 4 and "Done" in p.progress.status.text()


# ---------------------------------------------------------------- real screens
@pytest.fixture
def hela(make_napari_viewer, qtbot, deepyeast_2ch, mitosis_field):
    """The DeepYeast dock with the (H2B, tubulin) model and the bundled field as one layer
    per channel, named like its files (tubulin's first)."""
    viewer = make_napari_viewer()
    dock = DeepYeastDock(viewer)
    viewer.window.add_dock_widget(dock, name="DeepYeast")
    dock.load_model(deepyeast_2ch)
    qtbot.waitUntil(lambda: dock.model.ready, timeout=30_000)
    h2b, tub = mitosis_field["names"]
    for c in (1, 0):
        viewer.add_image(mitosis_field["field"][c], name=mitosis_field["names"][c])
    return viewer, dock, h2b, tub


def classify(panel, qtbot):
    panel.run_btn.native.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=90_000)
    assert panel.state.value == "done", panel.job.error


def test_classify_a_field_stored_one_tiff_per_channel(hela, qtbot, mitosis_field, monkeypatch):
    from napari.utils import notifications

    viewer, dock, h2b, tub = hela
    warned = []
    monkeypatch.setattr(notifications, "show_warning", lambda msg: warned.append(msg))
    panel = dock.classify
    assert panel.channels.names == CHANNELS and panel.channels.shown
    assert [r.value for r in panel.channels.rows] == [h2b, tub]  # by the model's channel-file patterns
    assert list(panel.segment_on.choices) == CHANNELS and panel.segment_on.value == "H2B"
    panel.diameter.value = DIAMETER
    classify(panel, qtbot)
    layer = viewer.layers["tubulin_P0040_T00001_Z1_S1 cells"]  # the field's name, the channel token taken out
    feats = layer.features
    assert layer.data.shape == (1040, 1392) and len(feats) > 100
    assert {"class", "p_interphase", "p_mitotic", "shift_score", "brightness", "saturated"} <= set(feats.columns)
    assert set(feats["class"]) <= {"interphase", "mitotic"} and "Cells by class" in panel.legend.value
    assert f"{DIAMETER:.1f} px" in panel.used_label.value
    # a field like the training cells: no warning
    assert panel.shift_note.messages == [] and panel.shift_note.native.isHidden() and not warned
    # the cells table shows shift_score and sorts on it; a row still selects its own cell
    assert {"class", "p_class", "shift_score", "brightness", "saturated"} <= set(panel.cells_table.columns)
    panel.cells_table.sort_by("shift_score", descending=True)
    scores = panel.cells_table.column("shift_score")
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    panel.cells_table.select_row(0, emit=True)
    top = int(panel.cells_table.column("index")[0])
    assert layer.selected_label == top
    assert float(feats.loc[feats["index"] == top, "shift_score"].iloc[0]) == pytest.approx(scores[0], abs=1e-3)

    # the same field 2x brighter: the panel says so in orange, and napari warns
    for c, name in ((0, h2b), (1, tub)):
        viewer.layers[name].data = brighter(mitosis_field["field"][c])
    classify(panel, qtbot)
    assert any("brighter" in m for m in panel.shift_note.messages) and "brighter" in panel.shift_note.value
    assert not panel.shift_note.native.isHidden() and any("brighter" in m for m in warned)
    assert float(np.median(layer.features["brightness"])) > 1.5


def test_segment_on_another_channel_with_labels_from_any_tool(hela, qtbot, mitosis_field):
    viewer, dock, h2b, tub = hela
    panel = dock.classify
    lab = np.zeros((1040, 1392), np.int32)
    lab[100:140, 200:240], lab[500:545, 600:640] = 7, 9
    viewer.add_labels(lab, name="cellpose masks")
    panel.cells.value = "cellpose masks"
    classify(panel, qtbot)
    assert sorted(viewer.layers["tubulin_P0040_T00001_Z1_S1 cells"].features["index"]) == [7, 9]
    assert panel.used_label.value == ""  # no segmentation ran
    panel.cells.value = SEGMENT
    panel.segment_on.value = "tubulin"
    assert panel.segment_index() == 1


def test_cell_diameter_circle_and_measure(make_napari_viewer, qtbot, deepyeast_2ch, mitosis_field, monkeypatch):
    viewer = make_napari_viewer()
    dock = DeepYeastDock(viewer)
    dock.load_model(deepyeast_2ch)
    qtbot.waitUntil(lambda: dock.model.ready, timeout=30_000)
    for c in (0, 1):  # a quarter of the field, at 0.5 um per px
        viewer.add_image(mitosis_field["field"][c, :520, :696], name=mitosis_field["names"][c], scale=(0.5, 0.5))
    panel = dock.classify
    assert CIRCLE not in viewer.layers
    panel.diameter.value = 40
    circle = viewer.layers[CIRCLE]
    (box,) = circle.data
    assert circle.shape_type == ["ellipse"] and tuple(circle.scale) == (0.5, 0.5)
    assert np.allclose(np.ptp(box, axis=0), [40, 40])  # px of the image
    centre = box.mean(0) * 0.5  # world coordinates: the centre of the view
    assert np.allclose(centre, np.asarray(viewer.camera.center)[-2:], atol=1e-6)
    panel.diameter.value = 60
    assert viewer.layers[CIRCLE] is circle and np.allclose(np.ptp(circle.data[0], axis=0), [60, 60])

    # measure: estimate_diameter on the "segment on" channel, in a worker
    from napari_rarepheno.core.cells import segment

    threads = []
    real = segment.estimate_diameter
    monkeypatch.setattr(segment, "estimate_diameter",
                        lambda img, *a, **k: threads.append(threading.current_thread()) or real(img, *a, **k))
    panel.measure_btn.native.click()
    assert not panel.run_btn.enabled and not panel.measure_btn.enabled
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    assert threads and threads[0] is not threading.main_thread()
    assert 30 <= panel.diameter.value <= 55 and panel.measure_btn.enabled
    assert np.allclose(np.ptp(viewer.layers[CIRCLE].data[0], axis=0), [panel.diameter.value] * 2)
    panel.diameter.value = 0  # measured at classification time: no fixed circle
    assert CIRCLE not in viewer.layers


def test_train_with_channel_files_and_names(make_napari_viewer, qtbot, tmp_path, monkeypatch, mitosis_field):
    from napari_rarepheno.core.deepyeast import train as dy_train
    from napari_rarepheno.core.errors import Cancelled

    root = tmp_path / "crops"
    for cls, (y, x) in (("interphase", (100, 100)), ("mitotic", (400, 600))):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            crop = mitosis_field["field"][:, y + 64 * i:y + 64 * i + 64, x:x + 64]
            for c, token in enumerate(PATTERNS):
                tifffile.imwrite(root / cls / f"cell{i}{token}.tif", crop[c])
    viewer = make_napari_viewer()
    dock = DeepYeastDock(viewer)
    p = dock.train
    p.data.path = root
    assert p.data.hint.value.startswith("2 classes, 12 crops")  # files
    p.channel_files.value = "_Crfp, _Cgfp"
    assert p.data.hint.value.startswith("2 classes, 6 crops of 2 channel files each")  # crops
    p.channel_names.value = "H2B,tubulin"
    opts = p.build_options()
    assert opts["channel_files"] == PATTERNS and opts["channel_names"] == CHANNELS
    p.channel_names.value = "H2B"
    with pytest.raises(Exception, match="one channel name per channel file"):
        p.build_options()
    p.channel_names.value = "H2B,tubulin"

    seen = []

    def fake_train(data, out, opts, cfg, **kw):  # the options as the engine gets them; no training
        seen.append(opts)
        raise Cancelled()

    monkeypatch.setattr(dy_train, "train_deepyeast", fake_train)
    p.out.path = tmp_path / "dy.safetensors"
    p.start_btn.native.click()
    qtbot.waitUntil(lambda: not p.running, timeout=30_000)
    (o,) = seen
    assert o.channel_files == PATTERNS and o.channel_names == CHANNELS and o.width == 1.0
