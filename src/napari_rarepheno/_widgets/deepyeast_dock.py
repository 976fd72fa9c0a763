"""The "Localization classes (DeepYeast)" dock: Train and Classify tabs sharing one model."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ._dock import Dock
from ._model import ModelSlot
from .deepyeast_classify import DeepYeastClassifyPanel
from .deepyeast_train import DeepYeastTrainPanel

if TYPE_CHECKING:
    import napari


class DeepYeastDock(Dock):
    """Train a per-cell localization classifier on class folders, then classify every
    cell of a field and aggregate them into the field's (protein's) posterior."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer", parent=None):
        super().__init__(napari_viewer, parent)
        self.model = ModelSlot("deepyeast", self)
        self.train = self.add_tab(DeepYeastTrainPanel(napari_viewer, self.model, self.workers), "Train")
        self.classify = self.add_tab(DeepYeastClassifyPanel(napari_viewer, self.model, self.workers), "Classify")

    def load_model(self, path):
        return self.train.load_model(path)
