"""Results table: shows a column table, saves it as CSV, links rows to objects.

Clicking a row selects the object in the viewer (labels: ``selected_label``, shown alone
with ``show_selected_label`` and the view zoomed to its extent; points:
``selected_data``); clicking an object in the viewer selects its row
(:meth:`ResultsTable.link_labels`); clearing the selection (a click on the background)
shows every object again. A ``sortable`` table sorts its rows on a header click
(:meth:`ResultsTable.sort_by`; numbers numerically, blanks last); ``rows`` follow the
order shown, so row numbers still index ``rows`` and ``column()``.

The rows live in a :class:`QAbstractTableModel` (a view asks only for the cells it
shows), so thousands of rows are set in a few milliseconds in the GUI thread: the dock
workers prepare the rows, the table only takes them.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
from qtpy.QtCore import QAbstractTableModel, Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTableView,
    QVBoxLayout,
    QWidget,
)

#: widest a column starts (px); longer texts are elided in the middle (drag the header to widen)
MAX_COLUMN_WIDTH = 150


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.4g}"
    return str(v)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


class _RowsModel(QAbstractTableModel):
    """``columns`` and ``rows`` (list of lists) as a read-only Qt model; cells are
    formatted when the view shows them."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.columns: list[str] = []
        self.rows: list[list] = []
        self.tooltips: dict[str, str] = {}

    def reset(self, columns: list[str], rows: list[list]) -> None:
        self.beginResetModel()
        self.columns, self.rows = columns, rows
        self.endResetModel()

    def rowCount(self, parent=None):  # noqa: N802 - Qt name
        return 0 if parent is not None and parent.isValid() else len(self.rows)

    def columnCount(self, parent=None):  # noqa: N802 - Qt name
        return 0 if parent is not None and parent.isValid() else len(self.columns)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        v = self.rows[index.row()][index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return _fmt(v)
        if role == Qt.ItemDataRole.TextAlignmentRole and _is_number(v):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802 - Qt name
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(self.columns):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return self.columns[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return self.tooltips.get(self.columns[section])
        return None

    def set_cell(self, i: int, j: int, value) -> None:
        self.rows[i][j] = value
        idx = self.index(i, j)
        self.dataChanged.emit(idx, idx)


class ResultsTable(QWidget):
    """A read-only table with "Save CSV..." and row <-> object selection."""

    row_selected = Signal(int)

    def __init__(self, title: str = "", parent=None, max_height: int = 220, sortable: bool = False):
        super().__init__(parent)
        self.sortable = sortable
        self.sort_key: tuple[str, bool] | None = None  # (column, descending) once sorted
        self.max_height = int(max_height)
        self.model = _RowsModel(self)
        self.title = QLabel(title)
        self.title.setWordWrap(True)
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setWordWrap(False)
        self.table.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setResizeContentsPrecision(64)  # column widths from the first rows, not all of them
        header.setMinimumSectionSize(36)
        vheader = self.table.verticalHeader()
        vheader.setVisible(False)
        vheader.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vheader.setDefaultSectionSize(max(20, self.fontMetrics().height() + 6))
        self.table.setMinimumHeight(60)
        self.table.setMaximumHeight(self.max_height)
        self.table.setMinimumWidth(120)
        self.table.selectionModel().selectionChanged.connect(self._on_selection)
        if sortable:
            header.setSectionsClickable(True)
            header.sectionClicked.connect(self._on_header)
        self.save_btn = QPushButton("Save CSV...")
        self.save_btn.setEnabled(False)
        self.save_btn.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.save_btn.clicked.connect(self._save_dialog)
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.save_btn, 0, Qt.AlignmentFlag.AlignTop)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.table)
        self._quiet = False
        self._links: list = []
        self._fit_height()

    # ----------------------------------------------------------------- data
    @property
    def columns(self) -> list[str]:
        return self.model.columns

    @property
    def rows(self) -> list[list]:
        return self.model.rows

    @rows.setter
    def rows(self, rows: list[list]) -> None:
        self.model.rows = rows

    def set_table(self, table: dict[str, Sequence] | None, columns: Sequence[str] | None = None) -> None:
        """Show ``{column: values}`` (e.g. ``layer.features`` or a DataFrame)."""
        cols, rows = table_rows(table, columns)
        self.set_rows(cols, rows)

    def set_rows(self, columns: Sequence[str], rows: Sequence[Sequence]) -> None:
        """Show ``rows`` (lists in ``columns`` order; taken as they are when already lists)."""
        columns = list(columns)
        rows = rows if isinstance(rows, list) and all(type(r) is list for r in rows[:1]) else [list(r) for r in rows]
        same_columns = columns == self.model.columns
        if self.sort_key is not None and self.sort_key[0] in columns:
            rows = _sorted_rows(rows, columns.index(self.sort_key[0]), self.sort_key[1])
        self._quiet = True
        try:
            self.model.reset(columns, rows)
            if not same_columns:
                self._size_columns()
            self._show_sort_indicator()
        finally:
            self._quiet = False
        self.save_btn.setEnabled(bool(rows))
        self._fit_height()

    def set_header_tooltips(self, tips: dict[str, str]) -> None:
        """A tooltip for some column headers (what the column means)."""
        self.model.tooltips = dict(tips)

    def set_cell(self, i: int, column: str, value) -> None:
        self.model.set_cell(i, self.columns.index(column), value)

    def _size_columns(self) -> None:
        self.table.resizeColumnsToContents()
        header = self.table.horizontalHeader()
        for j in range(len(self.columns)):
            if header.sectionSize(j) > MAX_COLUMN_WIDTH:
                header.resizeSection(j, MAX_COLUMN_WIDTH)

    def _fit_height(self) -> None:
        """As tall as its rows (a one-row table does not take the room of ten), at most ``max_height``."""
        vh = self.table.verticalHeader().defaultSectionSize()
        hh = self.table.horizontalHeader().sizeHint().height()
        bar = self.table.horizontalScrollBar().sizeHint().height()
        want = hh + vh * max(1, len(self.rows)) + bar + 2 * self.table.frameWidth() + 2
        self.table.setFixedHeight(int(min(self.max_height, max(60, want))))

    def _show_sort_indicator(self) -> None:
        header = self.table.horizontalHeader()
        if self.sort_key is not None and self.sort_key[0] in self.columns:
            header.setSortIndicatorShown(True)
            header.setSortIndicator(self.columns.index(self.sort_key[0]),
                                    Qt.SortOrder.DescendingOrder if self.sort_key[1] else Qt.SortOrder.AscendingOrder)
        else:
            header.setSortIndicatorShown(False)

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
        self._quiet = True
        try:
            self.model.reset(self.columns, _sorted_rows(self.rows, self.columns.index(column), bool(descending)))
            self._show_sort_indicator()
        finally:
            self._quiet = False
        if keep is not None:
            self.select_row(next(i for i, r in enumerate(self.rows) if r is keep))

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
                self.table.scrollTo(self.model.index(i, 0))
        finally:
            self._quiet = False

    def selected_row(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        return rows[0].row() if rows else None

    def _on_selection(self, *_):
        if self._quiet:
            return
        i = self.selected_row()
        if i is not None:
            self.row_selected.emit(i)
        else:
            for lk in self._links:
                lk.clear_highlight()

    def link_labels(self, viewer, layer, id_column: str = "index", center: bool = True) -> None:
        """Row click -> select that label (shown alone, the view zoomed to it); label click -> its row."""
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


def table_rows(table, columns: Sequence[str] | None = None) -> tuple[list[str], list[list]]:
    """``{column: values}`` or a DataFrame -> (columns, rows as lists): column-wise, no
    per-cell Python loop (a worker can call it and hand the rows to :meth:`ResultsTable.set_rows`)."""
    table = {} if table is None else table
    if hasattr(table, "to_dict") and hasattr(table, "columns"):  # DataFrame
        table = {c: table[c].to_numpy() for c in table.columns}
    cols = list(columns or table.keys())
    if not cols:
        return cols, []
    arrays = [np.asarray(table[c]) for c in cols]
    # numbers stay numpy scalars' Python equivalents (tolist), so sorting and CSV see plain values
    return cols, [list(r) for r in zip(*(a.tolist() for a in arrays))]


def _sorted_rows(rows: list[list], j: int, descending: bool) -> list[list]:
    def number(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return None

    filled = [r for r in rows if r[j] is not None and r[j] != ""]
    blank = [r for r in rows if r[j] is None or r[j] == ""]
    if all(number(r[j]) is not None for r in filled):
        filled.sort(key=lambda r: number(r[j]), reverse=descending)
    else:
        filled.sort(key=lambda r: str(r[j]), reverse=descending)
    return filled + blank


def camera_of(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def label_box(layer, label: int, step: Sequence[int] | None = None) -> tuple[float, float, float, float] | None:
    """(y0, x0, y1, x1) data-pixel extent of ``label`` in a labels layer's shown plane; None when absent."""
    data = np.asarray(layer.data)
    if data.ndim > 2:
        lead = tuple(int(s) for s in (step or ())[: data.ndim - 2])
        data = data[lead] if len(lead) == data.ndim - 2 else data[(0,) * (data.ndim - 2)]
    ys, xs = np.nonzero(data == label)
    if not len(ys):
        return None
    return float(ys.min()), float(xs.min()), float(ys.max() + 1), float(xs.max() + 1)


def zoom_to_box(viewer, layer, box: tuple[float, float, float, float], margin: float = 1.0,
                min_size: float = 40.0) -> None:
    """Centre the view on ``box`` (data pixels of ``layer``) and zoom so the box and
    ``margin`` times its size on each side fill the canvas (at least ``min_size`` px shown)."""
    y0, x0, y1, x1 = box
    scale = np.asarray(layer.scale, float)[-2:]
    translate = np.asarray(layer.translate, float)[-2:]
    centre = (np.array([(y0 + y1) / 2, (x0 + x1) / 2]) - 0.5) * scale + translate
    size = np.maximum(np.array([y1 - y0, x1 - x0]) * (1 + 2 * margin), min_size) * np.abs(scale)
    cam = camera_of(viewer)
    c = list(cam.center)
    c[-2:] = centre
    cam.center = tuple(c)
    try:
        view = np.asarray(viewer.canvas.viewbox_size(viewer.layers), float)[-2:]
    except (AttributeError, TypeError):  # an older napari: no canvas model
        view = None
    if view is not None and np.all(view > 0):
        cam.zoom = float(np.min(view / size))


class _LabelsLink:
    def __init__(self, table: ResultsTable, viewer, layer, id_column: str, center: bool):
        self.table, self.viewer, self.layer, self.id_column, self.center = table, viewer, layer, id_column, center
        self._highlighted = False
        table.row_selected.connect(self.on_row)
        layer.mouse_drag_callbacks.append(self.on_click)

    def disconnect(self):
        try:
            self.table.row_selected.disconnect(self.on_row)
        except (TypeError, RuntimeError):
            pass
        if self.on_click in self.layer.mouse_drag_callbacks:
            self.layer.mouse_drag_callbacks.remove(self.on_click)
        self.clear_highlight()

    def ids(self) -> list:
        return self.table.column(self.id_column) if self.id_column in self.table.columns else []

    def clear_highlight(self) -> None:
        """Every object shown again (the row selection was cleared or the table moved on)."""
        if self._highlighted:
            self._highlighted = False
            try:
                self.layer.show_selected_label = False
            except (AttributeError, RuntimeError):
                pass

    def on_row(self, i: int) -> None:
        if self.layer not in self.viewer.layers:
            return
        ids = self.ids()
        if not 0 <= i < len(ids):
            return
        label = int(ids[i])
        self.layer.selected_label = label
        self.layer.show_selected_label = True  # the object alone, until the selection is cleared
        self._highlighted = True
        self.viewer.layers.selection.active = self.layer
        if self.center:
            box = label_box(self.layer, label, self.viewer.dims.current_step)
            if box is None:  # not in the shown plane: its table position
                box = self._box_from_features(label)
            if box is not None:
                zoom_to_box(self.viewer, self.layer, box)

    def _box_from_features(self, label: int):
        feats = self.layer.features
        cols = next(((a, b) for a, b in (("centroid_y", "centroid_x"), ("y", "x")) if a in feats and b in feats),
                    None)
        if cols is None or "index" not in feats:
            return None
        row = feats[feats["index"] == label]
        if not len(row):
            return None
        y, x = float(row[cols[0]].iloc[0]), float(row[cols[1]].iloc[0])
        return y, x, y + 1, x + 1

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
            if self._highlighted:
                layer.show_selected_label = True
        elif label == 0:
            self.table.select_row(None)
            self.clear_highlight()
