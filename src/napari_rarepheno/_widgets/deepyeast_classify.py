"""DeepYeast Classify tab: every cell of a field gets a localization class.

Input: one image layer with the marker and protein channels chosen, or two layers;
cells from a user Labels layer or the built-in segmentation of the marker channel.
Output: a Labels layer coloured by class with ``features`` (id, class, p_<class>...,
centroid, area), a legend, the field's posterior (table + bars), a cells table
linked both ways to the layer.
"""
from __future__ import annotations

import html

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, SpinBox
from qtpy.QtWidgets import QVBoxLayout, QWidget

from .. import _layers, _workers
from ..core.errors import InputError
from ..core.progress import Progress
from . import _export
from ._device import DevicePicker
from ._jobs import JobPanel
from ._layer_choice import LayerChoice
from ._model import ModelSlot
from ._plot import BarPlot
from ._progress import TrainingProgress
from ._table import ResultsTable

SEGMENT = "(built-in segmentation)"
ONE_LAYER, TWO_LAYERS = "channels of one layer", "two layers"


def rows_to_table(rows: list[dict]) -> dict[str, np.ndarray]:
    if not rows:
        return {"id": np.zeros(0, np.int64), "class": np.zeros(0, object)}
    return {k: np.asarray([r[k] for r in rows]) for k in rows[0]}


class DeepYeastClassifyPanel(JobPanel, QWidget):
    job_failed = "classification failed"

    def __init__(self, viewer, model: ModelSlot, workers: _workers.WorkerGroup, parent=None):
        super().__init__(parent)
        self.viewer, self.model, self.workers = viewer, model, workers
        self.posteriors: dict[str, dict] = {}
        self.mode = ComboBox(label="input", choices=[ONE_LAYER, TWO_LAYERS], value=ONE_LAYER)
        self.image = LayerChoice(viewer, "image", "image layer")
        self.marker_ch = SpinBox(label="marker channel", value=0, min=0, max=7,
                                 tooltip="channel of the cell/cytoplasm marker (segmentation, crop channel 1)")
        self.protein_ch = SpinBox(label="protein channel", value=1, min=0, max=7,
                                  tooltip="channel of the tagged protein (crop channel 2)")
        self.marker_layer = LayerChoice(viewer, "image", "marker layer")
        self.protein_layer = LayerChoice(viewer, "image", "protein layer")
        self.cells = LayerChoice(viewer, "labels", "cells", extra=(SEGMENT,),
                                 tooltip="a Labels layer with one label per cell, or the built-in segmentation")
        self.device = DevicePicker()
        self.run_btn = PushButton(text="Classify cells")
        self.stop_btn = PushButton(text="Stop")
        self.run_btn.changed.connect(self.run)
        self.stop_btn.changed.connect(self.stop)
        btns = Container(widgets=[self.run_btn, self.stop_btn], layout="horizontal", labels=False)
        btns.margins = (0, 0, 0, 0)
        self.form = Container(widgets=[self.mode, self.image, self.marker_ch, self.protein_ch, self.marker_layer,
                                       self.protein_layer, self.cells, self.device, btns])
        self.progress = TrainingProgress(plot=False)
        self.legend = Label(value="")
        self.legend.native.setWordWrap(True)
        self.posterior_plot = BarPlot()
        self.posterior_table = ResultsTable("Posterior per image (group)")
        self.cells_table = ResultsTable("Cells (click a row: select the cell; click a cell: find its row)")
        self.export_btn = PushButton(text="Export all...")
        self.export_btn.changed.connect(self.export_dialog)
        lay = QVBoxLayout(self)
        for w in (self.form.native, self.progress, self.legend.native, QLabelTitle("Posterior of the field"),
                  self.posterior_plot, self.posterior_table, self.cells_table, self.export_btn.native):
            lay.addWidget(w)
        lay.addStretch()
        self.mode.changed.connect(self._on_mode)
        self._on_mode()
        self.update_buttons()

    def _on_mode(self, *_):
        one = self.mode.value == ONE_LAYER
        for w in (self.image, self.marker_ch, self.protein_ch):
            w.visible = one
        for w in (self.marker_layer, self.protein_layer):
            w.visible = not one

    # -------------------------------------------------------------- inputs
    def field(self) -> tuple[np.ndarray, str, dict]:
        """(C, H, W) field in the model's channel order (marker first), source name, geometry."""
        n = int(self.model.loaded.meta.config.get("in_channels", 2))
        step = self.viewer.dims.current_step
        if self.mode.value == ONE_LAYER:
            layer = self.image.layer
            if layer is None:
                raise InputError("choose an image layer (File > Open Sample > Rare phenotypes has a yeast field)")
            chw = _layers.image_to_chw(layer, step)
            picks = [int(self.marker_ch.value), int(self.protein_ch.value)][:n]
            bad = [c for c in picks if c >= chw.shape[0]]
            if bad:
                raise InputError(f"layer '{layer.name}' has {chw.shape[0]} channel(s); channel {bad[0]} does not "
                                 "exist. With one layer per channel, choose 'two layers'.")
            return chw[picks], layer.name, _layers.geometry_of(layer)
        layers = [self.marker_layer.layer, self.protein_layer.layer][:n]
        if any(lay is None for lay in layers):
            raise InputError("choose the marker and the protein layers")
        planes = [_layers.image_to_chw(lay, step)[0] for lay in layers]
        if len({p.shape for p in planes}) > 1:
            raise InputError(f"the layers differ in size: {planes[0].shape} vs {planes[-1].shape}")
        return np.stack(planes), layers[-1].name, _layers.geometry_of(layers[0])

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

    # ------------------------------------------------------------------ run
    def run(self, *_):
        if self.running:
            return None
        if not self.model.ready:
            _workers.notify_error(InputError("no DeepYeast model: train one in the Train tab or load a model file"))
            return None
        try:
            field, source, geom = self.field()
            labels = self.labels(field.shape[1:])
        except InputError as e:
            _workers.notify_error(e)
            return None
        loaded, device, n = self.model.loaded, str(self.device.value), field.shape[0]

        def job(report):
            from ..core.deepyeast.fields import (
                classify_field,  # deferred: loads scipy, torch
            )

            report(Progress(stage="item", batch=0, n_batches=1, message="segmenting and classifying"))
            return classify_field(loaded, field, labels=labels, segment_channel=0, channels=list(range(n)),
                                  group=source, device=device)

        return self.start_job(job, lambda r: self._on_done(r, source, geom, field), "classifying",
                           busy="segmenting and classifying cells...")

    def _on_done(self, result, source: str, geom: dict, field=None):
        if result is None:
            self.progress.finish("stopped")
            return
        names = self.model.class_names
        table = rows_to_table(result.rows)
        ldt = _layers.cells_layer(result.labels, table, names, source, geometry=geom)
        ldt[1]["metadata"]["rarepheno"]["field"] = field  # for Explore's t-SNE (crops of these cells)
        layer = _layers.add_or_update(self.viewer, ldt)
        self.progress.finish(f"{len(result.rows)} cells classified")
        self._show_legend(table, names)
        if result.posterior:
            self.posteriors[source] = result.posterior[0]
            self._show_posterior(source)
        feats = layer.features
        cols = [c for c in ("index", "class", "centroid_y", "centroid_x", "area") if c in feats]
        shown = {c: feats[c].to_numpy() for c in cols}
        pcols = [c for c in feats if c.startswith("p_")]
        if pcols:
            shown["p_class"] = feats[pcols].to_numpy().max(1).round(3)
        self.cells_table.set_table(shown)
        self.cells_table.link_labels(self.viewer, layer)

    def _show_legend(self, table: dict, names: list[str]):
        classes = list(table.get("class", []))
        items = []
        for i, name in enumerate(names):
            n = classes.count(name)
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
        self.cells_table.unlink_all()
        for w in (self.image, self.marker_layer, self.protein_layer, self.cells):
            w.disconnect_viewer()


def QLabelTitle(text: str):  # noqa: N802 - reads like a widget
    from qtpy.QtWidgets import QLabel

    return QLabel(f"<b>{html.escape(text)}</b>")
