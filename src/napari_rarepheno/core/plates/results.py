"""A plate's results folder read back: ``wells.csv``, ``fields.csv`` and ``plate.json``.

:func:`~.wells.score_plate` writes ``plate.json`` beside the tables: which plate was scored
and how it was read (path, form, regex, channel files, resolution level, plane, the plate
format), with which model, target and well score, and whether every field was scored. With
it a results folder is enough to show a run again -- the heatmap from ``wells.csv``, a
well's fields read from the plate -- without scoring anything (:func:`read_results`, then
:meth:`PlateResults.read_plate`). Results written before ``plate.json`` existed still open:
their plate format is the smallest standard one that holds their wells, and the caller
names the plate.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io.atomic import atomic_open
from .layout import plate_shape, well_sort_key
from .reading import Plate, read_plate

INFO = "plate.json"
_FLOATS = ("score", "mean_score")
_INTS = ("n_cells", "n_fields", "n_positive_fields", "rank", "height", "width", "peak_y", "peak_x")


def numbers_of(row: dict) -> dict:
    """A table row as written (text) with its numeric columns as numbers."""
    r = dict(row)
    for k, v in r.items():
        if v in (None, ""):
            continue
        if k in _FLOATS or k.startswith("p_"):
            r[k] = float(v)
        elif k in _INTS:
            r[k] = int(v)
    return r


def plate_info(plate: Plate, *, model, kind: str, class_names, target: str | None, well_score: str,
               threshold: float, complete: bool) -> dict:
    """What ``plate.json`` holds (see the module docstring)."""
    return {"plate": str(plate.path), "form": plate.kind, "name": plate.name, "shape": [int(s) for s in plate.shape],
            "regex": plate.regex, "channel_files": list(plate.channel_files) if plate.channel_files else None,
            "level": int(plate.level), "z": int(plate.z), "n_wells": len(plate.wells), "n_fields": len(plate.fields),
            "model": str(model) if model else None, "model_kind": kind, "class_names": list(class_names),
            "target": target, "well_score": well_score, "threshold": float(threshold), "complete": bool(complete)}


def write_info(out: str | Path, info: dict) -> Path:
    path = Path(out) / INFO
    with atomic_open(path, "w", "the plate's description") as fh:
        json.dump(info, fh, indent=2)
        fh.write("\n")
    return path


@dataclass
class PlateResults:
    """A results folder as read: wells highest score first, fields in plate order (numbers as
    numbers), the plate format and the model kind, and ``plate.json`` (empty when absent)."""

    out: Path
    wells: list[dict]
    fields: list[dict]
    shape: tuple[int, int]
    kind: str                                  # 'wscnn' | 'deepyeast'
    info: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.out.name)

    @property
    def complete(self) -> bool:
        return bool(self.info.get("complete", True))

    def read_plate(self, path: str | Path | None = None) -> Plate:
        """The scored plate (metadata only), read as the run read it; ``path``: where it is
        now (default: where it was)."""
        where = path or self.info.get("plate")
        if not where:
            raise InputError(f"these results do not say which plate they are of (no {INFO}): choose the plate",
                             self.out)
        i = self.info
        return read_plate(where, regex=i.get("regex"), channel_files=i.get("channel_files"),
                          level=int(i.get("level") or 0), z=int(i.get("z") or 0))


def _rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [numbers_of(r) for r in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read {path.name} ({type(e).__name__}: {e})", path) from None
    except ValueError as e:  # a number column with text in it
        raise InputError(f"{path.name} is not a plate table ({e})", path) from None


def read_results(out: str | Path) -> PlateResults:
    """``out/wells.csv`` (needed), ``out/fields.csv`` and ``out/plate.json`` (when there)."""
    out = Path(out)
    if not out.is_dir():
        raise InputError("results folder not found", out)
    if not (out / "wells.csv").is_file():
        what = (" (a stopped run left fields.partial.csv: run again with the same results folder to resume)"
                if (out / "fields.partial.csv").exists() else "")
        raise InputError(f"no wells.csv here: not the results of a plate run{what}", out)
    wells = _rows(out / "wells.csv")
    if wells and not {"well", "score"} <= set(wells[0]):
        raise InputError(f"wells.csv has the columns {list(wells[0])}; a plate run writes well, score, rank, ...",
                         out / "wells.csv")
    if wells and all("rank" in w for w in wells):
        wells.sort(key=lambda w: w["rank"])
    fields = _rows(out / "fields.csv") if (out / "fields.csv").is_file() else []
    info: dict = {}
    if (out / INFO).is_file():
        try:
            info = json.loads((out / INFO).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(f"cannot read {INFO} ({e})", out / INFO) from None
    kind = info.get("model_kind") or ("deepyeast" if wells and "compartments" in wells[0] else "wscnn")
    need = plate_shape(w["well"] for w in wells) if wells else (1, 1)
    shape = tuple(int(s) for s in info["shape"]) if info.get("shape") else need
    shape = (max(shape[0], need[0]), max(shape[1], need[1]))
    fields.sort(key=lambda f: well_sort_key(f["well"]))  # stable: each well's fields keep their order
    return PlateResults(out, wells, fields, shape, kind, info)
