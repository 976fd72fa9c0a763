"""WSCNN dock, Train tab: a real viewer, real thread workers, a tiny simulated folder."""
from __future__ import annotations

import pytest

from napari_rarepheno._widgets import _paths
from napari_rarepheno._widgets._jobs import JobState
from napari_rarepheno._widgets.wscnn_dock import WSCNNDock
from napari_rarepheno.core.io.modelfile import load_model
from napari_rarepheno.core.training.trainer import checkpoint_paths

pytestmark = pytest.mark.gui


def states_of(panel) -> list:
    seen = []
    panel.job.changed.connect(lambda new, old: seen.append(new.value))
    return seen


def make_dock(make_napari_viewer):
    viewer = make_napari_viewer()
    dock = WSCNNDock(viewer)
    viewer.window.add_dock_widget(dock, name="WSCNN")
    return viewer, dock


def test_train_from_folder_through_the_widget(make_napari_viewer, qtbot, wscnn_data, tmp_path):
    viewer, dock = make_dock(make_napari_viewer)
    panel = dock.train
    panel.data.path = wscnn_data
    assert "train: 5 negative / 5 positive" in panel.data.hint.value
    panel.epochs.value = 2
    panel.device.value = "cpu"
    panel.seed.value = 1
    panel.out.path = tmp_path / "m.safetensors"
    assert panel.state is JobState.IDLE and not panel.stop_btn.enabled
    states = states_of(panel)
    panel.start_btn.native.click()
    assert panel.running and not panel.start_btn.enabled and panel.stop_btn.enabled
    assert panel.state is JobState.RUNNING and not panel.load_btn.enabled
    qtbot.waitUntil(lambda: not panel.running, timeout=60_000)
    assert states == ["running", "done"]
    best, last, log = checkpoint_paths(tmp_path / "m.safetensors")
    assert best.exists() and last.exists() and log.exists()
    assert dock.model.ready and dock.model.path == best
    assert len(panel.progress.plot.epochs) == 2  # the live curve saw every epoch
    assert "Done: best epoch" in panel.progress.status.text()
    assert panel.start_btn.enabled and not panel.stop_btn.enabled and panel.save_btn.enabled

    # save as (a copy, loadable), then continue training from it
    saved = panel.save_model(tmp_path / "copy.safetensors")
    assert load_model(saved).meta.kind == "wscnn"
    panel.continue_.value = True
    panel.epochs.value = 1
    panel.out.path = tmp_path / "continued.safetensors"
    panel.start_btn.native.click()
    qtbot.waitUntil(lambda: not panel.running, timeout=60_000)
    assert (tmp_path / "continued.safetensors").exists()
    assert dock.model.path == tmp_path / "continued.safetensors"


def test_stop_midway_keeps_best_checkpoint(make_napari_viewer, qtbot, wscnn_data, tmp_path):
    viewer, dock = make_dock(make_napari_viewer)
    panel = dock.train
    panel.data.path = wscnn_data
    panel.epochs.value = 200
    panel.device.value = "cpu"
    panel.out.path = tmp_path / "stopped.safetensors"
    states = states_of(panel)
    panel.start_btn.native.click()
    qtbot.waitUntil(lambda: len(panel.progress.plot.epochs) >= 1, timeout=60_000)
    panel.stop_btn.native.click()
    assert panel.state is JobState.STOPPING and panel.worker.cancel_token.cancelled
    assert not panel.stop_btn.enabled and not panel.start_btn.enabled
    qtbot.waitUntil(lambda: not panel.running, timeout=30_000)
    assert states == ["running", "stopping", "idle"]
    assert panel.start_btn.enabled and not panel.stop_btn.enabled
    res = panel.result
    assert res.cancelled and res.best_epoch >= 1 and len(res.history) < 200
    assert res.best_path.exists()
    assert "Kept the best weights" in panel.progress.status.text()
    assert load_model(res.best_path).meta.training["best_epoch"] == res.best_epoch


def test_existing_model_file_is_not_overwritten_without_asking(make_napari_viewer, qtbot, wscnn_data,
                                                               tmp_path, monkeypatch):
    viewer, dock = make_dock(make_napari_viewer)
    target = tmp_path / "keep.safetensors"
    target.write_bytes(b"precious")
    asked = []
    monkeypatch.setattr(_paths, "confirm", lambda *a: asked.append(a) or False)
    panel = dock.train
    panel.data.path = wscnn_data
    panel.out.path = target
    panel.start_btn.native.click()
    assert asked and not panel.running
    assert target.read_bytes() == b"precious"


def test_bad_folder_is_a_notification_not_a_traceback(make_napari_viewer, qtbot, tmp_path):
    from napari.utils.notifications import NotificationSeverity, notification_manager

    viewer, dock = make_dock(make_napari_viewer)
    (tmp_path / "empty").mkdir()
    panel = dock.train
    panel.data.path = tmp_path / "empty"
    assert panel.data.hint.value.startswith("not usable")
    panel.epochs.value = 1
    panel.out.path = tmp_path / "x.safetensors"
    n0 = len(notification_manager.records)
    panel.start_btn.native.click()
    qtbot.waitUntil(lambda: not panel.running, timeout=30_000)
    new = notification_manager.records[n0:]
    errors = [n for n in new if n.severity == NotificationSeverity.ERROR]
    assert len(errors) == 1, [n.message for n in new]
    msg = errors[0].message
    assert msg.startswith("wscnn training failed: ") and "negative/ and positive/" in msg
    assert "Traceback" not in msg
    assert panel.progress.bar.format() == "failed" and panel.start_btn.enabled
    assert panel.state is JobState.FAILED and "negative/ and positive/" in panel.job.error
    assert panel.progress.status.text() == msg  # the error is shown in the panel too


def test_removing_the_dock_stops_training(make_napari_viewer, qtbot, wscnn_data, tmp_path):
    viewer, dock = make_dock(make_napari_viewer)
    panel = dock.train
    panel.data.path = wscnn_data
    panel.epochs.value = 500
    panel.device.value = "cpu"
    panel.out.path = tmp_path / "closed.safetensors"
    panel.start_btn.native.click()
    worker = panel.worker
    qtbot.waitUntil(lambda: panel.progress.last is not None and panel.progress.last.stage == "batch",
                    timeout=60_000)
    viewer.window.remove_dock_widget(dock)  # the dock's close button does this
    assert worker.cancel_token.cancelled
    assert not worker._holder[0].is_alive()  # the engine thread has ended (best weights kept)
    assert (tmp_path / "closed.safetensors").exists()
    qtbot.waitUntil(lambda: not dock.workers.busy, timeout=10_000)


def test_closing_the_viewer_stops_training(make_napari_viewer, qtbot, wscnn_data, tmp_path):
    viewer, dock = make_dock(make_napari_viewer)
    panel = dock.train
    panel.data.path = wscnn_data
    panel.epochs.value = 500
    panel.device.value = "cpu"
    panel.out.path = tmp_path / "closed.safetensors"
    panel.start_btn.native.click()
    worker = panel.worker
    qtbot.waitUntil(lambda: panel.progress.last is not None, timeout=60_000)
    viewer.close()
    assert worker.cancel_token.cancelled and not worker._holder[0].is_alive()


def test_train_on_images_stored_one_file_per_channel(make_napari_viewer, qtbot, tmp_path, mitosis_field):
    """Channel files and names reach the engine; the model keeps them, and the Infer tab then
    maps its channels by name."""
    import tifffile
    from screens import CHANNELS, PATTERNS

    field = mitosis_field["field"]
    data = tmp_path / "data"
    for k, cls in enumerate(("negative", "positive")):
        (data / cls).mkdir(parents=True)
        for i in range(4):
            piece = field[:, 96 * i:96 * i + 96, 400 * k:400 * k + 96]
            for c, token in enumerate(PATTERNS):
                tifffile.imwrite(data / cls / f"f{i}{token}_s1.tif", piece[c])
    viewer, dock = make_dock(make_napari_viewer)
    panel = dock.train
    panel.data.path = data
    assert panel.data.hint.value.startswith("train: 8 negative / 8 positive")  # files, not images
    panel.channel_files.value = "_Crfp,_Cgfp"
    assert panel.data.hint.value.startswith("train: 4 negative / 4 positive")
    assert "2 channel files each" in panel.data.hint.value
    panel.channel_names.value = "H2B, tubulin"
    opts = panel.build_options()
    assert opts["channel_files"] == PATTERNS and opts["channel_names"] == CHANNELS
    panel.augment.value = "none"
    panel.epochs.value = 1
    panel.device.value = "cpu"
    panel.out.path = tmp_path / "m.safetensors"
    panel.start_btn.native.click()
    qtbot.waitUntil(lambda: not panel.running, timeout=60_000)
    assert panel.state is JobState.DONE, panel.job.error
    meta = load_model(tmp_path / "m.safetensors").meta
    assert meta.input_names() == CHANNELS and meta.training["input"]["channel_files"] == PATTERNS
    # the Infer tab: one row per channel, by the stored patterns; folder mode offers them
    for c in (1, 0):
        viewer.add_image(field[c], name=mitosis_field["names"][c])
    rows = dock.infer.channels.rows
    assert dock.infer.channels.names == CHANNELS and [r.value for r in rows] == mitosis_field["names"]
    assert dock.infer.channel_files.value == "_Crfp,_Cgfp"


def test_load_dialog_shows_model_files_without_the_suffix(make_napari_viewer, qtbot, wscnn_model, tmp_path,
                                                          monkeypatch):
    """The Load-model dialog lists model files first but can show any file: a model copied under
    another name (no .safetensors) still loads."""
    import shutil

    viewer, dock = make_dock(make_napari_viewer)
    renamed = tmp_path / "wscnn-model-from-a-colleague.bin"
    shutil.copy(wscnn_model, renamed)
    filters = []
    monkeypatch.setattr(_paths, "ask_open_file", lambda parent, title, filt="": filters.append(filt) or renamed)
    dock.train.load_dialog()
    assert filters == ["Model files (*.safetensors);;All files (*)"]
    qtbot.waitUntil(lambda: dock.model.ready, timeout=30_000)
    assert dock.model.path == renamed and "wscnn" in dock.train.model_label.value
