"""'Export all': every result layer of the plugin, written into one folder.

==============  =============================  ==================================
layer role      image file                     table
==============  =============================  ==================================
saliency        ``<image>_saliency.tif`` float32
objects         ``<image>_mask.tif`` uint16      ``<image>_objects.csv``
peaks                                          ``<image>_peaks.csv``
cells           ``<image>_cells.tif`` uint16     ``<image>_cells.csv``
==============  =============================  ==================================

plus any extra tables a dock passes (``predictions.csv``, ``posterior.csv``...).
Existing files are only replaced after the user confirms. napari then opens the folder with
the plugin's reader (File > Open: :func:`.._reader.claim_folder`).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import _reader
from .._layers import role_of, safe_name
from ..core.io.images import write_tiff

_SUFFIX = {"saliency": ("_saliency.tif", None), "objects": ("_mask.tif", "_objects.csv"),
           "peaks": (None, "_peaks.csv"), "cells": ("_cells.tif", "_cells.csv")}


def write_table_csv(path: Path, table) -> Path:
    """``{column: values}`` or a DataFrame -> CSV."""
    if hasattr(table, "to_csv"):
        table.to_csv(path, index=False)
        return path
    cols = list(table)
    n = len(table[cols[0]]) if cols else 0
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for i in range(n):
            w.writerow([_plain(table[c][i]) for c in cols])
    return path


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    return v


def plan_export(layers, folder: Path, tables: dict[str, object] | None = None) -> list[tuple[Path, Callable]]:
    """[(path, write function)] for every result layer in ``layers`` and every extra table."""

    folder = Path(folder)
    plan: list[tuple[Path, Callable]] = []
    for layer in layers:
        role = role_of(layer)
        if role not in _SUFFIX:
            continue
        source = layer.metadata["rarepheno"].get("source", layer.name)
        stem = safe_name(source)
        img_suffix, csv_suffix = _SUFFIX[role]
        if img_suffix:
            data = np.asarray(layer.data)
            arr = data.astype(np.float32) if role == "saliency" else data.astype(np.uint16)
            plan.append((folder / f"{stem}{img_suffix}",
                         lambda p, a=arr: write_tiff(p, a, axes="YX", overwrite=True)))
        if csv_suffix:
            feats = layer.features
            if role == "peaks":
                feats = feats.copy()
                pts = np.asarray(layer.data).reshape(-1, 2)
                feats.insert(0, "y", pts[:, 0])
                feats.insert(1, "x", pts[:, 1])
            plan.append((folder / f"{stem}{csv_suffix}", lambda p, f=feats: write_table_csv(p, f)))
    for name, table in (tables or {}).items():
        if table is not None and len(table):
            plan.append((folder / name, lambda p, t=table: write_table_csv(p, t)))
    return plan


def export_all(parent, layers, folder: Path, tables: dict[str, object] | None = None,
               confirm: bool = True) -> list[Path]:
    """Write everything; asks once before replacing existing files. Returns the paths written
    ([] when there was nothing to write or the user declined)."""
    from . import _paths  # deferred: loads magicgui

    plan = plan_export(layers, folder, tables)
    if not plan:
        return []
    paths = [p for p, _ in plan]
    if confirm and not _paths.confirm_overwrite(parent, paths):
        return []
    Path(folder).mkdir(parents=True, exist_ok=True)
    for p, write in plan:
        write(p)
    _reader.claim_folder(folder)  # File > Open on this folder: the plugin's reader, not a grey stack
    return paths


def export_dialog(parent, viewer, tables: dict[str, object] | None = None,
                  roles: Sequence[str] | None = None) -> list[Path]:
    """Ask for a folder and export every result layer (of ``roles``) there."""
    from napari.utils.notifications import show_info, show_warning

    from . import _paths  # deferred: loads magicgui

    layers = [lay for lay in viewer.layers if role_of(lay) and (roles is None or role_of(lay) in roles)]
    if not layers and not any(t is not None and len(t) for t in (tables or {}).values()):
        show_warning("nothing to export yet: run inference or classification first")
        return []
    folder = _paths.ask_folder(parent, "Export all results into folder")
    if folder is None:
        return []
    written = export_all(parent, layers, folder, tables)
    if written:
        show_info(f"exported {len(written)} file(s) to {folder}")
    return written
