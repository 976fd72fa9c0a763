"""Simulated plates: the WSCNN paper's fields (circles, the rare phenotype, among ellipses:
:mod:`core.datasets.synthetic`) laid out as a screen, with the rare phenotype in a known
handful of wells. Every field is ``render_image(image_rng(sim, positive, index), sim,
positive)``, so a plate written as a folder and as OME-Zarr holds the same pixels.

Forms (:func:`simulate_plate`):

* ``folder``: ``OUT/<well>/<well>_s<field>.png`` (well folders);
* ``flat``: ``OUT/sim_<well>_s<field>.png`` (well and field in the name: the default regex);
* ``zarr``: an OME-Zarr HCS plate written by ``ome-zarr``'s writer (NGFF 0.5 on zarr v3, or
  ``ngff='0.4'`` on zarr v2), two resolution levels per field.

``OUT/simulation.json`` records the configuration and the positive wells (the truth).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..datasets.synthetic import SimConfig, image_rng, render_image
from ..errors import InputError
from ..io.atomic import staged_dir
from ..io.images import write_png
from ..progress import CancelToken, ProgressCallback, report_items
from .layout import parse_well, row_letters, well_name

FORMS = ("folder", "flat", "zarr")
#: small fields a briefly trained WSCNN tells apart (~30 s on 2 CPU cores, 128 images per
#: class, 8 epochs): 3-6 objects, elongated ellipses, half the objects of a positive field circles
SMALL_FIELDS = {"height": 64, "width": 80, "grid": (2, 3), "n_objects": (3, 6), "size": (14, 18),
                "rare_fraction": 0.5, "ellipse_ratio": (0.35, 0.55)}


@dataclass
class PlateSim:
    """A simulated plate: ``rows`` x ``cols`` wells, ``fields`` per well, the rare phenotype
    in ``positive_wells`` (in ``positive_fields`` of their fields; None: all of them)."""

    sim: SimConfig = field(default_factory=SimConfig)
    rows: int = 8
    cols: int = 12
    fields: int = 3
    positive_wells: tuple[str, ...] = ("B03", "C08", "E05", "F11", "G02")
    positive_fields: int | None = None

    def check(self) -> None:
        self.sim.check()
        if not (1 <= self.rows <= 32 and 1 <= self.cols <= 48 and self.fields >= 1):
            raise InputError(f"a plate needs 1-32 rows, 1-48 columns and at least one field per well, got "
                             f"{self.rows}x{self.cols}, {self.fields} field(s)")
        for w in self.positive_wells:
            r, c = parse_well(w)
            if r >= self.rows or c >= self.cols:
                raise InputError(f"positive well {w} lies outside the {self.rows}x{self.cols} plate")
        if self.positive_fields is not None and not 1 <= self.positive_fields <= self.fields:
            raise InputError(f"positive_fields must be 1..{self.fields}, got {self.positive_fields}")

    @property
    def wells(self) -> list[str]:
        return [well_name(r, c) for r in range(self.rows) for c in range(self.cols)]

    def is_positive(self, well: str, field_index: int) -> bool:
        pos = {well_name(*parse_well(w)) for w in self.positive_wells}
        return well in pos and field_index < (self.positive_fields or self.fields)


def render_plate_field(cfg: PlateSim, well: str, field_index: int) -> np.ndarray:
    """The uint8 (H, W) image of one field (the same for every form)."""
    r, c = parse_well(well)
    index = (r * cfg.cols + c) * cfg.fields + field_index
    positive = cfg.is_positive(well, field_index)
    return render_image(image_rng(cfg.sim, positive, index), cfg.sim, positive)[0]


def simulate_plate(out: str | Path, cfg: PlateSim | None = None, form: str = "folder", *, ngff: str = "0.5",
                   overwrite: bool = False, callback: ProgressCallback = None,
                   cancel: CancelToken | None = None) -> Path:
    """Write a simulated plate to ``out`` (a new folder, written whole or not at all)."""
    cfg = cfg or PlateSim()
    cfg.check()
    if form not in FORMS:
        raise InputError(f"unknown plate form {form!r}; choose one of {', '.join(FORMS)}")
    wells = cfg.wells
    total = len(wells) * cfg.fields
    with staged_dir(out, overwrite=overwrite) as stage:
        if form == "zarr":
            _write_zarr(stage, Path(out).name, cfg, ngff, callback, cancel)
        else:
            for k, (well, f) in enumerate((w, f) for w in wells for f in range(cfg.fields)):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                img = render_plate_field(cfg, well, f)
                name = f"{well}_s{f + 1}.png"
                path = stage / well / name if form == "folder" else stage / f"sim_{name}"
                path.parent.mkdir(exist_ok=True)
                write_png(path, img)
                report_items(callback, k + 1, total)
        truth = {"form": form, "positive_wells": sorted(well_name(*parse_well(w)) for w in cfg.positive_wells),
                 "positive_fields": cfg.positive_fields or cfg.fields, "rows": cfg.rows, "cols": cfg.cols,
                 "fields": cfg.fields, "sim": asdict(cfg.sim)}
        (stage / "simulation.json").write_text(json.dumps(truth, indent=2))
    return Path(out)


def _write_zarr(stage: Path, name: str, cfg: PlateSim, ngff: str, callback, cancel) -> None:
    import zarr  # deferred: loads zarr
    from ome_zarr.format import FormatV04, FormatV05  # deferred: loads ome-zarr
    from ome_zarr.writer import (  # deferred: loads ome-zarr
        write_image,
        write_plate_metadata,
        write_well_metadata,
    )

    if ngff not in ("0.4", "0.5"):
        raise InputError(f"NGFF version must be 0.4 or 0.5, got {ngff!r}")
    fmt = FormatV04() if ngff == "0.4" else FormatV05()
    root = zarr.open_group(str(stage), mode="w", zarr_format=2 if ngff == "0.4" else 3)
    rows = [row_letters(r) for r in range(cfg.rows)]
    cols = [str(c + 1) for c in range(cfg.cols)]
    paths = [f"{r}/{c}" for r in rows for c in cols]
    write_plate_metadata(root, rows, cols, paths, fmt=fmt, field_count=cfg.fields, name=name)
    total, k = len(paths) * cfg.fields, 0
    for well, path in zip(cfg.wells, paths):
        r, c = path.split("/")
        wg = root.require_group(r).require_group(c)
        write_well_metadata(wg, [str(f) for f in range(cfg.fields)], fmt=fmt)
        for f in range(cfg.fields):
            if cancel is not None:
                cancel.raise_if_cancelled()
            img = render_plate_field(cfg, well, f)[None]  # (C=1, H, W)
            write_image(img, wg.require_group(str(f)), scale_factors=[2], axes="cyx", fmt=fmt)
            k += 1
            report_items(callback, k, total)
