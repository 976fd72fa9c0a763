"""One background job at a time behind a Run (and optional Stop) button, with an explicit state.

Every panel that runs engine work (the Train tabs, Infer, Classify, Discover's Review and
Gallery, Explore's Evaluate, t-SNE and Few-shot) does the same things around it: show
progress, grey out Run while the job runs, let Stop cancel it, report a failure in the
panel and as a napari notification, and re-enable the buttons when the worker ends however
it ended. The panels inherit that from :class:`JobPanel` and keep only what is theirs (the
job and its result).

The job's state is a :class:`JobState` held by a :class:`Job`, whose psygnal
``changed(new, old)`` signal fires on every transition (always in the GUI thread)::

    IDLE, DONE, FAILED --Run--> RUNNING --returned---------> DONE
                                RUNNING --raised-----------> FAILED   (job.error: the message shown)
                                RUNNING --Stop--> STOPPING --ended------> IDLE   (what was kept is shown,
                                                  STOPPING --raised-----> FAILED  e.g. the best weights)

The end states are entered when the worker has finished, after the panel's result (or
error) handler ran, so a panel in DONE shows its result. The buttons follow the state in
one place, :meth:`JobPanel.update_buttons`: Run while no job runs, Stop while a job runs
and has not been asked to stop. Closing the dock or the viewer stops the workers through
the dock's :class:`~.._workers.WorkerGroup` (and mutes the panel's callbacks).
"""
from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from psygnal import Signal

from .. import _workers


class JobState(str, Enum):
    """Where a panel's job stands."""

    IDLE = "idle"          #: no job has run yet, or the last one was stopped
    RUNNING = "running"    #: a worker runs the job
    STOPPING = "stopping"  #: Stop was pressed: the job ends at its next stop point (e.g. after this batch)
    DONE = "done"          #: the last job ran to its end; its result is shown
    FAILED = "failed"      #: the last job raised; :attr:`Job.error` holds the message

    @property
    def busy(self) -> bool:
        """A worker is still running (Run is refused)."""
        return self in (JobState.RUNNING, JobState.STOPPING)


class Job:
    """A panel's one job: its :class:`JobState`, its worker while it runs, the last error.

    ``changed(new, old)`` is emitted on every transition. Nested emissions are queued, so
    a listener that starts the next job when this one is DONE does not reorder what the
    other listeners see.
    """

    changed = Signal(JobState, JobState, reemission="queued")

    def __init__(self) -> None:
        self._state = JobState.IDLE
        self.worker: _workers.EngineWorker | None = None
        self.error = ""
        self._holds = 0
        self._ended = False  # the worker finished while held

    @property
    def state(self) -> JobState:
        return self._state

    @property
    def busy(self) -> bool:
        return self._state.busy

    def _set(self, state: JobState) -> None:
        old = self._state
        if state is not old:
            self._state = state
            self.changed.emit(state, old)

    def start(self, workers: _workers.WorkerGroup, job: Callable[[_workers.Report], Any], *, name: str,
              cancel=None, on_progress=None, on_done=None, on_error=None) -> _workers.EngineWorker | None:
        """Run ``job(report)`` in a worker of ``workers``; None when a job already runs."""
        if self.busy:
            return None
        self.error = ""
        self._holds, self._ended = 0, False
        self._set(JobState.RUNNING)

        def failed(exc: BaseException) -> None:
            self.error = _workers.error_message(exc)
            (on_error or _workers.notify_error)(exc)

        try:
            worker = workers.start(job, cancel=cancel, name=name, on_progress=on_progress, on_done=on_done,
                                   on_error=failed, on_finished=self._finished)
        except BaseException as e:
            self.error = _workers.error_message(e)
            self._set(JobState.FAILED)
            raise
        if self.busy:  # (a synchronous worker has already finished)
            self.worker = worker
        return worker

    def stop(self) -> bool:
        """Ask the running job to stop at its next stop point; False when none runs."""
        if self._state is not JobState.RUNNING:
            return False
        if self.worker is not None:
            self.worker.stop()
        self._set(JobState.STOPPING)
        return True

    def hold(self) -> None:
        """Keep the job running after its worker ends, until :meth:`release`: the result
        handler calls it when it shows the result in steps (:class:`._steps.GuiSteps`), so
        DONE still means "the result is shown"."""
        self._holds += 1

    def release(self) -> None:
        """The held result is shown: enter the end state if the worker has ended."""
        self._holds = max(0, self._holds - 1)
        if not self._holds and self._ended:
            self._finished()

    def _finished(self) -> None:
        if self._holds:
            self._ended = True
            return
        self._ended = False
        self.worker = None
        if self.error:
            self._set(JobState.FAILED)
        elif self._state is JobState.STOPPING:
            self._set(JobState.IDLE)
        else:
            self._set(JobState.DONE)


class JobPanel:
    """Mixin for a panel (a QWidget) that runs one job at a time; holds :attr:`job`.

    Expects ``self.workers`` (:class:`_workers.WorkerGroup`), ``self.progress``
    (:class:`TrainingProgress`) and ``self.run_btn``; uses ``self.stop_btn`` and
    ``self.device`` (:class:`DevicePicker`) when the panel has them. ``job_failed`` titles
    the error message; ``stopping_text`` is the progress bar's text while stopping.
    Subclasses that grey out more widgets while a job runs extend :meth:`update_buttons`
    and call it at the end of their ``__init__``.
    """

    job_failed = "the job failed"
    stopping_text = "stopping..."

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.job = Job()
        self.job.changed.connect(self._on_job_changed)

    # ------------------------------------------------------------- state
    @property
    def state(self) -> JobState:
        return self.job.state

    @property
    def running(self) -> bool:
        """A job runs (or is stopping)."""
        return self.job.busy

    @property
    def worker(self) -> _workers.EngineWorker | None:
        """The running job's worker (None when no job runs)."""
        return self.job.worker

    def update_buttons(self) -> None:
        """Enable the buttons from the job's state (the one place that does)."""
        state = self.job.state
        self.run_btn.enabled = not state.busy
        stop_btn = getattr(self, "stop_btn", None)
        if stop_btn is not None:
            stop_btn.enabled = state is JobState.RUNNING

    def _on_job_changed(self, new: JobState, old: JobState) -> None:
        self.update_buttons()
        if new is JobState.STOPPING:
            self.progress.bar.setFormat(self.stopping_text)
        if old.busy and not new.busy:
            device = getattr(self, "device", None)
            if device is not None and hasattr(device, "refresh"):
                device.refresh()

    # ------------------------------------------------------------ actions
    def start_job(self, job, on_done, label: str, cancel=None, busy: str | None = None, on_progress=None,
                  name: str | None = None):
        """Run ``job(report)`` in a worker, its result to ``on_done`` (None: stopped);
        returns the worker (None when a job already runs)."""
        if self.job.busy:
            return None
        self.progress.start(label)
        self.progress.busy(busy or f"{label}...")
        return self.job.start(self.workers, job, name=name or label, cancel=cancel,
                              on_progress=on_progress or self.progress.update, on_done=on_done,
                              on_error=self._on_error)

    def stop(self, *_) -> bool:
        """Stop button: ask the job to stop (state RUNNING -> STOPPING)."""
        return self.job.stop()

    def _on_error(self, exc: BaseException) -> None:
        msg = _workers.notify_error(exc, self.job_failed)
        self.progress.finish("failed")
        self._show_error(msg)

    def _show_error(self, msg: str) -> None:
        self.progress.status.setText(msg)
