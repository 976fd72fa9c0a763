"""Discover dock, Review tab: ranking table, y/n review, apply with undo, retrain.

Rows come from :func:`~..core.discover.rank_images` or
:func:`~..core.discover.find_mislabels` (streamed in a worker). The table sorts by any
column; selecting a row opens that image with its saliency (a worker; the latest
click wins). With suspected mislabels listed, ``y`` confirms and ``n`` rejects the
selected image's suggested label while this tab is shown, whatever layer is selected and
wherever the focus is (canvas, layer list, this table): they are window shortcuts of the
tab, which Qt gives priority over the canvas' layer keymaps (an Image layer binds ``y``
to "orient plane normal along y"); a text field still types the letters. They are also
bound on the viewer, for a dock floated out of the window. Each decision is appended to
the decisions CSV at once and the next row opens.
"""
from __future__ import annotations

from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton, SpinBox
from qtpy.QtWidgets import QVBoxLayout, QWidget

from .. import _workers
from ..core.discover.decisions import apply_decisions, record_decision, undo
from ..core.discover.retraining import retrain
from ..core.errors import InputError
from ..core.progress import CancelToken
from . import _paths
from ._device import DevicePicker
from ._discover_table import RankTable, data_root, next_free, show_image
from ._jobs import JobPanel, JobState
from ._keys import TabKeys
from ._paths import PathPicker
from ._progress import TrainingProgress

IMAGE_LAYER = "review image"
MODES = ("suspected mislabels", "rank a folder")
#: the review keys: key -> decision
REVIEW_KEYS = {"y": "confirm", "n": "reject"}


class ReviewPanel(JobPanel, QWidget):
    job_failed = "Discover"

    def __init__(self, viewer, model, workers: _workers.WorkerGroup, parent=None):
        super().__init__(parent)
        self.viewer, self.model, self.workers = viewer, model, workers
        self.rows: list[dict] = []
        self.last_undo: Path | None = None
        self._open_gen = 0
        self._rerank = False
        self.retrained = None
        self.mode = ComboBox(label="list", choices=list(MODES), value=MODES[0])
        self.folder = PathPicker("images", mode="d", tooltip="mislabels: DATA/train (class folders) or DATA; "
                                 "rank: any folder of images (recursive)")
        self.score = ComboBox(label="score", choices=["probability", "entropy"], value="probability",
                              tooltip="probability of the positive (WSCNN) / top (DeepYeast) class, or uncertainty")
        self.top = SpinBox(label="top", value=0, min=0, max=1_000_000,
                           tooltip="mislabels: keep the K most suspicious (0: all the model disagrees with)")
        self.tta = CheckBox(text="average over flips and rotations (8x slower, steadier)", value=False)
        self.device = DevicePicker()
        self.run_btn, self.stop_btn = PushButton(text="Run"), PushButton(text="Stop")
        self.run_btn.changed.connect(self.run)
        self.stop_btn.changed.connect(self.stop)
        self.decisions = PathPicker("decisions CSV", mode="w", filter="CSV (*.csv)",
                                    placeholder="(automatic: DATA/decisions.csv)")
        self.confirm_btn = PushButton(text="Confirm (y)", enabled=False)
        self.reject_btn = PushButton(text="Reject (n)", enabled=False)
        self.confirm_btn.changed.connect(lambda *_: self.decide("confirm"))
        self.reject_btn.changed.connect(lambda *_: self.decide("reject"))
        self.apply_btn = PushButton(text="Apply decisions...", enabled=False)
        self.undo_btn = PushButton(text="Undo last apply", enabled=False)
        self.apply_btn.changed.connect(self.apply_dialog)
        self.undo_btn.changed.connect(self.undo_last)
        self.epochs = SpinBox(label="retrain epochs", value=2, min=1, max=1000)
        self.retrain_btn = PushButton(text="Retrain from corrected labels, then rank again")
        self.retrain_btn.changed.connect(self.retrain)
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        row = lambda *w: Container(widgets=list(w), layout="horizontal", labels=False)  # noqa: E731
        self.form = Container(widgets=[self.mode, self.folder, self.score, self.top, self.tta, self.device,
                                       row(self.run_btn, self.stop_btn)])
        self.review = Container(widgets=[self.decisions, row(self.confirm_btn, self.reject_btn),
                                         row(self.apply_btn, self.undo_btn), self.epochs, self.retrain_btn])
        self.progress = TrainingProgress(plot=False)
        self.table = RankTable()
        self.table.row_activated.connect(self.open_row)
        lay = QVBoxLayout(self)
        for w in (self.form.native, self.progress, self.table, self.status.native, self.review.native):
            lay.addWidget(w)
        self.mode.changed.connect(self._on_mode)
        self._on_mode()
        self.job.changed.connect(self._rank_again)
        self.keys = TabKeys(self, self.viewer, {k: (lambda d=d: self.decide(d)) for k, d in REVIEW_KEYS.items()})
        self.shortcuts = self.keys.shortcuts
        self.update_buttons()

    def _on_mode(self, *_):
        mislabels = self.mode.value == MODES[0]
        self.score.visible, self.top.visible = not mislabels, mislabels

    # ------------------------------------------------------------------ run
    def run(self, *_):
        if self.running:
            return None
        folder = self.folder.path
        if folder is None:
            _workers.notify_error(InputError("choose the folder of images to rank or review"))
            return None
        shared, mode, score, top, device, tta = self.model, self.mode.value, self.score.value, \
            int(self.top.value) or None, str(self.device.value), bool(self.tta.value)
        cancel = CancelToken()

        def job(report):
            from ..core.discover.rank import (  # deferred: loads torch
                find_mislabels,
                rank_images,
            )

            lm = shared.get()
            prog = _workers.count_progress(report, cancel, "scoring")
            if mode == MODES[0]:
                rows = find_mislabels(lm, folder, top=top, device=device, tta=tta, callback=prog, cancel=cancel)
            else:
                rows = rank_images(lm, [folder], score=score, device=device, tta=tta, callback=prog, cancel=cancel)
            return lm, rows

        return self.start_job(job, self._on_ranked, f"{mode} in {folder.name}", cancel)

    def update_buttons(self) -> None:
        super().update_buttons()
        self.retrain_btn.enabled = not self.running

    def _show_error(self, msg: str) -> None:
        self.status.value = msg

    def _rank_again(self, state: JobState, old: JobState) -> None:
        if self._rerank and not state.busy:  # after a retraining: rank again with the new model
            self._rerank = False
            self.run()

    def _on_ranked(self, result):
        if result is None:
            self.progress.finish("stopped")
            return
        lm, rows = result
        self.model.remember(lm)
        self.rows = rows
        review = bool(rows) and "suggested" in rows[0]
        cols = ["rank", "image", "label", "suggested", "suspicion", "decision"] if review else \
            ["rank", "image", "label", "predicted", "score", "entropy"]
        self.table.set_rows(cols, rows)
        self.confirm_btn.enabled = self.reject_btn.enabled = review and bool(rows)
        self.apply_btn.enabled = review
        self.progress.finish(f"{len(rows)} image(s)")
        self.status.value = (f"{len(rows)} suspected mislabel(s): select a row, then y = confirm the suggested "
                             "label, n = reject" if review else f"{len(rows)} image(s) ranked, highest score first")
        if review:
            self.bind_keys()
        else:
            self.unbind_keys()
        if rows:
            self.table.select_index(0)

    # ----------------------------------------------------------- open a row
    def open_row(self, i: int):
        """Show image ``i`` of :attr:`rows` with its saliency (in a worker); returns the worker."""
        if not 0 <= i < len(self.rows):
            return None
        self._open_gen += 1
        gen, path, shared, device = self._open_gen, self.rows[i]["image"], self.model, str(self.device.value)

        def job(report):
            from ..core.discover.gallery import explain_file  # deferred: loads torch

            lm = shared.get()
            return lm, explain_file(lm, path, device=device)

        return self.workers.start(job, name="open image", on_done=lambda r: self._show(r, gen, i))

    def _show(self, result, gen, i):
        if result is None or gen != self._open_gen:
            return
        lm, (raw, probs, sal) = result
        self.model.remember(lm)
        show_image(self.viewer, IMAGE_LAYER, raw, sal, float(probs[-1]))
        r = self.rows[i]
        p = ", ".join(f"{c} {v:.3f}" for c, v in zip(lm.meta.class_names, probs))
        self.status.value = f"#{r['rank']} {Path(r['image']).name} (label {r.get('label') or '-'}): {p}"
        self.viewer.reset_view()

    # -------------------------------------------------------------- review
    def bind_keys(self) -> None:
        """y / n confirm / reject while this tab is shown and has suggestions to review
        (:class:`._keys.TabKeys`: whatever layer is selected or focused)."""
        if self.rows and "suggested" in self.rows[0]:
            self.keys.bind()

    def unbind_keys(self) -> None:
        self.keys.unbind()

    def decisions_path(self) -> Path | None:
        if self.decisions.path is None and self.folder.path is not None:
            self.decisions.path = data_root(self.folder.path) / "decisions.csv"
        return self.decisions.path

    def decide(self, decision: str) -> dict | None:
        """Record ``decision`` for the selected row and open the next one."""

        i = self.table.current_index()
        if i is None or not self.rows or "suggested" not in self.rows[i]:
            return None
        r = self.rows[i]
        try:
            row = record_decision(self.decisions_path(), r["image"], r["label"], r["suggested"], decision)
        except (InputError, OSError) as e:
            _workers.notify_error(e, "cannot save the decision")
            return None
        r["decision"] = decision
        self.table.set_cell(i, "decision", decision)
        n_c = sum(x.get("decision") == "confirm" for x in self.rows)
        n_r = sum(x.get("decision") == "reject" for x in self.rows)
        self.status.value = f"{n_c} confirmed, {n_r} rejected of {len(self.rows)}; saved to {self.decisions.path}"
        nxt = self.table.next_index(i)
        if nxt is not None:
            self.table.select_index(nxt)
        return row

    def apply_dialog(self, *_):
        """Preview the moves, ask, apply; returns the plan (or None)."""

        dec, folder = self.decisions_path(), self.folder.path
        if dec is None or not dec.exists():
            _workers.notify_error(InputError("no decisions yet: confirm (y) or reject (n) suspected mislabels first"))
            return None
        root = data_root(folder)
        try:
            plan = apply_decisions(root, dec, dry_run=True)
            lines = [f"{Path(m.src).parent.name}/{Path(m.src).name} -> {Path(m.dst).parent.name}/"
                     + (f"  ({m.reason})" if m.reason else "") for m in plan.moves if m.status != "skip"]
            text = f"{plan.summary()}\n\n" + "\n".join(lines[:15]) + ("\n..." if len(lines) > 15 else "")
            if plan.errors:
                raise InputError(f"cannot apply: {plan.errors[0].image}: {plan.errors[0].reason}")
            if not plan.count("move"):
                self.status.value = "nothing to move: " + plan.summary()
                return plan
            if not _paths.confirm(self, "Move files?", text + "\n\nMove these files? (an undo file is written)"):
                return None
            plan = apply_decisions(root, dec, dry_run=False)
        except InputError as e:
            _workers.notify_error(e)
            return None
        self.last_undo = Path(plan.undo_file)
        self.undo_btn.enabled = True
        self.status.value = f"{plan.summary()}. Retrain to learn from the corrected labels."
        return plan

    def undo_last(self, *_):
        if self.last_undo is None:
            return None
        try:
            plan = undo(self.last_undo)
        except InputError as e:
            _workers.notify_error(e)
            return None
        self.undo_btn.enabled = False
        self.status.value = f"undone: {plan.count('move')} file(s) moved back"
        return plan

    # ------------------------------------------------------------- retrain
    def retrain(self, *_):
        if self.running or self.folder.path is None or self.model.wanted() is None:
            _workers.notify_error(InputError("choose a model and the labeled folder first"))
            return None
        old, root, epochs, device = self.model.wanted(), data_root(self.folder.path), int(self.epochs.value), \
            str(self.device.value)
        out = next_free(old.with_name(old.stem.split(".retrained")[0] + ".retrained.safetensors"))
        cancel = CancelToken()

        def job(report):
            from ..core.training.trainer import TrainConfig  # deferred: loads torch

            return retrain(old, root, out, TrainConfig(epochs=epochs, device=device), callback=report, cancel=cancel)

        return self.start_job(job, self._on_retrained, f"retraining for {epochs} epoch(s)", cancel)

    def _on_retrained(self, res):
        if res is None or res.best_path is None:
            self.progress.finish("stopped")
            return
        self.progress.finish(f"retrained: {res.best_path.name}")
        self.model.picker.path = res.best_path
        self.retrained = res
        self._rerank = True

    def on_close(self):
        self.unbind_keys()

