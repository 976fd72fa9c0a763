"""A plate scored field by field, then well by well: ``fields.csv``, ``wells.csv``, ``plate.png``.

Per field (:func:`score_field`):

* **WSCNN**: :func:`core.inference.predict.predict_wscnn` with forward-only localisation
  (``saliency_mode='cam'``) in ``precision='auto'`` (bf16 where the CPU computes it in
  hardware): the class probabilities and where the positive evidence peaks (``peak_y``,
  ``peak_x``: go there in napari to see the rare cell). Fields above 2048x2048 px are
  predicted in exact tiles, read window by window (:func:`core.inference.lazy.predict_wscnn_lazy`).
* **DeepYeast**: :func:`core.deepyeast.fields.classify_field` (segment the cells, classify
  each): one row per cell (``cells.csv``) and the field's posterior.

Per well (:func:`well_rows`):

* **WSCNN**: the well's score is by default the **maximum** of its fields' P(target) (the
  target is the positive class unless ``target`` names another). Why the maximum: the WSCNN
  scores a field by its most positive location (a global max over the class map), because a
  rare phenotype is a few cells among many; a well is a handful of fields of one
  perturbation, and a phenotype of low penetrance may show in one field only -- the mean
  would dilute it by the number of fields. The price is that the maximum of more fields
  drifts upwards on negative wells (more chances for a false positive), which matters only
  when wells differ in field counts: ``n_fields`` and ``n_positive_fields`` (fields with
  P >= ``threshold``) sit beside the score, ``mean_score`` too, and ``well_score='mean'`` or a
  quantile (``'q75'``: the phenotype must show in at least a quarter of the fields) are there
  for wells with many fields. Ties go to the well with more positive fields.
* **DeepYeast**: the paper's per-protein aggregation with the well as the protein:
  :func:`core.deepyeast.aggregate.aggregate` over every cell of every field of the well (soft
  counts, Dirichlet(1) prior) and :func:`~core.deepyeast.aggregate.posterior_table`: ``class``
  (the MAP class), ``p_<class>`` (posterior mean), ``compartments``. The score is the
  posterior mean of ``target`` when one is given (e.g. the rare compartment looked for),
  else of the well's own class (how sure the call is). ``n_positive_fields``: fields whose
  posterior mean of the scored class is at least ``threshold``.

Streaming and resuming (:func:`score_plate`): every finished field is appended (and flushed)
to ``fields.partial.csv`` (DeepYeast: its cells first, to ``cells.partial.csv``) as soon as
it is done -- in this process or as it comes back from a Dask worker -- so a stopped run, a
killed client or a lost worker loses no finished field; ``resume=True`` skips the fields
already there. At the end the tables are written whole and sorted (fields in plate order,
wells by score), atomically, and the partial files removed. The rows do not depend on where
or in which order the fields were scored: numbers are written with fixed precision and the
well tables are computed from the written rows.
"""
from __future__ import annotations

import csv
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, OutputError, RarephenoError, ensure_writable_dir
from ..io.tables import write_csv
from ..progress import CancelToken, ProgressCallback, report_items
from .layout import natural_key, well_sort_key
from .reading import Plate, PlateField, is_zarr, read_plate
from .results import INFO, numbers_of, plate_info, write_info

KINDS = ("wscnn", "deepyeast")
#: fields with more pixels than this are predicted in tiles, read window by window
LAZY_PIXELS = 2048 * 2048
LAZY_TILE = 1024
_CELL_FIELDS = ["well", "field", "id", "class"]


# ------------------------------------------------------------------ one field
@dataclass(frozen=True)
class FieldSpec:
    """What every field task needs besides its field (small: it travels with each task)."""

    kind: str
    class_names: tuple[str, ...]
    device: str = "auto"
    precision: str = "auto"
    segment_channel: int = 0
    diameter: float | None = None


@dataclass
class FieldRecord:
    """A scored field: its ``fields`` row and (DeepYeast) its ``cells`` rows, numbers as text."""

    row: dict[str, str]
    cells: list[dict[str, str]] = field(default_factory=list)


def _f(v: float, digits: int = 6) -> str:
    return f"{float(v):.{digits}f}"


def field_columns(spec: FieldSpec) -> list[str]:
    """The columns of ``fields.partial.csv`` (what a field task writes)."""
    probs = [f"p_{c}" for c in spec.class_names]
    if spec.kind == "wscnn":
        return ["well", "field", "image", "predicted", *probs, "peak_y", "peak_x", "height", "width"]
    return ["well", "field", "image", "n_cells", "class", *probs, "height", "width"]


def cell_columns(spec: FieldSpec) -> list[str]:
    return [*_CELL_FIELDS, *(f"p_{c}" for c in spec.class_names), "centroid_y", "centroid_x", "area"]


def score_field(lm, plate_field: PlateField, spec: FieldSpec) -> FieldRecord:
    """Score one field with a loaded model (see the module docstring)."""
    where = plate_field.source.describe()
    base = {"well": plate_field.well, "field": plate_field.field, "image": where}
    names = list(spec.class_names)
    if spec.kind == "wscnn":
        from ..inference.lazy import predict_wscnn_lazy  # deferred: loads torch
        from ..inference.predict import predict_wscnn  # deferred: loads torch

        img = plate_field.lazy()
        _, H, W = img.shape
        if H * W > LAZY_PIXELS and getattr(lm.model.config, "head", "max") == "max":
            # the array-like, not the LazyImage: the lazy path then applies the model's channel selection
            pred = predict_wscnn_lazy(lm, img.array, tile=LAZY_TILE, saliency=True, saliency_mode="cam",
                                      device=spec.device, precision=spec.precision)
        else:
            pred = predict_wscnn(lm, img.read_raw(0, H, 0, W), saliency=True, saliency_mode="cam",
                                 device=spec.device, precision=spec.precision, path=where)
        sal = np.asarray(pred.saliency)
        y, x = np.unravel_index(int(np.argmax(sal)), sal.shape)
        p = pred.probabilities
        row = {**base, "predicted": names[int(np.argmax(p))], **{f"p_{c}": _f(v) for c, v in zip(names, p)},
               "peak_y": str(int(y)), "peak_x": str(int(x)), "height": str(H), "width": str(W)}
        return FieldRecord(row)
    from ..deepyeast.fields import classify_field  # deferred: loads torch

    chw = plate_field.read()
    res = classify_field(lm, chw, segment_channel=spec.segment_channel, device=spec.device,
                         diameter=spec.diameter, group=plate_field.key)
    cells = []
    for r in res.rows:
        cells.append({"well": plate_field.well, "field": plate_field.field, "id": str(r["id"]), "class": r["class"],
                      **{f"p_{c}": _f(r[f"p_{c}"]) for c in names},
                      "centroid_y": _f(r["centroid_y"], 1), "centroid_x": _f(r["centroid_x"], 1),
                      "area": str(r.get("area", ""))})
    probs = _cell_probs(cells, names)
    post = _posterior(probs, names)
    row = {**base, "n_cells": str(len(cells)), "class": post["map_class"],
           **{f"p_{c}": _f(post[f"p_{c}"]) for c in names}, "height": str(chw.shape[1]), "width": str(chw.shape[2])}
    return FieldRecord(row, cells)


def _field_task(plate_field: PlateField, model_path: str, spec: FieldSpec) -> FieldRecord:
    """What a Dask worker runs: its cached model (loaded once per worker), one field."""
    from ..discover.distributed import cached_model  # deferred: loads distributed

    return score_field(cached_model(model_path, spec.kind), plate_field, spec)


def _cell_probs(cells: Sequence[dict], names: Sequence[str]) -> np.ndarray:
    """(N, K) probabilities of cell rows, as written (so every run aggregates the same numbers)."""
    if not cells:
        return np.zeros((0, len(names)))
    p = np.array([[float(c[f"p_{n}"]) for n in names] for c in cells], np.float64)
    return p / p.sum(1, keepdims=True)


def _posterior(probs: np.ndarray, names: Sequence[str], group="g") -> dict:
    from ..deepyeast.aggregate import (  # deferred: loads scipy.stats
        aggregate,
        posterior_table,
    )

    return posterior_table(aggregate(probs, [group] * len(probs), names, all_groups=[group]))[0]


# ------------------------------------------------------------------ wells
def parse_well_score(text: str) -> tuple[str, float]:
    """``'max'``, ``'mean'`` or ``'q<percent>'`` (``q75``) -> (how, quantile)."""
    t = str(text).strip().lower()
    if t in ("max", "mean"):
        return t, 1.0 if t == "max" else float("nan")
    if t.startswith("q"):
        try:
            q = float(t[1:])
        except ValueError:
            q = -1.0
        if 0 < q <= 100:
            return "quantile", q / 100
    raise InputError(f"--well-score must be max, mean or a quantile like q75, got {text!r}")


def _target(spec: FieldSpec, target: str | None) -> int | None:
    from ..discover.scoring import target_index  # deferred: loads torch

    return target_index(spec.class_names, target, spec.kind)


def field_score(row: dict, spec: FieldSpec, t: int | None) -> float:
    """A field's score: P(target) (WSCNN: positive by default); DeepYeast without a target:
    the posterior mean of the field's own class."""
    names = spec.class_names
    if t is not None:
        return float(row[f"p_{names[t]}"])
    return float(row[f"p_{row['class']}"]) if row.get("class") else float("nan")


def well_rows(spec: FieldSpec, fields: Sequence[dict], *, target: str | None = None, well_score: str = "max",
              threshold: float = 0.5, cells: Sequence[dict] = ()) -> list[dict]:
    """``wells.csv`` rows from the fields' (and DeepYeast: cells') rows, highest score first;
    numbers as numbers. See the module docstring for the score."""
    how, q = parse_well_score(well_score)
    t = _target(spec, target)
    names = list(spec.class_names)
    by_well: dict[str, list[dict]] = {}
    for r in fields:
        by_well.setdefault(r["well"], []).append(r)
    order = sorted(by_well, key=well_sort_key)
    out = []
    if spec.kind == "wscnn":
        for w in order:
            rows = sorted(by_well[w], key=lambda r: natural_key(r["field"]))
            s = np.array([field_score(r, spec, t) for r in rows])
            score = s.max() if how == "max" else s.mean() if how == "mean" else np.quantile(s, q)
            out.append({"well": w, "n_fields": len(rows), "n_positive_fields": int((s >= threshold).sum()),
                        "score": float(score), "mean_score": float(s.mean()),
                        "top_field": rows[int(np.argmax(s))]["field"]})
    else:
        from ..deepyeast.aggregate import (  # deferred: loads scipy.stats
            aggregate,
            posterior_table,
        )

        cells_by_well: dict[str, list[dict]] = {}
        for c in cells:
            cells_by_well.setdefault(c["well"], []).append(c)
        groups = [w for w in order for _ in cells_by_well.get(w, [])]
        probs = _cell_probs([c for w in order for c in cells_by_well.get(w, [])], names)
        post = {r["group"]: r for r in posterior_table(aggregate(probs, groups, names, all_groups=order))}
        for w in order:
            rows = by_well[w]
            pr = post[w]
            k = t if t is not None else (names.index(pr["map_class"]) if pr["map_class"] else None)
            s = np.array([float(r[f"p_{names[k]}"]) if k is not None else 0.0 for r in rows])
            out.append({"well": w, "n_fields": len(rows), "n_positive_fields": int((s >= threshold).sum()),
                        "score": float(pr[f"p_{names[k]}"]) if k is not None else 0.0, "class": pr["map_class"],
                        "n_cells": pr["n_cells"], **{f"p_{c}": float(pr[f"p_{c}"]) for c in names},
                        "compartments": pr["compartments"]})
    out.sort(key=lambda r: (-r["score"], -r["n_positive_fields"], well_sort_key(r["well"])))
    for i, r in enumerate(out):
        r["rank"] = i + 1
    return out


# ------------------------------------------------------------------ streaming files
class _Stream:
    """An append-only CSV, created at its first row, flushed per row."""

    def __init__(self, path: Path, columns: list[str], append: bool):
        self.path, self.columns, self.append = path, columns, append
        self.fh = None

    def write(self, rows: Sequence[dict]) -> None:
        if self.fh is None:
            self.fh = open(self.path, "a" if self.append else "w", newline="", encoding="utf-8")  # noqa: SIM115
            self.w = csv.DictWriter(self.fh, fieldnames=self.columns, lineterminator="\n", extrasaction="ignore")
            if not self.append:
                self.w.writeheader()
        self.w.writerows(rows)
        self.fh.flush()

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()


def _read_rows(path: Path, columns: list[str], what: str) -> list[dict]:
    """Complete rows of a table a stopped run left (a kill can cut the last line), projected
    on ``columns``; a table with other columns cannot be resumed."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        have = reader.fieldnames or []
        if not set(columns) <= set(have):
            raise InputError(f"cannot resume: {path.name} has the columns {have}, this model writes {columns}; "
                             "use another --out folder or --overwrite", path)
        rows = [r for r in reader if None not in r and all(r.get(k) is not None for k in columns)
                and all(r.get(k) != "" for k in ("well", "field"))]
    return [{k: r[k] for k in columns} for r in rows]


@dataclass
class PlateResult:
    """What :func:`score_plate` did: the wells (highest score first) and fields (plate order)
    as written, numbers as numbers; where the files went; whether every field is scored."""

    wells: list[dict]
    fields: list[dict]
    out: Path | None
    complete: bool
    n_scored: int                       # fields scored by this run (not resumed)
    heatmap: Path | None = None
    cells: list[dict] = field(default_factory=list)


def output_files(out: Path) -> list[Path]:
    """Every file :func:`score_plate` writes into ``out`` (for "replace?" questions)."""
    out = Path(out)
    return [out / n for n in ("wells.csv", "fields.csv", "cells.csv", "plate.png", INFO, "fields.partial.csv",
                              "cells.partial.csv")]


def score_plate(model, plate: Plate | str | Path, out: str | Path | None = None, *, target: str | None = None,
                well_score: str = "max", threshold: float = 0.5, device: str = "auto", precision: str = "auto",
                segment_channel: int = 0, diameter: float | None = None, regex: str | None = None,
                channel_files: Sequence[str] | None = None, level: int = 0, z: int = 0,
                workers: int | None = None, scheduler: str | None = None, processes: bool = True, client=None,
                resume: bool = False, overwrite: bool = False, heatmap: bool = True,
                callback: ProgressCallback = None, cancel: CancelToken | None = None) -> PlateResult:
    """Score every field of ``plate`` (a :class:`Plate` or a plate path: :func:`read_plate`
    with ``regex``, ``channel_files`` -- default: the model's -- ``level``, ``z``) and write
    ``out/fields.csv``, ``out/wells.csv``, ``out/plate.png`` (DeepYeast: ``out/cells.csv``) and
    ``out/plate.json`` (how the plate was read and scored: :mod:`.results` reads it all back).

    Where the fields are scored: here (default), on a local Dask cluster of ``workers``
    processes (``processes=False``: threads of this process), on the cluster at
    ``scheduler``, or through a ``distributed.Client`` given as ``client``. Each worker loads
    the model once and reads its fields itself; the rows are the same as here.
    ``resume``: keep the fields a stopped run finished; ``overwrite``: start again."""
    from ..discover.distributed import (  # deferred: loads distributed
        dask_client,
        model_file,
        stream,
    )
    from ..io.modelfile import as_loaded  # deferred: loads torch

    if resume and overwrite:
        raise InputError("choose one: --resume (continue the run in the output folder) or --overwrite (start again)")
    parse_well_score(well_score)
    lm = as_loaded(model)
    if lm.meta.kind not in KINDS:
        raise InputError(f"plates are scored with a WSCNN or DeepYeast model, this one is {lm.meta.kind}", lm.path)
    spec = FieldSpec(lm.meta.kind, tuple(lm.meta.class_names), device, precision, segment_channel, diameter)
    _target(spec, target)  # a bad --target fails before any work
    if not isinstance(plate, Plate):
        stored = lm.meta.training.get("input", {}).get("channel_files")
        files = None if is_zarr(plate) else (channel_files or stored)
        plate = read_plate(plate, regex=regex, channel_files=files, level=level, z=z, cancel=cancel)
    distributed = client is not None or workers is not None or scheduler is not None
    path = model_file(model) if distributed else None
    out = Path(out) if out is not None else None
    cols, ccols = field_columns(spec), cell_columns(spec)
    done_rows: list[dict] = []
    done_cells: list[dict] = []
    part = cpart = None
    if out is not None:
        if out.exists() and not out.is_dir():
            raise OutputError("the output path is a file; give a folder for the plate's results", out)
        existing = [p for p in output_files(out) if p.exists()]
        if existing and not (resume or overwrite):
            raise OutputError(f"{len(existing)} result file(s) exist already (e.g. {existing[0].name}); use --resume "
                              "to continue that run or --overwrite to replace them", out)
        ensure_writable_dir(out)
        part, cpart = out / "fields.partial.csv", out / "cells.partial.csv"
        if overwrite:
            for p in (part, cpart):
                p.unlink(missing_ok=True)
        if resume:
            src = part if part.exists() else out / "fields.csv"
            csrc = cpart if part.exists() else out / "cells.csv"
            if src.exists():
                done_rows = _read_rows(src, cols, "fields")
            if spec.kind == "deepyeast" and done_rows:
                finished = {(r["well"], r["field"]) for r in done_rows}
                done_cells = [c for c in (_read_rows(csrc, ccols, "cells") if csrc.exists() else [])
                              if (c["well"], c["field"]) in finished]
            keys = {f.key for f in plate.fields}
            stray = [r for r in done_rows if f"{r['well']}/{r['field']}" not in keys]
            if stray:
                warnings.warn(f"{len(stray)} finished field(s) in {src.name} are not fields of this plate (e.g. "
                              f"{stray[0]['well']}/{stray[0]['field']}); left out", stacklevel=2)
                done_rows = [r for r in done_rows if f"{r['well']}/{r['field']}" in keys]
            # the partial files start again from what is complete (a cut last line goes)
            write_csv(part, done_rows, cols, "the fields being scored")
            if spec.kind == "deepyeast":
                write_csv(cpart, done_cells, ccols, "the cells being scored")
    done = {(r["well"], r["field"]) for r in done_rows}
    todo = [f for f in plate.fields if (f.well, f.field) not in done]
    rows, cells = list(done_rows), list(done_cells)
    append = bool(resume and out is not None)
    fstream = _Stream(part, cols, append) if part is not None else None
    cstream = _Stream(cpart, ccols, append) if cpart is not None and spec.kind == "deepyeast" else None
    total, n_scored = len(plate.fields), 0

    def keep(rec: FieldRecord) -> None:
        nonlocal n_scored
        if cstream is not None:  # the cells first: the field's row marks it as done
            cstream.write(rec.cells)
        if fstream is not None:
            fstream.write([rec.row])
        rows.append(rec.row)
        cells.extend(rec.cells)
        n_scored += 1
        report_items(callback, len(rows), total, f"{rec.row['well']}/{rec.row['field']}")

    try:
        if not distributed:
            for f in todo:
                if cancel is not None and cancel.cancelled:
                    break
                try:
                    keep(score_field(lm, f, spec))
                except InputError as e:
                    raise _kept(e, len(rows), f) from None
        else:
            with (_given(client) if client is not None else
                  dask_client(workers, scheduler, processes=processes)) as c:
                for _, rec in stream(c, _field_task, todo, path, spec, name="field", cancel=cancel):
                    keep(rec)
    except RarephenoError as e:
        if rows and out is not None and "--resume" not in str(e):
            raise type(e)(f"{e} - the {len(rows)} field(s) finished are kept in {part.name}; run again with "
                          "--resume") from None
        raise
    finally:
        for s in (fstream, cstream):
            if s is not None:
                s.close()
    complete = len(rows) == total
    return _finish(plate, spec, rows, cells, out, complete, n_scored, target=target, well_score=well_score,
                   threshold=threshold, heatmap=heatmap, model=lm.path)


class _given:
    """A caller's client as a context (not closed at the end)."""

    def __init__(self, client):
        self.client = client

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        return False


def _kept(e: InputError, n: int, f: PlateField) -> InputError:
    if not n:
        return e
    return InputError(f"{e} - the {n} field(s) finished before it are kept; fix or remove this field, then run "
                      "again with --resume", f.source.describe())


def _finish(plate: Plate, spec: FieldSpec, rows: list[dict], cells: list[dict], out: Path | None, complete: bool,
            n_scored: int, *, target, well_score, threshold, heatmap, model=None) -> PlateResult:
    order = {f.key: i for i, f in enumerate(plate.fields)}
    rows = sorted(rows, key=lambda r: order.get(f"{r['well']}/{r['field']}", len(order)))
    cells = sorted(cells, key=lambda c: (order.get(f"{c['well']}/{c['field']}", len(order)), int(c["id"])))
    t = _target(spec, target)
    scored = [{**r, "score": _f(field_score(r, spec, t))} for r in rows]
    cols = field_columns(spec)
    fcols = cols[:3] + ["score"] + cols[3:]
    wells = well_rows(spec, rows, target=target, well_score=well_score, threshold=threshold, cells=cells)
    wtext = [{k: (_f(v) if isinstance(v, float) else str(v)) for k, v in r.items()} for r in wells]
    png = None
    if out is not None:
        write_csv(out / "fields.csv", scored, fcols, "the fields table")
        if spec.kind == "deepyeast":
            write_csv(out / "cells.csv", cells, cell_columns(spec), "the cells table")
        write_csv(out / "wells.csv", wtext, list(wtext[0]) if wtext else ["well", "n_fields", "n_positive_fields",
                                                                           "score", "rank"], "the wells table")
        if heatmap:
            names = spec.class_names
            what = (f"P({names[t]})" if t is not None else "posterior of the well's class")
            how = parse_well_score(well_score)[0]
            label = (f"{'max' if how == 'max' else 'mean' if how == 'mean' else well_score} over fields of {what}"
                     if spec.kind == "wscnn" else f"well {what}")
            png = _heatmap(plate, wells, out / "plate.png", label, complete)
        write_info(out, plate_info(plate, model=model, kind=spec.kind, class_names=spec.class_names, target=target,
                                   well_score=well_score, threshold=threshold, complete=complete))
        if complete:
            for p in (out / "fields.partial.csv", out / "cells.partial.csv"):
                p.unlink(missing_ok=True)
    return PlateResult([numbers_of(r) for r in wtext], [numbers_of(r) for r in scored], out, complete, n_scored, png,
                       cells)


def _heatmap(plate: Plate, wells: list[dict], path: Path, label: str, complete: bool) -> Path:
    from .heatmap import plate_heatmap  # deferred: loads matplotlib

    title = f"{plate.name or Path(plate.path).name}: {len(wells)} well(s)" + ("" if complete else " (incomplete)")
    return plate_heatmap(wells, plate.shape, path, title=title, label=label)
