"""WSCNN dock, Infer tab: layers and features, live sliders without the network, export."""
from __future__ import annotations

import csv
import os
import threading

import numpy as np
import pytest
import tifffile

from napari_rarepheno import _reader
from napari_rarepheno._widgets import _paths
from napari_rarepheno._widgets.wscnn_dock import WSCNNDock

pytestmark = pytest.mark.gui


@pytest.fixture
def infer(make_napari_viewer, qtbot, wscnn_model, positive_image):
    viewer = make_napari_viewer()
    dock = WSCNNDock(viewer)
    viewer.window.add_dock_widget(dock, name="WSCNN")
    dock.load_model(wscnn_model)
    qtbot.waitUntil(lambda: dock.model.ready, timeout=30_000)
    viewer.add_image(positive_image, name="cells")
    return viewer, dock


@pytest.fixture
def counted(monkeypatch):
    """Count calls of the network: core.predict.predict_wscnn, and the thread it ran in."""
    from napari_rarepheno.core.inference import predict

    calls = []
    real = predict.predict_wscnn

    def spy(*a, **kw):
        calls.append(threading.current_thread())
        return real(*a, **kw)

    monkeypatch.setattr(predict, "predict_wscnn", spy)
    return calls


def test_slider_defaults_are_the_cli_defaults(make_napari_viewer):
    """The dock and `rarepheno predict` must cut the same objects from the same model."""
    from napari_rarepheno.cli import build_parser
    from napari_rarepheno.cli.common import saliency_config_from_args
    from napari_rarepheno.core.inference.segment import SaliencyConfig

    dock = WSCNNDock(make_napari_viewer())
    cli = saliency_config_from_args(build_parser().parse_args(["predict", "m.safetensors", "x", "--out", "o"]))
    assert dock.infer.saliency_mode() == "cam" and dock.infer.saliency_config() == cli  # both: class maps
    assert cli != SaliencyConfig()  # class maps have their own defaults
    dock.infer.localisation.value = "gradient saliency (precise)"  # the sliders follow the choice
    assert dock.infer.saliency_config() == SaliencyConfig() == saliency_config_from_args(
        build_parser().parse_args(["predict", "m.safetensors", "x", "--out", "o", "--localisation", "gradient"]))


def test_infer_layers_features_and_live_sliders(infer, qtbot, counted):
    viewer, dock = infer
    panel = dock.infer
    viewer.layers.selection.active = viewer.layers["cells"]
    forward = []
    dock.model.loaded.model.register_forward_hook(lambda *a: forward.append(1))
    panel.sigma.value = 1.0
    panel.threshold.value = 0.2
    panel.positive_only.value = False  # the tiny test model may call it negative
    states = []
    panel.job.changed.connect(lambda new, old: states.append(new.value))
    panel.run_btn.native.click()
    assert panel.state.value == "running" and not panel.run_btn.enabled and panel.stop_btn.enabled
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    assert states == ["running", "done"] and panel.run_btn.enabled and not panel.stop_btn.enabled
    assert len(counted) == 1 and counted[0] is not threading.main_thread()  # ran in a worker thread

    sal = viewer.layers["cells saliency"]
    assert sal._type_string == "image" and sal.blending == "additive" and sal.colormap.name == "inferno"
    assert sal.data.shape == viewer.layers["cells"].data.shape and sal.data.dtype == np.float32
    assert 0 <= sal.metadata["rarepheno"]["probability"] <= 1
    objects = viewer.layers["cells objects"]
    peaks = viewer.layers["cells peaks"]
    f = objects.features
    assert list(f.columns) == ["index", "y", "x", "score", "area", "evidence"]
    n = len(f)
    assert n >= 1 and set(np.unique(objects.data)) - {0} == set(f["index"])
    assert len(peaks.data) == n and list(peaks.features.columns) == ["label", "score"]
    assert np.allclose(peaks.features["score"], f["score"]) and np.allclose(peaks.data, f[["y", "x"]])
    assert "P(positive)" in panel.prob_label.value
    row = dict(zip(panel.images.columns, panel.images.rows[0]))
    assert row["image"] == "cells" and row["segmented"] == n
    # "objects" counts those whose evidence alone makes the image positive (none if called negative)
    assert row["objects"] == int((f["evidence"] > 0).sum())
    assert row["objects"] == 0 or row["called"] == "positive"
    assert len(panel.objects.rows) == n

    # the sliders re-segment the cached saliency: labels change, the network is not called
    n_forward = len(forward)
    before = objects.data.copy()
    panel.threshold.value = 0.6
    qtbot.waitUntil(lambda: not np.array_equal(objects.data, before), timeout=5_000)
    assert (objects.data > 0).sum() < (before > 0).sum()
    panel.sigma.value = 4.0
    panel.min_area.value = 5
    qtbot.wait(300)
    assert len(counted) == 1 and len(forward) == n_forward
    # "object extent" trims every object towards its own peak: fewer labelled pixels, same objects
    n_px, n_obj = (objects.data > 0).sum(), len(objects.features)
    panel.peak_fraction.value = 0.85
    qtbot.waitUntil(lambda: (objects.data > 0).sum() < n_px, timeout=5_000)
    assert len(objects.features) == n_obj and len(forward) == n_forward
    assert len(viewer.layers["cells peaks"].data) == len(viewer.layers["cells objects"].features)
    assert viewer.layers["cells objects"] is objects  # updated in place, not re-added

    # a row click selects the object, shows it alone and zooms to it; a background click shows all
    zoom = viewer.camera.zoom
    label = int(objects.features["index"].iloc[0])
    panel.objects.select_row(0, emit=True)
    assert objects.selected_label == label and objects.show_selected_label
    ys, xs = np.nonzero(objects.data == label)
    assert viewer.camera.zoom > zoom
    assert np.allclose(viewer.camera.center[-2:], [(ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2], atol=1)
    panel.objects.select_row(1, emit=True)  # another row: that object instead
    assert objects.selected_label == int(objects.features["index"].iloc[1]) and objects.show_selected_label
    panel.objects.select_row(None, emit=True)
    assert not objects.show_selected_label

    # "objects only in images called positive": none for an image called negative
    panel.cache["cells"].probabilities = np.array([0.9, 0.1], np.float32)
    panel.positive_only.value = True
    # (the layers are handed to napari one per event-loop turn: objects, then peaks)
    qtbot.waitUntil(lambda: len(viewer.layers["cells objects"].features) == 0
                    and len(viewer.layers["cells peaks"].data) == 0, timeout=5_000)
    assert len(counted) == 1


def test_export_all_and_reread(infer, qtbot, tmp_path, monkeypatch, make_napari_viewer):
    viewer, dock = infer
    panel = dock.infer
    viewer.layers.selection.active = viewer.layers["cells"]
    panel.positive_only.value = False
    panel.run_btn.native.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    out = tmp_path / "export"
    monkeypatch.setattr(_paths, "ask_folder", lambda *a: out)
    written = panel.export_dialog()
    names = {p.name for p in written}
    assert names == {"cells_saliency.tif", "cells_mask.tif", "cells_objects.csv", "cells_peaks.csv",
                     "predictions.csv"}
    sal = tifffile.imread(out / "cells_saliency.tif")
    assert sal.dtype == np.float32 and np.allclose(sal, viewer.layers["cells saliency"].data)
    mask = tifffile.imread(out / "cells_mask.tif")
    assert mask.dtype == np.uint16 and np.array_equal(mask, viewer.layers["cells objects"].data)
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert rows[0]["image"] == "cells" and 0 <= float(rows[0]["p_positive"]) <= 1
    assert int(rows[0]["segmented"]) == len(viewer.layers["cells objects"].features)
    (data, kw, kind), = _reader.read_file(out / "cells_mask.tif")
    assert kind == "labels" and len(kw["features"]["index"]) == len(viewer.layers["cells objects"].features)
    # the folder opens in napari through the plugin's reader
    layers = _reader.get_reader(str(out))(str(out))
    assert {k["name"] for _, k, _ in layers} >= {"cells saliency", "cells objects"}
    # ... also with File > Open (no reader chosen): napari's own reader would read any folder as
    # a grey image stack; the export remembered this plugin for the folder
    from napari.settings import get_settings

    assert get_settings().plugins.extension2reader[str(out.resolve()) + os.sep] == "napari-rarepheno"
    other = make_napari_viewer()
    added = other.open(str(out), plugin=None)
    kinds = {lay.name: type(lay).__name__ for lay in added}
    assert kinds.get("cells saliency") == "Image" and kinds.get("cells objects") == "Labels"
    assert len(other.layers["cells objects"].features) == len(viewer.layers["cells objects"].features)

    # never overwrite without asking: a declined confirmation leaves the files alone
    stamp = (out / "cells_mask.tif").stat().st_mtime_ns
    asked = []
    monkeypatch.setattr(_paths, "confirm", lambda *a: asked.append(a) or False)
    assert panel.export_dialog() == []
    assert asked and (out / "cells_mask.tif").stat().st_mtime_ns == stamp


def test_infer_on_a_folder(infer, qtbot, tmp_path, wscnn_data):
    viewer, dock = infer
    panel = dock.infer
    panel.source.value = "a folder of images"
    panel.folder.path = wscnn_data / "test"
    assert "image(s)" in panel.folder.hint.value
    panel.out.path = tmp_path / "pred"
    panel.run_btn.native.click()
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    assert (tmp_path / "pred" / "predictions.csv").exists()
    n_files = len(list((wscnn_data / "test").rglob("*.png")))
    assert len(panel.images.rows) == n_files
    panel.images.select_row(0, emit=True)  # opens that image with its saliency and objects (in a worker)
    name = panel.images.rows[0][0]
    qtbot.waitUntil(lambda: f"{name} objects" in viewer.layers and not panel.steps.busy, timeout=30_000)
    assert f"{name} saliency" in viewer.layers and name in viewer.layers


def test_no_layer_selected_is_a_clear_message(make_napari_viewer, qtbot, wscnn_model, monkeypatch):
    from napari_rarepheno import _workers

    viewer = make_napari_viewer()
    dock = WSCNNDock(viewer)
    shown = []
    monkeypatch.setattr(_workers, "notify_error", lambda exc, context="": shown.append(str(exc)))
    dock.infer.run_btn.native.click()
    assert shown and "train one" in shown[-1]
    dock.load_model(wscnn_model)
    qtbot.waitUntil(lambda: dock.model.ready, timeout=30_000)
    dock.infer.run_btn.native.click()
    assert "select one or more image layers" in shown[-1]


def test_outlines_stand_out_and_results_follow_their_image(infer, qtbot, positive_image):
    """Objects are outlines in one colour far from every saliency colour; the results of an image
    layer the user has hidden start hidden (they would cover the image shown), its row shows them."""
    from napari.utils.colormaps.standardize_color import transform_color

    from napari_rarepheno._layers import OUTLINE_COLOR

    viewer, dock = infer
    panel = dock.infer
    viewer.add_image(positive_image[::-1].copy(), name="hidden", visible=False)
    panel.positive_only.value = False
    panel.run_layers([viewer.layers["cells"], viewer.layers["hidden"]])
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    assert panel.state.value == "done", panel.job.error
    objects = viewer.layers["cells objects"]
    assert objects.visible and objects.contour >= 2 and objects.opacity == 1
    labels = np.unique(objects.data)[1:]
    cyan = transform_color(OUTLINE_COLOR)[0][:3]
    assert len(labels) and np.allclose(objects.colormap.map(labels)[:, :3], cyan)
    inferno = viewer.layers["cells saliency"].colormap.colors[:, :3]
    assert np.min(np.linalg.norm(inferno - cyan, axis=1)) > 0.5
    assert not viewer.layers["hidden saliency"].visible and not viewer.layers["hidden objects"].visible
    panel.images.select_row(panel._image_names().index("hidden"), emit=True)
    assert viewer.layers["hidden"].visible and viewer.layers["hidden objects"].visible
    assert viewer.layers["hidden saliency"].visible and viewer.layers["hidden peaks"].visible


def test_slider_changes_resegment_in_a_worker_and_the_newest_wins(infer, qtbot, monkeypatch):
    """Each slider change re-segments in a small worker (never the GUI thread); requests that
    arrive while one runs replace each other, and a result older than the newest request is dropped."""
    import time

    from napari_rarepheno._widgets import wscnn_infer
    from napari_rarepheno.core.inference.segment import smooth_saliency

    viewer, dock = infer
    panel = dock.infer
    panel.positive_only.value = False
    panel.run_layers([viewer.layers["cells"]])
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    seen, applied = [], []
    real = wscnn_infer.prepare_segmentation

    def slow(c, cfg, positive_only):
        seen.append((threading.current_thread(), cfg.threshold))
        time.sleep(0.3)
        return real(c, cfg, positive_only)

    monkeypatch.setattr(wscnn_infer, "prepare_segmentation", slow)
    real_apply = panel._apply
    monkeypatch.setattr(panel, "_apply", lambda res, gen: applied.append(
        (gen == panel._generation, [s.params["threshold"] for s in res or []])) or real_apply(res, gen))
    for v in (0.25, 0.3, 0.35, 0.4, 0.45):
        panel.threshold.value = v
        panel.resegment()  # what the slider's 60 ms timer calls
    qtbot.waitUntil(lambda: not panel.workers.busy and not panel.steps.busy
                    and any(ok and t == [0.45] for ok, t in applied), timeout=20_000)
    qtbot.wait(200)
    qtbot.waitUntil(lambda: not panel.workers.busy and not panel.steps.busy, timeout=20_000)
    thresholds = [t for _, t in seen]
    # the first request's worker may run (or see that it is stale already); the ones in between never do
    assert set(thresholds) <= {0.25, 0.45} and thresholds[-1] == 0.45
    assert all(th is not threading.main_thread() for th, _ in seen)
    assert all(not shown for shown, t in applied if t != [0.45])  # finished after newer requests: not shown
    want = 0.45 * float(smooth_saliency(panel.cache["cells"].saliency, float(panel.sigma.value)).max())
    assert np.isclose(viewer.layers["cells objects"].metadata["rarepheno"]["threshold"], want, rtol=1e-5)
    assert panel.segmented["cells"].params["threshold"] == 0.45
