"""Which viewer layer feeds each input channel of a model.

A model takes N channels in a fixed order, named in its file (``meta.input_names()``:
"H2B", "tubulin", or "channel 0"...). Users bring them as one layer per channel (one TIFF
per channel, or napari's ``channel_axis`` split), as one multi-channel (C, H, W) layer, or
as an RGB image. :class:`ChannelMap` shows one dropdown per model channel listing every
plane on offer ("layer" for a one-channel layer, "layer [c]" for channel c of a
multi-channel or RGB layer) and builds the (N, H, W) array the engine takes
(:meth:`ChannelMap.build`, in the GUI thread: it only reads layer data). Its rows go into
the panel's form (:meth:`ChannelMap.attach`), labelled with the channels' names ("H2B
channel"), so they line up with the panel's other controls.

Defaults, per model channel: the one layer the model's stored channel-file pattern names
(a model trained on ``_Crfp,_Cgfp`` files finds ``..._Crfp_...``), else the one layer whose
name contains the channel's name ("tubulin" -> "tubulin_..._Cgfp"); when nothing matched, the
selected multi-channel layer's channels (the model's channel selection when the layer has
more); otherwise the image layers in order. A choice the user made is kept while its layer
exists (renames included). The rows refresh when layers are added, removed, renamed or
reordered, when the selection changes and when the model changes (:meth:`set_model`); they
are shown only when there is something to choose (a model of several channels, or a
multi-channel layer to pick a channel from).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container
from qtpy.QtWidgets import QComboBox

from .. import _layers
from ..core.errors import InputError
from ..core.io.folders import token_pattern
from ..core.io.images import to_float

_GENERIC = re.compile(r"^channel \d+$")


@dataclass
class Plane:
    """One dropdown entry: channel ``channel`` of ``layer`` (which has ``n`` channels)."""

    text: str
    layer: Any
    channel: int
    n: int


@dataclass
class Mapped:
    """The model's input built from the mapping: ``chw`` (N, H, W) in the model's channel
    order (the layers' dtype, or float in [0, 1] when they differ), the layers it came from
    (distinct, in channel order), the first layer's geometry and a name for the results:
    the one layer's name, or for per-channel layers the first one's name without the
    model's channel-file token (``combined``; ``x_Crfp_s1`` -> ``x_s1``, as folder runs
    name such images), else the first layer's name."""

    chw: np.ndarray
    layers: list
    geometry: dict
    name: str
    combined: bool = False

    @property
    def last_name(self) -> str:
        return self.layers[-1].name


def stored_patterns(meta) -> list[str]:
    """The channel-file patterns a model was trained with, one per model channel ([] if none)."""
    if meta is None:
        return []
    pats = list((meta.training or {}).get("input", {}).get("channel_files") or [])
    n = len(meta.input_names())
    sel = list(meta.channels or [])
    if len(pats) > n and len(sel) == n and all(0 <= c < len(pats) for c in sel):
        pats = [pats[c] for c in sel]
    return pats if len(pats) == n else []


def strip_token(name: str, pattern: str | None) -> str:
    """``name`` without the channel-file token (``x_Crfp_s1`` -> ``x_s1``), as the folder mode
    names per-channel images; ``name`` unchanged when the pattern is not in it."""
    if not pattern:
        return name
    try:
        m = token_pattern(pattern).search(name)
    except InputError:
        return name
    if not m:
        return name
    return (name[:m.start()] + name[m.end():]).strip("_-. ") or name


def row_label(name: str) -> str:
    """A row's label: "H2B channel"; "channel 0" as it is."""
    return name if _GENERIC.match(name) else f"{name} channel"


class ChannelMap:
    """One dropdown per model channel (:attr:`rows`, labelled with the channel's name), kept
    in a panel's form after :meth:`attach`; see the module doc."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.form: Container | None = None
        self._anchor = None
        self.names: list[str] = []
        self.selection: list[int] | None = None
        self.patterns: list[str] = []
        self.rows: list[ComboBox] = []
        self.active = True          # the panel's switch (e.g. off in folder mode)
        self.shown = False          # what the rows' visibility was last set to
        self._planes: dict[str, Plane] = {}
        self._chosen: dict[int, tuple[Any, int]] = {}
        self._updating = False
        self._followed: list = []
        self._connected = False
        self.connect_viewer()

    # ------------------------------------------------------------ wiring
    def connect_viewer(self) -> None:
        if self._connected:
            return
        ev = self.viewer.layers.events
        ev.inserted.connect(self._on_inserted)
        ev.removed.connect(self._on_removed)
        ev.reordered.connect(self.refresh)
        self.viewer.layers.selection.events.changed.connect(self.refresh)
        for layer in self.viewer.layers:
            self._follow(layer)
        self._connected = True

    def disconnect_viewer(self) -> None:
        if not self._connected:
            return
        ev = self.viewer.layers.events
        ev.inserted.disconnect(self._on_inserted)
        ev.removed.disconnect(self._on_removed)
        ev.reordered.disconnect(self.refresh)
        self.viewer.layers.selection.events.changed.disconnect(self.refresh)
        for layer in self._followed:
            layer.events.name.disconnect(self.refresh)
        self._followed = []
        self._connected = False

    def _follow(self, layer) -> None:
        if _layers.layer_type(layer) == "image" and layer not in self._followed:
            layer.events.name.connect(self.refresh)
            self._followed.append(layer)

    def _on_inserted(self, event) -> None:
        self._follow(event.value)
        self.refresh()

    def _on_removed(self, event) -> None:
        layer = event.value
        if layer in self._followed:
            layer.events.name.disconnect(self.refresh)
            self._followed.remove(layer)
        self.refresh()

    def attach(self, form: Container, after=None) -> None:
        """Show the rows in ``form``, right after its widget ``after`` (None: first)."""
        self.form, self._anchor = form, after
        self._place()

    def _place(self) -> None:
        if self.form is None:
            return
        at = 0 if self._anchor is None else list(self.form).index(self._anchor) + 1
        for k, row in enumerate(self.rows):
            self.form.insert(at + k, row)
        self.update_visible()

    # ------------------------------------------------------------- model
    def set_model(self, meta) -> None:
        """One row per input channel of ``meta`` (a ModelMeta; None: no model, no rows)."""
        names = list(meta.input_names()) if meta is not None else []
        self.selection = list(meta.channels) if meta is not None and meta.channels else None
        self.patterns = stored_patterns(meta)
        self._chosen.clear()
        if names != self.names:
            self._updating = True
            try:
                if self.form is not None:
                    for row in self.rows:
                        self.form.remove(row)
                self.rows = []
                for i, name in enumerate(names):
                    row = ComboBox(label=row_label(name), choices=[])
                    # long layer names (a microscope's file names) must not widen the dock
                    row.native.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
                    row.native.setMinimumContentsLength(12)
                    row.changed.connect(self._row_handler(i))
                    self.rows.append(row)
                self._place()
            finally:
                self._updating = False
            self.names = names
        self.refresh()

    def _row_handler(self, i: int):
        def changed(value):
            if self._updating:
                return
            p = self._planes.get(value)
            if p is not None:
                self._chosen[i] = (p.layer, p.channel)
        return changed

    # ----------------------------------------------------------- choices
    def planes(self) -> list[Plane]:
        """Every plane on offer, in layer-list order."""
        out, seen = [], set()
        for layer in self.viewer.layers:
            if _layers.layer_type(layer) != "image" or _layers.role_of(layer) is not None:
                continue
            try:
                n = _layers.channel_count(layer)
            except Exception:  # noqa: BLE001 - an odd layer is left out, never breaks the dock
                continue
            for c in range(n):
                text = layer.name if n == 1 else f"{layer.name} [{c}]"
                if text not in seen:
                    seen.add(text)
                    out.append(Plane(text, layer, c, n))
        return out

    @property
    def needed(self) -> bool:
        """There is something to choose: several model channels, or a multi-channel layer."""
        return bool(self.names) and (len(self.names) > 1 or any(p.n > 1 for p in self._planes.values()))

    def refresh(self, *_) -> None:
        try:
            planes = self.planes()
            self._planes = {p.text: p for p in planes}
            texts = list(self._planes)
            defaults = self.defaults(planes)
            self._updating = True
            try:
                for i, row in enumerate(self.rows):
                    want = self._chosen_text(i) or defaults[i]
                    row.choices = texts
                    if want is not None and want in texts:
                        row.value = want
                    row.native.setToolTip(f"{row.value or 'no image layer'}: the layer (or a layer's channel) "
                                          f"the model reads as its channel {self.names[i]}")
            finally:
                self._updating = False
            self.update_visible()
        except RuntimeError:  # the widget was deleted (dock closed)
            self.disconnect_viewer()

    def update_visible(self) -> None:
        self.shown = bool(self.active and self.needed)
        if self.form is not None:  # (a row outside a form would open as a window of its own)
            for row in self.rows:
                row.visible = self.shown

    def _chosen_text(self, i: int) -> str | None:
        if i not in self._chosen:
            return None
        layer, c = self._chosen[i]
        for p in self._planes.values():
            if p.layer is layer and p.channel == c:
                return p.text
        del self._chosen[i]  # its layer is gone
        return None

    def defaults(self, planes: list[Plane]) -> list[str | None]:
        """The default entry per model channel (see the module doc)."""
        n = len(self.names)
        out: list[str | None] = [None] * n
        used: set[str] = set()
        single = [p for p in planes if p.n == 1]

        def take(i: int, p: Plane) -> None:
            out[i] = p.text
            used.add(p.text)

        for i, pat in enumerate(self.patterns[:n]):
            try:
                rx = token_pattern(pat)
            except InputError:
                continue
            hits = [p for p in single if rx.search(p.layer.name)]
            if len(hits) == 1 and hits[0].text not in used:
                take(i, hits[0])
        changed = True
        while changed:  # a name that names one layer; each layer once
            changed = False
            for i, name in enumerate(self.names):
                if out[i] is not None or _GENERIC.match(name):
                    continue
                hits = [p for p in single if name.lower() in p.layer.name.lower() and p.text not in used]
                if len(hits) == 1:
                    take(i, hits[0])
                    changed = True
        if all(o is None for o in out):
            multi = self._multi_layer(planes, single)
            if multi is not None:
                k = multi.n
                sel = self.selection
                pick = sel if sel and len(sel) == n and all(0 <= c < k for c in sel) else \
                    (list(range(n)) if k >= n else None)
                texts = {p.channel: p.text for p in planes if p.layer is multi.layer}
                if pick is not None and all(c in texts for c in pick):
                    return [texts[c] for c in pick]
        rest = [p for p in planes if p.text not in used]
        for i in range(n):
            if out[i] is None and rest:
                take(i, rest.pop(0))
        return out

    def _multi_layer(self, planes: list[Plane], single: list[Plane]) -> Plane | None:
        """A multi-channel plane standing for its layer: the active layer's, else a selected
        one's, else the only multi-channel layer when there is no one-channel layer."""
        multi = [p for p in planes if p.n > 1 and p.channel == 0]
        if not multi:
            return None
        sel = self.viewer.layers.selection
        for p in multi:
            if p.layer is sel.active:
                return p
        for p in multi:
            if p.layer in sel:
                return p
        return multi[0] if not single and len(multi) == 1 else None

    # ------------------------------------------------------------- values
    def mapping(self) -> list[Plane]:
        """The plane chosen for each model channel (raises a clear InputError if one is missing)."""
        if not self.names:
            raise InputError("no model: train one in the Train tab or load a model file")
        out = []
        for name, row in zip(self.names, self.rows):
            p = self._planes.get(row.value)
            if p is None or p.layer not in self.viewer.layers:
                raise InputError(f"choose the image layer for the model's channel '{name}'"
                                 + ("" if self._planes else ": open the images first (one layer per channel, or "
                                    "one multi-channel layer)"))
            out.append(p)
        seen: dict[str, str] = {}
        for name, p in zip(self.names, out):
            if p.text in seen:
                raise InputError(f"the model's channels '{seen[p.text]}' and '{name}' both read '{p.text}': map each "
                                 "channel to its own layer (open the missing channel's image as a layer)")
            seen[p.text] = name
        return out

    def build(self, step=None) -> Mapped:
        """The (N, H, W) input from the chosen planes (all of one size)."""
        planes = self.mapping()
        cache: dict[int, np.ndarray] = {}
        arrays = []
        for p in planes:
            if id(p.layer) not in cache:
                cache[id(p.layer)] = _layers.image_to_chw(p.layer, step)
            chw = cache[id(p.layer)]
            if p.channel >= chw.shape[0]:
                raise InputError(f"layer '{p.layer.name}' has {chw.shape[0]} channel(s) now; choose its channels "
                                 "again")
            arrays.append(chw[p.channel])
        if len({a.shape for a in arrays}) > 1:
            sizes = ", ".join(f"{name} ('{p.text}') is {a.shape[0]}x{a.shape[1]}"
                              for name, p, a in zip(self.names, planes, arrays))
            raise InputError(f"the mapped channels differ in size: {sizes} px; map layers of one size")
        if len({a.dtype for a in arrays}) > 1:  # e.g. 8-bit and 16-bit files: each scaled to [0, 1]
            arrays = [to_float(a) for a in arrays]
        layers = []
        for p in planes:
            if not any(p.layer is lay for lay in layers):
                layers.append(p.layer)
        first = layers[0]
        name = first.name if len(layers) == 1 else \
            strip_token(first.name, self.patterns[0] if self.patterns else None)
        return Mapped(np.stack(arrays), layers, _layers.geometry_of(first), name, name != first.name)

    def plane_of(self, index: int) -> Plane:
        """The plane chosen for model channel ``index``."""
        return self.mapping()[index]
