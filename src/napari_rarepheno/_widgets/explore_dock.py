"""The "Explore" dock: how a DeepYeast model behaves (confusion, per-class precision and
recall), what it has learned (t-SNE of a layer's outputs, click a point to see the
cell) and how well its features transfer to new classes (few-shot curves)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import Container, Label, PushButton
from qtpy.QtWidgets import QVBoxLayout, QWidget

from .. import _workers
from ..core.errors import InputError
from ._dock import Dock
from ._model import ModelSlot
from ._paths import MODEL_FILES, PathPicker
from .explore_eval import EvaluatePanel
from .explore_fewshot import FewShotPanel
from .explore_tsne import TSNEPanel

if TYPE_CHECKING:
    import napari


class ModelBar(QWidget):
    """Which DeepYeast model to explore: a file, or the DeepYeast dock's current model."""

    def __init__(self, slot: ModelSlot, workers: _workers.WorkerGroup, parent=None):
        super().__init__(parent)
        self.slot, self.workers = slot, workers
        self.file = PathPicker("model file", mode="r", filter=MODEL_FILES)
        self.load_btn = PushButton(text="Load")
        self.use_btn = PushButton(text="Use the DeepYeast dock's model")
        self.load_btn.changed.connect(lambda *_: self.load(self.file.path))
        self.use_btn.changed.connect(self.use_dock_model)
        self.label = Label(value=slot.describe())
        self.label.native.setWordWrap(True)
        row = Container(widgets=[self.load_btn, self.use_btn], layout="horizontal", labels=False)
        row.margins = (0, 0, 0, 0)
        form = Container(widgets=[self.file, row, self.label])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(form.native)
        slot.changed.connect(lambda: setattr(self.label, "value", slot.describe()))

    def use_dock_model(self, *_) -> bool:
        other = ModelSlot.latest("deepyeast", exclude=self.slot)
        if other is None:
            from napari.utils.notifications import show_warning

            show_warning("no DeepYeast model in the DeepYeast dock yet: train or load one there, or load a file")
            return False
        self.slot.set(other.loaded, other.path, other.note)
        if other.path is not None:
            self.file.path = other.path
        return True

    def load(self, path: Path | None):
        if path is None:
            _workers.notify_error(InputError("choose a DeepYeast model file first"))
            return None
        return self.workers.start(lambda report: self.slot.load(path), name="load model",
                                  on_done=lambda lm: lm is not None and self.slot.set(lm, path),
                                  on_error=lambda e: _workers.notify_error(e, "could not load the model"))


class ExploreDock(Dock):
    def __init__(self, napari_viewer: "napari.viewer.Viewer", parent=None):
        super().__init__(napari_viewer, parent)
        self.model = ModelSlot("deepyeast", self)
        self.model_bar = ModelBar(self.model, self.workers)
        self.layout().insertWidget(0, self.model_bar)
        self.evaluate = self.add_tab(EvaluatePanel(napari_viewer, self.model, self.workers), "Evaluate")
        self.tsne = self.add_tab(TSNEPanel(napari_viewer, self.model, self.workers), "t-SNE")
        self.fewshot = self.add_tab(FewShotPanel(napari_viewer, self.model, self.workers), "Few-shot")
        if ModelSlot.latest("deepyeast", exclude=self.model) is not None:
            self.model_bar.use_dock_model()

    def load_model(self, path):
        return self.model_bar.load(Path(path))
