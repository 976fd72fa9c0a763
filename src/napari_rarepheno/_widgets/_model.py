"""The model a dock works with: trained here, or loaded from a file; shared by its tabs."""
from __future__ import annotations

import weakref
from pathlib import Path

from qtpy.QtCore import QObject, Signal

_SLOTS: "weakref.WeakSet[ModelSlot]" = weakref.WeakSet()


class ModelSlot(QObject):
    """Holds the current model of one kind ('wscnn' or 'deepyeast').

    ``loaded`` (a :class:`~..core.modelfile.LoadedModel`) is filled by a training run
    or by :meth:`load` (which runs in a worker: it imports torch)."""

    changed = Signal()

    def __init__(self, kind: str, parent=None):
        super().__init__(parent)
        self.kind = kind
        self.path: Path | None = None
        self.loaded = None
        self.note = ""
        self.serial = 0
        _SLOTS.add(self)

    @staticmethod
    def latest(kind: str, exclude=None) -> "ModelSlot | None":
        """The most recently set ready slot of ``kind`` (e.g. the DeepYeast dock's model)."""
        ready = [s for s in list(_SLOTS) if s.kind == kind and s.ready and s is not exclude]
        return max(ready, key=lambda s: s.serial) if ready else None

    @property
    def ready(self) -> bool:
        return self.loaded is not None

    @property
    def meta(self):
        return None if self.loaded is None else self.loaded.meta

    @property
    def class_names(self) -> list[str]:
        return [] if self.loaded is None else list(self.loaded.meta.class_names)

    def set(self, loaded, path: Path | None, note: str = "") -> None:
        self.loaded, self.path, self.note = loaded, (Path(path) if path else None), note
        ModelSlot._counter = getattr(ModelSlot, "_counter", 0) + 1
        self.serial = ModelSlot._counter
        self.changed.emit()

    def set_trained(self, result) -> None:
        from ..core.io.modelfile import LoadedModel  # deferred: loads torch

        self.set(LoadedModel(result.model, result.meta, result.best_path), result.best_path,
                 "stopped early" if result.cancelled else "")

    def load(self, path: Path):
        """Load a model file (call in a worker); returns the LoadedModel (set it in the GUI thread)."""
        from ..core.io.modelfile import load_model  # deferred: loads torch

        return load_model(path, expect_kind=self.kind)

    def describe(self) -> str:
        if self.loaded is None:
            return "no model yet: train one or load a model file"
        m = self.loaded.meta
        t = m.training or {}
        cfg = m.config or {}
        parts = [f"{m.kind}"]
        if "depth" in cfg:
            parts.append(f"depth {cfg['depth']}, {cfg.get('head', 'max')} head")
        parts.append(f"{cfg.get('in_channels', '?')} channel(s)")
        parts.append(f"classes: {', '.join(m.class_names[:6])}{'...' if len(m.class_names) > 6 else ''}")
        best = t.get("best_metrics") or {}
        if t.get("best_epoch"):
            acc = best.get("val_accuracy", best.get("train_accuracy"))
            parts.append(f"best epoch {t['best_epoch']}" + (f" (accuracy {acc:.3f})" if acc is not None else ""))
        if self.note:
            parts.append(self.note)
        text = "; ".join(parts)
        if self.path is not None:
            text += f"\n{self.path}"
        return text
