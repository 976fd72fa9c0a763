"""DeepYeast dock: classify a synthetic yeast field in a real viewer."""
from __future__ import annotations

import numpy as np
import pytest

from napari_rarepheno import _sample_data
from napari_rarepheno._widgets.deepyeast_classify import ONE_LAYER, SEGMENT, TWO_LAYERS
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
    panel.mode.value = TWO_LAYERS
    panel.marker_layer.value = "marker"
    panel.protein_layer.value = "protein"
    assert panel.cells.value == SEGMENT
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


def test_classify_one_layer_with_user_labels(dock_with_model, qtbot):
    viewer, dock = dock_with_model
    image, truth, cls = _sample_data.yeast_field_arrays()
    viewer.add_image(image, name="field")  # (2, H, W) in one layer
    viewer.add_labels(truth, name="my cells")
    panel = dock.classify
    panel.mode.value = ONE_LAYER
    panel.image.value = "field"
    panel.cells.value = "my cells"
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
    panel.mode.value = ONE_LAYER
    panel.image.value = "gray"
    panel.run_btn.native.click()
    assert shown and "has 1 channel" in shown[0] and panel.worker is None


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
