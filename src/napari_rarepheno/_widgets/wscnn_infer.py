"""WSCNN Infer tab: saliency, objects and peaks for image layers or a folder.

Layers: the model's channels come from the channel mapping (:class:`._channels.ChannelMap`:
one layer per channel, e.g. one TIFF per channel, or the channels of one layer), giving one
result for the image they form; several selected layers that each hold the model's
channels (e.g. one-channel images for a one-channel model) give one result each. Folder:
every image of a folder, one file per image or one file per channel ("channel files").

Localisation: "class maps (fast)" (the positive evidence of the class maps, forward only,
the default) or "gradient saliency (precise)" (a backward pass, about twice the work).
Tiled fields report their progress per tile.

The network runs once per image (in a worker); the result is cached. Everything after
the network also runs in that worker: the objects, their features and table rows, the
layers' data. The GUI thread only hands the prepared pieces to napari, one piece per
event-loop turn (:class:`._steps.GuiSteps`), so the viewer keeps drawing. The threshold,
smoothing and minimum-area controls re-segment the cached saliency in a small worker per
change (the newest request wins; older ones are dropped; the selected image first, each
image shown as soon as it is ready) and update the Labels and Points layers in place: the
network is never called again for a slider change. Result layers
start visible only when their image layer is. Each image is also compared with the
model's training images (brightness, object size): what differs is shown in orange and
as a napari warning, and in the Images table, whose "objects" column counts the objects
whose evidence alone would make the image positive (:mod:`.wscnn_results`).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSlider,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget

from .. import _layers, _reader, _workers
from ..core.errors import InputError
from ..core.inference.segment import SaliencyConfig, default_saliency_config
from ..core.io.files import expand_inputs, image_entries
from ..core.io.images import read_image
from ..core.progress import CancelToken, Progress
from ..core.wscnn.predict_files import predict_wscnn_files
from . import _export, _paths, wscnn_results
from ._channels import ChannelMap
from ._device import DevicePicker
from ._jobs import JobPanel
from ._model import ModelSlot
from ._paths import PathPicker
from ._progress import TrainingProgress
from ._shift import ShiftNote
from ._steps import GuiSteps
from ._table import ResultsTable
from .wscnn_results import (
    LOCALISATIONS,
    Cached,
    Segmented,
    cached_from_prediction,
    common_contrast,
    prepare_input,
    prepare_segmentation,
    saliency_tuple,
)

__all__ = ["WSCNNInferPanel", "Cached", "prepare_input"]


class WSCNNInferPanel(JobPanel, QWidget):
    job_failed = "WSCNN inference failed"

    def __init__(self, viewer, model: ModelSlot, workers: _workers.WorkerGroup, parent=None):
        super().__init__(parent)
        self.viewer, self.model, self.workers = viewer, model, workers
        self.cache: dict[str, Cached] = {}
        self.segmented: dict[str, Segmented] = {}
        self.folder_rows: list[dict] = []
        self._generation = 0
        self._seg_request = None   # the newest re-segmentation waiting for the running one
        self._seg_running = False
        self.steps = GuiSteps(self)
        self.source = ComboBox(label="run on", choices=["selected image layers", "a folder of images"],
                               value="selected image layers")
        self.channels = ChannelMap(viewer)
        self.folder = PathPicker("image folder", mode="d", check=self._describe_folder)
        self.channel_files = LineEdit(label="channel files", value="",
                                      tooltip="images stored one file per channel: what names each channel's file, "
                                      "in the model's channel order, separated by commas (e.g. _Crfp,_Cgfp: a text or "
                                      "a regular expression found anywhere in the file name); empty: one file per "
                                      "image. Filled with the patterns the model was trained with.")
        self.channel_files.native.setPlaceholderText("one file per image")
        self.channel_files.changed.connect(self._on_channel_files)
        self.out = PathPicker("results folder", mode="d",
                              tooltip="predictions.csv, saliency and mask TIFFs are written here")
        self.tile = SpinBox(label="tile (px)", value=0, min=0, max=8192, step=64,
                            tooltip="0: whole image at once; e.g. 1024 for big fields (less memory)")
        self.localisation = ComboBox(label="localisation", choices=list(LOCALISATIONS),
                                     value="class maps (fast)",
                                     tooltip="class maps (fast): where the positive class map beats the others, "
                                     "from one forward pass; gradient saliency (precise): the pixels that raise "
                                     "the positive evidence, sharper, about twice the time (a backward pass)")
        self.device = DevicePicker()
        self.run_btn = PushButton(text="Run")
        self.stop_btn = PushButton(text="Stop")
        self.run_btn.changed.connect(self.run)
        self.stop_btn.changed.connect(self.stop)
        btns = Container(widgets=[self.run_btn, self.stop_btn], layout="horizontal", labels=False)
        btns.margins = (0, 0, 0, 0)
        # the CLI's defaults for the chosen localisation: the same model gives the same objects here and there
        d = default_saliency_config(LOCALISATIONS.get(str(self.localisation.value), "cam"))
        self.threshold = FloatSlider(label="threshold", value=d.threshold, min=0.0, max=1.0, step=0.01,
                                     tooltip="fraction of the image's highest saliency")
        self.sigma = FloatSlider(label="smoothing (px)", value=d.sigma, min=0.0, max=10.0, step=0.1)
        self.min_area = SpinBox(label="min area (px)", value=d.min_area, min=0, max=100000)
        self.min_distance = SpinBox(label="min distance (px)", value=d.min_distance, min=1, max=500,
                                    tooltip="peaks closer than this are merged (about an object's radius)")
        self.peak_fraction = FloatSlider(label="object extent", value=d.peak_fraction, min=0.0, max=0.95,
                                         step=0.01, tooltip="each object keeps the pixels at least this fraction "
                                         "of its own peak (0: the threshold alone; higher: tighter masks)")
        self.positive_only = CheckBox(text="objects only in images called positive", value=True,
                                      tooltip="the paper segments positive images only; untick to see where a "
                                      "negative image comes closest")
        for w in (self.threshold, self.sigma, self.peak_fraction, self.min_area, self.min_distance,
                  self.positive_only):
            w.changed.connect(self._schedule_resegment)
        self.localisation.changed.connect(self._on_localisation)
        self.prob_label = Label(value="")
        self.prob_label.native.setWordWrap(True)
        self.form = Container(widgets=[self.source, self.folder, self.channel_files, self.out, self.localisation,
                                       self.tile, self.device, btns])
        self.channels.attach(self.form, after=self.source)
        self.sliders = Container(widgets=[self.threshold, self.sigma, self.peak_fraction, self.min_area,
                                          self.min_distance, self.positive_only])
        self.progress = TrainingProgress(plot=False)
        self.shift_note = ShiftNote()
        self.images = ResultsTable("Images (click a row: its objects; click a column to sort). objects: those "
                                   "whose evidence alone makes the image positive; segmented: all cut",
                                   max_height=130, sortable=True)
        self.images.set_header_tooltips({"objects": wscnn_results.OBJECTS_TIP,
                                         "segmented": wscnn_results.SEGMENTED_TIP})
        self.objects = ResultsTable("Objects (click a row: zoom to it; click a column to sort)", sortable=True)
        self.objects.set_header_tooltips({"evidence": wscnn_results.EVIDENCE_TIP})
        self.export_btn = PushButton(text="Export all...")
        self.export_btn.changed.connect(self.export_dialog)
        lay = QVBoxLayout(self)
        for w in (self.form.native, self.progress, self.shift_note.native, self.sliders.native,
                  self.prob_label.native, self.images,
                  self.objects, self.export_btn.native):
            lay.addWidget(w)
        lay.addStretch()
        self.images.row_selected.connect(self._on_image_row)
        self.source.changed.connect(self._on_source)
        model.changed.connect(self._on_model)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(60)
        self._timer.timeout.connect(self.resegment)
        self._on_model()
        self._on_source()
        self.update_buttons()

    # ------------------------------------------------------------------ inputs
    def _on_source(self, *_):
        folder = self.source.value != "selected image layers"
        self.folder.visible = folder
        self.out.visible = folder
        self.channel_files.visible = folder
        self.channels.active = not folder
        self.channels.update_visible()

    def _on_model(self, *_):
        meta = self.model.meta
        self.channels.set_model(meta)
        stored = (meta.training or {}).get("input", {}).get("channel_files") if meta is not None else None
        self.channel_files.value = ",".join(stored or [])

    def _on_channel_files(self, *_):
        self.folder._update_hint()

    def channel_file_patterns(self) -> list[str] | None:
        """The "channel files" field as a list (None: one file per image)."""
        pats = [t.strip() for t in str(self.channel_files.value or "").split(",") if t.strip()]
        return pats or None

    def _describe_folder(self, path: Path) -> str:
        pats = self.channel_file_patterns()
        try:
            if not pats:
                return f"{len(expand_inputs([path]))} image(s)"
            n = len(image_entries([path], pats))
            return f"{n} image(s) of {len(pats)} channel files each ({n * len(pats)} files)"
        except InputError as e:
            return f"not usable: {e}"

    def _on_localisation(self, *_):
        """Class maps and gradient saliency want different object settings (``CAM_DEFAULTS``):
        the sliders move to the chosen localisation's defaults."""
        d = default_saliency_config(self.saliency_mode())
        self.sigma.value, self.threshold.value, self.peak_fraction.value = d.sigma, d.threshold, d.peak_fraction

    def saliency_mode(self) -> str:
        """'cam' (class maps, the default) or 'map' (gradient saliency)."""
        return LOCALISATIONS.get(str(self.localisation.value), "cam")

    def saliency_params(self) -> dict:
        """The slider values (read in the GUI thread; no engine import)."""
        return {"sigma": float(self.sigma.value), "threshold": float(self.threshold.value),
                "peak_fraction": float(self.peak_fraction.value), "min_area": int(self.min_area.value),
                "min_distance": int(self.min_distance.value)}

    def saliency_config(self) -> SaliencyConfig:
        return SaliencyConfig(**self.saliency_params())

    def selected_images(self) -> list:
        """The selected image layers (not result layers, in layer-list order); the active one
        when none is selected."""
        from napari.layers import Image

        chosen = self.viewer.layers.selection
        sel = [lay for lay in self.viewer.layers if lay in chosen and isinstance(lay, Image)  # in layer-list order
               and _layers.role_of(lay) is None]
        if not sel:
            active = self.viewer.layers.selection.active
            sel = [active] if isinstance(active, Image) and _layers.role_of(active) is None else []
        return sel

    # --------------------------------------------------------------------- run
    def run(self, *_):
        if self.running:
            return
        if not self.model.ready:
            _workers.notify_error(InputError("no WSCNN model: train one in the Train tab or load a model file"))
            return
        self.shift_note.clear()
        if self.source.value == "selected image layers":
            self.run_layers()
        else:
            self.run_folder()

    def _feeds_alone(self, layer) -> bool:
        """``layer`` holds the model's channels by itself (its channel count, or more with the
        model's stored channel selection)."""
        meta = self.model.meta
        n, k = len(meta.input_names()), _layers.channel_count(layer)
        sel = list(meta.channels or [])
        return k == n or (len(sel) == n and k > max(sel))

    def layer_inputs(self, layers=None) -> list[tuple[str, np.ndarray, dict]]:
        """(name, (C, H, W) as read, geometry) of each image to run: ``layers`` one by one;
        by default several selected layers that each hold the model's channels (or one
        one-channel layer for a one-channel model) one by one, else the channel mapping
        (one image). Read in the GUI thread; raises InputError with what to do."""
        step = self.viewer.dims.current_step
        meta = self.model.loaded.meta
        if layers is None:
            sel = self.selected_images()
            one_channel = len(meta.input_names()) == 1
            if sel and all(self._feeds_alone(lay) for lay in sel) and (
                    len(sel) > 1 or (one_channel and _layers.channel_count(sel[0]) == 1)):
                layers = sel
            elif one_channel and not self.channels.shown:
                raise InputError("select one or more image layers in the layer list first")
        if layers is not None:
            if not layers:
                raise InputError("select one or more image layers in the layer list first")
            return [(lay.name, prepare_input(_layers.image_to_chw(lay, step), meta, lay.name, as_float=False),
                     _layers.geometry_of(lay)) for lay in layers]
        mapped = self.channels.build(step)
        return [(mapped.name, prepare_input(mapped.chw, meta, mapped.name, as_float=False), mapped.geometry)]

    def run_layers(self, layers=None):
        try:
            inputs = self.layer_inputs(layers)
        except InputError as e:
            _workers.notify_error(e)
            return None
        loaded = self.model.loaded
        tile = int(self.tile.value) or None
        device, mode = str(self.device.value), self.saliency_mode()
        cfg, positive_only = self.saliency_config(), bool(self.positive_only.value)
        visible = {name: bool(self.viewer.layers[name].visible) if name in self.viewer.layers else True
                   for name, _, _ in inputs}
        existing = {lay.name for lay in self.viewer.layers}
        cancel = CancelToken()

        def job(report):
            from ..core.inference import predict  # deferred: loads torch
            from ..core.wscnn.shift import image_shift  # deferred: loads torch

            out, n = [], len(inputs)
            for k, (name, chw, geom) in enumerate(inputs):
                cancel.raise_if_cancelled()
                report(Progress(stage="item", batch=k, n_batches=n, message=f"predicting {name}"))
                pred = predict.predict_wscnn(loaded, chw, saliency=True, saliency_mode=mode, tile=tile,
                                             device=device, cancel=cancel,
                                             callback=tile_progress(report, cancel, k, n, name))
                cancel.raise_if_cancelled()
                report(Progress(stage="item", batch=k + 1, n_batches=n, message=f"objects of {name}"))
                c = cached_from_prediction(loaded, name, pred, geom, image_shift(loaded, chw))
                del pred  # the class maps: (K, H, W) float32, not kept
                seg = prepare_segmentation(c, cfg, positive_only)
                sal, shown = saliency_tuple(c), visible.get(name, True)
                built = {ldt[1]["name"]: _layers.build_layer(_with_visible(ldt, shown))
                         for ldt in (sal, seg.objects, seg.peaks) if ldt[1]["name"] not in existing}
                out.append((c, seg, sal, shown, built))
            return out

        return self.start_job(job, self._on_layers_done, f"WSCNN on {len(inputs)} image(s)", cancel)

    def run_folder(self):
        folder, out = self.folder.path, self.out.path
        if folder is None or out is None:
            _workers.notify_error(InputError("choose the image folder and the results folder"))
            return None
        csv_path = out / "predictions.csv"
        if csv_path.exists() and not _paths.confirm_overwrite(self, [csv_path]):
            return None
        loaded, params, tile, device = self.model.loaded, self.saliency_params(), int(self.tile.value) or None, \
            str(self.device.value)
        channel_files, mode = self.channel_file_patterns(), self.saliency_mode()
        cancel = CancelToken()

        def job(report):
            return predict_wscnn_files(loaded, [folder], out, device=device, tile=tile, overwrite=True,
                                       saliency_config=SaliencyConfig(**params), channel_files=channel_files,
                                       saliency_mode=mode, cancel=cancel,
                                       callback=_workers.count_progress(report, cancel, "predicting"))

        return self.start_job(job, self._on_folder_done, "WSCNN on a folder", cancel)

    # ----------------------------------------------------------------- results
    def _on_layers_done(self, results):
        if not results:
            self.progress.finish("stopped")
            return
        self.progress.bar.setFormat("showing the results...")
        self.job.hold()  # DONE once the layers are shown
        try:
            self._show_prepared(results, done=self._results_shown)
        except BaseException:
            self.job.release()
            raise

    def _results_shown(self, results):
        self.progress.finish(f"done: {len(results)} image(s)")
        self.job.release()

    def show_results(self, results: list[Cached]) -> None:
        """Add saliency, objects and peaks layers for ``results`` (already predicted) and keep
        them for the sliders; everything is shown when this returns (scripts, the demo)."""
        cfg, positive_only = self.saliency_config(), bool(self.positive_only.value)
        items = [(c, prepare_segmentation(c, cfg, positive_only), saliency_tuple(c), True, {}) for c in results]
        self._show_prepared(items)
        self.steps.flush()
        self.progress.finish(f"done: {len(results)} image(s)")

    def _show_prepared(self, items, done=None) -> None:
        """Hand prepared results to napari, one layer per event-loop turn: ``items`` =
        [(Cached, Segmented, saliency layer data tuple, visible, {name: layer built in the worker})]."""
        self._generation += 1  # a re-segmentation still running is for the old results
        self.steps.clear_if(_segment_tag)  # its layers are replaced (other images' results still come)
        for c, seg, *_ in items:
            self.cache[c.source] = c
            self.segmented[c.source] = seg
        many = len(items) > 1
        self.shift_note.show_messages([f"{c.source}: {m}" if many else m for c, *_ in items for m in c.shift])
        last = [it for it in items if it[3]] or items  # the last image the user sees
        last = last[-1][0]
        self.prob_label.value = (f"{last.source}: P({last.class_names[last.positive]}) = {last.p_positive:.3f}"
                                 f" -> {last.predicted}")
        self._refresh_image_table(select=last.source)
        for c, seg, sal, visible, built in items:
            for ldt in (sal, seg.objects, seg.peaks):
                self._queue_layer(ldt, visible, tag="results", built=built.get(ldt[1]["name"]))
        self.steps.add(self._common_contrast, tag="results")
        self.steps.add(self._show_objects, last.source, tag="results")
        if done is not None:
            self.steps.add(done, items, keep=True)
        if any(seg.params != self.segment_params() for _, seg, *_ in items):
            self._schedule_resegment()  # a slider moved while the network ran

    def segment_params(self) -> dict:
        """What :class:`Segmented` records of the current controls."""
        return {**self.saliency_params(), "positive_only": bool(self.positive_only.value)}

    def _queue_layer(self, ldt, visible: bool = True, tag: str = "", built=None) -> None:
        """Two steps: add (``built``: the layer the worker made) or update the layer hidden,
        then show it (one slice, one draw each)."""
        ldt = _with_visible(ldt, visible)

        def put():
            layer, show = _layers.add_or_update_hidden(self.viewer, ldt, built)
            if show:
                self.steps.add(self._show_layer, layer, keep=True, next=True)

        self.steps.add(put, tag=tag)

    @staticmethod
    def _show_layer(layer) -> None:
        layer.visible = True

    def _on_folder_done(self, csv_path):
        if csv_path is None:
            self.progress.finish("stopped")
            return
        self.progress.finish(f"wrote {csv_path}")
        with open(csv_path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        self.folder_rows = rows
        self.folder_csv = Path(csv_path)
        self._refresh_image_table()
        self._show_folder_shift(Path(csv_path).parent / "shift.json", len(rows))
        _reader.claim_folder(Path(csv_path).parent)  # File > Open on this folder: the plugin's reader
        from napari.utils.notifications import show_info

        show_info(f"WSCNN: {len(rows)} image(s) predicted; results in {Path(csv_path).parent}")

    def _show_folder_shift(self, path: Path, n_images: int, shown: int = 5) -> None:
        """The images of a folder run unlike the training images (the run's shift.json)."""
        import json

        try:
            notes = json.loads(path.read_text()).get("images_unlike_training", {}) if path.is_file() else {}
        except (OSError, ValueError):
            notes = {}
        if not notes:
            return
        lines = [f"{name}: {msg}" for name, msgs in list(notes.items())[:shown] for msg in msgs]
        if len(notes) > shown:
            lines.append(f"... and {len(notes) - shown} more image(s): all in {path}")
        # the engine's own warning about these images is already a napari notification
        self.shift_note.show_messages(lines, notify=False,
                                      title=f"{len(notes)} of {n_images} image(s) unlike the training images")

    def open_folder_result(self, row: dict):
        """Show one image of a folder run with its saliency (the written TIFFs, read in a
        worker); returns the worker."""
        out, name = self.folder_csv.parent, row["name"]
        cfg, positive_only = self.saliency_config(), bool(self.positive_only.value)
        need_image = name not in self.viewer.layers

        def job(report):
            import tifffile

            img = read_image(row["image"], as_float=False) if need_image else None
            sal = tifffile.imread(out / f"{name}_saliency.tif").astype(np.float32)
            probs = np.array([float(v) for k, v in row.items() if k.startswith("p_")])
            classes = [k[2:] for k in row if k.startswith("p_")]
            c = Cached(name, sal, probs, classes, {}, row["image"], brightness=_number(row.get("brightness")),
                       size_ratio=_number(row.get("size_ratio")))
            c.scale()
            return img, (c, prepare_segmentation(c, cfg, positive_only), saliency_tuple(c), True, {})

        def done(result):
            if result is None:
                return
            img, item = result
            if img is not None and name not in self.viewer.layers:
                self.viewer.add_image(img if img.shape[0] > 1 else img[0], name=name,
                                      channel_axis=0 if img.shape[0] > 1 else None)
            self._show_prepared([item])

        return self.workers.start(job, name=f"open {name}", on_done=done,
                                  on_error=lambda e: _workers.notify_error(e, f"cannot open {name}"))

    def _common_contrast(self):
        common_contrast(self.viewer, self.cache)

    def _schedule_resegment(self, *_):
        self._timer.start()

    def resegment(self, sync: bool | None = None, only=None):
        """Objects and peaks from the cached saliency with the current slider values, in a
        worker (``sync``: here and now); only the newest request is shown."""
        if not self.cache:
            return None
        try:
            cfg = self.saliency_config()
            cfg.validate()
        except InputError as e:
            _workers.notify_error(e)
            return None
        items = [self.cache[k] for k in (only or list(self.cache)) if k in self.cache]
        self._generation += 1
        request = (self._generation, items, cfg, bool(self.positive_only.value))
        if sync:
            gen, items, cfg, positive_only = request
            self._apply([prepare_segmentation(c, cfg, positive_only) for c in items], gen)
            self.steps.flush()
            return None
        self._seg_request = request
        if not self._seg_running:  # else the running worker starts the newest request when it ends
            return self._start_segment()
        return None

    def _start_segment(self):
        request, self._seg_request = self._seg_request, None
        if request is None:
            return None
        gen, items, cfg, positive_only = request
        self._seg_running = True
        items = sorted(items, key=self._shown_first)

        def job(report):
            for c in items:
                if gen != self._generation:  # a newer slider value came: drop this one
                    return None
                report(prepare_segmentation(c, cfg, positive_only))  # shown as soon as it is ready
            return None

        def ready(seg):
            if isinstance(seg, Segmented):
                self._apply([seg], gen)

        return self.workers.start(job, name="segment saliency", on_progress=ready,
                                  on_finished=self._segment_finished)

    def _shown_first(self, c: Cached) -> tuple:
        """Re-segmentation order: the selected image, then the shown ones, then the hidden."""
        row = self.images.selected_row()
        names = self._image_names()
        selected = row is not None and row < len(names) and names[row] == c.source
        key = f"{c.source} objects"
        shown = key in self.viewer.layers and bool(self.viewer.layers[key].visible)
        return (not selected, not shown)

    def _segment_finished(self):
        self._seg_running = False
        if self._seg_request is not None:
            self._start_segment()

    def _apply(self, results, gen):
        if not results or gen != self._generation:
            return  # a newer slider value is on its way
        tag = f"segment:{gen}"
        self.steps.clear_if(lambda t: _segment_tag(t) and t != tag)  # older slider values: replaced
        for seg in results:
            if seg.source not in self.cache:
                continue
            self.segmented[seg.source] = seg
            self.steps.add(self._update_layer, seg.objects, tag, tag=tag)
            self.steps.add(self._update_layer, seg.peaks, tag, tag=tag)
        self._refresh_image_table()
        row = self.images.selected_row()
        names = self._image_names()
        if row is not None and row < len(names) and names[row] in {seg.source for seg in results}:
            self.steps.add(self._show_objects, names[row], tag=tag)

    def _update_layer(self, ldt, tag: str = "segment") -> None:
        """Update (or add) one result layer in one step; a new one is shown in the next."""
        if ldt[1].get("name") in self.viewer.layers:
            _layers.add_or_update(self.viewer, ldt)
        else:
            self._queue_layer(ldt, tag=tag)

    # ----------------------------------------------------------------- tables
    def _image_names(self) -> list[str]:
        return self.images.column("image") if "image" in self.images.columns else []

    IMAGE_COLUMNS = ("image", "p_positive", "called", "objects", "segmented", "brightness", "size_ratio")

    def _refresh_image_table(self, select: str | None = None):
        """One row per image (a few rows: built here); ``select``: the image to select
        (default: the one selected before; the rows may be sorted)."""
        row = self.images.selected_row()
        names = self._image_names()
        selected_name = select or (names[row] if row is not None and row < len(names) else None)
        rows = []
        for name, c in self.cache.items():
            seg = self.segmented.get(name)
            counted = "" if seg is None or seg.n_counted is None else seg.n_counted
            rows.append([name, round(c.p_positive, 4), c.predicted, counted, seg.n_objects if seg else 0,
                         _rounded(c.brightness), _rounded(c.size_ratio)])
        for r in self.folder_rows:
            if r["name"] not in self.cache:
                p = [v for k, v in r.items() if k.startswith("p_")]
                rows.append([r["name"], round(float(p[-1]), 4) if p else "", r["predicted"], "",
                             int(r["n_objects"]), _rounded(_number(r.get("brightness"))),
                             _rounded(_number(r.get("size_ratio")))])
        self.images.set_rows(self.IMAGE_COLUMNS, rows)
        if selected_name in self._image_names():
            self.images.select_row(self._image_names().index(selected_name))

    def _on_image_row(self, i: int):
        names = self._image_names()
        if not 0 <= i < len(names):
            return
        name = names[i]
        if name not in self.cache:
            row = next(r for r in self.folder_rows if r["name"] == name)
            try:
                self.open_folder_result(row)
            except Exception as e:  # a moved/deleted file
                _workers.notify_error(e, f"cannot open {name}")
            return
        c = self.cache[name]
        self.prob_label.value = f"{name}: P({c.class_names[c.positive]}) = {c.p_positive:.3f} -> {c.predicted}"
        for key in (name, f"{name} saliency", f"{name} objects", f"{name} peaks"):  # this image's layers shown
            if key in self.viewer.layers and not self.viewer.layers[key].visible:
                self.viewer.layers[key].visible = True
        self._show_objects(name)

    def _show_objects(self, name: str):
        key = f"{name} objects"
        if key not in self.viewer.layers:
            return
        layer = self.viewer.layers[key]
        seg = self.segmented.get(name)
        if seg is not None and len(seg.table[1]) == len(layer.features):
            self.objects.set_rows(*seg.table)  # prepared in the worker
        else:
            self.objects.set_table(layer.features)
        self.objects.link_labels(self.viewer, layer)

    def image_table(self) -> dict:
        return {c: self.images.column(c) for c in self.images.columns} if self.images.rows else {}

    def export_dialog(self, *_):
        roles = ("saliency", "objects", "peaks")
        return _export.export_dialog(self, self.viewer, {"predictions.csv": self.image_table()}, roles)

    def on_close(self):
        self._timer.stop()
        self.steps.stop()
        self.objects.unlink_all()
        self.channels.disconnect_viewer()


def _segment_tag(tag: str) -> bool:
    return tag.startswith("segment")


def _with_visible(ldt, visible: bool):
    return ldt[0], {**ldt[1], "visible": bool(visible)}, ldt[2]


def tile_progress(report, cancel: CancelToken, k: int, n: int, name: str):
    """predict_wscnn's per-tile callback -> the dock's progress bar ("image 2/3: tile 5/12");
    honours Stop between tiles. A whole image at once reports nothing here."""
    def progress(p: Progress) -> None:
        cancel.raise_if_cancelled()
        if p.n_batches > 1:
            what = f"{name}: tile" if n == 1 else f"image {k + 1}/{n}: tile"
            report(Progress(stage="item", epoch=k, n_epochs=n, batch=p.batch, n_batches=p.n_batches,
                            message=what))
    return progress


def _number(text) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _rounded(v: float | None):
    """A table cell: ``v`` to 3 decimals, blank when unknown (a model without training stats)."""
    return "" if v is None else round(float(v), 3)
