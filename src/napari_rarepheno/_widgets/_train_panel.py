"""The Train tab both networks share.

Labeled folder (one file per image, or one file per channel: "channel files", with
"channel names" kept in the model), network options (from the subclass), epochs, device,
seed, where to write the model, Start/Stop, a progress bar with a live loss/accuracy plot, and the
model buttons (load, save as, export for bioimage.io, continue training). Training is the
panel's job (:class:`._jobs.JobPanel`: state idle/running/stopping/done/failed) and runs in a
thread worker (:mod:`.._workers`); Stop finishes the current batch and keeps the best weights.
The bioimage.io export (``core.export.bioimageio``: the package, then bioimage.io's own test of
it) is a second :class:`._jobs.Job` of the panel, also in a worker.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from magicgui.widgets import (
    CheckBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from qtpy.QtWidgets import QVBoxLayout, QWidget

from .. import _workers
from ..core.errors import InputError
from ..core.io.folders import pair_channel_files
from ..core.io.images import is_image_file
from ..core.progress import CancelToken
from . import _paths
from ._device import DevicePicker
from ._jobs import Job, JobPanel
from ._model import ModelSlot
from ._paths import PathPicker
from ._progress import TrainingProgress


def default_models_dir() -> Path:
    import os

    env = os.environ.get("RAREPHENO_MODELS_DIR")
    return Path(env) if env else Path.home() / "napari-rarepheno" / "models"


def checkpoint_files(out: Path) -> list[Path]:
    """MODEL, MODEL.last and MODEL.log.csv, as :func:`core.train.checkpoint_paths` names them
    (repeated here because importing core.train would load torch in the GUI thread)."""
    stem = out.name[: -len(".safetensors")] if out.name.endswith(".safetensors") else out.name
    return [out, out.with_name(stem + ".last.safetensors"), out.with_name(stem + ".log.csv")]


def count_images(folder: Path, channel_files=None) -> int:
    """Images in one class folder: files, or with ``channel_files`` groups of one file per
    channel (raises InputError for an image missing a channel)."""
    if not folder.is_dir():
        return 0
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".") and is_image_file(f))
    return len(pair_channel_files(folder, files, channel_files)) if channel_files else len(files)


class TrainPanel(JobPanel, QWidget):
    """Subclasses set ``kind``/``default_epochs`` and implement :meth:`option_widgets`,
    :meth:`check_folder` (a one-line hint) and :meth:`run_training` (in the worker)."""

    kind = "model"
    default_epochs = 10
    folder_label = "labeled folder"
    stopping_text = "stopping after this batch..."

    def __init__(self, viewer, model: ModelSlot, workers: _workers.WorkerGroup, parent=None):
        super().__init__(parent)
        self.viewer, self.model, self.workers = viewer, model, workers
        self.result = None
        self.data = PathPicker(self.folder_label, mode="d", check=self.check_folder,
                               tooltip=self.folder_tooltip())
        self.channel_files = LineEdit(label="channel files", value="",
                                      tooltip="images stored one file per channel: what names each channel's file, "
                                      "in channel order, separated by commas (e.g. _Crfp,_Cgfp: a text or a regular "
                                      "expression found anywhere in the file name; the files of one image differ "
                                      "only there). Empty: one file per image. The model keeps these patterns.")
        self.channel_files.native.setPlaceholderText("one file per image")
        self.channel_names = LineEdit(label="channel names", value="",
                                      tooltip="what each channel is, in order, separated by commas (e.g. H2B,tubulin); "
                                      "kept in the model, so the Infer and Classify tabs find the layer of each "
                                      "channel by its name. Empty: channel 0, channel 1...")
        self.channel_names.native.setPlaceholderText("e.g. H2B,tubulin")
        self.channel_files.changed.connect(self._recheck_folder)
        self.epochs = SpinBox(label="epochs", value=self.default_epochs, min=1, max=1000)
        self.batch = SpinBox(label="batch size", value=0, min=0, max=4096,
                             tooltip="images per step; 0: the recipe's (50 WSCNN, 100 DeepYeast). Smaller "
                             "batches take more steps per epoch (small data sets learn in fewer epochs)")
        self.lr = FloatSpinBox(label="learning rate", value=0.0, min=0.0, max=1.0, step=0.0001,
                               tooltip="0: the recipe's (AdamW; WSCNN 3e-4 held, then decayed; DeepYeast one-cycle)")
        self.lr.native.setDecimals(5)
        self.device = DevicePicker()
        self.seed = SpinBox(label="seed", value=0, min=0, max=2 ** 31 - 1)
        self.out = PathPicker("save model to", mode="w", filter="*.safetensors",
                              tooltip="model file to write (best weights); empty: a new file in "
                              f"{default_models_dir()}")
        self.continue_ = CheckBox(text="continue from the current model", value=False)
        self.start_btn = PushButton(text="Start training")
        self.stop_btn = PushButton(text="Stop")
        self.run_btn = self.start_btn  # the name JobPanel knows
        self.start_btn.changed.connect(self.start)
        self.stop_btn.changed.connect(self.stop)
        buttons = Container(widgets=[self.start_btn, self.stop_btn], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        self.form = Container(widgets=[self.data, self.channel_files, self.channel_names, *self.option_widgets(),
                                       self.epochs, self.batch, self.lr,
                                       self.device, self.seed, self.out, self.continue_, buttons])
        self.progress = TrainingProgress()
        self.model_label = Label(value=model.describe())
        self.model_label.native.setWordWrap(True)
        self.load_btn = PushButton(text="Load model...")
        self.save_btn = PushButton(text="Save model as...")
        self.export_btn = PushButton(text="Export for bioimage.io...")
        self.export_btn.tooltip = ("write the model as a bioimage.io model package (.zip: weights, network, "
                                   "normalisation, test input and output, cover, README) for other tools; "
                                   "bioimage.io's own test runs on it before it is written")
        self.load_btn.changed.connect(self.load_dialog)
        self.save_btn.changed.connect(self.save_dialog)
        self.export_btn.changed.connect(self.export_dialog)
        self.export_job = Job()
        self.export_job.changed.connect(lambda *_: self.update_buttons())
        model_row = Container(widgets=[self.load_btn, self.save_btn], layout="horizontal", labels=False)
        model_row.margins = (0, 0, 0, 0)
        export_row = Container(widgets=[self.export_btn], layout="horizontal", labels=False)
        export_row.margins = (0, 0, 0, 0)
        lay = QVBoxLayout(self)
        lay.addWidget(self.form.native)
        lay.addWidget(self.progress)
        lay.addWidget(self.model_label.native)
        lay.addWidget(model_row.native)
        lay.addWidget(export_row.native)
        lay.addStretch()
        model.changed.connect(self._on_model_changed)
        self.update_buttons()

    # ------------------------------------------------------------ subclass API
    def option_widgets(self) -> list:
        return []

    def folder_tooltip(self) -> str:
        return ""

    def check_folder(self, path: Path) -> str:
        return ""

    def options(self) -> dict:
        """The network options, read in the GUI thread before the worker starts."""
        return {}

    # ------------------------------------------------------------ channels
    def channel_file_patterns(self) -> list[str] | None:
        """The "channel files" field as a list (None: one file per image)."""
        return _split(self.channel_files.value)

    def channel_name_list(self) -> list[str] | None:
        return _split(self.channel_names.value)

    def _recheck_folder(self, *_):
        self.data._update_hint()

    def build_options(self) -> dict:
        """Everything the worker gets as ``options``: :meth:`options` plus ``channel_files``
        and ``channel_names`` (raises InputError when they do not fit together)."""
        files, names = self.channel_file_patterns(), self.channel_name_list()
        if files and names and len(files) != len(names):
            raise InputError(f"give one channel name per channel file: {len(files)} channel files "
                             f"({', '.join(files)}) but {len(names)} names ({', '.join(names)})")
        if names and len(set(names)) != len(names):
            raise InputError(f"channel names must differ from each other: {', '.join(names)}")
        return {**self.options(), "channel_files": files, "channel_names": names}

    def run_training(self, data: Path, out: Path, cfg: dict, init_from, options: dict, report,
                     cancel: CancelToken):
        """Runs in the worker thread: must not touch widgets. ``cfg``: TrainConfig keyword
        arguments (epochs, device, seed, batch_size, lr); ``options``: :meth:`options`."""
        raise NotImplementedError

    # ---------------------------------------------------------------- actions
    @property
    def job_failed(self) -> str:
        return f"{self.kind} training failed"

    def output_path(self) -> Path:
        out = self.out.path
        if out is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = default_models_dir() / f"{self.kind}-{stamp}.safetensors"
        elif out.suffix != ".safetensors":
            out = out.with_name(out.name + ".safetensors")
        return out

    def start(self, *_):
        if self.running:
            return
        data = self.data.path
        if data is None:
            self.data.set_hint("choose the folder of labeled images first")
            _workers.notify_error(InputError(f"choose the {self.folder_label} first"))
            return
        out = self.output_path()
        init_from = self.model.path if self.continue_.value and self.model.ready else None
        if init_from is not None and self.model.path is None:
            _workers.notify_error(InputError("the current model has no file to continue from; save it first"))
            return
        if out.exists() and (init_from is None or Path(init_from) != out):
            if not _paths.confirm_overwrite(self, checkpoint_files(out)):
                return
        cfg = {"epochs": int(self.epochs.value), "device": str(self.device.value), "seed": int(self.seed.value),
               "batch_size": int(self.batch.value) or None, "lr": float(self.lr.value) or None}
        try:
            options = self.build_options()
        except InputError as e:
            _workers.notify_error(e)
            return
        cancel = CancelToken()

        def job(report):
            return self.run_training(data, out, cfg, init_from, options, report, cancel)

        return self.start_job(job, self._on_done, "loading images", cancel, name=f"train {self.kind}")

    def _on_done(self, result):
        if result is None:  # stopped while loading images
            self.progress.finish("stopped before training started")
            return
        self.result = result
        self.model.set_trained(result)
        best = result.history[result.best_epoch - 1] if result.best_epoch else {}
        acc = best.get("val_accuracy", best.get("train_accuracy"))
        acc_text = f", accuracy {acc:.3f}" if acc is not None else ""
        if result.cancelled and result.best_epoch:
            msg = (f"Stopped after {len(result.history)} epoch(s). Kept the best weights "
                   f"(epoch {result.best_epoch}{acc_text}) in {result.best_path}")
        elif result.cancelled:
            msg = (f"Stopped before the first epoch ended: {result.best_path} holds untrained weights; "
                   "train longer before using it.")
        else:
            msg = f"Done: best epoch {result.best_epoch}{acc_text}; model saved to {result.best_path}"
        self.progress.finish("stopped - best weights kept" if result.cancelled else "done")
        self.progress.status.setText(msg)
        from napari.utils.notifications import show_info

        show_info(msg)

    def update_buttons(self) -> None:
        super().update_buttons()
        idle = not self.running
        self.load_btn.enabled = idle
        self.save_btn.enabled = idle and self.model.ready
        self.export_btn.enabled = idle and self.model.ready and not self.export_job.busy
        self.continue_.enabled = idle and self.model.ready

    def _on_model_changed(self):
        self.model_label.value = self.model.describe()
        self.update_buttons()

    # ------------------------------------------------------------------ model
    def load_dialog(self, *_):
        path = _paths.ask_open_file(self, f"Load a {self.kind} model", _paths.MODEL_FILES)
        if path is not None:
            self.load_model(path)

    def load_model(self, path: Path):
        """Load ``path`` in a worker; the model slot updates when done."""
        path = Path(path)
        self.progress.busy(f"loading {path.name}...")

        def job(report):
            return self.model.load(path)

        def done(loaded):
            if loaded is not None:
                self.model.set(loaded, path)
                self.progress.finish(f"loaded {path.name}")

        def error(exc):
            self.progress.finish("could not load the model")
            _workers.notify_error(exc, "could not load the model")

        return self.workers.start(job, name=f"load {self.kind}", on_done=done, on_error=error,
                                  on_finished=self.device.refresh)

    def save_dialog(self, *_):
        if not self.model.ready:
            return
        path = _paths.ask_save_file(self, "Save model as", "Model files (*.safetensors)",
                                    f"{self.kind}.safetensors")
        if path is not None:
            self.save_model(path, confirmed=True)

    def save_model(self, path: Path, confirmed: bool = False) -> Path | None:
        """Copy the current model file to ``path`` (asks before replacing a file)."""
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        if path.exists() and not confirmed and not _paths.confirm_overwrite(self, [path]):
            return None
        try:
            if self.model.path is not None and self.model.path.exists():
                if self.model.path.resolve() != path.resolve():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(self.model.path, path)
            else:
                from ..core.io.modelfile import save_model  # deferred: loads torch

                save_model(path, self.model.loaded.model, self.model.loaded.meta)
        except OSError as e:
            _workers.notify_error(InputError(f"could not save the model ({e.strerror or e})", path))
            return None
        self.model.set(self.model.loaded, path, self.model.note)
        from napari.utils.notifications import show_info

        show_info(f"model saved to {path}")
        return path

    def export_dialog(self, *_):
        if not self.model.ready:
            return
        stem = self.model.path.stem if self.model.path is not None else self.kind
        path = _paths.ask_save_file(self, "Export for bioimage.io", "bioimage.io model packages (*.zip)",
                                    f"{stem}.bioimageio.zip")
        if path is not None:
            self.export_bioimageio(path, confirmed=True)

    def export_bioimageio(self, path: Path, confirmed: bool = False):
        """Write the current model as a bioimage.io package ``path`` (.zip) in a worker, after
        bioimage.io's test passed on it (asks before replacing a file); returns the worker."""
        path = Path(path)
        if path.suffix.lower() != ".zip":
            path = path.with_name(path.name + ".zip")
        if not self.model.ready or self.export_job.busy:
            return None
        if path.exists() and not confirmed and not _paths.confirm_overwrite(self, [path]):
            return None
        loaded = self.model.loaded
        self.progress.busy(f"exporting {path.name} for bioimage.io...")

        def job(report):
            from ..core.export.bioimageio import (  # deferred: loads torch
                export_bioimageio,
            )

            return export_bioimageio(loaded, path, overwrite=True, check=True)

        def done(res):
            msg = f"bioimage.io package written to {res.path} (bioimage.io's test passed)"
            self.progress.finish(f"exported {path.name}")
            self.progress.status.setText(msg)
            from napari.utils.notifications import show_info

            show_info(msg)

        def error(exc):
            self.progress.finish("could not export the model")
            self.progress.status.setText(_workers.notify_error(exc, "could not export the model"))

        return self.export_job.start(self.workers, job, name=f"export {self.kind}", on_done=done, on_error=error)


def _split(text) -> list[str] | None:
    """Comma-separated entries of a text field (None when empty)."""
    items = [t.strip() for t in str(text or "").split(",") if t.strip()]
    return items or None
