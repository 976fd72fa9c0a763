"""What every dock shares: tabs in a scroll area, a worker group stopped on close.

Docks stack in napari's right dock area; at 1600x1000 two of them share ~900 px of height.
So a dock asks for a moderate size (:data:`PREFERRED`) instead of its whole content's,
keeps a usable minimum height (:data:`MIN_HEIGHT`) so a neighbour cannot squeeze it to a
strip, and scrolls its content both ways (nothing is ever cut off at the right edge);
dropdowns do not widen the dock to fit a microscope's long file names.
"""
from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QComboBox, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from .. import _workers

#: the size a dock asks for (width, height): stacked docks share the height evenly
PREFERRED = (400, 460)
#: no dock is squeezed below this height (px)
MIN_HEIGHT = 240


def compact_combos(widget: QWidget, chars: int = 12) -> None:
    """Dropdowns under ``widget`` size to ``chars`` characters, not to their longest entry."""
    for combo in widget.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(chars)


class Dock(QWidget):
    """A dock with tabs; ``self.workers`` are stopped when the dock or the viewer closes."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.workers = _workers.WorkerGroup()
        self.tabs = QTabWidget()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.tabs)
        self.setMinimumWidth(360)
        self.setMinimumHeight(MIN_HEIGHT)
        self._watcher = _workers.stop_on_close(self, self.workers)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt name
        return QSize(max(PREFERRED[0], self.minimumWidth()), PREFERRED[1])

    def add_tab(self, panel: QWidget, title: str) -> QWidget:
        compact_combos(panel)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        scroll.setWidget(panel)
        scroll.setMinimumWidth(min(panel.minimumSizeHint().width(), 480)
                               + scroll.verticalScrollBar().sizeHint().width() + 4)
        scroll.setMinimumHeight(MIN_HEIGHT - 40)
        self.tabs.addTab(scroll, title)
        return panel

    def panels(self) -> list[QWidget]:
        return [self.tabs.widget(i).widget() for i in range(self.tabs.count())]

    def select_tab(self, panel: QWidget) -> None:
        """Bring ``panel`` (one of :meth:`panels`) to the front."""
        self.tabs.setCurrentIndex(self.panels().index(panel))

    def on_close(self):
        """Called once when the dock or the viewer closes (workers already stopped)."""
        for p in self.panels():
            hook = getattr(p, "on_close", None)
            if hook is not None:
                hook()

    def close_workers(self, wait: float = 15.0) -> None:
        self.workers.stop_all(wait=wait)
