"""Dropdowns listing the viewer's layers of one type, kept up to date."""
from __future__ import annotations

from magicgui.widgets import ComboBox

from .._layers import layer_type, role_of


class LayerChoice(ComboBox):
    """Names of the viewer's layers of ``layer_type`` ('image' | 'labels'); optional extra
    first entries (e.g. '(built-in segmentation)'); refreshed on layer changes."""

    def __init__(self, viewer, layer_type: str, label: str, extra: tuple[str, ...] = (),
                 results: bool = False, **kw):
        self._lc_viewer, self._lc_type, self._lc_extra, self._lc_results = viewer, layer_type, extra, results
        super().__init__(label=label, choices=self._names, **kw)
        ev = viewer.layers.events
        for e in (ev.inserted, ev.removed, ev.reordered):
            e.connect(self._refresh)
        self._lc_connected = True

    def _names(self, *_):
        names = [lay.name for lay in self._lc_viewer.layers if layer_type(lay) == self._lc_type
                 and (self._lc_results or role_of(lay) is None)]
        return list(self._lc_extra) + names

    def _refresh(self, *_):
        if self.native is None:
            return
        try:
            self.reset_choices()
        except RuntimeError:  # widget deleted
            self.disconnect_viewer()

    def disconnect_viewer(self):
        if self._lc_connected:
            ev = self._lc_viewer.layers.events
            for e in (ev.inserted, ev.removed, ev.reordered):
                e.disconnect(self._refresh)
            self._lc_connected = False

    @property
    def layer(self):
        v = self.value
        return self._lc_viewer.layers[v] if v in self._lc_viewer.layers else None
