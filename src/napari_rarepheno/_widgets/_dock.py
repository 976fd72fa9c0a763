"""What every dock shares: tabs in a scroll area, a worker group stopped on close."""
from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QScrollArea, QTabWidget, QVBoxLayout, QWidget

from .. import _workers


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
        self._watcher = _workers.stop_on_close(self, self.workers)

    def add_tab(self, panel: QWidget, title: str) -> QWidget:
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(panel)
        scroll.setMinimumWidth(panel.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4)
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
