"""The "Discover" dock: rank, review, cluster and relabel what a model finds, then retrain.

* **Review** tab (:mod:`.discover_review`): rank a folder (probability or entropy) or list
  suspected mislabels of a labeled folder; click a row to open the image with its
  saliency; confirm/reject with the y/n keys; apply the decisions (preview, then move,
  with an undo file); retrain from the corrected folders and rank again.
* **Gallery** tab (:mod:`.discover_gallery`): crops of the salient cells across many
  images as one grid layer framed in cluster colours, a t-SNE scatter linked to it,
  and "save cluster as class".
* **Similar** tab (:mod:`.discover_similar`): more like this (the nearest cells of a folder
  to one cell) with accept/reject keys, and a labelling loop on the cells to label next,
  retraining in the background.

The tabs share the model chosen at the top (a WSCNN or a DeepYeast file). Nothing
here imports torch at import time; the engine runs in thread workers.
"""
from __future__ import annotations

from pathlib import Path

from magicgui.widgets import Container

from ..core.errors import InputError
from ._dock import Dock
from ._model import ModelSlot
from ._paths import MODEL_FILES, PathPicker
from .discover_gallery import GalleryPanel
from .discover_review import ReviewPanel
from .discover_similar import SimilarPanel


def describe_model(path: Path) -> str:
    from ..core.io.modelfile import read_meta  # deferred: loads torch

    try:
        m = read_meta(path)
    except Exception as e:  # a hint never raises
        return f"not usable: {e}"
    return f"{m.kind}, classes: {', '.join(m.class_names[:8])}{'...' if len(m.class_names) > 8 else ''}"


class SharedModel(ModelSlot):
    """The model both tabs use: loaded (in a worker) from the path in the picker."""

    def __init__(self, picker: PathPicker, parent=None):
        super().__init__("any", parent)
        self.picker = picker

    def wanted(self) -> Path | None:
        return self.picker.path

    def get(self):
        """The loaded model for the picker's path; call in a worker (imports torch)."""
        from ..core.io.modelfile import load_model  # deferred: loads torch

        path = self.wanted()
        if path is None:
            raise InputError("choose a model file (.safetensors) at the top of the Discover dock")
        if self.loaded is not None and self.path == path:
            return self.loaded
        return load_model(path)

    def remember(self, loaded) -> None:
        """Keep what a worker loaded (GUI thread)."""
        if loaded is not None and loaded is not self.loaded:
            self.set(loaded, loaded.path)


class DiscoverDock(Dock):
    """Interactive discovery: rank, review, cluster and relabel, then retrain."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer", parent=None):  # noqa: F821

        super().__init__(napari_viewer, parent)
        self.model_path = PathPicker("model", mode="r", filter=MODEL_FILES, check=describe_model,
                                     tooltip="a WSCNN or DeepYeast model file")
        self.model = SharedModel(self.model_path, self)
        self.header = Container(widgets=[self.model_path], labels=True)
        self.layout().insertWidget(0, self.header.native)
        self.review = self.add_tab(ReviewPanel(napari_viewer, self.model, self.workers), "Review")
        self.gallery = self.add_tab(GalleryPanel(napari_viewer, self.model, self.workers), "Gallery")
        self.similar = self.add_tab(SimilarPanel(napari_viewer, self.model, self.workers, self.gallery), "Similar")
        self.tabs.currentChanged.connect(self._on_tab)
        self.setMinimumWidth(540)  # room for the ranking table's columns

    def _on_tab(self, index: int) -> None:
        # the y/n review keys belong to the Review tab, the labelling keys to the Similar tab
        # (release first, so that the shown tab's bindings remember napari's own keys)
        shown = self.panels()[index]
        for panel in (self.review, self.similar):
            if panel is not shown:
                panel.unbind_keys()
        if shown in (self.review, self.similar):
            shown.bind_keys()

    def set_model(self, path) -> None:
        self.model_path.path = path
