"""Training progress: a progress bar, a status line and a live loss/accuracy plot.

Fed with :class:`~..core.progress.Progress` reports (in the GUI thread). The plot is
redrawn once per epoch (and at most every 0.5 s for batch losses), so a fast trainer
never floods the GUI.
"""
from __future__ import annotations

import math
import time

from qtpy.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from ..core.progress import Progress
from ._plot import LinePlot


class LossPlot(LinePlot):
    """Loss (left axis) and accuracy (right axis) per epoch; batch loss as a faint trace."""

    def __init__(self, parent=None):
        super().__init__(parent, xlabel="epoch", ylabel="loss", y2label="accuracy")
        self.setMinimumHeight(170)
        self.batches: list[tuple[float, float]] = []
        self.epochs: list[dict] = []
        self._last_draw = 0.0

    def clear(self):
        self.batches, self.epochs = [], []
        super().clear()

    def add_batch(self, x: float, loss: float) -> None:
        if math.isfinite(loss):
            self.batches.append((x, loss))
        if time.monotonic() - self._last_draw > 0.3:
            self.redraw()

    def add_epoch(self, row: dict) -> None:
        self.epochs.append(dict(row))
        self.redraw()

    def redraw(self) -> None:
        self._last_draw = time.monotonic()
        self.series.clear()
        if self.batches:
            x, y = zip(*self.batches)
            self.set_series("batch loss", x, y, "#5b8fd6", style="faint")
        if self.epochs:
            ep = [r["epoch"] for r in self.epochs]
            self.set_series("train loss", ep, [r.get("train_loss", math.nan) for r in self.epochs], "#5b8fd6")
            if "val_loss" in self.epochs[0]:
                self.set_series("val loss", ep, [r.get("val_loss", math.nan) for r in self.epochs], "#f39c4a")
            key = "val_accuracy" if "val_accuracy" in self.epochs[0] else "train_accuracy"
            self.set_series(key.replace("_", " "), ep, [r.get(key, math.nan) for r in self.epochs], "#55c271",
                            axis="right", style="--")
            best = [r["epoch"] for r in self.epochs if r.get("best")]
            self.vline = best[-1] if best else None
        self.update()


class TrainingProgress(QWidget):
    """Progress bar + status line + :class:`LossPlot`."""

    def __init__(self, parent=None, plot: bool = True):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.bar.setFormat("idle")
        self.bar.setTextVisible(True)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.bar)
        lay.addWidget(self.status)
        self.plot = LossPlot() if plot else None
        if self.plot is not None:
            lay.addWidget(self.plot)
        self.last: Progress | None = None

    def start(self, text: str = "starting...") -> None:
        self.bar.setValue(0)
        self.bar.setFormat(text)
        self.status.setText("")
        if self.plot is not None:
            self.plot.clear()

    def busy(self, text: str) -> None:
        """Indeterminate bar (loading, preparing)."""
        self.bar.setRange(0, 0)
        self.bar.setFormat(text)

    def update(self, p: Progress) -> None:
        self.last = p
        if self.bar.maximum() == 0:
            self.bar.setRange(0, 1000)
        self.bar.setValue(int(1000 * p.fraction))
        if p.stage == "batch":
            self.bar.setFormat(f"epoch {p.epoch + 1}/{p.n_epochs}  batch {p.batch}/{p.n_batches}  "
                               f"loss {p.loss:.3f}")
            if self.plot is not None and p.n_batches:
                self.plot.add_batch(p.epoch + p.batch / p.n_batches, p.loss)
        elif p.stage == "epoch":
            m = p.metrics
            text = f"epoch {p.epoch}/{p.n_epochs}: train loss {m.get('train_loss', math.nan):.3f}"
            if "val_loss" in m:
                text += f", val loss {m['val_loss']:.3f}, val accuracy {m['val_accuracy']:.3f}"
                if m.get("val_input") == "border":
                    text += " (with border margin)"
            if m.get("best"):
                text += "  (best so far, saved)"
            self.status.setText(text)
            self.bar.setFormat(f"epoch {p.epoch}/{p.n_epochs}")
            if self.plot is not None:
                self.plot.add_epoch(m)
        elif p.stage == "item":
            self.bar.setFormat(f"{p.message or 'item'} {p.batch}/{p.n_batches}")
        elif p.stage in ("done", "cancelled"):
            self.bar.setFormat(p.message or p.stage)

    def finish(self, text: str) -> None:
        if self.bar.maximum() == 0:
            self.bar.setRange(0, 1000)
        self.bar.setValue(1000)
        self.bar.setFormat(text)
