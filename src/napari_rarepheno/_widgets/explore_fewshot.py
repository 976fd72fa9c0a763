"""Explore > Few-shot: do the network's features transfer to classes it never saw?

A head (random forest or logistic regression) is trained on 1, 3, 5... examples per
new class (from a folder), on the network's layer outputs ('deep') and on hand-made
features ('hand'), and tested on a second folder: the curve of Pärnamaa & Parts Fig. 4.
"""
from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, Container, LineEdit, PushButton
from qtpy.QtWidgets import QVBoxLayout, QWidget

from .. import _workers
from ..core.deepyeast.baseline import run_transfer
from ..core.errors import InputError
from ..core.progress import CancelToken, Progress
from ._device import DevicePicker
from ._jobs import JobPanel
from ._model import ModelSlot
from ._paths import PathPicker
from ._plot import LinePlot
from ._progress import TrainingProgress
from ._table import ResultsTable
from .deepyeast_train import describe_class_folder


def parse_shots(text: str) -> list[int]:
    try:
        shots = sorted({int(t) for t in str(text).replace(" ", "").split(",") if t})
    except ValueError:
        raise InputError(f"shots must be whole numbers separated by commas, like 1,3,5,10; got {text!r}") from None
    if not shots or shots[0] < 1:
        raise InputError("shots must be at least 1 example per class")
    return shots


class FewShotPanel(JobPanel, QWidget):
    job_failed = "few-shot transfer failed"

    def __init__(self, viewer, model: ModelSlot, workers: _workers.WorkerGroup, parent=None):
        super().__init__(parent)
        self.viewer, self.model, self.workers = viewer, model, workers
        self.result: dict | None = None
        self.train_dir = PathPicker("examples", mode="d", check=describe_class_folder,
                                    tooltip="ROOT/<new class>/<crop>: the few labeled examples of the new classes")
        self.test_dir = PathPicker("test crops", mode="d", check=describe_class_folder,
                                   tooltip="ROOT/<class>/<crop>: other crops of the same classes, to score")
        self.shots = LineEdit(label="examples per class", value="1,3,5,10,25")
        self.layer = ComboBox(label="network layer", choices=["fc1", "fc2", "conv8"], value="fc1")
        self.head = ComboBox(label="head", choices=["forest", "logreg"], value="forest")
        self.hand = CheckBox(text="compare with hand-made features", value=True)
        self.device = DevicePicker()
        self.run_btn = PushButton(text="Run few-shot transfer")
        self.stop_btn = PushButton(text="Stop")
        self.run_btn.changed.connect(self.run)
        self.stop_btn.changed.connect(self.stop)
        btns = Container(widgets=[self.run_btn, self.stop_btn], layout="horizontal", labels=False)
        btns.margins = (0, 0, 0, 0)
        self.form = Container(widgets=[self.train_dir, self.test_dir, self.shots, self.layer, self.head, self.hand,
                                       self.device, btns])
        self.progress = TrainingProgress(plot=False)
        self.plot = LinePlot(xlabel="examples per class", ylabel="test accuracy")
        self.table = ResultsTable("Accuracy per number of examples")
        lay = QVBoxLayout(self)
        for w in (self.form.native, self.progress, self.plot, self.table):
            lay.addWidget(w)
        lay.addStretch()
        self.update_buttons()

    def run(self, *_):
        if self.running:
            return None
        try:
            if not self.model.ready:
                raise InputError("load a DeepYeast model first (top of this dock)")
            if self.train_dir.path is None or self.test_dir.path is None:
                raise InputError("choose the folder of examples and the folder of test crops")
            shots = parse_shots(self.shots.value)
        except InputError as e:
            _workers.notify_error(e)
            return None
        loaded, train_dir, test_dir = self.model.loaded, self.train_dir.path, self.test_dir.path
        layer, head, hand, device = str(self.layer.value), str(self.head.value), bool(self.hand.value), \
            str(self.device.value)
        cancel = CancelToken()

        def job(report):
            from ..core.deepyeast.classify import model_options  # deferred: loads torch
            from ..core.deepyeast.data import load_crops  # deferred: loads torch

            opts = model_options(loaded)
            opts.model_classes = None
            train = load_crops(train_dir, opts, _workers.count_progress(report, cancel, "loading examples"))
            test = load_crops(test_dir, opts, _workers.count_progress(report, cancel, "loading test crops"))
            report(Progress(stage="item", batch=0, n_batches=1, message="features and heads"))
            cancel.raise_if_cancelled()
            return run_transfer(loaded, train, test, shots, layer=layer, head=head, hand=hand, device=device)

        return self.start_job(job, self.show, "few-shot", cancel, busy="few-shot transfer...")

    def show(self, res: dict | None):
        if res is None:
            self.progress.finish("stopped")
            return
        self.result = res
        self.plot.clear()
        colours = {"deep": "#5b8fd6", "hand": "#f39c4a"}
        shots = sorted({int(k) for key in ("deep", "hand") for k in res.get(key, {})})
        for key in ("deep", "hand"):
            curve = res.get(key)
            if curve:
                xs = sorted(int(k) for k in curve)
                label = f"{res['layer']} features" if key == "deep" else "hand-made features"
                self.plot.set_series(label, xs, [curve[str(x)] for x in xs], colours[key])
        self.plot.update()
        self.table.set_rows(["examples per class", "deep", "hand"],
                            [[s, res.get("deep", {}).get(str(s), ""), res.get("hand", {}).get(str(s), "")]
                             for s in shots])
        seen = res.get("seen_by_network") or []
        note = f"; classes the network was trained on: {', '.join(seen)}" if seen else ""
        self.progress.finish(f"done in {res.get('seconds', 0):.1f} s")
        self.progress.status.setText(f"{len(res['classes'])} new classes, {res.get('n_train', '?')} examples, "
                                     f"{res.get('n_test', '?')} test crops{note}")
