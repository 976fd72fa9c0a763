"""Results table: shows a column table, saves it as CSV, links rows to objects.

Clicking a row selects the object in the viewer (labels: ``selected_label`` and a
centred view; points: ``selected_data``); clicking an object in the viewer selects
its row (:meth:`ResultsTable.link_labels`). A ``sortable`` table sorts its rows on a
header click (:meth:`ResultsTable.sort_by`; numbers numerically, blanks last); ``rows``
follow the order shown, so row numbers still index ``rows`` and ``column()``.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QAbstractScrollArea,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    return str(v)


class ResultsTable(QWidget):
    """A read-only table with "Save CSV..." and row <-> object selection."""

    row_selected = Signal(int)

    def __init__(self, title: str = "", parent=None, max_height: int = 220, sortable: bool = False):
        super().__init__(parent)
        self.sortable = sortable
        self.sort_key: tuple[str, bool] | None = None  # (column, descending) once sorted
        self.columns: list[str] = []
        self.rows: list[list] = []
        self.title = QLabel(title)
        self.title.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.setSizeAdjustPolicy(QAbstractScrollArea.AdjustIgnored)
        self.table.setMaximumHeight(max_height)
        self.table.setMinimumHeight(60)
        self.table.itemSelectionChanged.connect(self._on_selection)
        if sortable:
            header = self.table.horizontalHeader()
            header.setSectionsClickable(True)
            header.sectionClicked.connect(self._on_header)
        self.save_btn = QPushButton("Save CSV...")
        self.save_btn.setEnabled(False)
        self.save_btn.clicked.connect(self._save_dialog)
        top = QHBoxLayout()
        top.addWidget(self.title)
        top.addStretch()
        top.addWidget(self.save_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.table)
        self._quiet = False
        self._links: list = []

    # ----------------------------------------------------------------- data
    def set_table(self, table: dict[str, Sequence] | None, columns: Sequence[str] | None = None) -> None:
        """Show ``{column: values}`` (e.g. ``layer.features`` or a DataFrame)."""
        table = {} if table is None else table
        if hasattr(table, "to_dict") and hasattr(table, "columns"):  # DataFrame
            table = {c: table[c].to_numpy() for c in table.columns}
        cols = list(columns or table.keys())
        n = len(next(iter(table.values()))) if table else 0
        self.set_rows(cols, [[table[c][i] for c in cols] for i in range(n)])

    def set_rows(self, columns: Sequence[str], rows: Sequence[Sequence]) -> None:
        self.columns, self.rows = list(columns), [list(r) for r in rows]
        if self.sort_key is not None and self.sort_key[0] in self.columns:
            self._sort_rows(*self.sort_key)
        self._render()

    def _render(self) -> None:
        self._quiet = True
        try:
            self.table.clear()
            self.table.setColumnCount(len(self.columns))
            self.table.setRowCount(len(self.rows))
            self.table.setHorizontalHeaderLabels(self.columns)
            for i, row in enumerate(self.rows):
                for j, v in enumerate(row):
                    item = QTableWidgetItem(_fmt(v))
                    if isinstance(v, (int, float, np.integer, np.floating)):
                        item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
                    self.table.setItem(i, j, item)
            self.save_btn.setEnabled(bool(self.rows))
            header = self.table.horizontalHeader()
            if self.sort_key is not None and self.sort_key[0] in self.columns:
                header.setSortIndicatorShown(True)
                header.setSortIndicator(self.columns.index(self.sort_key[0]),
                                        Qt.DescendingOrder if self.sort_key[1] else Qt.AscendingOrder)
            else:
                header.setSortIndicatorShown(False)
        finally:
            self._quiet = False

    # -------------------------------------------------------------- sorting
    def sort_by(self, column: str, descending: bool | None = None) -> None:
        """Sort the rows on ``column`` (None: ascending, or the reverse when sorted on it
        already); the selected row stays selected."""
        if column not in self.columns:
            raise KeyError(column)
        if descending is None:
            descending = self.sort_key is not None and self.sort_key == (column, False)
        selected = self.selected_row()
        keep = self.rows[selected] if selected is not None else None
        self.sort_key = (column, bool(descending))
        self._sort_rows(column, bool(descending))
        self._render()
        if keep is not None:
            self.select_row(next(i for i, r in enumerate(self.rows) if r is keep))

    def _sort_rows(self, column: str, descending: bool) -> None:
        j = self.columns.index(column)

        def number(v):
            try:
                return float(v)
            except (TypeError, ValueError):
                return None

        filled = [r for r in self.rows if r[j] is not None and r[j] != ""]
        blank = [r for r in self.rows if r[j] is None or r[j] == ""]
        if all(number(r[j]) is not None for r in filled):
            filled.sort(key=lambda r: number(r[j]), reverse=descending)
        else:
            filled.sort(key=lambda r: str(r[j]), reverse=descending)
        self.rows = filled + blank

    def _on_header(self, j: int) -> None:
        if 0 <= j < len(self.columns):
            self.sort_by(self.columns[j])

    def column(self, name: str) -> list:
        j = self.columns.index(name)
        return [r[j] for r in self.rows]

    # ------------------------------------------------------------ selection
    def select_row(self, i: int | None, emit: bool = False) -> None:
        self._quiet = not emit
        try:
            if i is None or not 0 <= i < len(self.rows):
                self.table.clearSelection()
            else:
                self.table.selectRow(i)
                self.table.scrollToItem(self.table.item(i, 0))
        finally:
            self._quiet = False

    def selected_row(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        return rows[0].row() if rows else None

    def _on_selection(self):
        if self._quiet:
            return
        i = self.selected_row()
        if i is not None:
            self.row_selected.emit(i)

    def link_labels(self, viewer, layer, id_column: str = "index", center: bool = True) -> None:
        """Row click -> select that label (and centre on it); label click -> select its row."""
        self.unlink_all()  # a table shows the rows of one layer at a time
        self._links = [_LabelsLink(self, viewer, layer, id_column, center)]

    def unlink_all(self) -> None:
        for lk in self._links:
            lk.disconnect()
        self._links = []

    # ------------------------------------------------------------------ csv
    def save_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(self.columns)
            w.writerows(self.rows)
        return path

    def _save_dialog(self):
        from . import _paths  # deferred: loads magicgui

        path = _paths.ask_save_file(self, "Save table as CSV", "CSV (*.csv)", "results.csv")
        if path is not None:
            if path.suffix.lower() != ".csv":
                path = path.with_suffix(".csv")
            from napari.utils.notifications import show_info

            show_info(f"saved {self.save_csv(path)}")


class _LabelsLink:
    def __init__(self, table: ResultsTable, viewer, layer, id_column: str, center: bool):
        self.table, self.viewer, self.layer, self.id_column, self.center = table, viewer, layer, id_column, center
        table.row_selected.connect(self.on_row)
        layer.mouse_drag_callbacks.append(self.on_click)

    def disconnect(self):
        try:
            self.table.row_selected.disconnect(self.on_row)
        except (TypeError, RuntimeError):
            pass
        if self.on_click in self.layer.mouse_drag_callbacks:
            self.layer.mouse_drag_callbacks.remove(self.on_click)

    def ids(self) -> list:
        return self.table.column(self.id_column) if self.id_column in self.table.columns else []

    def on_row(self, i: int) -> None:
        if self.layer not in self.viewer.layers:
            return
        ids = self.ids()
        if not 0 <= i < len(ids):
            return
        label = int(ids[i])
        self.layer.selected_label = label
        self.viewer.layers.selection.active = self.layer
        if self.center:
            feats = self.layer.features
            cols = next(((a, b) for a, b in (("centroid_y", "centroid_x"), ("y", "x")) if a in feats and b in feats),
                        None)
            if cols is not None and "index" in feats:
                row = feats[feats["index"] == label]
                if len(row):
                    yx = np.array([row[cols[0]].iloc[0], row[cols[1]].iloc[0]], float)
                    world = yx * np.asarray(self.layer.scale)[-2:] + np.asarray(self.layer.translate)[-2:]
                    center = list(self.viewer.camera.center)
                    center[-2:] = world
                    self.viewer.camera.center = tuple(center)

    def on_click(self, layer, event):
        if layer.mode not in ("pan_zoom", "transform"):
            return
        value = layer.get_value(event.position, view_direction=event.view_direction,
                                dims_displayed=event.dims_displayed, world=True)
        if value is None:
            return
        label = int(value)
        ids = [int(v) for v in self.ids()]
        if label in ids:
            self.table.select_row(ids.index(label))
            layer.selected_label = label
        elif label == 0:
            self.table.select_row(None)
