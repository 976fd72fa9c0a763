"""The "Plate" dock: a screen's plate scored well by well, as a heatmap, each well's fields a
click away (:mod:`.plate_panel`; layers prepared in :mod:`.plate_results`).

The model at the top is a WSCNN (rare phenotype: the well's score is its best field's
P(positive) by default) or a DeepYeast (localization classes: the well's cells aggregated as
the paper aggregates a protein's). Nothing here imports torch at import time; the engine
runs in thread workers.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.errors import InputError
from ._dock import Dock
from ._model import ModelSlot
from ._paths import MODEL_FILES, PathPicker
from .discover import SharedModel, describe_model
from .plate_panel import PlatePanel

if TYPE_CHECKING:
    import napari


class PlateModel(SharedModel):
    """The model file at the top of the Plate dock, loaded in the worker that needs it."""

    def get(self):
        if self.wanted() is None:
            raise InputError("choose a model file (.safetensors) at the top of the Plate dock")
        return super().get()


class PlateDock(Dock):
    """Score a plate (folder or OME-Zarr HCS): a heatmap of wells, a ranked wells table, and a
    well's fields with their saliency and objects on a click."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(napari_viewer, parent)
        self.model_path = PathPicker("model", mode="r", filter=MODEL_FILES, check=describe_model,
                                     tooltip="a WSCNN or DeepYeast model file")
        self.model = PlateModel(self.model_path, self)
        panel = PlatePanel(napari_viewer, self.model, self.workers)
        panel.form.insert(0, self.model_path)  # one panel: the model is its first field (scrolls with it)
        self.panel = self.add_tab(panel, "Plate")
        self.tabs.tabBar().setVisible(False)  # one panel
        self.setMinimumWidth(460)  # room for the wells table's columns
        other = ModelSlot.latest("wscnn") or ModelSlot.latest("deepyeast")
        if other is not None and other.path is not None:  # the model another dock trained or loaded
            self.model_path.path = other.path

    def set_model(self, path) -> None:
        self.model_path.path = path
