"""Parts of the Discover dock: a sortable table of dict rows whose selection reports the
row's original index, and small helpers (show an image with its saliency, paths)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
)

from .._layers import add_or_update, saliency_layer

_INDEX = Qt.UserRole


class _Item(QTableWidgetItem):
    """Sorts numbers as numbers."""

    def __lt__(self, other):  # noqa: D105
        a, b = self.data(Qt.UserRole + 1), other.data(Qt.UserRole + 1)
        if a is not None and b is not None:
            return a < b
        return super().__lt__(other)


def _text(column: str, v) -> str:
    if column == "image":
        return Path(str(v)).name if v else ""
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4f}"
    return str(v)


class RankTable(QTableWidget):
    """Rows are dicts; click a column header to sort; ``row_activated(i)`` gives the index of
    the selected row in the list passed to :meth:`set_rows` (whatever the sort order)."""

    row_activated = Signal(int)

    def __init__(self, parent=None):
        super().__init__(0, 0, parent)
        self.columns: list[str] = []
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.setMinimumHeight(220)
        self.verticalHeader().setVisible(False)  # the rank column numbers the rows
        self.itemSelectionChanged.connect(self._on_selection)

    def set_rows(self, columns: Sequence[str], rows: Sequence[dict]) -> None:
        self.setSortingEnabled(False)
        self.blockSignals(True)
        try:
            self.clear()
            self.columns = list(columns)
            self.setColumnCount(len(self.columns))
            self.setRowCount(len(rows))
            self.setHorizontalHeaderLabels(self.columns)
            for i, r in enumerate(rows):
                for j, c in enumerate(self.columns):
                    v = r.get(c, "")
                    item = _Item(_text(c, v))
                    item.setData(_INDEX, i)
                    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                        item.setData(Qt.UserRole + 1, float(v))
                        item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                    if c == "image":
                        item.setToolTip(str(v))
                    self.setItem(i, j, item)
        finally:
            self.blockSignals(False)
        self.setSortingEnabled(True)

    def _visual_row(self, index: int) -> int | None:
        for row in range(self.rowCount()):
            item = self.item(row, 0)
            if item is not None and item.data(_INDEX) == index:
                return row
        return None

    def current_index(self) -> int | None:
        rows = self.selectionModel().selectedRows()
        return None if not rows else self.item(rows[0].row(), 0).data(_INDEX)

    def select_index(self, index: int | None) -> None:
        row = None if index is None else self._visual_row(index)
        if row is None:
            self.clearSelection()
            return
        self.selectRow(row)
        self.scrollToItem(self.item(row, 0))

    def next_index(self, index: int) -> int | None:
        """The index shown below ``index`` in the current sort order."""
        row = self._visual_row(index)
        if row is None or row + 1 >= self.rowCount():
            return None
        return self.item(row + 1, 0).data(_INDEX)

    def set_cell(self, index: int, column: str, value) -> None:
        row = self._visual_row(index)
        if row is not None and column in self.columns:
            self.item(row, self.columns.index(column)).setText(_text(column, value))

    def column_values(self, column: str) -> list[str]:
        """Texts of ``column`` in display order."""
        j = self.columns.index(column)
        return [self.item(r, j).text() for r in range(self.rowCount())]

    def _on_selection(self):
        i = self.current_index()
        if i is not None:
            self.row_activated.emit(int(i))


def data_root(folder: Path) -> Path:
    """The data folder decisions apply to: DATA for DATA/train, else the folder itself."""
    return folder.parent if folder.name in ("train", "val", "test") else folder


def next_free(path: Path) -> Path:
    """``path``, or ``stem-1``, ``stem-2``... when it exists."""
    k, p = 1, path
    while p.exists():
        p, k = path.with_name(f"{path.stem}-{k}{path.suffix}"), k + 1
    return p


def show_image(viewer, name: str, raw: np.ndarray, saliency: np.ndarray | None, probability: float) -> None:
    """Show (C, H, W) pixels as layer ``name`` (RGB for 3-4 channels), replaced in place,
    with its saliency layer on top (removed when there is none)."""

    img = raw[0] if raw.shape[0] == 1 else np.moveaxis(raw, 0, -1) if raw.shape[0] in (3, 4) else raw
    if name in viewer.layers and viewer.layers[name].data.shape != img.shape:
        viewer.layers.remove(name)
    if name in viewer.layers:
        viewer.layers[name].data = img
        viewer.layers[name].reset_contrast_limits()
    else:
        viewer.add_image(img, name=name, rgb=img.ndim == 3 and img.shape[-1] in (3, 4))
    if saliency is not None:
        add_or_update(viewer, saliency_layer(saliency, name, probability=probability))
    elif f"{name} saliency" in viewer.layers:
        viewer.layers.remove(f"{name} saliency")
