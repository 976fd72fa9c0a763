"""DeepYeast Classify tab: every cell of a field gets a localization class.

Input: the model's channels mapped to image layers (:class:`._channels.ChannelMap`: one
layer per channel, e.g. one TIFF per channel, or the channels of one layer); cells from a
Labels layer of any tool (cellpose, StarDist, CellProfiler...) or the built-in segmentation
of one model channel ("segment on"), at a cell diameter given or measured ("measure" runs
the estimate in a worker; the "cell diameter" circle at the centre of the view shows the
value against the cells). Output: a Labels layer coloured by class with ``features`` (id,
class, p_<class>..., centroid, area, shift_score, brightness), a legend, the field's
posterior (table + bars), a sortable cells table linked both ways to the layer, and in
orange what makes the field unlike the training cells (also as napari warnings).
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, SpinBox
from qtpy.QtWidgets import QVBoxLayout, QWidget

from .. import _layers, _workers
from ..core.errors import InputError
from ..core.progress import Progress
from . import _export
from ._channels import ChannelMap
from ._device import DevicePicker
from ._jobs import JobPanel
from ._layer_choice import LayerChoice
from ._model import ModelSlot
from ._plot import BarPlot
from ._progress import TrainingProgress
from ._shift import ShiftNote
from ._steps import GuiSteps
from ._table import ResultsTable, camera_of, table_rows

SEGMENT = "(built-in segmentation)"
CIRCLE = "cell diameter"
#: the input modes before the channel mapping (docs/screenshots.py still sets them; they do nothing)
ONE_LAYER, TWO_LAYERS = "channels of one layer", "two layers"


def rows_to_table(rows: list[dict]) -> dict[str, np.ndarray]:
    if not rows:
        return {"id": np.zeros(0, np.int64), "class": np.zeros(0, object)}
    return {k: np.asarray([r[k] for r in rows]) for k in rows[0]}


@dataclass
class PreparedCells:
    """A classified field as the GUI thread hands it to napari (built in the worker)."""

    result: object                    # core FieldResult (rows, posterior, shift, diameter)
    layer: tuple                      # cells layer data tuple: labels, features DataFrame, class colours
    table: tuple[list[str], list[list]]  # the cells table (columns, rows)
    counts: dict[str, int]            # cells per class (the legend)
    built: tuple | None = None        # the new cells layer, made in the worker (None: update the one shown)


def prepare_cells(result, names: list[str], source: str, geom: dict, field=None,
                  build: bool = False) -> PreparedCells:
    """The cells layer data tuple, the cells table rows and the legend counts of a
    :func:`~..core.deepyeast.fields.classify_field` result (numpy/pandas: call it in a worker)."""
    table = rows_to_table(result.rows)
    ldt = _layers.cells_layer(result.labels, table, names, source, geometry=geom)
    ldt[1]["metadata"]["rarepheno"]["field"] = field  # for Explore's t-SNE (crops of these cells)
    feats = ldt[1]["features"]
    cols = [c for c in ("index", "class", "centroid_y", "centroid_x", "area") if c in feats]
    shown = {c: feats[c].to_numpy() for c in cols}
    pcols = [c for c in feats if c.startswith("p_")]
    if pcols:
        shown["p_class"] = feats[pcols].to_numpy().max(1).round(3)
    for c in ("shift_score", "brightness", "saturated"):
        if c in feats:
            shown[c] = feats[c].to_numpy()
    classes = feats["class"] if "class" in feats else []
    counts = {name: int(np.count_nonzero(np.asarray(classes, dtype=object) == name)) for name in names}
    return PreparedCells(result, ldt, table_rows(shown), counts, _layers.build_layer(ldt) if build else None)


class DeepYeastClassifyPanel(JobPanel, QWidget):
    job_failed = "classification failed"

    def __init__(self, viewer, model: ModelSlot, workers: _workers.WorkerGroup, parent=None):
        super().__init__(parent)
        self.viewer, self.model, self.workers = viewer, model, workers
        self.steps = GuiSteps(self)
        self.posteriors: dict[str, dict] = {}
        self.mode = SimpleNamespace(value=TWO_LAYERS)  # the old input switch: the mapping covers both
        self.channels = ChannelMap(viewer)
        self.cells = LayerChoice(viewer, "labels", "cells", extra=(SEGMENT,),
                                 tooltip="a Labels layer with one label per cell (from any tool), or the built-in "
                                 "segmentation")
        self.segment_on = ComboBox(label="segment on", choices=[],
                                   tooltip="the model channel the built-in segmentation finds the cells in "
                                   "(a nuclear or cytoplasm marker)")
        self.diameter = SpinBox(value=0, min=0, max=5000, step=1,
                                tooltip="typical cell diameter in px for the built-in segmentation; 0: measured "
                                "from the image. The circle 'cell diameter' at the centre of the view shows it.")
        self.measure_btn = PushButton(text="measure")
        self.measure_btn.tooltip = "estimate the cells' diameter in the 'segment on' channel (a few seconds)"
        self.measure_btn.changed.connect(self.measure)
        self.diameter_row = Container(widgets=[self.diameter, self.measure_btn], layout="horizontal", labels=False,
                                      label="diameter (px)")
        self.diameter_row.tooltip = self.diameter.tooltip
        self.diameter_row.margins = (0, 0, 0, 0)
        self.diameter.changed.connect(self._on_diameter)
        self.device = DevicePicker()
        self.run_btn = PushButton(text="Classify cells")
        self.stop_btn = PushButton(text="Stop")
        self.run_btn.changed.connect(self.run)
        self.stop_btn.changed.connect(self.stop)
        btns = Container(widgets=[self.run_btn, self.stop_btn], layout="horizontal", labels=False)
        btns.margins = (0, 0, 0, 0)
        self.form = Container(widgets=[self.cells, self.segment_on, self.diameter_row, self.device, btns])
        self.channels.attach(self.form)
        self.progress = TrainingProgress(plot=False)
        self.shift_note = ShiftNote()
        self.used_label = Label(value="")
        self.used_label.native.setWordWrap(True)
        self.legend = Label(value="")
        self.legend.native.setWordWrap(True)
        self.posterior_plot = BarPlot()
        self.posterior_table = ResultsTable("Posterior per image (group)")
        self.cells_table = ResultsTable("Cells (click a row: select the cell; click a cell: find its row; click a "
                                        "column to sort, e.g. shift_score)", sortable=True)
        self.export_btn = PushButton(text="Export all...")
        self.export_btn.changed.connect(self.export_dialog)
        lay = QVBoxLayout(self)
        for w in (self.form.native, self.progress, self.shift_note.native, self.used_label.native, self.legend.native,
                  QLabelTitle("Posterior of the field"), self.posterior_plot, self.posterior_table, self.cells_table,
                  self.export_btn.native):
            lay.addWidget(w)
        lay.addStretch()
        self.cells.changed.connect(self._on_cells)
        model.changed.connect(self._on_model)
        self._on_model()
        self.update_buttons()

    # the rows of the first two model channels, under their names before the mapping
    @property
    def marker_layer(self) -> ComboBox:
        return self.channels.rows[0]

    @property
    def protein_layer(self) -> ComboBox:
        return self.channels.rows[1]

    def _on_model(self, *_):
        meta = self.model.meta
        self.channels.set_model(meta)
        names = list(meta.input_names()) if meta is not None else []
        self.segment_on.choices = names
        if names:
            self.segment_on.value = names[0]
        self._on_cells()

    def _on_cells(self, *_):
        builtin = self.cells.value == SEGMENT
        self.segment_on.enabled = builtin
        self.diameter_row.enabled = builtin

    def update_buttons(self) -> None:
        super().update_buttons()
        self.measure_btn.enabled = not self.running

    # -------------------------------------------------------------- inputs
    def segment_index(self) -> int:
        """The model channel the built-in segmentation runs on."""
        names = list(self.segment_on.choices)
        return names.index(self.segment_on.value) if self.segment_on.value in names else 0

    def field(self):
        """The mapped field (:class:`._channels.Mapped`: (C, H, W) in the model's channel order)."""
        return self.channels.build(self.viewer.dims.current_step)

    def labels(self, shape) -> np.ndarray | None:
        if self.cells.value == SEGMENT:
            return None
        layer = self.cells.layer
        if layer is None:
            return None
        lab = np.asarray(layer.data)
        if lab.shape != tuple(shape):
            raise InputError(f"labels layer '{layer.name}' is {lab.shape}, the image {tuple(shape)}: choose a "
                             "matching Labels layer or the built-in segmentation")
        return lab

    # ------------------------------------------------------------ diameter
    def _field_to_work_on(self):
        """The mapped field when no job runs and a model is loaded; else None (and why, as a
        napari notification)."""
        if self.running:
            return None
        if not self.model.ready:
            _workers.notify_error(InputError("no DeepYeast model: train one in the Train tab or load a model file"))
            return None
        try:
            return self.field()
        except InputError as e:
            _workers.notify_error(e)
            return None

    def measure(self, *_):
        """Estimate the cells' diameter in the "segment on" channel (in a worker) into the box."""
        mapped = self._field_to_work_on()
        if mapped is None:
            return None
        plane, geom = mapped.chw[self.segment_index()], mapped.geometry

        def job(report):
            from ..core.cells.segment import estimate_diameter  # deferred: loads scipy

            return estimate_diameter(plane)

        def done(d):
            if d is None:
                self.progress.finish("stopped")
                return
            if not np.isfinite(d):
                self.progress.finish("no cells to measure: the channel is flat")
                return
            self.progress.finish(f"cell diameter: {d:.1f} px")
            self._geometry = geom
            self.diameter.value = int(round(d))
            self.show_diameter(float(self.diameter.value), geom)  # also when the box held that value already

        return self.start_job(job, done, "measuring the cell diameter")

    def _on_diameter(self, *_):
        d = float(self.diameter.value)
        if d > 0:
            self.show_diameter(d)
        elif CIRCLE in self.viewer.layers:
            self.viewer.layers.remove(CIRCLE)

    def show_diameter(self, diameter: float, geometry: dict | None = None):
        """A circle of ``diameter`` px at the centre of the view (the "cell diameter" layer)."""
        if geometry is None:
            geometry = getattr(self, "_geometry", None)
            if geometry is None:
                try:
                    geometry = self.field().geometry
                except InputError:
                    geometry = {}
        self._geometry = geometry
        scale = np.asarray(geometry.get("scale", (1.0, 1.0)), float)
        translate = np.asarray(geometry.get("translate", (0.0, 0.0)), float)
        centre = (np.asarray(camera_of(self.viewer).center, float)[-2:] - translate) / scale
        return _layers.add_or_update(self.viewer, _layers.circle_layer(centre, diameter, CIRCLE, geometry=geometry))

    # ------------------------------------------------------------------ run
    def run(self, *_):
        mapped = self._field_to_work_on()
        if mapped is None:
            return None
        try:
            labels = self.labels(mapped.chw.shape[1:])
        except InputError as e:
            _workers.notify_error(e)
            return None
        self.shift_note.clear()
        self.used_label.value = ""
        # results named after the field (per-channel files: without the channel token), else the protein's layer
        field, geom = mapped.chw, mapped.geometry
        source = mapped.name if mapped.combined else mapped.last_name
        loaded, device, n = self.model.loaded, str(self.device.value), field.shape[0]
        segment_channel, diameter = self.segment_index(), float(self.diameter.value) or None
        names = self.model.class_names
        new_layer = f"{source} cells" not in self.viewer.layers

        def job(report):
            from ..core.deepyeast.fields import (
                classify_field,  # deferred: loads scipy, torch
            )

            report(Progress(stage="item", batch=0, n_batches=1, message="segmenting and classifying"))
            result = classify_field(loaded, field, labels=labels, segment_channel=segment_channel,
                                    channels=list(range(n)), group=source, device=device, diameter=diameter)
            return prepare_cells(result, names, source, geom, field, build=new_layer)

        return self.start_job(job, lambda r: self._on_done(r, source, geom), "classifying",
                              busy="segmenting and classifying cells...")

    def _on_done(self, prepared, source: str, geom: dict):
        """Hand the prepared cells to napari in steps: add the layer hidden, show it, then
        the tables (the job is DONE when they are shown)."""
        if prepared is None:
            self.progress.finish("stopped")
            return
        self.progress.bar.setFormat("showing the cells...")
        self.job.hold()
        self.steps.clear()
        shown: dict = {}

        def put():
            shown["layer"], shown["show"] = _layers.add_or_update_hidden(self.viewer, prepared.layer, prepared.built)

        def show():
            if shown.get("show"):
                shown["layer"].visible = True

        self.steps.add(put)
        self.steps.add(show, keep=True)
        self.steps.add(self._show_tables, shown, prepared, source, geom, keep=True)  # releases the job

    def _show_tables(self, shown: dict, prepared, source: str, geom: dict):
        result = prepared.result
        try:
            self.progress.finish(f"{len(result.rows)} cells classified")
            self.shift_note.show_messages(result.shift.messages, title="Unlike the training cells")
            if result.diameter is not None:
                self.used_label.value = f"segmented at a cell diameter of {result.diameter:.1f} px"
                if not self.diameter.value:  # measured: the circle shows what was used
                    self.show_diameter(float(result.diameter), geom)
            self._show_legend(prepared.counts, self.model.class_names)
            if result.posterior:
                self.posteriors[source] = result.posterior[0]
                self._show_posterior(source)
            self.cells_table.set_rows(*prepared.table)
            if shown.get("layer") is not None:
                self.cells_table.link_labels(self.viewer, shown["layer"])
        finally:
            self.job.release()

    def _show_legend(self, counts: dict, names: list[str]):
        if not isinstance(counts, dict) or "class" in counts:  # a cells table (older callers)
            classes = list(counts.get("class", []))
            counts = {name: classes.count(name) for name in names}
        items = []
        for i, name in enumerate(names):
            n = int(counts.get(name, 0))
            if n:
                items.append(f'<span style="color:{_layers.class_color(i)}">&#9632;</span> '
                             f"{html.escape(name)} ({n})")
        self.legend.value = "<b>Cells by class</b><br>" + "<br>".join(items) if items else "no cells found"

    def _show_posterior(self, source: str):
        row = self.posteriors[source]
        names = self.model.class_names
        vals = [row.get(f"p_{c}", 0.0) for c in names]
        self.posterior_plot.set_bars(names, vals, [_layers.class_color(i) for i in range(len(names))])
        cols = ["group", "n_cells", "map_class", "map_prob", "compartments"]
        self.posterior_table.set_rows(cols, [[r.get(c, "") for c in cols] for r in self.posteriors.values()])

    def posterior_rows(self) -> dict:
        rows = list(self.posteriors.values())
        return {k: [r.get(k) for r in rows] for k in rows[0]} if rows else {}

    def export_dialog(self, *_):
        return _export.export_dialog(self, self.viewer, {"posterior.csv": self.posterior_rows()}, ("cells",))

    def on_close(self):
        self.steps.stop()
        self.cells_table.unlink_all()
        self.cells.disconnect_viewer()
        self.channels.disconnect_viewer()


def QLabelTitle(text: str):  # noqa: N802 - reads like a widget
    from qtpy.QtWidgets import QLabel

    return QLabel(f"<b>{html.escape(text)}</b>")
