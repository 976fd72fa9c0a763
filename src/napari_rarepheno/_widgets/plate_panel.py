"""Plate dock panel: score a plate, see it as a heatmap of wells, open a well's fields.

**Run** scores the plate (a folder of images, wells from well folders or from the file names
by the well regex; or an OME-Zarr HCS plate, at a resolution level) with the dock's model:
:func:`~..core.plates.wells.score_plate` in a worker, progress per field. With a results
folder it writes wells.csv, fields.csv, plate.png and plate.json there; results already
there are resumed or replaced (the dock asks). **Stop** ends the run after the current
field: the wells scored so far are shown, and Run with Resume continues it later.
**Open results** shows a results folder (of the dock or of ``rarepheno plate``) without
scoring again, and fills in the plate it is of from its plate.json. A plate or a results
folder opened with the plugin's reader (File > Open) fills in the plate or the results
folder.

The plate is shown as two layers (:mod:`.plate_results`): "plate heatmap" (wells coloured by
score, a colour bar) and "plate wells" (the grid, the best wells labelled with their rank,
grey wells without fields); the Wells table lists the wells highest score first (a click on a
header sorts it).

**Clicking a well** -- a row of the Wells table, or the well on the heatmap (a click, not a
drag, in pan/zoom mode) -- opens its fields below the plate, with their saliency, objects and
peaks (WSCNN) or their cells coloured by class (DeepYeast), predicted in a worker; the newest
click wins, and the well opened before is closed. The Fields table lists the open well's
fields; a click on one zooms to it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from magicgui.widgets import ComboBox, Container, Label, LineEdit, PushButton, SpinBox
from qtpy.QtWidgets import QVBoxLayout, QWidget

from .. import _layers, _workers
from .._plate_layers import GRID, HEATMAP, OVERVIEW, PlateView, prepare_plate
from ..core.errors import InputError
from ..core.plates.reading import DEFAULT_REGEX, is_zarr, read_plate
from ..core.plates.results import read_results
from ..core.plates.wells import output_files, score_plate
from ..core.progress import CancelToken
from ._device import DevicePicker
from ._jobs import JobPanel
from ._paths import PathPicker
from ._progress import TrainingProgress
from ._steps import GuiSteps
from ._table import ResultsTable, zoom_to_box
from .plate_results import PreparedWell, prepare_well

WELL_SCORES = ("max", "mean", "q75")


def ask_existing(parent, out: Path, partial: bool) -> str | None:
    """Results exist in ``out``: 'resume', 'replace' or None (cancel). Module-level so tests
    can answer it."""
    from qtpy.QtWidgets import QMessageBox

    box = QMessageBox(parent)
    box.setWindowTitle("Results exist")
    what = "A stopped run left fields in" if partial else "Plate results exist in"
    box.setText(f"{what} {out}.\n\nResume: score only the fields not scored yet.\nReplace: score every field "
                "again.")
    resume = box.addButton("Resume", QMessageBox.ButtonRole.AcceptRole)
    again = box.addButton("Replace", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    clicked = box.clickedButton()
    return "resume" if clicked is resume else "replace" if clicked is again else None


def describe_plate(path: Path) -> str:
    """A one-line hint (cheap: no listing of the plate)."""
    if "://" in str(path):
        return "a plate at a URL (read as OME-Zarr)"
    if not path.exists():
        return "not found"
    if is_zarr(path):
        return "an OME-Zarr store (HCS plate: its wells and fields are listed when Run starts)"
    if not path.is_dir():
        return "a file: choose the plate's folder, or an OME-Zarr plate (.zarr)"
    if (path / "wells.csv").exists():
        return "this is a results folder: choose it as the results folder and press Open results"
    return "a folder plate: wells from well folders (A01/...), or from the file names by the well regex"


@dataclass(frozen=True)
class PlateArgs:
    """How to read the plate (taken from the controls in the GUI thread)."""

    path: str
    regex: str | None
    channel_files: tuple[str, ...] | None
    level: int
    z: int

    def read(self, lm, cancel: CancelToken, report=None):
        """The plate's fields (call in a worker); folder plates without channel files given
        take the model's."""
        zarr = is_zarr(self.path)
        stored = (lm.meta.training or {}).get("input", {}).get("channel_files")
        files = None if zarr else (self.channel_files or stored or None)
        cb = None if report is None else _workers.count_progress(report, cancel, "reading the plate")
        return read_plate(self.path, regex=None if zarr else self.regex, channel_files=files,
                          level=self.level if zarr else 0, z=self.z if zarr else 0, callback=cb, cancel=cancel)


class PlatePanel(JobPanel, QWidget):
    job_failed = "plate"

    def __init__(self, viewer, model, workers: _workers.WorkerGroup, parent=None):
        super().__init__(parent)
        self.viewer, self.model, self.workers = viewer, model, workers
        self.steps = GuiSteps(self)
        self.view: PlateView | None = None      # the results shown
        self.plate = None                       # their plate (core Plate), once read
        self.opened: PreparedWell | None = None  # the well whose fields are shown
        self._open_gen = 0
        self._open_cancel: CancelToken | None = None
        self.plate_path = PathPicker("plate", mode="d", check=describe_plate,
                                     tooltip="a folder of images (one folder per well, e.g. A01/, or well and field "
                                     "in the file names) or an OME-Zarr HCS plate (.zarr folder or URL)")
        self.regex = LineEdit(label="well regex", value="",
                              tooltip="folder plates: a regular expression with the groups (?P<well>...) and "
                              "optionally (?P<field>...) found in the file names; empty: well folders, else "
                              f"MetaXpress names ({DEFAULT_REGEX})")
        self.regex.native.setPlaceholderText("(well folders, or names like PLATE_A01_s1)")
        self.channel_files = LineEdit(label="channel files", value="",
                                      tooltip="folder plates stored one file per channel: what names each channel's "
                                      "file, in the model's channel order, separated by commas (e.g. _w1,_w2); "
                                      "empty: the patterns the model was trained with, or one file per image")
        self.channel_files.native.setPlaceholderText("(the model's, or one file per image)")
        self.level = SpinBox(value=0, min=-16, max=16, tooltip="OME-Zarr plates: resolution level (0: full "
                             "resolution, -1: the coarsest)")
        self.z = SpinBox(value=0, min=0, max=100000, tooltip="OME-Zarr plates: the plane of z-stacks")
        self.zarr_row = Container(widgets=[self.level, Label(value="z"), self.z], layout="horizontal", labels=False,
                                  label="zarr level")
        self.zarr_row.margins = (0, 0, 0, 0)
        self.well_score = ComboBox(label="well score", choices=list(WELL_SCORES), value="max",
                                   tooltip="max: the best field (a rare phenotype may show in one field only); "
                                   "mean; q75: the phenotype in at least a quarter of the fields")
        self.out = PathPicker("results folder", mode="d", placeholder="(optional) wells.csv, fields.csv, plate.png",
                              tooltip="Run writes wells.csv, fields.csv, plate.png and plate.json here (and can "
                              "resume a stopped run); Open results shows the results of an earlier run")
        self.device = DevicePicker()
        self.run_btn, self.stop_btn = PushButton(text="Run"), PushButton(text="Stop")
        self.open_btn = PushButton(text="Open results")
        self.open_btn.tooltip = "show the results folder's wells.csv and fields.csv without scoring again"
        self.run_btn.changed.connect(self.run)
        self.stop_btn.changed.connect(self.stop)
        self.open_btn.changed.connect(self.open_results)
        btns = Container(widgets=[self.run_btn, self.stop_btn, self.open_btn], layout="horizontal", labels=False)
        btns.margins = (0, 0, 0, 0)
        self.form = Container(widgets=[self.plate_path, self.regex, self.channel_files, self.zarr_row,
                                       self.well_score, self.out, self.device, btns])
        self.progress = TrainingProgress(plot=False)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.wells_table = ResultsTable("Wells, highest score first (click a row or a well on the heatmap: its "
                                        "fields; click a column to sort)", max_height=240, sortable=True)
        self.fields_table = ResultsTable("Fields of the open well (click a row: zoom to it)", max_height=130)
        lay = QVBoxLayout(self)
        for w in (self.form.native, self.progress, self.status.native, self.wells_table, self.fields_table):
            lay.addWidget(w)
        lay.addStretch()
        self.wells_table.row_selected.connect(self._on_well_row)
        self.fields_table.row_selected.connect(self._on_field_row)
        self.plate_path.line.changed.connect(self._on_plate)
        viewer.mouse_drag_callbacks.append(self._on_canvas_click)
        viewer.layers.events.inserted.connect(self._on_layer_inserted)
        for layer in list(viewer.layers):
            self.adopt(layer)
        self._on_plate()
        self.update_buttons()

    # ------------------------------------------------------------------ inputs
    def _on_plate(self, *_):
        p = self.plate_path.path
        zarr = p is not None and is_zarr(p)
        self.zarr_row.visible = zarr or p is None
        self.regex.visible = self.channel_files.visible = not zarr

    def _on_layer_inserted(self, event) -> None:
        self.adopt(event.value)

    def adopt(self, layer) -> None:
        """A plate opened with the plugin's reader fills an empty plate field (an OME-Zarr
        plate's overview) or results folder (a results folder's heatmap)."""
        meta = (getattr(layer, "metadata", None) or {}).get(_layers.META_KEY, {})
        role = meta.get("role")
        if role == OVERVIEW and meta.get("plate") and self.plate_path.path is None:
            self.plate_path.path = meta["plate"]
        elif role == "plate" and meta.get("out") and self.out.path is None and self.view is None:
            self.out.path = meta["out"]

    def plate_args(self) -> PlateArgs:
        p = self.plate_path.path
        if p is None:
            raise InputError("choose the plate: a folder of images or an OME-Zarr HCS plate (.zarr)")
        pats = tuple(t.strip() for t in str(self.channel_files.value or "").split(",") if t.strip())
        return PlateArgs(str(p), str(self.regex.value or "").strip() or None, pats or None, int(self.level.value),
                         int(self.z.value))

    def update_buttons(self) -> None:
        super().update_buttons()
        self.open_btn.enabled = not self.running

    def _show_error(self, msg: str) -> None:
        self.status.value = msg

    # --------------------------------------------------------------------- run
    def run(self, *_):
        """Score the plate (in a worker); returns the worker."""
        if self.running:
            return None
        try:
            if self.model.wanted() is None:
                raise InputError("choose a model file (.safetensors) at the top of the Plate dock")
            args = self.plate_args()
        except InputError as e:
            _workers.notify_error(e)
            return None
        out, resume, overwrite = self.out.path, False, False
        if out is not None and any(p.exists() for p in output_files(out)):
            answer = ask_existing(self, out, (out / "fields.partial.csv").exists())
            if answer is None:
                return None
            resume, overwrite = answer == "resume", answer == "replace"
        shared, well_score, device = self.model, str(self.well_score.value), str(self.device.value)
        cancel = CancelToken()

        def job(report):
            lm = shared.get()
            plate = args.read(lm, cancel, report)

            def scoring(p):  # no raise: score_plate stops between fields and keeps them
                report(replace(p, message="scoring"))
            res = score_plate(lm, plate, out, well_score=well_score, device=device, resume=resume,
                              overwrite=overwrite, callback=scoring, cancel=cancel)
            view = prepare_plate(res.wells, res.fields, plate.shape, kind=lm.meta.kind, name=plate.name,
                                 complete=res.complete, out=out)
            return lm, plate, res, view

        return self.start_job(job, self._on_scored, f"scoring {Path(args.path).name}", cancel)

    def _on_scored(self, result):
        if result is None:
            self.progress.finish("stopped")
            return
        lm, plate, res, view = result
        self.model.remember(lm)
        self.plate = plate
        text = (f"{len(view.wells)} well(s), {len(res.fields)} of {len(plate)} field(s) scored"
                f"{'' if res.n_scored == len(res.fields) else f' ({res.n_scored} now)'}")
        if not res.complete:
            text += ("; stopped: Run again with the same results folder and Resume to score the rest"
                     if res.out is not None else "; stopped (choose a results folder to be able to resume)")
        if res.out is not None:
            text += f"; results in {res.out}"
        self._show_view(view, text, "done" if res.complete else "stopped")

    # ------------------------------------------------------------ open results
    def open_results(self, *_):
        """Show the results folder's tables (read in a worker); returns the worker."""
        if self.running:
            return None
        out = self.out.path
        if out is None:
            _workers.notify_error(InputError("choose the results folder (wells.csv) of a plate run"))
            return None

        def job(report):
            res = read_results(out)
            view = prepare_plate(res.wells, res.fields, res.shape, kind=res.kind, name=res.name,
                                 complete=res.complete, out=out)
            return res, view

        return self.start_job(job, self._on_results_read, f"opening {out.name}")

    def _on_results_read(self, result):
        if result is None:
            self.progress.finish("stopped")
            return
        res, view = result
        info = res.info
        if info.get("plate"):  # the plate these results are of, read as the run read it
            self.plate_path.path = info["plate"]
            self.regex.value = info.get("regex") or ""
            self.channel_files.value = ",".join(info.get("channel_files") or [])
            self.level.value, self.z.value = int(info.get("level") or 0), int(info.get("z") or 0)
        ws = info.get("well_score")
        if ws:
            if ws not in self.well_score.choices:
                self.well_score.choices = (*self.well_score.choices, ws)
            self.well_score.value = ws
        if info.get("model") and self.model.wanted() is None:
            self.model.picker.path = info["model"]
        self.plate = None  # read when a well is opened (from the plate field: edit it if the plate moved)
        n = len(res.fields)
        text = f"{len(view.wells)} well(s), {n} field(s) from {res.out}"
        if not res.complete:
            text += " (a stopped run: Run with Resume scores the rest)"
        if not info:
            text += "; no plate.json: choose the plate to open wells"
        self._show_view(view, text, "opened")

    # ------------------------------------------------------------------ show
    def _show_view(self, view: PlateView, text: str, done: str) -> None:
        """Hand the plate's results to napari, one layer per event-loop turn; the job ends
        (DONE) once they are shown."""
        self.progress.bar.setFormat("showing the plate...")
        self.job.hold()
        try:
            self._open_gen += 1  # a well still opening belongs to the results before
            self.steps.clear()
            self.view = view
            self._close_well()
            self.wells_table.set_rows(*view.table)
            self.fields_table.set_rows([], [])
            for ldt, built in view.layers:
                self.steps.add(self._put_plate_layer, ldt, built, tag="plate")
            self.steps.add(self._plate_shown, text, done, keep=True)
        except BaseException:
            self.job.release()
            raise

    def _put_plate_layer(self, ldt, built) -> None:
        name = ldt[1]["name"]
        if name in self.viewer.layers:  # another plate, maybe of another format: a new layer
            self.viewer.layers.remove(name)
        layer, show = _layers.add_or_update_hidden(self.viewer, ldt, built)
        if name == HEATMAP and hasattr(layer, "colorbar"):  # below, beside the open well's fields
            layer.colorbar.position = "bottom_right"
            layer.colorbar.visible = True
        if show:
            self.steps.add(self._show_layer, layer, keep=True, next=True)

    @staticmethod
    def _show_layer(layer) -> None:
        layer.visible = True

    def _plate_shown(self, text: str, done: str) -> None:
        try:
            self.status.value = text
            self.progress.finish(done)
            self.viewer.reset_view()
        finally:
            self.job.release()

    # -------------------------------------------------------------- open a well
    def _on_well_row(self, i: int) -> None:
        wells = self.wells_table.column("well") if "well" in self.wells_table.columns else []
        if 0 <= i < len(wells):
            self.open_well(wells[i])

    def open_at(self, y: float, x: float):
        """Open the well at world position (y, x) of the heatmap (a click); returns the worker."""
        well = None if self.view is None else self.view.well_at(y, x)
        if well is None:
            return None
        wells = self.wells_table.column("well")
        if well in wells:
            self.wells_table.select_row(wells.index(well))
        return self.open_well(well)

    def _on_canvas_click(self, viewer, event):
        """A click (not a drag) on the heatmap in pan/zoom mode opens that well."""
        if self.view is None or getattr(event, "button", 1) != 1:
            return
        active = viewer.layers.selection.active
        if active is not None and getattr(active, "mode", "pan_zoom") not in ("pan_zoom", "transform"):
            return
        pos = tuple(event.position)[-2:]
        dragged = False
        yield
        while event.type == "mouse_move":
            dragged = True
            yield
        if not dragged:
            self.open_at(*pos)

    def open_well(self, well: str):
        """Show ``well``'s fields with their saliency and objects (or cells), predicted in a
        worker; the newest request wins. Returns the worker."""
        view = self.view
        if view is None or well not in view.well_names:
            return None
        plate, args = self.plate, None
        if plate is None:
            try:
                args = self.plate_args()
            except InputError as e:
                _workers.notify_error(e, f"cannot open {well}")
                return None
        self._open_gen += 1
        gen = self._open_gen
        if self._open_cancel is not None:
            self._open_cancel.cancel()
        cancel = self._open_cancel = CancelToken()
        shared, device = self.model, str(self.device.value)
        self.status.value = f"opening {well}..."

        def job(report):
            lm = shared.get()
            p = plate if plate is not None else args.read(lm, cancel)
            return lm, p, prepare_well(lm, well, p.fields, view, device=device, cancel=cancel, report=report)

        def progress(p):
            if gen == self._open_gen:
                self.status.value = f"{p.message} {min(p.batch + 1, p.n_batches)}/{p.n_batches}"

        def failed(e):
            msg = _workers.notify_error(e, f"cannot open {well}")
            if gen == self._open_gen:
                self.status.value = msg

        return self.workers.start(job, name=f"open {well}", cancel=cancel, on_progress=progress,
                                  on_done=lambda r: self._show_well(r, gen, view), on_error=failed)

    def _show_well(self, result, gen: int, view: PlateView) -> None:
        if result is None or gen != self._open_gen or view is not self.view:
            return  # stopped, or a newer click (or newer results) came
        lm, plate, prep = result
        self.model.remember(lm)
        self.plate = plate
        self.steps.clear("well")
        self._close_well(keep=prep.well)
        for ldt, built in prep.layers:
            self.steps.add(self._put_layer, ldt, built, tag="well")
        self.steps.add(self._well_shown, prep, tag="well")

    def _put_layer(self, ldt, built) -> None:
        layer, show = _layers.add_or_update_hidden(self.viewer, ldt, built)
        if show:
            self.steps.add(self._show_layer, layer, keep=True, next=True)

    def _well_shown(self, prep: PreparedWell) -> None:
        self.opened = prep
        self.fields_table.set_rows(*prep.table)
        self.status.value = prep.summary
        self.zoom_to(prep.box)

    def well_layers(self, well: str | None = None) -> list:
        """The layers of the open well's fields (of ``well``; default: of any well)."""
        out = []
        for layer in self.viewer.layers:
            w = (getattr(layer, "metadata", None) or {}).get(_layers.META_KEY, {}).get("plate_well")
            if w is not None and (well is None or w == well):
                out.append(layer)
        return out

    def _close_well(self, keep: str | None = None) -> None:
        """Remove the layers of the wells opened before (one per event-loop turn)."""
        for layer in self.well_layers():
            if layer.metadata[_layers.META_KEY]["plate_well"] != keep:
                self.steps.add(self._remove_layer, layer, tag="well")
        if keep is None:
            self.opened = None

    def _remove_layer(self, layer) -> None:
        if layer in self.viewer.layers:
            self.viewer.layers.remove(layer)

    def _on_field_row(self, i: int) -> None:
        if self.opened is None:
            return
        names = self.fields_table.column("field") if "field" in self.fields_table.columns else []
        if 0 <= i < len(names) and names[i] in self.opened.boxes:
            self.zoom_to(self.opened.boxes[names[i]])

    def zoom_to(self, box) -> None:
        """Fit the world box (y0, x0, y1, x1) in the canvas."""
        ref = next((lay for lay in self.viewer.layers if lay.name in (HEATMAP, GRID)), None)
        if ref is None:
            return
        scale = [float(s) for s in ref.scale[-2:]]
        translate = [float(t) for t in ref.translate[-2:]]
        y0, x0, y1, x1 = box  # in the reference layer's data pixels (zoom_to_box adds the pixel centre)
        data = ((y0 - translate[0]) / scale[0] + 0.5, (x0 - translate[1]) / scale[1] + 0.5,
                (y1 - translate[0]) / scale[0] + 0.5, (x1 - translate[1]) / scale[1] + 0.5)
        zoom_to_box(self.viewer, ref, data, margin=0.05, min_size=1.0)

    def on_close(self):
        self.steps.stop()
        if self._open_cancel is not None:
            self._open_cancel.cancel()
        try:
            self.viewer.mouse_drag_callbacks.remove(self._on_canvas_click)
        except ValueError:
            pass
        try:
            self.viewer.layers.events.inserted.disconnect(self._on_layer_inserted)
        except (TypeError, ValueError, RuntimeError):
            pass
