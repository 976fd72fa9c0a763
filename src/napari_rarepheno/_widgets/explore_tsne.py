"""Explore > t-SNE: the cells as the network sees them.

The outputs of a chosen network layer (fc1 by default: the paper's transfer features)
for the cells of a classified field (a "cells" layer of the DeepYeast dock) or of a
crops folder, embedded in 2-D by t-SNE; points coloured by class (predicted for a
field, true for a folder). Clicking a point shows that cell's crop and, for a field,
selects the cell in the viewer.
"""
from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton, SpinBox
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from .. import _layers, _workers
from ..core.deepyeast.explore import tsne_2d
from ..core.errors import InputError
from ..core.progress import CancelToken, Progress
from ._device import DevicePicker
from ._jobs import JobPanel
from ._layer_choice import LayerChoice
from ._model import ModelSlot
from ._paths import PathPicker
from ._plot import ScatterPlot
from ._progress import TrainingProgress
from .deepyeast_train import describe_class_folder

NET_LAYERS = ("fc1", "fc2", "logits", "conv8", "conv6", "conv4", "conv2")
FOLDER = "(a crops folder)"


def crop_rgb(crop: np.ndarray) -> np.ndarray:
    """(C, H, W) crop -> uint8 RGB for display: channel 0 magenta, channel 1 green."""
    c = np.asarray(crop, np.float32)
    lo = np.percentile(c.reshape(len(c), -1), 1, axis=1)[:, None, None]
    hi = np.percentile(c.reshape(len(c), -1), 99.5, axis=1)[:, None, None]
    c = np.clip((c - lo) / np.maximum(hi - lo, 1e-6), 0, 1)
    rgb = np.zeros(c.shape[1:] + (3,), np.float32)
    rgb[..., 0] += c[0]
    rgb[..., 2] += c[0]
    if len(c) > 1:
        rgb[..., 1] += c[1]
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


class TSNEPanel(JobPanel, QWidget):
    job_failed = "t-SNE failed"

    def __init__(self, viewer, model: ModelSlot, workers: _workers.WorkerGroup, parent=None):
        super().__init__(parent)
        self.viewer, self.model, self.workers = viewer, model, workers
        self.result: dict | None = None
        self.source = LayerChoice(viewer, "labels", "cells of", extra=(FOLDER,), results=True,
                                  tooltip="a 'cells' layer made by the DeepYeast dock, or a folder of crops")
        self.folder = PathPicker("crops folder", mode="d", check=describe_class_folder)
        self.layer = ComboBox(label="network layer", choices=list(NET_LAYERS), value="fc1")
        self.max_points = SpinBox(label="max cells", value=500, min=10, max=5000)
        self.device = DevicePicker()
        self.run_btn = PushButton(text="Compute t-SNE")
        self.run_btn.changed.connect(self.run)
        self.form = Container(widgets=[self.source, self.folder, self.layer, self.max_points, self.device,
                                       self.run_btn])
        self.progress = TrainingProgress(plot=False)
        self.scatter = ScatterPlot()
        self.scatter.point_clicked.connect(self.show_point)
        self.crop_view = QLabel()
        self.crop_view.setFixedSize(128, 128)
        self.crop_view.setAlignment(Qt.AlignCenter)
        self.crop_info = Label(value="click a point to see its cell")
        self.crop_info.native.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.crop_view)
        row.addWidget(self.crop_info.native)
        lay = QVBoxLayout(self)
        for w in (self.form.native, self.progress, self.scatter):
            lay.addWidget(w)
        lay.addLayout(row)
        lay.addStretch()
        self.source.changed.connect(self._on_source)
        self._on_source()
        self.update_buttons()

    def _on_source(self, *_):
        self.folder.visible = self.source.value == FOLDER

    # ------------------------------------------------------------------ run
    def inputs(self) -> dict:
        """Crops and their names/classes, gathered in the GUI thread."""
        if self.source.value != FOLDER:
            layer = self.source.layer
            meta = (layer.metadata or {}).get("rarepheno", {}) if layer is not None else {}
            if layer is None or meta.get("role") != "cells" or meta.get("field") is None:
                raise InputError("choose a 'cells' layer made by the DeepYeast dock's Classify tab, or a folder")
            feats = layer.features
            return {"kind": "field", "layer": layer.name, "field": meta["field"],
                    "centroids": feats[["centroid_y", "centroid_x"]].to_numpy(),
                    "ids": feats["index"].to_numpy(), "classes": feats["class"].astype(str).to_numpy()}
        if self.folder.path is None:
            raise InputError("choose the folder of crops")
        return {"kind": "folder", "folder": self.folder.path}

    def run(self, *_):
        if self.running:
            return None
        if not self.model.ready:
            _workers.notify_error(InputError("load a DeepYeast model first (top of this dock)"))
            return None
        try:
            spec = self.inputs()
        except InputError as e:
            _workers.notify_error(e)
            return None
        loaded, layer, n_max, device = self.model.loaded, str(self.layer.value), int(self.max_points.value), \
            str(self.device.value)
        cancel = CancelToken()

        def job(report):
            from ..core.cells.crops import extract_crops  # deferred: loads scipy
            from ..core.deepyeast.classify import (  # deferred: loads torch
                classify_crops,
                embed_crops,
                model_options,
            )
            from ..core.deepyeast.data import load_crops  # deferred: loads torch

            names = list(loaded.meta.class_names)
            size = loaded.model.config.input_size
            if spec["kind"] == "field":
                crops = extract_crops(spec["field"], spec["centroids"], size)
                labels, ids = list(spec["classes"]), list(spec["ids"])
            else:
                data = load_crops(spec["folder"], model_options(loaded),
                                  callback=_workers.count_progress(report, cancel, "loading crops"))
                crops, ids = data.images, [data.relpath(i) for i in range(len(data))]
                labels = [data.class_names[k] for k in data.labels]
            rng = np.random.default_rng(0)
            pick = np.sort(rng.choice(len(crops), min(n_max, len(crops)), replace=False))
            crops = crops[pick]
            report(Progress(stage="item", batch=0, n_batches=2, message=f"features of {len(pick)} cells"))
            feats = embed_crops(loaded, crops, layer, device=device)
            pred = classify_crops(loaded, crops, device=device).argmax(1)
            report(Progress(stage="item", batch=1, n_batches=2, message="t-SNE"))
            xy = tsne_2d(feats, seed=0)
            return {"xy": xy, "crops": crops, "ids": [ids[i] for i in pick], "labels": [labels[i] for i in pick],
                    "predicted": [names[k] for k in pred], "kind": spec["kind"], "layer": spec.get("layer"),
                    "class_names": sorted(set(labels[i] for i in pick), key=lambda c: (c not in names,
                                          names.index(c) if c in names else 0, c)),
                    "model_classes": names}

        return self.start_job(job, self.show, "t-SNE", cancel, busy="computing features and t-SNE...")

    def _color(self, cls: str, res: dict) -> str:
        names = res["model_classes"]
        k = names.index(cls) if cls in names else len(names) + res["class_names"].index(cls)
        return _layers.class_color(k)

    def show(self, res: dict | None):
        if res is None:
            return
        self.result = res
        colors = [self._color(c, res) for c in res["labels"]]
        legend = [(c, self._color(c, res)) for c in res["class_names"]]
        self.scatter.set_points(res["xy"], colors, legend)
        what = "predicted class" if res["kind"] == "field" else "true class"
        self.progress.finish(f"t-SNE of {len(res['xy'])} cells (colour: {what})")

    def show_point(self, i: int):
        res = self.result
        if res is None or not 0 <= i < len(res["xy"]):
            return
        rgb = crop_rgb(res["crops"][i])
        h, w = rgb.shape[:2]
        img = QImage(rgb.tobytes(), w, h, 3 * w, QImage.Format_RGB888)
        self.crop_view.setPixmap(QPixmap.fromImage(img.copy()).scaled(128, 128, Qt.KeepAspectRatio))
        self.crop_info.value = (f"{res['ids'][i]}\nclass: {res['labels'][i]}\npredicted: {res['predicted'][i]}")
        self.scatter.select(i)
        if res["kind"] == "field" and res["layer"] in self.viewer.layers:
            layer = self.viewer.layers[res["layer"]]
            layer.selected_label = int(res["ids"][i])
            self.viewer.layers.selection.active = layer

    def on_close(self):
        self.source.disconnect_viewer()
