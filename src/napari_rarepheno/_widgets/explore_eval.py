"""Explore > Evaluate: accuracy, confusion matrix and per-class precision/recall on a
folder of labeled crops (class folders)."""
from __future__ import annotations

from magicgui.widgets import Container, Label, PushButton
from qtpy.QtWidgets import QVBoxLayout, QWidget

from .. import _workers
from ..core.errors import InputError
from ..core.progress import CancelToken
from ._device import DevicePicker
from ._jobs import JobPanel
from ._model import ModelSlot
from ._paths import PathPicker
from ._plot import HeatmapPlot
from ._progress import TrainingProgress
from ._table import ResultsTable
from .deepyeast_train import describe_class_folder


class EvaluatePanel(JobPanel, QWidget):
    job_failed = "evaluation failed"

    def __init__(self, viewer, model: ModelSlot, workers: _workers.WorkerGroup, parent=None):
        super().__init__(parent)
        self.viewer, self.model, self.workers = viewer, model, workers
        self.metrics: dict | None = None
        self.folder = PathPicker("test crops", mode="d", check=describe_class_folder,
                                 tooltip="ROOT/<class>/<crop>: crops the model has not been trained on")
        self.device = DevicePicker()
        self.run_btn = PushButton(text="Evaluate")
        self.run_btn.changed.connect(self.run)
        self.form = Container(widgets=[self.folder, self.device, self.run_btn])
        self.progress = TrainingProgress(plot=False)
        self.summary = Label(value="")
        self.summary.native.setWordWrap(True)
        self.heatmap = HeatmapPlot()
        self.per_class = ResultsTable("Per class")
        self.confusion = ResultsTable("Confusion (rows: true class, columns: predicted)")
        lay = QVBoxLayout(self)
        for w in (self.form.native, self.progress, self.summary.native, self.heatmap, self.per_class,
                  self.confusion):
            lay.addWidget(w)
        lay.addStretch()
        self.update_buttons()

    def run(self, *_):
        if self.running:
            return None
        if not self.model.ready:
            _workers.notify_error(InputError("load a DeepYeast model first (top of this dock)"))
            return None
        if self.folder.path is None:
            _workers.notify_error(InputError("choose the folder of test crops"))
            return None
        loaded, folder, device = self.model.loaded, self.folder.path, str(self.device.value)

        def job(report):
            from ..core.deepyeast.evaluate import (
                evaluate_deepyeast,  # deferred: loads scipy, torch
            )

            return evaluate_deepyeast(loaded, folder, device=device,
                                      callback=_workers.count_progress(report, CancelToken(), "loading crops"))

        return self.start_job(job, self.show, "evaluating")

    def show(self, metrics: dict | None):
        if metrics is None:
            return
        self.metrics = metrics
        names = metrics["class_names"]
        text = f"accuracy {metrics['accuracy']:.3f} on {metrics['n']} cells"
        if "group_accuracy" in metrics:
            text += f"; per group (protein) {metrics['group_accuracy']:.3f} over {metrics['n_groups']} groups"
        self.summary.value = text
        self.progress.finish("done")
        self.heatmap.set_matrix(metrics["confusion"], names)
        self.per_class.set_rows(["class", "n", "precision", "recall"],
                                [[c, v["n"], round(v["precision"], 4), round(v["recall"], 4)]
                                 for c, v in metrics["per_class"].items()])
        self.confusion.set_rows(["true"] + list(names),
                                [[t] + [int(x) for x in row] for t, row in zip(names, metrics["confusion"])])
