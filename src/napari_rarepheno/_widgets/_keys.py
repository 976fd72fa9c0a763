"""Keys of a dock tab that work wherever the focus is, and give napari its own back.

A tab's keys (the Discover Review tab's y / n, the Similar tab's y / n / 1..9 / s / u) must
answer whatever is selected: napari serves a layer's keymap before the viewer's, and an
active Image layer binds ``y`` itself. So a :class:`TabKeys` binds each key three ways while
its tab is shown: a window shortcut of the tab (Qt serves it before the canvas; text fields
still type), a viewer key (for a dock floated out of the window) and a key on every layer,
including layers added meanwhile. :meth:`TabKeys.unbind` puts back what was bound before.
"""
from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence

try:  # Qt 6 (qtpy also offers it in QtWidgets for Qt 5 code)
    from qtpy.QtGui import QShortcut
except ImportError:  # pragma: no cover - Qt 5
    from qtpy.QtWidgets import QShortcut


class TabKeys:
    """``actions``: key -> function of no argument, bound while :meth:`bind` is in force."""

    def __init__(self, tab, viewer, actions: dict[str, Callable[[], object]]):
        self.viewer = viewer
        self.actions = dict(actions)
        self.shortcuts = {}
        for k, action in self.actions.items():
            sc = QShortcut(QKeySequence(k.upper()), tab)
            sc.setContext(Qt.ShortcutContext.WindowShortcut)  # only while the tab is shown
            sc.setEnabled(False)
            sc.activated.connect(lambda a=action: a())
            self.shortcuts[k] = sc
        self._viewer_keys: dict | None = None
        self._layer_keys: list = []

    @property
    def bound(self) -> bool:
        return self._viewer_keys is not None

    def bind(self) -> None:
        if self.bound:
            return
        for sc in self.shortcuts.values():
            sc.setEnabled(True)
        self._viewer_keys = {k: self.viewer.bind_key(k, (lambda v, a=a: a()), overwrite=True)
                             for k, a in self.actions.items()}
        self._layer_keys = []
        for layer in list(self.viewer.layers):
            self._bind_layer(layer)
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)

    def _bind_layer(self, layer) -> None:
        previous = {k: layer.bind_key(k, (lambda lay, a=a: a()), overwrite=True) for k, a in self.actions.items()}
        self._layer_keys.append((layer, previous))

    def _on_layer_inserted(self, event) -> None:
        self._bind_layer(event.value)

    def unbind(self) -> None:
        for sc in self.shortcuts.values():
            sc.setEnabled(False)
        if not self.bound:
            return
        try:
            self.viewer.layers.events.inserted.disconnect(self._on_layer_inserted)
        except (TypeError, ValueError, RuntimeError):
            pass
        for layer, previous in self._layer_keys:
            for k, func in previous.items():
                layer.bind_key(k, func, overwrite=True)
        self._layer_keys = []
        for k, previous in self._viewer_keys.items():
            self.viewer.bind_key(k, previous, overwrite=True)
        self._viewer_keys = None
