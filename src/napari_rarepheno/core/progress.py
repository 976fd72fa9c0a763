"""How long work talks to its caller: one callback type and a cancel token.

Every engine function that takes time accepts ``callback`` (a :data:`ProgressCallback`,
called with :class:`Progress` reports: training batches and epochs, or items done of a
total via :func:`report_items`) and ``cancel`` (a :class:`CancelToken`, checked between
batches). The engine never imports a GUI: the napari docks adapt these to thread-worker
signals, the CLI to tqdm bars.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

from .errors import Cancelled


@dataclass
class Progress:
    """One progress report. ``stage`` is 'batch', 'epoch', 'done' or 'cancelled' for training,
    'item' for prediction/scoring loops."""

    stage: str
    epoch: int = 0
    n_epochs: int = 0
    batch: int = 0
    n_batches: int = 0
    loss: float = float("nan")
    lr: float = float("nan")
    metrics: dict = field(default_factory=dict)
    message: str = ""
    elapsed: float = 0.0

    @property
    def fraction(self) -> float:
        """Overall fraction done (0..1), for progress bars."""
        if self.n_epochs and self.n_batches:
            return min(1.0, (self.epoch + self.batch / self.n_batches) / self.n_epochs)
        if self.n_batches:
            return min(1.0, self.batch / self.n_batches)
        return 0.0


ProgressCallback = Optional[Callable[[Progress], None]]


def report_items(callback: ProgressCallback, done: int, total: int, message: str = "") -> None:
    """Tell ``callback`` (if any) that ``done`` of ``total`` items (images, crops, tiles,
    fields) are finished: the one way engine loops report progress."""
    if callback is not None:
        callback(Progress(stage="item", batch=int(done), n_batches=int(total), message=message))


class CancelToken:
    """Thread-safe stop flag shared by a caller (GUI button, Ctrl-C) and the engine."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("stopped by the user")

    def reset(self) -> None:
        self._event.clear()
