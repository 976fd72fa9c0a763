"""Discover dock in a real viewer: ranking table, y/n review with apply/undo and retrain,
gallery with linked scatter, cluster -> new class.

Screenshots go to ``tmp_path``; with ``RAREPHENO_DOCS_SCREENSHOTS=1`` they are written
to ``docs/images/discover_*.png`` (how the user guide's pictures are made).
"""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_rarepheno._widgets import _paths
from napari_rarepheno._widgets.discover import DiscoverDock
from napari_rarepheno._widgets.discover_gallery import GRID_LAYER, TILES_LAYER
from napari_rarepheno._widgets.discover_review import IMAGE_LAYER, MODES

pytestmark = pytest.mark.gui
DOCS = Path(__file__).resolve().parents[2] / "docs" / "images"


def shot(viewer, tmp_path, name):
    folder = DOCS if os.environ.get("RAREPHENO_DOCS_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    viewer.window._qt_window.resize(1500, 1000)
    viewer.screenshot(str(folder / f"discover_{name}.png"), canvas_only=False)
    assert (folder / f"discover_{name}.png").stat().st_size > 10_000


def make_dock(make_napari_viewer, model):
    viewer = make_napari_viewer()
    dock = DiscoverDock(viewer)
    viewer.window.add_dock_widget(dock, name="Discover", area="right")
    dock.set_model(model)
    assert "wscnn" in dock.model_path.hint.value
    return viewer, dock


def wait_idle(qtbot, panel, timeout=90_000):
    qtbot.waitUntil(lambda: panel.worker is None, timeout=timeout)


def test_ranking_table_sorts_and_opens_images(make_napari_viewer, qtbot, wscnn_model, wscnn_data, tmp_path):
    viewer, dock = make_dock(make_napari_viewer, wscnn_model)
    rv = dock.review
    rv.mode.value = MODES[1]
    rv.folder.path = wscnn_data / "test"
    rv.device.value = "cpu"
    rv.run_btn.native.click()
    wait_idle(qtbot, rv)
    assert rv.table.rowCount() == 10 and rv.table.columns[:5] == ["rank", "image", "label", "predicted", "score"]
    scores = [float(s) for s in rv.table.column_values("score")]
    assert scores == sorted(scores, reverse=True)
    rv.table.sortItems(rv.table.columns.index("score"))  # header click: ascending
    scores = [float(s) for s in rv.table.column_values("score")]
    assert scores == sorted(scores)
    rv.table.selectRow(0)  # the lowest score; its index into rv.rows is the last one
    assert rv.table.current_index() == 9
    qtbot.waitUntil(lambda: f"{IMAGE_LAYER} saliency" in viewer.layers
                    and Path(rv.rows[9]["image"]).name in rv.status.value, timeout=60_000)
    assert viewer.layers[IMAGE_LAYER].data.shape == (96, 128)
    assert viewer.layers[f"{IMAGE_LAYER} saliency"].data.shape == (96, 128)
    shot(viewer, tmp_path, "ranking")


def test_review_keys_apply_undo_and_retrain(make_napari_viewer, qtbot, wscnn_model, wscnn_data, tmp_path,
                                            monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(wscnn_data, data)
    viewer, dock = make_dock(make_napari_viewer, wscnn_model)
    rv = dock.review
    rv.folder.path = data / "train"
    rv.top.value = 4
    rv.device.value = "cpu"
    rv.run_btn.native.click()
    wait_idle(qtbot, rv)
    assert rv.table.rowCount() == 4 and "suggested" in rv.table.columns and rv.confirm_btn.enabled
    assert rv.table.current_index() == 0
    canvas = viewer.window._qt_viewer.canvas.native
    first, second = rv.rows[0], rv.rows[1]
    qtbot.keyClick(canvas, "y")   # confirm the first suspect's suggested label
    qtbot.waitUntil(lambda: rv.table.current_index() == 1, timeout=5_000)
    qtbot.keyClick(canvas, "n")   # reject the second
    qtbot.waitUntil(lambda: rv.table.current_index() == 2, timeout=5_000)
    dec = data / "decisions.csv"
    rows = list(csv.DictReader(open(dec)))
    assert [(r["image"], r["decision"]) for r in rows] == [(first["image"], "confirm"), (second["image"], "reject")]
    assert rows[0]["suggested_label"] == first["suggested"] and rows[0]["timestamp"]
    assert rv.table.column_values("decision")[:2] == ["confirm", "reject"]
    qtbot.waitUntil(lambda: IMAGE_LAYER in viewer.layers, timeout=60_000)
    # the keys work while an Image layer is selected (napari's Image layers bind "y" themselves)
    viewer.layers.selection.active = viewer.layers[IMAGE_LAYER]
    qtbot.keyClick(canvas, "y")
    qtbot.waitUntil(lambda: rv.table.current_index() == 3, timeout=5_000)
    assert rv.table.column_values("decision")[:3] == ["confirm", "reject", "confirm"]
    # ... and are window shortcuts of the Review tab: with the focus on its table too
    assert all(sc.isEnabled() for sc in rv.shortcuts.values())
    assert {sc.key().toString() for sc in rv.shortcuts.values()} == {"Y", "N"}
    shot(viewer, tmp_path, "review")

    asked = []
    monkeypatch.setattr(_paths, "confirm", lambda parent, title, text: asked.append(text) or True)
    plan = rv.apply_dialog()
    assert plan.applied and "2 to move" in asked[0]
    src = Path(first["image"])
    assert not src.exists() and Path(plan.moves[0].dst).parent.name == first["suggested"]
    assert rv.undo_btn.enabled
    rv.undo_last()
    assert src.exists() and not rv.undo_btn.enabled

    rv.epochs.value = 1
    rv.retrain_btn.native.click()
    qtbot.waitUntil(lambda: rv.retrained is not None, timeout=120_000)
    qtbot.waitUntil(lambda: rv.worker is None and ".retrained" in str(rv.model.path), timeout=120_000)
    assert rv.retrained.best_path.exists() and rv.table.rowCount() == 4


def test_gallery_scatter_and_cluster_to_class(make_napari_viewer, qtbot, wscnn_model, wscnn_data, tmp_path):
    viewer, dock = make_dock(make_napari_viewer, wscnn_model)
    dock.tabs.setCurrentIndex(1)
    gp = dock.gallery
    gp.folder.path = wscnn_data / "test" / "positive"
    gp.min_prob.value = 0.0
    gp.per_image.value = 2
    gp.k.value = 3
    gp.device.value = "cpu"
    gp.run_btn.native.click()
    wait_idle(qtbot, gp)
    g = gp.gallery
    assert g is not None and len(g) >= 3
    grid, tiles = viewer.layers[GRID_LAYER], viewer.layers[TILES_LAYER]
    assert grid.data.shape == tiles.data.shape and tiles.contour == 2
    assert len(tiles.features) == len(g) and set(np.unique(tiles.data)) == set(range(len(g) + 1))
    assert len(gp.scatter.xy) == len(g)
    gp.scatter.point_clicked.emit(1)  # scatter -> gallery
    assert tiles.selected_label == 2 and gp.cluster.value == int(g.clusters[1])
    y, x = gp.corners[1]
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    assert np.allclose(camera.center[-2:], (y + 32, x + 32))
    y2, x2 = gp.corners[2]  # gallery -> scatter: click inside crop 2
    tiles.mouse_drag_callbacks[-1](tiles, SimpleNamespace(position=(y2 + 5, x2 + 5)))
    assert gp.scatter.selected == 2 and tiles.selected_label == 3
    shot(viewer, tmp_path, "gallery")

    gp.class_name.value = "round"
    gp.crops_out.path = tmp_path / "crops"
    written = gp.save_cluster()
    assert len(written) == int((g.clusters == gp.cluster.value).sum()) and gp.cluster.value == g.clusters[2]
    assert all(p.parent == tmp_path / "crops" / "round" and p.exists() for p in written)

    gp.k.value = 2
    gp.recluster_btn.native.click()
    wait_idle(qtbot, gp)
    assert gp.gallery.clusters.max() <= 1 and len(viewer.layers[TILES_LAYER].features) == len(g)


def test_review_keys_work_whatever_is_selected_or_focused(make_napari_viewer, qtbot, monkeypatch):
    """y / n reach the Review tab with an Image layer selected (napari's Image layers bind "y")
    and with the focus on the ranking table, not only on the canvas."""
    viewer = make_napari_viewer(show=True)
    dock = DiscoverDock(viewer)
    viewer.window.add_dock_widget(dock, name="Discover", area="right")
    rv = dock.review
    rows = [{"rank": i + 1, "image": f"/data/train/negative/{i}.png", "label": "negative",
             "suggested": "positive", "suspicion": 0.9 - i / 10, "decision": ""} for i in range(3)]
    rv.rows = rows
    rv.table.set_rows(["rank", "image", "label", "suggested", "suspicion", "decision"], rows)
    decided = []
    monkeypatch.setattr(rv, "decide", lambda d: decided.append(d))
    rv.bind_keys()
    viewer.add_image(np.zeros((16, 16), np.uint8), name="img")  # added while reviewing, and selected
    assert viewer.layers.selection.active.name == "img"
    window = viewer.window._qt_window
    window.activateWindow()
    qtbot.waitUntil(lambda: rv.isVisible() and window.isActiveWindow(), timeout=5_000)
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.keyClick(canvas, "y")
    rv.table.setFocus()
    qtbot.keyClick(rv.table, "n")
    qtbot.keyClick(rv.table, "y")
    assert decided == ["confirm", "reject", "confirm"]
    # on another tab (or when done) the keys are napari's again
    dock.tabs.setCurrentIndex(1)
    qtbot.keyClick(canvas, "y")
    assert decided == ["confirm", "reject", "confirm"]
    assert not any(sc.isEnabled() for sc in rv.shortcuts.values())
