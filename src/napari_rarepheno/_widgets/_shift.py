"""The warning a panel shows when its images are unlike the model's training images.

The engine compares every image (WSCNN: :func:`~..core.wscnn.shift.image_shift`) or every
field's cells (DeepYeast: ``FieldResult.shift``) with what the model was trained on and says
what differs in plain words ("these images are 2.0x brighter than the training images
(H2B)"). :class:`ShiftNote` shows those messages in orange in the panel and as napari
warning notifications; :meth:`ShiftNote.clear` empties it when the next run starts.
"""
from __future__ import annotations

import html
from typing import Sequence

from magicgui.widgets import Label
from qtpy.QtCore import Qt

COLOR = "#ff9f1c"


class ShiftNote(Label):
    """An orange label, hidden while empty; :attr:`messages` holds what it shows."""

    def __init__(self):
        super().__init__(value="")
        self.native.setWordWrap(True)
        self.native.setStyleSheet(f"color: {COLOR}")
        self.native.setTextFormat(Qt.RichText)
        self.messages: list[str] = []
        self.visible = False

    def clear(self) -> None:
        self.messages = []
        self.value = ""
        self.visible = False

    def show_messages(self, messages: Sequence[str], notify: bool = True,
                      title: str = "Unlike the training images") -> None:
        """Show ``messages`` (nothing when empty); ``notify``: also as napari warnings."""
        self.messages = [str(m) for m in messages if m]
        if not self.messages:
            self.clear()
            return
        items = "".join(f"<li>{html.escape(m)}</li>" for m in self.messages)
        self.value = f"<b>&#9888; {html.escape(title)}</b><ul style='margin: 0'>{items}</ul>"
        self.visible = True
        if notify:
            from napari.utils.notifications import show_warning

            for m in self.messages:
                show_warning(m)
