"""Discover dock, Gallery tab: salient cells across images, clustered, linked to a scatter.

The gallery is one image layer (the crops in a grid, grouped by cluster) plus a labels
layer whose tile outlines carry the cluster colours and whose ``features`` hold each
crop's source image, position, score and cluster (napari shows them under the
cursor). The t-SNE scatter in the dock is linked both ways: clicking a point selects
and centres its tile; clicking a tile selects its point. "Save cluster as class"
writes the members as labeled crops of a new class folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FloatSlider,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from qtpy.QtWidgets import QVBoxLayout, QWidget

from .. import _workers
from .._layers import add_or_update, result_meta
from ..core.discover.clusters import cluster_color
from ..core.errors import InputError
from ..core.progress import CancelToken
from ._device import DevicePicker
from ._jobs import JobPanel
from ._paths import PathPicker
from ._plot import ScatterPlot
from ._progress import TrainingProgress

GRID_LAYER = "gallery"
TILES_LAYER = "gallery clusters"


class GalleryPanel(JobPanel, QWidget):
    job_failed = "Gallery"

    def _show_error(self, msg: str) -> None:
        self.info.value = msg

    def __init__(self, viewer, model, workers: _workers.WorkerGroup, parent=None):
        super().__init__(parent)
        self.viewer, self.model, self.workers = viewer, model, workers
        self.gallery = None
        self.corners = None
        self.folder = PathPicker("images", mode="d", tooltip="images to mine for salient cells (recursive), e.g. "
                                 "DATA/test/positive; DeepYeast: a folder of cell crops")
        self.crop_size = SpinBox(label="crop size (px)", value=64, min=8, max=512, step=8)
        self.per_image = SpinBox(label="cells per image", value=3, min=1, max=100)
        self.max_crops = SpinBox(label="max crops", value=500, min=1, max=100_000)
        self.min_prob = FloatSlider(label="min probability", value=0.5, min=0.0, max=1.0, step=0.05,
                                    tooltip="only images (crops) the model scores at least this for the target class")
        self.k = SpinBox(label="clusters", value=5, min=1, max=50)
        self.method = ComboBox(label="clustering", choices=["kmeans", "hdbscan"], value="kmeans",
                               tooltip="k-means with the number above, or HDBSCAN (finds the number; grey = noise)")
        self.device = DevicePicker()
        self.run_btn, self.stop_btn = PushButton(text="Build gallery"), PushButton(text="Stop")
        self.run_btn.changed.connect(self.run)
        self.stop_btn.changed.connect(self.stop)
        self.recluster_btn = PushButton(text="Re-cluster", enabled=False)
        self.recluster_btn.changed.connect(self.recluster)
        row = lambda *w: Container(widgets=list(w), layout="horizontal", labels=False)  # noqa: E731
        self.form = Container(widgets=[self.folder, self.crop_size, self.per_image, self.max_crops, self.min_prob,
                                       self.k, self.method, self.device,
                                       row(self.run_btn, self.stop_btn, self.recluster_btn)])
        self.progress = TrainingProgress(plot=False)
        self.scatter = ScatterPlot()
        self.scatter.point_clicked.connect(self.select_crop)
        self.info = Label(value="")
        self.info.native.setWordWrap(True)
        self.cluster = SpinBox(label="cluster", value=0, min=-1, max=49)
        self.class_name = LineEdit(label="new class name", value="")
        self.crops_out = PathPicker("crops folder", mode="d", tooltip="crops go to <crops folder>/<class name>/")
        self.name_btn = PushButton(text="Save cluster as class", enabled=False)
        self.name_btn.changed.connect(self.save_cluster)
        self.naming = Container(widgets=[self.cluster, self.class_name, self.crops_out, self.name_btn])
        lay = QVBoxLayout(self)
        for w in (self.form.native, self.progress, self.scatter, self.info.native, self.naming.native):
            lay.addWidget(w)
        lay.addStretch()
        self.update_buttons()

    def config(self):
        from ..core.discover.gallery import GalleryConfig  # deferred: loads torch

        return GalleryConfig(crop_size=int(self.crop_size.value), max_per_image=int(self.per_image.value),
                             max_crops=int(self.max_crops.value), min_probability=float(self.min_prob.value),
                             n_clusters=int(self.k.value), method=str(self.method.value))

    # ------------------------------------------------------------------ run
    def run(self, *_):
        if self.running:
            return None
        folder = self.folder.path
        if folder is None:
            _workers.notify_error(InputError("choose the folder of images for the gallery"))
            return None
        shared, cfg, device, cancel = self.model, self.config(), str(self.device.value), CancelToken()

        def job(report):
            from ..core.discover.gallery import build_gallery  # deferred: loads torch

            lm = shared.get()
            return lm, build_gallery(lm, [folder], cfg, device=device, cancel=cancel,
                                     callback=_workers.count_progress(report, cancel, "images"))

        return self.start_job(job, self._on_built, f"gallery of {folder.name}", cancel)

    def recluster(self, *_):
        if self.running or self.gallery is None:
            return None
        g, k, method = self.gallery, int(self.k.value), str(self.method.value)

        def job(report):
            from ..core.discover.gallery import cluster_gallery  # deferred: loads torch

            return None, cluster_gallery(g, k, method)

        return self.start_job(job, self._on_built, "clustering")


    # -------------------------------------------------------------- layers
    def _on_built(self, result):
        if result is None:
            self.progress.finish("stopped")
            return
        lm, g = result
        self.model.remember(lm)
        self.gallery = g
        self.show_gallery(g)
        sizes = {int(k): int((g.clusters == k).sum()) for k in sorted(set(g.clusters.tolist()))}
        self.progress.finish(f"{len(g)} crop(s)")
        self.info.value = (f"{len(g)} salient crop(s) from {g.info.get('n_images', '?')} image(s); cluster sizes "
                           f"{sizes}. Click a point or a tile; name a cluster below.")
        self.recluster_btn.enabled = self.name_btn.enabled = True

    def show_gallery(self, g) -> None:
        from napari.utils.colormaps import DirectLabelColormap

        from ..core.discover.gallery_files import montage  # deferred: loads torch

        img, labels, corners = montage(g)
        self.corners = corners
        if GRID_LAYER in self.viewer.layers and self.viewer.layers[GRID_LAYER].data.shape != img.shape:
            self.viewer.layers.remove(GRID_LAYER)
        add_or_update(self.viewer, (img, {"name": GRID_LAYER, "rgb": img.ndim == 3,
                                          "metadata": result_meta("gallery", "discover")}, "image"))
        colors = {None: "transparent", 0: "transparent"}
        colors.update({i + 1: cluster_color(int(c)) for i, c in enumerate(g.clusters)})
        feats = {"index": np.arange(1, len(g) + 1), "cluster": g.clusters,
                 "image": [Path(str(p)).name for p in g.table["image"]], "y": g.table["y"], "x": g.table["x"],
                 "score": g.table["score"], "probability": g.table["probability"]}
        self.on_close()
        if TILES_LAYER in self.viewer.layers:
            self.viewer.layers.remove(TILES_LAYER)
        self._tiles = layer = self.viewer.add_labels(labels, name=TILES_LAYER, features=feats, opacity=1.0,
                                       colormap=DirectLabelColormap(color_dict=colors),
                                       metadata=result_meta("gallery_clusters", "discover"))
        layer.contour = 2
        layer.mouse_drag_callbacks.append(self._on_tile_click)
        ids = sorted(set(g.clusters.tolist()))
        self.scatter.set_points(g.xy, [cluster_color(int(c)) for c in g.clusters],
                                [("noise" if k < 0 else f"cluster {k}", cluster_color(k)) for k in ids])
        self.viewer.reset_view()

    def select_crop(self, i: int) -> None:
        """Select crop ``i`` in the gallery layer (and centre on it) and in the scatter."""
        if self.gallery is None or not 0 <= i < len(self.gallery):
            return
        self.scatter.select(i)
        if TILES_LAYER in self.viewer.layers:
            self.viewer.layers[TILES_LAYER].selected_label = i + 1
            s = self.gallery.crops.shape[-1]
            y, x = self.corners[i]
            camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") else self.viewer.camera
            camera.center = (y + s / 2, x + s / 2)
        g = self.gallery
        self.cluster.value = int(g.clusters[i])
        self.info.value = (f"crop {i}: {Path(str(g.table['image'][i])).name} at (y {float(g.table['y'][i]):.0f}, "
                           f"x {float(g.table['x'][i]):.0f}), score {float(g.table['score'][i]):.3g}, "
                           f"cluster {int(g.clusters[i])}")

    def _on_tile_click(self, layer, event):
        if layer.mode not in ("pan_zoom", "transform"):
            return
        value = layer.get_value(event.position, world=True)
        if value:
            self.select_crop(int(value) - 1)

    def on_close(self):
        """Forget the click callback on the gallery's labels layer (dock closed or rebuilt)."""
        layer = getattr(self, "_tiles", None)
        if layer is not None and self._on_tile_click in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.remove(self._on_tile_click)
        self._tiles = None

    def save_cluster(self, *_):
        """Write the selected cluster's crops as a new class folder; returns the paths."""
        from napari.utils.notifications import show_info

        from ..core.discover.gallery_files import name_cluster  # deferred: loads torch

        name, out = str(self.class_name.value).strip(), self.crops_out.path
        if self.gallery is None or out is None or not name:
            _workers.notify_error(InputError("build a gallery, then give the new class a name and a crops folder"))
            return None
        try:
            written = name_cluster(self.gallery, int(self.cluster.value), name, out)
        except (InputError, OSError) as e:
            _workers.notify_error(e)
            return None
        self.info.value = f"wrote {len(written)} crop(s) of cluster {int(self.cluster.value)} to {out / name}"
        show_info(self.info.value)
        return written
