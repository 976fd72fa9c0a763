"""File and folder pickers with a visible hint, and the dialogs the docks use.

The dialog functions are module-level so tests (and scripts) can replace them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from magicgui.widgets import Container, Label, LineEdit, PushButton
from qtpy.QtWidgets import QSizePolicy

#: the file filter of every "open a model" dialog: model files first, any file on request
#: (a model copied or downloaded under another name is still a model)
MODEL_FILES = "Model files (*.safetensors);;All files (*)"


class PathPicker(Container):
    """A path field with a Browse button and a one-line hint under it (what was found,
    or what is wrong). ``mode``: 'd' folder, 'r' existing file, 'w' file to write."""

    def __init__(self, label: str, mode: str = "d", filter: str | None = None,
                 check: Callable[[Path], str] | None = None, tooltip: str = "", placeholder: str = ""):
        self.line = LineEdit(value="", tooltip=tooltip)
        self.line.native.setPlaceholderText(placeholder or {"d": "choose a folder", "r": "choose a file",
                                                            "w": "(automatic)"}.get(mode, ""))
        self.browse = PushButton(text="Browse...")
        self.browse.native.setMaximumWidth(80)
        row = Container(widgets=[self.line, self.browse], layout="horizontal", labels=False)
        row.margins = (0, 0, 0, 0)
        self.hint = Label(value="")
        self.hint.native.setWordWrap(True)
        self.hint.native.setStyleSheet("color: #a0a8b8; font-size: 11px")
        # the picker's whole width, as many lines as the text needs (magicgui's labels are Fixed:
        # a wrapped hint set before the dock is shown kept a narrow width and one line's height)
        self.hint.native.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self.hint.visible = False
        super().__init__(widgets=[row, self.hint], labels=False, layout="vertical", label=label)
        self.margins = (0, 0, 0, 0)
        self.mode, self.filter, self._check = mode, filter or "", check
        self.browse.changed.connect(self._browse)
        self.line.changed.connect(self._update_hint)

    @property
    def path(self) -> Path | None:
        s = str(self.line.value or "").strip()
        return Path(s).expanduser() if s else None

    @path.setter
    def path(self, value) -> None:
        self.line.value = "" if value is None else str(value)

    def _browse(self, *_):
        title = self.label or "path"
        if self.mode == "d":
            p = ask_folder(self.native, f"Choose {title}")
        elif self.mode == "w":
            p = ask_save_file(self.native, f"Choose {title}", self.filter)
        else:
            p = ask_open_file(self.native, f"Choose {title}", self.filter)
        if p is not None:
            self.path = p

    def _update_hint(self, *_):
        p = self.path
        text = ""
        if p is not None and self._check is not None:
            try:
                text = self._check(p)
            except Exception as e:  # a hint must never raise
                text = f"cannot read: {e}"
        self.set_hint(text)

    def set_hint(self, text: str) -> None:
        self.hint.value = text
        self.hint.visible = bool(text)


# ------------------------------------------------------------------ dialogs
def ask_open_file(parent, title: str, filter: str = "") -> Path | None:
    from qtpy.QtWidgets import QFileDialog

    path, _ = QFileDialog.getOpenFileName(parent, title, "", filter)
    return Path(path) if path else None


def ask_save_file(parent, title: str, filter: str = "", default: str = "") -> Path | None:
    """Save dialog; Qt asks before replacing an existing file."""
    from qtpy.QtWidgets import QFileDialog

    path, _ = QFileDialog.getSaveFileName(parent, title, default, filter)
    return Path(path) if path else None


def ask_folder(parent, title: str) -> Path | None:
    from qtpy.QtWidgets import QFileDialog

    path = QFileDialog.getExistingDirectory(parent, title)
    return Path(path) if path else None


def confirm(parent, title: str, text: str) -> bool:
    from qtpy.QtWidgets import QMessageBox

    answer = QMessageBox.question(parent, title, text, QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
    return answer == QMessageBox.Yes


def confirm_overwrite(parent, paths: Sequence[Path]) -> bool:
    """Ask once before replacing existing files (never overwrite without asking)."""
    existing = [p for p in paths if Path(p).exists()]
    if not existing:
        return True
    shown = "\n".join(str(p) for p in existing[:8]) + ("\n..." if len(existing) > 8 else "")
    return confirm(parent, "Replace files?", f"{len(existing)} file(s) exist already:\n{shown}\n\nReplace them?")
