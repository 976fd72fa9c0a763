"""Explore dock: evaluate, t-SNE (click a point shows the cell), few-shot transfer."""
from __future__ import annotations

import numpy as np
import pytest

from napari_rarepheno._widgets.explore_dock import ExploreDock
from napari_rarepheno._widgets.explore_tsne import FOLDER

pytestmark = pytest.mark.gui


@pytest.fixture
def explore(make_napari_viewer, qtbot, deepyeast_model):
    viewer = make_napari_viewer()
    dock = ExploreDock(viewer)
    viewer.window.add_dock_widget(dock, name="Explore")
    dock.model_bar.file.path = deepyeast_model
    dock.model_bar.load_btn.native.click()
    # its own model: a new Explore dock first adopts the latest DeepYeast model of any dock still alive
    qtbot.waitUntil(lambda: dock.model.ready and dock.model.path == deepyeast_model, timeout=30_000)
    return viewer, dock


def test_evaluate_tsne_and_fewshot(explore, qtbot, yeast_data):
    viewer, dock = explore
    crops = yeast_data / "crops"
    ev = dock.evaluate
    ev.folder.path = crops
    ev.run_btn.native.click()
    qtbot.waitUntil(lambda: ev.worker is None, timeout=60_000)
    m = ev.metrics
    k = len(m["class_names"])
    assert np.asarray(m["confusion"]).shape == (k, k) and np.asarray(m["confusion"]).sum() == m["n"]
    assert len(ev.per_class.rows) == k and ev.per_class.columns == ["class", "n", "precision", "recall"]
    assert "accuracy" in ev.summary.value

    ts = dock.tsne
    ts.source.value = FOLDER
    ts.folder.path = crops
    ts.max_points.value = 40
    ts.run_btn.native.click()
    qtbot.waitUntil(lambda: ts.worker is None, timeout=60_000)
    assert ts.result is not None and ts.result["xy"].shape == (40, 2)
    assert len(ts.scatter.colors) == 40 and len(set(ts.scatter.colors)) == k
    ts.scatter.resize(400, 300)
    f, _ = ts.scatter._map()
    x, y = f(ts.result["xy"][7])
    assert ts.scatter.index_at(x, y) == 7
    from qtpy.QtCore import QPoint, Qt

    qtbot.mouseClick(ts.scatter, Qt.LeftButton, pos=QPoint(int(round(x)), int(round(y))))
    assert ts.scatter.selected is not None
    assert ts.crop_view.pixmap() is not None and not ts.crop_view.pixmap().isNull()
    assert "class:" in ts.crop_info.value

    fs = dock.fewshot
    fs.train_dir.path = crops
    fs.test_dir.path = crops
    fs.shots.value = "1,3"
    fs.hand.value = False
    fs.run_btn.native.click()
    qtbot.waitUntil(lambda: fs.worker is None, timeout=60_000)
    assert fs.result is not None and set(fs.result["deep"]) == {"1", "3"}
    assert fs.table.rows and fs.table.rows[0][0] == 1


def test_tsne_of_a_classified_field_selects_the_cell(make_napari_viewer, qtbot, deepyeast_model):
    from napari_rarepheno import _sample_data
    from napari_rarepheno._widgets.deepyeast_dock import DeepYeastDock

    viewer = make_napari_viewer()
    dy = DeepYeastDock(viewer)
    viewer.window.add_dock_widget(dy, name="DeepYeast")
    dy.load_model(deepyeast_model)
    qtbot.waitUntil(lambda: dy.model.ready, timeout=30_000)
    image, _, _ = _sample_data.yeast_field_arrays()
    viewer.add_image(image, channel_axis=0, name=["marker", "protein"])
    c = dy.classify
    c.channels.rows[0].value, c.channels.rows[1].value = "marker", "protein"
    c.run_btn.native.click()
    qtbot.waitUntil(lambda: c.worker is None, timeout=60_000)

    ex = ExploreDock(viewer)  # picks up the DeepYeast dock's model
    viewer.window.add_dock_widget(ex, name="Explore")
    assert ex.model.ready
    ts = ex.tsne
    ts.source.value = "protein cells"
    ts.run_btn.native.click()
    qtbot.waitUntil(lambda: ts.worker is None, timeout=60_000)
    n = len(viewer.layers["protein cells"].features)
    assert ts.result["xy"].shape == (n, 2)
    ts.show_point(3)
    assert viewer.layers["protein cells"].selected_label == int(ts.result["ids"][3])
