"""The job state machine every panel shares (:mod:`napari_rarepheno._widgets._jobs`), in a real
viewer with real thread workers: idle -> running -> done, running -> failed with the error
shown, running -> stopping -> idle on Stop, and the buttons following the state."""
from __future__ import annotations

import threading
import time

import pytest

from napari_rarepheno._widgets._jobs import JobPanel, JobState
from napari_rarepheno._widgets.deepyeast_dock import DeepYeastDock
from napari_rarepheno._widgets.discover import DiscoverDock
from napari_rarepheno._widgets.explore_dock import ExploreDock
from napari_rarepheno._widgets.plate_dock import PlateDock
from napari_rarepheno._widgets.wscnn_dock import WSCNNDock
from napari_rarepheno.core.progress import CancelToken, Progress

pytestmark = pytest.mark.gui

IDLE, RUNNING, STOPPING, DONE, FAILED = (JobState.IDLE, JobState.RUNNING, JobState.STOPPING, JobState.DONE,
                                         JobState.FAILED)

#: (dock class, panel attribute): every panel that runs a job
PANELS = [(WSCNNDock, "train"), (WSCNNDock, "infer"), (DeepYeastDock, "train"), (DeepYeastDock, "classify"),
          (DiscoverDock, "review"), (DiscoverDock, "gallery"), (ExploreDock, "evaluate"), (ExploreDock, "tsne"),
          (ExploreDock, "fewshot"), (PlateDock, "panel")]


class Gated:
    """A job that reports once, then waits for :attr:`release` (or, with ``honour_stop``,
    for Stop); it returns "stopped" when it was stopped, raises when ``fail``. Once stopped
    it waits at most ``GRACE`` s more (a failed test or a closed viewer never hangs on it)."""

    GRACE = 5.0

    def __init__(self, fail: bool = False, honour_stop: bool = False):
        self.started, self.release = threading.Event(), threading.Event()
        self.cancel = CancelToken()
        self.fail, self.honour_stop = fail, honour_stop
        self.thread = None

    def __call__(self, report):
        self.thread = threading.current_thread()
        report(Progress(stage="item", batch=0, n_batches=2, message="working"))
        self.started.set()
        stopped_at = None
        while not self.release.wait(0.01):
            if self.cancel.cancelled:
                stopped_at = stopped_at or time.monotonic()
                if self.honour_stop or time.monotonic() - stopped_at > self.GRACE:
                    break
        if self.fail:
            raise ValueError("the gated job broke")
        return "stopped" if self.cancel.cancelled else "result"


def buttons(panel) -> tuple:
    stop = getattr(panel, "stop_btn", None)
    return panel.run_btn.enabled, (stop.enabled if stop is not None else None)


def record(panel) -> list:
    """(state, run enabled, stop enabled) at every transition, seen after the panel's own listener."""
    seen = []
    panel.job.changed.connect(lambda new, old: seen.append((new, *buttons(panel))))
    return seen


def shown_text(panel) -> str:
    texts = [panel.progress.status.text()]
    for name in ("status", "info"):  # Review and Gallery show errors in their own label
        w = getattr(panel, name, None)
        if w is not None and hasattr(w, "value"):
            texts.append(str(w.value))
    return "\n".join(texts)


def open_panel(make_napari_viewer, dock_cls, attr):
    viewer = make_napari_viewer()
    dock = dock_cls(viewer)
    viewer.window.add_dock_widget(dock, name=dock_cls.__name__)
    panel = getattr(dock, attr)
    dock.select_tab(panel)
    return viewer, dock, panel


@pytest.mark.parametrize(("dock_cls", "attr"), PANELS, ids=[f"{d.__name__}.{a}" for d, a in PANELS])
def test_every_panel_shares_the_job_states(make_napari_viewer, qtbot, dock_cls, attr):
    _, dock, panel = open_panel(make_napari_viewer, dock_cls, attr)
    assert isinstance(panel, JobPanel)
    has_stop = getattr(panel, "stop_btn", None) is not None
    assert panel.state is IDLE and not panel.running and panel.worker is None
    assert buttons(panel) == (True, False if has_stop else None)
    seen = record(panel)
    results = []

    # idle -> running -> done: the result handler has run when DONE is entered
    job = Gated()
    worker = panel.start_job(job, results.append, "gated job", job.cancel)
    assert worker is not None and panel.worker is worker
    assert panel.state is RUNNING and panel.running
    assert buttons(panel) == (False, True if has_stop else None)
    assert panel.start_job(Gated(), results.append, "second job") is None  # one job at a time
    qtbot.waitUntil(job.started.is_set, timeout=10_000)
    job.release.set()
    qtbot.waitUntil(lambda: panel.state is DONE, timeout=10_000)
    assert results == ["result"] and panel.worker is None and job.thread is not threading.main_thread()
    assert seen == [(RUNNING, False, True if has_stop else None), (DONE, True, False if has_stop else None)]
    assert not dock.workers.busy

    # running -> failed: the error is notified and shown in the panel
    seen.clear()
    job = Gated(fail=True)
    panel.start_job(job, results.append, "failing job", job.cancel)
    job.release.set()
    qtbot.waitUntil(lambda: panel.state is FAILED, timeout=10_000)
    assert panel.job.error == "ValueError: the gated job broke"
    assert f"{panel.job_failed}: ValueError: the gated job broke" in shown_text(panel)
    assert panel.progress.bar.format() == "failed"
    assert [s for s, *_ in seen] == [RUNNING, FAILED] and buttons(panel)[0]
    assert results == ["result"]  # no result from a failed job

    # a new run clears the error
    job = Gated()
    panel.start_job(job, results.append, "after the failure", job.cancel)
    assert panel.state is RUNNING and panel.job.error == ""
    job.release.set()
    qtbot.waitUntil(lambda: panel.state is DONE, timeout=10_000)

    if not has_stop:  # Explore's Evaluate and t-SNE have no Stop button; the job can still be stopped
        seen.clear()
        job = Gated(honour_stop=True)
        panel.start_job(job, results.append, "stoppable", job.cancel)
        assert panel.stop() and panel.state is STOPPING
        qtbot.waitUntil(lambda: panel.state is IDLE, timeout=10_000)
        assert [s for s, *_ in seen] == [RUNNING, STOPPING, IDLE] and results[-1] == "stopped"
        return

    # running -> stopping -> idle through the Stop button: the worker is told, the job ends
    # at its own pace (a training finishes the batch), the buttons follow each step
    seen.clear()
    job = Gated()
    worker = panel.start_job(job, results.append, "stoppable", job.cancel)
    qtbot.waitUntil(lambda: panel.progress.last is not None and job.started.is_set(), timeout=10_000)
    panel.stop_btn.native.click()
    assert panel.state is STOPPING and worker.cancel_token.cancelled and panel.running
    assert buttons(panel) == (False, False)
    assert panel.progress.bar.format() == panel.stopping_text
    assert not panel.stop()  # a second Stop changes nothing
    assert panel.start_job(Gated(), results.append, "while stopping") is None
    qtbot.wait(100)
    assert panel.state is STOPPING  # still finishing its batch
    job.release.set()
    qtbot.waitUntil(lambda: panel.state is IDLE, timeout=10_000)
    assert results[-1] == "stopped" and panel.worker is None
    assert seen == [(RUNNING, False, True), (STOPPING, False, False), (IDLE, True, False)]


def test_an_engine_runtime_error_fails_the_job(make_napari_viewer, qtbot):
    """torch raises RuntimeError (a shape that does not fit, a device out of memory); superqt's
    workers take one for a deleted worker and end silently: the job must still fail, and say why."""
    _, dock, panel = open_panel(make_napari_viewer, PlateDock, "panel")

    def job(report):
        raise RuntimeError("Given groups=1, weight of size [8, 1, 3, 3], expected input to have 1 channels")
    panel.start_job(job, lambda r: None, "torch job")
    qtbot.waitUntil(lambda: panel.state is FAILED, timeout=10_000)
    assert panel.job.error.startswith("RuntimeError: Given groups=1") and panel.worker is None
    assert "RuntimeError: Given groups=1" in shown_text(panel) and buttons(panel) == (True, False)
    assert not dock.workers.busy


def test_train_panel_greys_out_its_model_buttons_while_a_job_runs(make_napari_viewer, qtbot, wscnn_model):
    _, dock, panel = open_panel(make_napari_viewer, WSCNNDock, "train")
    assert not panel.save_btn.enabled and not panel.continue_.enabled  # no model yet
    dock.load_model(wscnn_model)
    qtbot.waitUntil(lambda: dock.model.ready, timeout=30_000)
    assert panel.load_btn.enabled and panel.save_btn.enabled and panel.continue_.enabled
    job = Gated()
    panel.start_job(job, lambda r: None, "gated", job.cancel)
    assert not (panel.start_btn.enabled or panel.load_btn.enabled or panel.save_btn.enabled
                or panel.continue_.enabled)
    assert panel.stop_btn.enabled
    dock.model.changed.emit()  # a model change while running must not re-enable them
    assert not (panel.save_btn.enabled or panel.continue_.enabled)
    job.release.set()
    qtbot.waitUntil(lambda: panel.state is DONE, timeout=10_000)
    assert panel.start_btn.enabled and panel.load_btn.enabled and panel.save_btn.enabled
    assert panel.continue_.enabled and not panel.stop_btn.enabled


def test_review_panel_greys_out_retrain_while_a_job_runs(make_napari_viewer, qtbot):
    _, _, panel = open_panel(make_napari_viewer, DiscoverDock, "review")
    assert panel.retrain_btn.enabled
    job = Gated()
    panel.start_job(job, lambda r: None, "gated", job.cancel)
    assert not panel.retrain_btn.enabled
    panel.stop_btn.native.click()
    assert panel.state is STOPPING and not panel.retrain_btn.enabled
    job.release.set()
    qtbot.waitUntil(lambda: panel.state is IDLE, timeout=10_000)
    assert panel.retrain_btn.enabled


def test_closing_the_viewer_stops_a_running_job(make_napari_viewer, qtbot):
    viewer, _, panel = open_panel(make_napari_viewer, WSCNNDock, "infer")
    job = Gated(honour_stop=True)
    worker = panel.start_job(job, lambda r: None, "gated", job.cancel)
    qtbot.waitUntil(job.started.is_set, timeout=10_000)
    viewer.close()
    assert worker.cancel_token.cancelled and not worker._holder[0].is_alive()
