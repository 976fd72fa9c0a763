"""The "Rare phenotype (WSCNN)" dock: Train and Infer tabs sharing one model."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ._dock import Dock
from ._model import ModelSlot
from .wscnn_infer import WSCNNInferPanel
from .wscnn_train import WSCNNTrainPanel

if TYPE_CHECKING:
    import napari


class WSCNNDock(Dock):
    """Train a weakly supervised CNN on image-level labels, then find and review the
    objects that make an image positive (saliency, objects, peaks)."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer", parent=None):
        super().__init__(napari_viewer, parent)
        self.model = ModelSlot("wscnn", self)
        self.train = self.add_tab(WSCNNTrainPanel(napari_viewer, self.model, self.workers), "Train")
        self.infer = self.add_tab(WSCNNInferPanel(napari_viewer, self.model, self.workers), "Infer")

    def load_model(self, path):
        """Load a model file (in a worker); returns the worker."""
        return self.train.load_model(path)
