"""The docks' "Export for bioimage.io..." button: a real viewer, the save dialog patched; the
package is written in a worker after bioimage.io's test passed on it; a failure is reported and
leaves nothing."""
from __future__ import annotations

import zipfile

import pytest

from napari_rarepheno._widgets import _paths
from napari_rarepheno._widgets._jobs import JobState
from napari_rarepheno._widgets.deepyeast_dock import DeepYeastDock
from napari_rarepheno._widgets.wscnn_dock import WSCNNDock

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("kind", ["wscnn", "deepyeast"])
def test_export_button_writes_a_tested_package(kind, make_napari_viewer, qtbot, request, tmp_path, monkeypatch):
    viewer = make_napari_viewer()
    dock = (WSCNNDock if kind == "wscnn" else DeepYeastDock)(viewer)
    viewer.window.add_dock_widget(dock, name=kind)
    panel = dock.train
    assert panel.export_btn.text == "Export for bioimage.io..."
    assert not panel.export_btn.enabled  # no model yet
    dock.load_model(request.getfixturevalue(f"{kind}_model"))
    qtbot.waitUntil(lambda: dock.model.ready, timeout=30_000)
    assert panel.export_btn.enabled

    asked = []
    out = tmp_path / "exported"  # the dialog's answer without the suffix: .zip is added
    monkeypatch.setattr(_paths, "ask_save_file", lambda parent, title, filt="", default="":
                        asked.append((title, filt, default)) or out)
    panel.export_btn.native.click()
    assert asked and "bioimage.io" in asked[0][0] and "*.zip" in asked[0][1] and asked[0][2].endswith(".zip")
    assert panel.export_job.state is JobState.RUNNING and not panel.export_btn.enabled
    qtbot.waitUntil(lambda: not panel.export_job.busy, timeout=120_000)
    assert panel.export_job.state is JobState.DONE, panel.export_job.error
    package = tmp_path / "exported.zip"
    with zipfile.ZipFile(package) as z:
        assert f"kind: {kind}" in z.read("rdf.yaml").decode()
    assert "test passed" in panel.progress.status.text() and str(package) in panel.progress.status.text()
    assert panel.export_btn.enabled
    assert {p.name for p in tmp_path.iterdir()} == {"exported.zip"}  # nothing else left beside it


def test_export_failure_is_reported_and_writes_nothing(make_napari_viewer, qtbot, wscnn_model, tmp_path):
    viewer = make_napari_viewer()
    dock = WSCNNDock(viewer)
    viewer.window.add_dock_widget(dock, name="wscnn")
    dock.load_model(wscnn_model)
    qtbot.waitUntil(lambda: dock.model.ready, timeout=30_000)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    panel = dock.train
    panel.export_bioimageio(blocker / "m.zip", confirmed=True)  # its folder is a file
    qtbot.waitUntil(lambda: not panel.export_job.busy, timeout=60_000)
    assert panel.export_job.state is JobState.FAILED
    assert "a-file" in panel.export_job.error and "a-file" in panel.progress.status.text()
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"] and panel.export_btn.enabled
