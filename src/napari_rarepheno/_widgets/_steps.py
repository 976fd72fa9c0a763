"""GUI steps, one per event-loop turn: how the docks hand finished work to napari.

A worker prepares everything (arrays, layer data tuples, features DataFrames, table rows);
what is left for the GUI thread is giving each piece to napari: add or update a layer,
show it, fill a table. Each of those costs napari tens of milliseconds (it builds the
layer's controls and visual, slices the plane, draws). Done one after the other in one
callback they freeze the viewer for as long as all of them take; queued here, the event
loop runs between two steps, so the viewer keeps redrawing and answering the mouse.
"""
from __future__ import annotations

from collections import deque
from typing import Callable

from qtpy.QtCore import QObject, QTimer

from .. import _workers


class GuiSteps(QObject):
    """A queue of small GUI-thread callables, run one per event-loop turn."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._queue: deque = deque()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._next)

    def add(self, fn: Callable, *args, tag: str = "", keep: bool = False, next: bool = False) -> None:
        """Run ``fn(*args)`` after the steps already queued (``next``: before them). ``tag``
        groups steps for :meth:`clear`; a ``keep`` step is never dropped (e.g. showing a
        layer a previous step left hidden, or ending a job)."""
        item = (fn, args, tag, keep)
        if next:
            self._queue.appendleft(item)
        else:
            self._queue.append(item)
        if not self._timer.isActive():
            self._timer.start()

    def clear(self, *tags: str) -> None:
        """Drop the steps not run yet (of ``tags``; all by default) except the ``keep`` ones:
        a newer result replaces them."""
        self._queue = deque(it for it in self._queue if it[3] or (tags and it[2] not in tags))

    def clear_if(self, test: Callable[[str], bool]) -> None:
        """Drop the steps whose tag passes ``test`` (except the ``keep`` ones)."""
        self._queue = deque(it for it in self._queue if it[3] or not test(it[2]))

    @property
    def busy(self) -> bool:
        return bool(self._queue)

    def flush(self) -> None:
        """Run every queued step now (scripts and tests that need the result at once)."""
        while self._queue:
            self._run_one()

    def _next(self) -> None:
        if self._queue:
            self._run_one()
        if self._queue:
            self._timer.start()

    def _run_one(self) -> None:
        fn, args, _, _ = self._queue.popleft()
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - one failed step must not stop the others
            _workers.notify_error(e, "showing the results")

    def stop(self) -> None:
        self._timer.stop()
        self._queue.clear()
