"""Discover dock, Similar tab, in a real viewer: index, more like this (file, picked cell)
with y/n/u, and the labelling loop (suggest, 1..9/s/u, retrain in the background, suggest
again with the new model)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import test_jobs  # the job state machine every panel shares

from napari_rarepheno._widgets.discover import DiscoverDock
from napari_rarepheno._widgets.discover_similar import FRAMES_LAYER, GRID_LAYER, grid
from napari_rarepheno.core.io.images import read_image

pytestmark = pytest.mark.gui


def wait_idle(qtbot, panel, timeout=120_000):
    qtbot.waitUntil(lambda: panel.worker is None and not panel.running, timeout=timeout)


def test_similar_panel_shares_the_job_states_and_greys_out_its_buttons(make_napari_viewer, qtbot):
    test_jobs.test_every_panel_shares_the_job_states(make_napari_viewer, qtbot, DiscoverDock, "similar")
    _, _, panel = test_jobs.open_panel(make_napari_viewer, DiscoverDock, "similar")
    job = test_jobs.Gated()
    panel.start_job(job, lambda r: None, "gated", job.cancel)
    assert not any(b.enabled for b in (panel.suggest_btn, panel.retrain_btn, panel.like_row_btn, panel.pick_btn))
    job.release.set()
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)
    assert all(b.enabled for b in (panel.suggest_btn, panel.retrain_btn, panel.like_row_btn, panel.pick_btn))


def test_grid_tiles_and_colours():
    crops = [np.full((2, 8, 8), v, np.float32) for v in (0.1, 0.5, 0.9)] + [np.ones((2, 6, 10), np.float32)]
    img, corners = grid(crops, n_cols=3, pad=2)
    # tiles are the largest crop (8 x 10), 2 px apart
    assert img.shape == (2 * 10 + 2, 3 * 12 + 2, 3) and corners.tolist() == [[2, 2], [2, 14], [2, 26], [12, 2]]
    assert img[3, 3, 2] == 0 and img[3, 3, 0] < img[3, 15, 0] < img[3, 27, 0]  # red = channel 0, no blue


def test_more_like_this_and_labelling_loop(make_napari_viewer, qtbot, deepyeast_model, yeast_data, tmp_path):
    crops = yeast_data / "crops"
    viewer = make_napari_viewer()
    dock = DiscoverDock(viewer)
    viewer.window.add_dock_widget(dock, name="Discover", area="right")
    dock.set_model(deepyeast_model)
    sp = dock.similar
    dock.select_tab(sp)
    assert all(sc.isEnabled() for sc in sp.shortcuts.values())
    assert not any(sc.isEnabled() for sc in dock.review.shortcuts.values())
    sp.folder.path = crops
    sp.device.value = "cpu"
    sp.run_btn.native.click()
    wait_idle(qtbot, sp)
    assert sp.index_info["n"] == 55 and sp.index_info["kind"] == "deepyeast" and "55 cell(s)" in sp.status.value

    # more like this: a crop file of the pool comes back first, nearest first
    query = sorted((crops / "er").iterdir())[3]
    sp.top.value = 6
    sp.query_file.path = query
    sp.like_file_btn.native.click()
    wait_idle(qtbot, sp)
    assert sp.mode == "similar" and sp.table.rowCount() == 6 and sp.index_info["cached"]
    assert Path(sp.rows[0]["image"]) == query and sp.rows[0]["distance"] == 0.0
    d = [r["distance"] for r in sp.rows]
    assert d == sorted(d)
    assert GRID_LAYER in viewer.layers and len(viewer.layers[FRAMES_LAYER].data) == 6
    assert sp.table.current_index() == 0

    # y accepts into the class, n rejects, u undoes; the keys reach the tab from the canvas
    labels = tmp_path / "labels"
    sp.labels.path = labels
    sp.class_name.value = "dots"
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.keyClick(canvas, "y")
    qtbot.waitUntil(lambda: sp.table.current_index() == 1, timeout=5_000)
    qtbot.keyClick(canvas, "n")
    qtbot.waitUntil(lambda: sp.table.current_index() == 2, timeout=5_000)
    assert [p.name for p in (labels / "dots").iterdir()] == [query.name]
    rejected = Path(sp.rows[1]["image"]).name
    assert [p.name for p in (labels / "not_dots").iterdir()] == [rejected]
    assert sp.table.column_values("verdict")[:2] == ["dots", "not_dots"]
    qtbot.keyClick(canvas, "u")
    qtbot.waitUntil(lambda: sp.table.current_index() == 1, timeout=5_000)
    assert not (labels / "not_dots").exists() and sp.rows[1]["verdict"] == ""  # an emptied class folder goes
    assert list(viewer.layers[FRAMES_LAYER].features["verdict"])[:2] == ["dots", ""]

    # a cell picked in a field: the crop pasted into a bigger image is found at distance ~0
    target = sorted((crops / "cytoplasm").iterdir())[2]
    cell = read_image(target, as_float=False)
    field = np.zeros((2, 200, 240), cell.dtype)
    field[:, 100:164, 60:124] = cell
    viewer.add_image(field, name="field", channel_axis=None)
    viewer.layers.selection.active = viewer.layers["field"]
    sp.arm_pick()
    assert sp._on_pick in viewer.mouse_drag_callbacks
    sp._on_pick(viewer, SimpleNamespace(position=(132, 92)))
    wait_idle(qtbot, sp)
    assert sp._on_pick not in viewer.mouse_drag_callbacks
    assert Path(sp.rows[0]["image"]) == target and sp.rows[0]["distance"] < 1e-3

    # label next: suggestions exclude the labeled cell; 1..9 file into classes, s skips, u undoes
    sp.n.value = 12
    sp.suggest_btn.native.click()
    wait_idle(qtbot, sp)
    assert sp.mode == "suggest" and sp.table.rowCount() == 12
    assert query.name not in {Path(r["image"]).name for r in sp.rows}
    assert sp.classes[:4] == ["cell_periphery", "cytoplasm", "endosome", "er"] and "dots" in sp.classes
    assert all(0 <= r["uncertainty"] <= 1 and r["predicted"] in sp.classes for r in sp.rows)
    for k in ("1", "2", "s", "1", "2"):
        qtbot.keyClick(canvas, k)
    assert [r["verdict"] for r in sp.rows[:5]] == ["cell_periphery", "cytoplasm", "skipped", "cell_periphery",
                                                    "cytoplasm"]
    assert len(list((labels / "cell_periphery").iterdir())) == 2
    qtbot.keyClick(canvas, "u")
    assert len(list((labels / "cytoplasm").iterdir())) == 1 and sp.rows[4]["verdict"] == ""
    for k in ("4", "1", "2", "1", "2", "1", "2", "1"):  # enough labels to hold out a validation set
        qtbot.keyClick(canvas, k)
    assert sp.rows[4]["verdict"] == "er" and sp.rows[11]["verdict"] == "cell_periphery"
    assert sp.status.value.startswith("all cells done")

    # retrain in the background on the labels folder, then suggest again with the new model
    sp.epochs.value = 1
    sp.retrain_btn.native.click()
    qtbot.waitUntil(lambda: sp.retrained is not None, timeout=180_000)
    qtbot.waitUntil(lambda: not sp.running and ".retrained" in str(sp.model.path) and sp.mode == "suggest"
                    and not sp.index_info["cached"], timeout=180_000)
    assert sp.retrained.best_path.exists() and sp.table.rowCount() == 12
    labeled = {p.name for p in labels.rglob("*.tif")}
    assert not labeled & {Path(r["image"]).name for r in sp.rows}

    # over to the Review tab and back: the keys still reach this tab with an Image layer active
    dock.select_tab(dock.review)
    assert not any(sc.isEnabled() for sc in sp.shortcuts.values())
    dock.select_tab(sp)
    viewer.layers.selection.active = viewer.layers["field"]
    first = sp.table.current_index()
    qtbot.keyClick(canvas, "s")
    assert sp.rows[first]["verdict"] == "skipped"
    # another tab takes the keys away
    dock.select_tab(dock.gallery)
    assert not any(sc.isEnabled() for sc in sp.shortcuts.values())
