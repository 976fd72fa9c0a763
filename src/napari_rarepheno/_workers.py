"""Core callbacks -> napari thread workers.

The engine (``core``) reports through plain callbacks (:class:`~.core.progress.Progress`)
and stops on a :class:`~.core.progress.CancelToken`. Here each long task becomes a
napari generator worker that *yields* those reports, so the GUI thread only ever
receives signals:

* the engine call runs in a plain thread that pushes reports into a queue; the
  worker's generator drains the queue and yields each report (napari delivers it to
  the GUI thread through ``worker.yielded``);
* **Stop** cancels the token: the engine finishes the current batch, keeps the best
  weights and returns normally (``worker.returned`` still fires, with ``cancelled``);
* ``worker.quit()`` (napari's task manager calls it when the viewer closes) does the
  same: it cancels the token instead of abandoning the engine half-way;
* errors reach the GUI as one clear notification (``show_error``), never as a bare
  traceback; :class:`~.core.errors.Cancelled` is not an error; where an engine message
  names a command-line flag (``--tile``, ``--channel-files``...) the dock says which
  control does that instead (:func:`gui_message`);
* :class:`WorkerGroup` owns a dock's workers and stops them when the dock or the
  viewer closes (:func:`stop_on_close`).

Nothing here imports torch.
"""
from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Iterator

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QMainWindow
from superqt.utils import GeneratorWorker

from .core.errors import CHOOSE_CHANNELS, Cancelled, RarephenoError
from .core.progress import CancelToken, Progress, ProgressCallback

log = logging.getLogger(__name__)

#: Run workers in the calling thread (for debugging; tests use real threads).
SYNCHRONOUS = os.environ.get("RAREPHENO_SYNC_WORKERS", "") == "1"

_DONE = object()
Report = Callable[[Progress], None]


class EngineWorker(GeneratorWorker):
    """A generator worker bound to a cancel token; ``quit`` stops the engine gracefully."""

    def __init__(self, func, *args, cancel: CancelToken, name: str = "task", **kwargs):
        super().__init__(func, *args, **kwargs)
        self.cancel_token = cancel
        self.name = name
        self._holder: list = []   # the engine thread, once the generator has started it

    def stop(self) -> None:
        """Ask the engine to stop after the current step (results so far are kept)."""
        self.cancel_token.cancel()

    def quit(self) -> None:  # napari's task manager calls this when the window closes
        self.stop()
        self.wait(15.0)

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until the engine thread has ended (True) or ``timeout`` s passed (False)."""
        t0 = time.monotonic()
        while not self._holder and self.is_running and time.monotonic() - t0 < timeout:
            time.sleep(0.01)
        if self._holder:
            th = self._holder[0]
            th.join(max(0.0, timeout - (time.monotonic() - t0)))
            return not th.is_alive()
        return True


class _Failed:
    """What the worker returns when the job raised: the exception travels as a result, not
    through superqt's ``errored``. superqt's generator workers take a RuntimeError (torch
    raises them: shapes, devices, memory) for "the worker was deleted" and then emit neither
    ``errored`` nor ``finished``, so the job would run forever; and napari 0.9's
    ``create_worker`` connects ``errored`` to a callback that takes no argument, which PySide6
    calls with the exception (a TypeError in the Qt event loop on every failed job)."""

    def __init__(self, error: BaseException):
        self.error = error


def _drain(job: Callable[[Report], Any], holder: list) -> Iterator[Progress]:
    """Generator body: run ``job(report)`` in a thread, yield its reports, return its result
    (or :class:`_Failed` with the job's exception)."""
    q: queue.SimpleQueue = queue.SimpleQueue()
    box: dict = {}

    def target():
        try:
            box["result"] = job(q.put)
        except BaseException as e:  # noqa: BLE001 - handed to the GUI thread as a result
            box["error"] = e
        finally:
            q.put(_DONE)

    th = threading.Thread(target=target, name="rarepheno-engine", daemon=True)
    holder.append(th)
    th.start()
    while (item := q.get()) is not _DONE:
        yield item
    th.join()
    return _Failed(box["error"]) if "error" in box else box.get("result")


def make_worker(job: Callable[[Report], Any], *, cancel: CancelToken | None = None, name: str = "task",
                on_progress: Callable[[Progress], None] | None = None,
                on_done: Callable[[Any], None] | None = None,
                on_error: Callable[[BaseException], None] | None = None,
                on_finished: Callable[[], None] | None = None) -> EngineWorker:
    """A (not yet started) napari thread worker running ``job(report)``.

    ``job`` runs off the GUI thread: it must not touch Qt or napari layers. It calls
    ``report(Progress(...))`` as often as it likes and returns its result, which goes
    to ``on_done`` in the GUI thread. ``on_error`` gets the exception (default: a napari
    notification via :func:`notify_error`); a :class:`Cancelled` error (Stop during a
    loop without its own stop point) goes to ``on_done(None)`` instead.
    """
    from napari.qt.threading import create_worker

    cancel = cancel or CancelToken()
    holder: list = []
    worker = create_worker(_drain, job, holder, _worker_class=EngineWorker, _ignore_errors=True,
                           _start_thread=False, cancel=cancel, name=name)
    worker._holder = holder

    def _error(exc):
        if isinstance(exc, Cancelled):
            if on_done is not None:
                on_done(None)
            return
        (on_error or notify_error)(exc)

    def _returned(result):
        if isinstance(result, _Failed):
            _error(result.error)
        elif on_done is not None:
            on_done(result)

    if on_progress is not None:
        worker.yielded.connect(on_progress)
    worker.returned.connect(_returned)
    worker.errored.connect(_error)  # the worker machinery itself failing (jobs' errors come as _Failed)
    worker.warned.connect(_relay_warning)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    return worker


def run_worker(worker: EngineWorker) -> EngineWorker:
    """Start ``worker`` in napari's thread pool (or inline when :data:`SYNCHRONOUS`)."""
    if SYNCHRONOUS:
        worker.run()
    else:
        worker.start()
    return worker


def _relay_warning(w: tuple) -> None:
    from napari.utils.notifications import show_warning

    message = w[0] if w else ""
    show_warning(gui_message(str(message)))


#: engine wording for the command line -> what to do in a dock (first match of each pattern)
_GUI_WORDS = [
    (re.escape(CHOOSE_CHANNELS), "choose the channels to use (the channel mapping in the dock; 'channel files' "
     "for images stored one file per channel)"),
    (r"use tiled prediction \(rarepheno predict --tile\)", "set a tile size ('tile (px)' in the Infer tab)"),
    (r"\(--tile\)", "('tile (px)' in the Infer tab)"),
    (r"use --tile (\d+)", r"set 'tile (px)' to \1"),
    (r"use --device auto or cpu", "choose the device auto or cpu"),
    (r"--val-split position needs", "validation 'position' needs"),
    (r"give --val VAL, --group-regex or --val-split random", "choose validation 'random' or 'none'"),
    (r"give --val VAL", "choose validation 'none'"),
    (r"--channels must be", "channels must be"),
    (r"use --overwrite \(CLI\) or confirm \(GUI\) to replace it", "confirm to replace it"),
    (r"pass --overwrite to replace it", "choose another name or folder"),
]


def gui_message(text: str) -> str:
    """An engine message as a dock shows it: no command-line flags (each becomes the control
    that does the same; a flag the docks have no control for keeps only its name)."""
    for pattern, replacement in _GUI_WORDS:
        text = re.sub(pattern, replacement, text)
    return re.sub(r"(?<![\w-])--([a-z][a-z0-9-]*)", lambda m: f"'{m.group(1).replace('-', ' ')}'", text)


def error_message(exc: BaseException) -> str:
    """The one line a biologist reads: our own errors verbatim (flags named as the docks'
    controls, :func:`gui_message`), others with their type."""
    if isinstance(exc, RarephenoError):
        return gui_message(str(exc))
    if isinstance(exc, MemoryError):
        return "out of memory: use a smaller tile size, fewer images or a smaller batch"
    if isinstance(exc, FileNotFoundError):
        return f"{exc.filename}: not found"
    if isinstance(exc, PermissionError):
        return f"{exc.filename}: permission denied"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def notify_error(exc: BaseException, context: str = "") -> str:
    """Show ``exc`` as a napari error notification (and log the traceback)."""
    from napari.utils.notifications import show_error

    msg = error_message(exc)
    if context:
        msg = f"{context}: {msg}"
    if not isinstance(exc, RarephenoError):
        log.error("napari-rarepheno: %s", msg, exc_info=(type(exc), exc, exc.__traceback__))
    show_error(msg)
    return msg


def count_progress(report: Report, cancel: CancelToken, message: str = "") -> ProgressCallback:
    """An engine progress callback that forwards item reports to the dock (labelled with
    ``message``) and honours Stop between items."""
    def progress(p: Progress) -> None:
        cancel.raise_if_cancelled()
        report(replace(p, message=message or p.message))
    return progress


class WorkerGroup:
    """The running workers of one dock: start, stop all, wait; after :meth:`close` the
    dock's callbacks are no longer called (its widgets may be gone)."""

    def __init__(self) -> None:
        self.workers: list[EngineWorker] = []
        self.closed = False

    def _guard(self, fn):
        if fn is None:
            return None

        def call(*args):
            if not self.closed:
                return fn(*args)
        return call

    def start(self, job: Callable[[Report], Any], **kw) -> EngineWorker:
        """:func:`make_worker` + :func:`run_worker`, tracking the worker until it finishes."""
        on_finished = self._guard(kw.pop("on_finished", None))
        for key in ("on_progress", "on_done", "on_error"):
            if kw.get(key) is not None:
                kw[key] = self._guard(kw[key])
        if "on_error" not in kw or kw["on_error"] is None:
            kw["on_error"] = self._guard(notify_error)
        holder: list = []

        def finished():
            if holder and holder[0] in self.workers:
                self.workers.remove(holder[0])
            if on_finished is not None:
                on_finished()

        worker = make_worker(job, on_finished=finished, **kw)
        holder.append(worker)
        self.workers.append(worker)
        return run_worker(worker)

    @property
    def busy(self) -> bool:
        return bool(self.workers)

    def stop_all(self, wait: float = 0.0) -> None:
        for w in list(self.workers):
            w.stop()
        if wait:
            for w in list(self.workers):
                w.wait(wait)

    def close(self, wait: float = 15.0) -> None:
        """Stop everything, wait for the engine threads, and mute the callbacks."""
        self.closed = True
        self.stop_all(wait)


class _CloseWatcher(QObject):
    """Event filter: stop a dock's workers when the dock is closed or taken out of the
    window, or when its main window gets a close event from code (``viewer.close()``).
    A user closing the window goes through napari's confirmation, which calls
    ``worker.quit()``. Uses Qt only (plugin docks get a viewer proxy without private
    attributes): the filter follows the dock's ancestors up to the main window.""" 

    def __init__(self, dock, group: WorkerGroup, wait: float):
        super().__init__(dock)
        self._dock, self._group, self._wait = dock, group, wait
        self._had_parent = False
        self._done = False
        self._watched: set[int] = set()  # ids, not references: never keep a window alive

    def eventFilter(self, obj, event):  # noqa: N802 - Qt name
        if "_dock" not in self.__dict__:  # PySide6: events reach a watcher whose Python side is torn down
            return False
        et = event.type()
        if obj is self._dock:
            if et == QEvent.ParentChange:
                if self._dock.parent() is not None:
                    self._had_parent = True
                    self._watch_ancestors()
                elif self._had_parent:  # taken out of its dock widget
                    self.stop()
            elif et == QEvent.Close:
                self.stop()
        elif et == QEvent.ParentChange:  # the dock widget moved into the main window
            self._watch_ancestors()
        elif et == QEvent.Close and isinstance(obj, QMainWindow) and not event.spontaneous():
            self.stop()
        return False

    def _watch_ancestors(self):
        w = self._dock.parent()
        while w is not None:
            if id(w) not in self._watched:
                w.installEventFilter(self)
                self._watched.add(id(w))
            w = w.parent()

    def stop(self):
        self._group.close(wait=self._wait)
        if not self._done:
            self._done = True
            closed = getattr(self._dock, "on_close", None)
            if closed is not None:
                closed()


def stop_on_close(dock, group: WorkerGroup, wait: float = 15.0) -> _CloseWatcher:
    """Stop ``group``'s workers when ``dock`` is closed/removed or its viewer window closes."""
    watcher = _CloseWatcher(dock, group, wait)
    dock.installEventFilter(watcher)
    return watcher
