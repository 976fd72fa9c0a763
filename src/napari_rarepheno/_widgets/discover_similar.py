"""Discover dock, Similar tab: more like this, and a labelling loop on what to label next.

**More like this.** Choose the folder of cells (crops; class subfolders are one pool) and
a query: the selected row, a crop file, a cell picked in any image layer (a field, a
mosaic, the gallery grid: *Pick a cell*, then click it) or the crop selected in the
Gallery tab. The nearest cells (:func:`~..core.discover.similar.more_like_this`, on the
cached index of the folder and model) appear as a grid layer and a table; ``y`` accepts
the selected cell into the class named below (copied to ``<labels>/<class>/``), ``n``
rejects it (``<labels>/not_<class>/``), ``u`` undoes the last verdict.

**Label next.** *Suggest* lists the cells the model is least sure about, spread over the
embedding (:func:`~..core.discover.suggest.suggest_labels`, keeping away from the cells in
the labels folder). Keys ``1``..``9`` put the selected cell into that class (the list
shows which), ``s`` skips it, ``u`` undoes; the next cell is selected after each key.
*Retrain in background* fine-tunes a DeepYeast on the labels folder
(:func:`~..core.discover.retraining.retrain`) while you go on labelling; when it ends the
dock takes the new model and suggests again. Stop ends a build or a retraining; the loop
itself ends whenever you stop pressing keys.

The keys are window shortcuts of this tab (enabled only while it is shown, like the Review
tab's y/n) and viewer keys for a floated dock. Nothing here imports torch at import time.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, LineEdit, PushButton, SpinBox
from qtpy.QtWidgets import QVBoxLayout, QWidget

from .. import _workers
from .._layers import image_to_chw, result_meta
from ..core.discover.labeling import (
    accept_reject,
    add_to_class,
    check_class_name,
    unlabel,
)
from ..core.discover.retraining import retrain
from ..core.discover.similar import FEATURES, build_index, cell_at, more_like_this
from ..core.discover.suggest import suggest_labels
from ..core.errors import InputError
from ..core.io.folders import parse_channels, read_entry
from ..core.progress import CancelToken
from ._device import DevicePicker
from ._discover_table import RankTable, next_free
from ._jobs import JobPanel, JobState
from ._keys import TabKeys
from ._paths import PathPicker
from ._progress import TrainingProgress
from .discover_gallery import TILES_LAYER

GRID_LAYER = "similar cells"
FRAMES_LAYER = "similar cells: verdicts"
EMBEDDINGS = ("model", "hand-made features")
KEYS = ("y", "n", "u", "s") + tuple(str(k) for k in range(1, 10))
COLORS = {"": "#9e9e9e", "current": "#ffeb3b", "accepted": "#4caf50", "rejected": "#f44336", "skipped": "#607d8b"}


def fit_crop(crop: np.ndarray, h: int, w: int) -> np.ndarray:
    """(C, H, W) centre-cropped / zero-padded to (C, h, w)."""
    out = np.zeros((crop.shape[0], h, w), np.float32)
    H, W = crop.shape[1:]
    sy, sx, dy, dx = max(0, (H - h) // 2), max(0, (W - w) // 2), max(0, (h - H) // 2), max(0, (w - W) // 2)
    ch, cw = min(H, h), min(W, w)
    out[:, dy:dy + ch, dx:dx + cw] = crop[:, sy:sy + ch, sx:sx + cw]
    return out


def grid(crops: list[np.ndarray], n_cols: int = 5, pad: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Crops (C, h, w) as one picture (grey, or RGB: channel 0 red, 1 green, 2 blue; each
    channel stretched over all crops) and the (N, 2) top-left corner of each tile."""
    h = max(c.shape[1] for c in crops)
    w = max(c.shape[2] for c in crops)
    x = np.stack([fit_crop(np.asarray(c, np.float32), h, w) for c in crops])
    lo, hi = np.percentile(x, [1.0, 99.5], axis=(0, 2, 3))
    x = np.clip((x - lo[None, :, None, None]) / np.maximum(hi - lo, 1e-6)[None, :, None, None], 0, 1)
    n, c = len(x), x.shape[1]
    n_rows = int(np.ceil(n / n_cols))
    img = np.zeros((n_rows * (h + pad) + pad, n_cols * (w + pad) + pad) + ((3,) if c > 1 else ()), np.float32)
    corners = np.zeros((n, 2), np.int64)
    for i in range(n):
        r, k = divmod(i, n_cols)
        y0, x0 = pad + r * (h + pad), pad + k * (w + pad)
        img[y0:y0 + h, x0:x0 + w] = x[i, 0] if c == 1 else np.moveaxis(
            np.concatenate([x[i, :3], np.zeros((max(0, 3 - c), h, w), np.float32)]), 0, -1)
        corners[i] = (y0, x0)
    return img, corners


class SimilarPanel(JobPanel, QWidget):
    job_failed = "Similar"

    def __init__(self, viewer, model, workers: _workers.WorkerGroup, gallery=None, parent=None):
        super().__init__(parent)
        self.viewer, self.model, self.workers, self.gallery = viewer, model, workers, gallery
        self.mode = ""               # "similar" | "suggest": what the table shows
        self.rows: list[dict] = []
        self.entries: list = []      # pool entry of each row
        self.corners = np.zeros((0, 2), np.int64)
        self.tile = (0, 0)
        self.history: list[tuple[int, str, list]] = []  # (row, previous verdict, files written)
        self.index_info: dict = {}
        self.retrained = None
        self._resuggest = False
        self._picking = False
        self.folder = PathPicker("cells", mode="d", tooltip="the pool: crops below this folder (recursive; class "
                                 "subfolders are read as one pool)")
        self.embedding = ComboBox(label="embedding", choices=list(EMBEDDINGS), value=EMBEDDINGS[0],
                                  tooltip="the model's own embedding (DeepYeast fc1, WSCNN gallery features) or "
                                  "hand-made features (no network needed)")
        self.channels = LineEdit(label="channels", value="", tooltip="hand-made features: the files' channels to "
                                 "use, e.g. 0,1 (empty: all); a model uses its own")
        self.device = DevicePicker()
        self.run_btn, self.stop_btn = PushButton(text="Build index"), PushButton(text="Stop")
        self.run_btn.changed.connect(self.run)
        self.stop_btn.changed.connect(self.stop)
        self.top = SpinBox(label="nearest", value=20, min=1, max=500)
        self.query_file = PathPicker("query crop", mode="r", tooltip="a crop file to search for")
        self.like_row_btn = PushButton(text="Like the selected row")
        self.like_file_btn = PushButton(text="Like the query crop")
        self.pick_btn = PushButton(text="Pick a cell in the viewer")
        self.like_gallery_btn = PushButton(text="Like the gallery crop")
        self.like_row_btn.changed.connect(lambda *_: self.query_row())
        self.like_file_btn.changed.connect(lambda *_: self.query_file_crop())
        self.pick_btn.changed.connect(lambda *_: self.arm_pick())
        self.like_gallery_btn.changed.connect(lambda *_: self.query_gallery())
        self.labels = PathPicker("labels folder", mode="d", tooltip="class folders of the labeled cells: "
                                 "<labels>/<class>/ (a folder DeepYeast training reads)")
        self.class_name = LineEdit(label="class", value="", tooltip="more like this: accepted cells go to "
                                   "<labels>/<class>/, rejected ones to <labels>/not_<class>/")
        self.accept_btn, self.reject_btn = PushButton(text="Accept (y)"), PushButton(text="Reject (n)")
        self.undo_btn = PushButton(text="Undo (u)")
        self.accept_btn.changed.connect(lambda *_: self.key("y"))
        self.reject_btn.changed.connect(lambda *_: self.key("n"))
        self.undo_btn.changed.connect(lambda *_: self.key("u"))
        self.n = SpinBox(label="suggest", value=20, min=1, max=1000)
        self.suggest_btn = PushButton(text="Suggest cells to label")
        self.suggest_btn.changed.connect(lambda *_: self.suggest())
        self.new_class = LineEdit(label="add class", value="")
        self.add_class_btn = PushButton(text="Add")
        self.add_class_btn.changed.connect(lambda *_: self.add_class())
        self.classes: list[str] = []
        self.keys_label = Label(value="")
        self.keys_label.native.setWordWrap(True)
        self.epochs = SpinBox(label="retrain epochs", value=3, min=1, max=1000)
        self.retrain_btn = PushButton(text="Retrain in background")
        self.retrain_btn.changed.connect(lambda *_: self.retrain())
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        row = lambda *w: Container(widgets=list(w), layout="horizontal", labels=False)  # noqa: E731
        self.form = Container(widgets=[self.folder, self.embedding, self.channels, self.device,
                                       row(self.run_btn, self.stop_btn)])
        self.query_box = Container(widgets=[self.top, self.query_file, row(self.like_row_btn, self.like_file_btn),
                                            row(self.pick_btn, self.like_gallery_btn)])
        self.verdicts = Container(widgets=[self.labels, self.class_name,
                                           row(self.accept_btn, self.reject_btn, self.undo_btn)])
        self.loop = Container(widgets=[self.n, self.suggest_btn, row(self.new_class, self.add_class_btn),
                                       self.keys_label, self.epochs, self.retrain_btn])
        self.progress = TrainingProgress(plot=False)
        self.table = RankTable()
        self.table.row_activated.connect(self.show_row)
        lay = QVBoxLayout(self)
        for w in (self.form.native, self.progress, self.query_box.native, self.table, self.status.native,
                  self.verdicts.native, self.loop.native):
            lay.addWidget(w)
        self.keys = TabKeys(self, self.viewer, {k: (lambda k=k: self.key(k)) for k in KEYS})
        self.shortcuts = self.keys.shortcuts
        self.job.changed.connect(self._suggest_again)
        self.update_buttons()

    # ------------------------------------------------------------------ index
    def update_buttons(self) -> None:
        super().update_buttons()
        busy = self.running
        for b in (self.like_row_btn, self.like_file_btn, self.pick_btn, self.like_gallery_btn, self.suggest_btn,
                  self.retrain_btn):
            b.enabled = not busy

    def _show_error(self, msg: str) -> None:
        self.status.value = msg

    def _job_args(self):
        folder = self.folder.path
        if folder is None:
            raise InputError("choose the folder of cells (the pool) first")
        use_model = self.embedding.value == EMBEDDINGS[0]
        if use_model and self.model.wanted() is None:
            raise InputError("choose a model file at the top of the dock, or use hand-made features")
        return folder, use_model, parse_channels(str(self.channels.value)), str(self.device.value)

    def _index(self, report, cancel, folder, use_model, channels, device):
        """(loaded model or None, the pool's index): built, or from the cache. In a worker."""
        lm = self.model.get() if use_model else None
        idx = build_index(lm if use_model else FEATURES, folder, channels=channels, device=device,
                          callback=_workers.count_progress(report, cancel, "cells"), cancel=cancel)
        return lm, idx

    def _ready_args(self):
        """:meth:`_job_args` when no job runs and the inputs are usable; else None (and why, as a
        napari notification)."""
        if self.running:
            return None
        try:
            return self._job_args()
        except InputError as e:
            _workers.notify_error(e)
            return None

    def run(self, *_):
        """Build (or load) the index of the folder."""
        args = self._ready_args()
        if args is None:
            return None
        cancel = CancelToken()
        return self.start_job(lambda report: (*self._index(report, cancel, *args), None), self._on_result,
                              f"index of {args[0].name}", cancel)

    # ---------------------------------------------------------------- queries
    def query_row(self):
        i = self.table.current_index()
        if i is None or not self.rows:
            _workers.notify_error(InputError("select a cell in the table first"))
            return None
        return self.query(Path(self.rows[i]["image"]), f"row {self.rows[i]['rank']}")

    def query_file_crop(self):
        if self.query_file.path is None:
            _workers.notify_error(InputError("choose a query crop file"))
            return None
        return self.query(self.query_file.path, self.query_file.path.name)

    def query_gallery(self):
        g = getattr(self.gallery, "gallery", None)
        if g is None or TILES_LAYER not in self.viewer.layers or not self.viewer.layers[TILES_LAYER].selected_label:
            _workers.notify_error(InputError("build a gallery and select a crop in it first"))
            return None
        i = int(self.viewer.layers[TILES_LAYER].selected_label) - 1
        return self.query(np.asarray(g.crops[i]), f"gallery crop {i}")

    def arm_pick(self) -> None:
        """The next click on an image layer in the viewer is the query cell."""
        if self._on_pick not in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.append(self._on_pick)
        self._picking = True
        self.status.value = "click a cell in an image layer (a field, a mosaic, the gallery)"

    def _disarm(self) -> None:
        self._picking = False
        if self._on_pick in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_pick)

    def _on_pick(self, viewer, event):
        from napari.layers import Image  # deferred: loads napari

        layers = [lay for lay in viewer.layers.selection if isinstance(lay, Image)] or \
            [lay for lay in reversed(list(viewer.layers)) if isinstance(lay, Image) and lay.visible]
        for lay in layers:
            y, x = np.asarray(lay.world_to_data(event.position))[-2:]
            h, w = np.asarray(lay.data.shape)[[-3, -2]] if lay.rgb else np.asarray(lay.data.shape)[-2:]
            if 0 <= y < h and 0 <= x < w:
                self._disarm()
                self.query_at(lay, float(y), float(x))
                return

    def query_at(self, layer, y: float, x: float):
        """Search for the cell at (y, x) (data coordinates) of image ``layer`` (cut in the worker
        at the pool's crop size, once the index is there)."""
        chw = image_to_chw(layer, self.viewer.dims.current_step)
        return self.query(("at", chw, y, x), f"{layer.name} at (y {y:.0f}, x {x:.0f})")

    def query(self, query, what: str):
        """Search the pool for ``query`` (a file, a (C, H, W) float crop, or ``("at", image, y, x)``:
        the cell at (y, x) of a (C, H, W) image) in a worker."""
        args = self._ready_args()
        if args is None:
            return None
        top, cancel = int(self.top.value), CancelToken()

        def job(report):
            lm, idx = self._index(report, cancel, *args)
            q = query
            if isinstance(q, tuple) and q and q[0] == "at":
                q = cell_at(q[1], q[2], q[3], idx.meta.get("crop_shape") or (64, 64), idx.meta.get("channels"))
            rows = more_like_this(None, q, args[0], top=top, index=idx)
            return lm, idx, ("similar", what, rows, self._crops(idx, rows))

        return self.start_job(job, self._on_result, f"more like {what}", cancel)

    @staticmethod
    def _crops(idx, rows) -> list[np.ndarray]:
        return [read_entry(idx.entries[r["index"]], idx.meta.get("channels")) for r in rows]

    # ------------------------------------------------------------- label next
    def suggest(self):
        args = self._ready_args()
        if args is None:
            return None
        n, labels, cancel = int(self.n.value), self.labels.path, CancelToken()
        labeled = labels if labels is not None and labels.is_dir() and any(labels.rglob("*.*")) else None

        def job(report):
            lm, idx = self._index(report, cancel, *args)
            rows = suggest_labels(None, args[0], n, labeled=labeled, index=idx, cancel=cancel)
            return lm, idx, ("suggest", "", rows, self._crops(idx, rows))

        return self.start_job(job, self._on_result, "choosing cells to label", cancel)

    def add_class(self, name: str | None = None) -> None:
        name = str(name if name is not None else self.new_class.value).strip()
        try:
            name = check_class_name(name)
        except InputError as e:
            _workers.notify_error(e)
            return
        if name not in self.classes:
            self.classes.append(name)
        self.new_class.value = ""
        self._show_keys()

    def _set_classes(self, names) -> None:
        labels = self.labels.path
        found = sorted(p.name for p in labels.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if labels is not None and labels.is_dir() else []
        for c in list(names) + found:
            if c not in self.classes:
                self.classes.append(c)
        self._show_keys()

    def _show_keys(self) -> None:
        keys = "  ".join(f"{k + 1} {c}" for k, c in enumerate(self.classes[:9]))
        self.keys_label.value = f"keys: {keys}   s skip   u undo" if keys else "add a class to label with 1..9"

    # -------------------------------------------------------------- results
    def _on_result(self, result):
        if result is None:
            self.progress.finish("stopped")
            return
        lm, idx, shown = result
        if lm is not None:
            self.model.remember(lm)
        self.index_info = {"channels": idx.meta.get("channels"), "crop_shape": idx.meta.get("crop_shape"),
                           "n": len(idx), "kind": idx.meta.get("kind"), "cached": idx.cached}
        self._set_classes(idx.class_names)
        built = f"index of {len(idx)} cell(s), {idx.meta.get('kind')} ({'cache' if idx.cached else 'built'})"
        if shown is None:
            self.progress.finish(built)
            self.status.value = built + ": search with a query below, or Suggest cells to label"
            return
        mode, what, rows, crops = shown
        self.mode, self.rows, self.history = mode, rows, []
        self.entries = [idx.entries[r["index"]] for r in rows]
        for r in rows:
            r["verdict"] = ""
        cols = ["rank", "image", "label", "distance", "verdict"] if mode == "similar" else \
            ["rank", "image", "predicted", "uncertainty", "verdict"]
        self.table.set_rows(cols, rows)
        self._show_grid(crops)
        self.progress.finish(f"{len(rows)} cell(s)")
        self.status.value = (f"{built}; the {len(rows)} cell(s) nearest to {what}: y accept into the class, "
                             "n reject, u undo" if mode == "similar" else
                             f"{built}; {len(rows)} cell(s) to label, least sure first: 1..9 = class, s skip, u undo")
        if rows:
            self.table.select_index(0)

    def _show_grid(self, crops) -> None:
        if not crops:
            return
        img, corners = grid(crops)
        self.corners, self.tile = corners, crops[0].shape[1:]
        for name in (FRAMES_LAYER, GRID_LAYER):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        self.viewer.add_image(img, name=GRID_LAYER, rgb=img.ndim == 3,
                              metadata=result_meta("similar", "discover"))
        h, w = max(c.shape[1] for c in crops), max(c.shape[2] for c in crops)
        rects = [np.array([[y - 1, x - 1], [y - 1, x + w], [y + h, x + w], [y + h, x - 1]], float)
                 for y, x in corners]
        self.viewer.add_shapes(rects, shape_type="rectangle", name=FRAMES_LAYER, face_color="transparent",
                               edge_color=[COLORS[""]] * len(rects), edge_width=2,
                               features={"verdict": [""] * len(rects)},
                               text={"string": "{verdict}", "anchor": "upper_left", "size": 8, "color": "white"},
                               metadata=result_meta("similar_verdicts", "discover"))
        self._paint()
        self.viewer.reset_view()

    def _paint(self) -> None:
        if FRAMES_LAYER not in self.viewer.layers or not self.rows:
            return
        layer, cur = self.viewer.layers[FRAMES_LAYER], self.table.current_index()
        if len(layer.data) != len(self.rows):
            return
        colors = []
        for i, r in enumerate(self.rows):
            v = r.get("verdict", "")
            kind = "current" if i == cur else ("rejected" if v.startswith("not_") or v == "rejected" else
                                               "skipped" if v == "skipped" else "accepted" if v else "")
            colors.append(COLORS[kind])
        layer.edge_color = colors
        layer.features = {"verdict": [r.get("verdict", "") for r in self.rows]}
        layer.refresh_text()

    def show_row(self, i: int) -> None:
        if not 0 <= i < len(self.rows):
            return
        self._paint()
        if len(self.corners) > i:
            y, x = self.corners[i]
            camera = self.viewer.scene.camera if hasattr(self.viewer, "scene") else self.viewer.camera
            camera.center = (y + self.tile[0] / 2, x + self.tile[1] / 2)
        r = self.rows[i]
        extra = f"distance {r['distance']:.3f}" if "distance" in r else \
            f"predicted {r.get('predicted') or '-'}, uncertainty {r.get('uncertainty', 0):.3f}"
        self.status.value = f"#{r['rank']} {Path(r['image']).name} ({r.get('label') or '-'}): {extra}"

    # ------------------------------------------------------------------ keys
    def bind_keys(self) -> None:
        """The keys of this tab while it is shown, whatever layer is selected or focused
        (:class:`._keys.TabKeys`)."""
        self.keys.bind()

    def unbind_keys(self) -> None:
        self.keys.unbind()

    def key(self, k: str):
        """One key of the loop: y/n (more like this), 1..9/s (label next), u (undo)."""
        if k == "u":
            return self.undo()
        i = self.table.current_index()
        if i is None or not self.rows:
            return None
        if self.mode == "similar" and k in ("y", "n"):
            name = str(self.class_name.value).strip()
            if self.labels.path is None or not name:
                _workers.notify_error(InputError("give the labels folder and the class the accepted cells join"))
                return None
            try:
                got = accept_reject([self.entries[i]], [0] if k == "y" else [], [] if k == "y" else [0],
                                    self.labels.path, name)
            except (InputError, OSError) as e:
                _workers.notify_error(e, "cannot file the cell")
                return None
            written = (got["accepted"] or got["rejected"])[0]
            verdict = name if k == "y" else f"not_{name}"
        elif self.mode == "suggest" and (k == "s" or k.isdigit()):
            if k == "s":
                written, verdict = [], "skipped"
            else:
                if int(k) > len(self.classes):
                    _workers.notify_error(InputError(f"no class {k}: add a class first"))
                    return None
                if self.labels.path is None:
                    _workers.notify_error(InputError("choose the labels folder (class folders) first"))
                    return None
                verdict = self.classes[int(k) - 1]
                try:
                    written = add_to_class([self.entries[i]], self.labels.path, verdict)[0]
                except (InputError, OSError) as e:
                    _workers.notify_error(e, "cannot label the cell")
                    return None
        else:
            return None
        self.history.append((i, self.rows[i]["verdict"], written))
        self._set_verdict(i, verdict)
        nxt = self.table.next_index(i)
        if nxt is not None:
            self.table.select_index(nxt)
        else:
            self._paint()
            self.status.value = "all cells done: Suggest again, or Retrain in background"
        return verdict

    def _set_verdict(self, i: int, verdict: str) -> None:
        self.rows[i]["verdict"] = verdict
        self.table.set_cell(i, "verdict", verdict)
        self._paint()

    def undo(self):
        if not self.history:
            return None
        i, previous, written = self.history.pop()
        unlabel(written)
        self._set_verdict(i, previous)
        self.table.select_index(i)
        self.status.value = f"undone: #{self.rows[i]['rank']} {Path(self.rows[i]['image']).name}"
        return i

    # --------------------------------------------------------------- retrain
    def retrain(self):
        if self.running:
            return None
        old, labels = self.model.wanted(), self.labels.path
        if old is None or labels is None or not labels.is_dir():
            _workers.notify_error(InputError("choose a DeepYeast model and label some cells (the labels folder) first"))
            return None
        epochs, device, cancel = int(self.epochs.value), str(self.device.value), CancelToken()
        out = next_free(old.with_name(old.stem.split(".retrained")[0] + ".retrained.safetensors"))

        def job(report):
            from ..core.io.modelfile import read_meta  # deferred: loads torch
            from ..core.training.trainer import TrainConfig  # deferred: loads torch

            if read_meta(old).kind != "deepyeast":
                raise InputError("the labelling loop retrains DeepYeast models (class folders of cells); "
                                 "retrain a WSCNN from the Review tab", old)
            return retrain(old, labels, out, TrainConfig(epochs=epochs, device=device), callback=report,
                           cancel=cancel)

        return self.start_job(job, self._on_retrained, f"retraining for {epochs} epoch(s)", cancel)

    def _on_retrained(self, res):
        if res is None or res.best_path is None:
            self.progress.finish("stopped")
            return
        self.progress.finish(f"retrained: {res.best_path.name}")
        self.retrained = res
        self.model.picker.path = res.best_path
        self._resuggest = self.embedding.value == EMBEDDINGS[0]

    def _suggest_again(self, state: JobState, old: JobState) -> None:
        if self._resuggest and not state.busy:  # the new model: its index and its suggestions
            self._resuggest = False
            self.suggest()

    def on_close(self):
        self.unbind_keys()
        self._disarm()
