"""One background job at a time behind a Run (and optional Stop) button.

Every panel that runs engine work does the same things around it: show progress, grey out
Run while the job runs, let Stop cancel it, report a failure in the panel and as a napari
notification, and re-enable the buttons when the worker ends however it ended. The panels
inherit that from :class:`JobPanel` and keep only what is theirs (the job and its result).
"""
from __future__ import annotations

from .. import _workers


class JobPanel:
    """Mixin. Expects ``self.workers`` (:class:`_workers.Workers`), ``self.progress``
    (:class:`TrainingProgress`) and ``self.run_btn``; uses ``self.stop_btn`` and
    ``self.device`` (:class:`DevicePicker`) when the panel has them. ``job_failed`` titles
    the error message."""

    worker = None
    job_failed = "the job failed"

    def _start(self, job, on_done, label: str, cancel=None, busy: str | None = None, on_progress=None):
        self.progress.start(label)
        self.progress.busy(busy or f"{label}...")
        self._set_running(True)
        self.worker = self.workers.start(job, cancel=cancel, name=label,
                                         on_progress=on_progress or self.progress.update, on_done=on_done,
                                         on_error=self._on_error, on_finished=self._on_finished)
        return self.worker

    def stop(self, *_):
        if self.worker is not None:
            self.worker.stop()

    def _set_running(self, running: bool) -> None:
        self.run_btn.enabled = not running
        stop_btn = getattr(self, "stop_btn", None)
        if stop_btn is not None:
            stop_btn.enabled = running

    def _on_error(self, exc: BaseException) -> None:
        msg = _workers.notify_error(exc, self.job_failed)
        self.progress.finish("failed")
        self._show_error(msg)

    def _show_error(self, msg: str) -> None:
        self.progress.status.setText(msg)

    def _on_finished(self) -> None:
        self.worker = None
        self._set_running(False)
        device = getattr(self, "device", None)
        if device is not None and hasattr(device, "refresh"):
            device.refresh()
