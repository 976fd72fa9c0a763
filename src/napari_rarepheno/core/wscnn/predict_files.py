"""Streaming batch prediction over many files: incremental CSV, resumable.

``predictions.csv`` gets one row per image as soon as it is done (flushed), so a run
stopped half-way keeps what it finished and ``resume=True`` skips those images.
Per image: ``<name>_saliency.tif`` (float32) and ``<name>_mask.tif`` (uint16 labels,
one component per detected object); all detected objects go to ``objects.csv``.

Safety: existing outputs are never replaced unless ``overwrite`` (``--overwrite``) or
``resume`` (``--resume``, which continues the same run) is given; the check covers every
file the run would write and happens before any work. Output names are unique even
when inputs share a file name (``a/img.png`` and ``b/img.png``, ``x.tif`` and ``x.png``,
``A.png`` and ``a.png`` on a case-insensitive disk). Images too big to predict at once
are tiled automatically (``head='max'`` networks) instead of exhausting memory.
"""
from __future__ import annotations

import csv
import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import Cancelled, InputError, OutputError, ensure_writable_dir
from ..inference.segment import SaliencyConfig, segment_saliency
from ..io.atomic import write_text
from ..io.files import entry_names, entry_path, image_entries
from ..io.folders import read_entry
from ..io.images import available_memory, is_constant, write_tiff
from ..io.tables import write_csv
from ..progress import CancelToken, ProgressCallback, report_items

#: images with more pixels than this are predicted in tiles when no --tile is given
AUTO_TILE_PIXELS = 2048 * 2048
AUTO_TILE = 1024
#: rough peak memory of an untiled WSCNN forward + saliency backward, bytes per input pixel
_BYTES_PER_PIXEL = 1200
_OBJECT_FIELDS = ["image", "object_id", "y", "x", "score", "area"]


def output_paths(names: Sequence[str], out: Path) -> list[Path]:
    """Every file a run over images with these output ``names`` (:func:`core.io.files.entry_names`)
    writes into ``out`` (for "replace?" questions)."""
    out = Path(out)
    paths = [out / "predictions.csv", out / "objects.csv"]
    for n in names:
        paths += [out / f"{n}_saliency.tif", out / f"{n}_mask.tif"]
    return paths


def _prepare_resume(csv_path: Path, obj_path: Path, fields: list[str]) -> set[str]:
    """Keep the complete rows of a stopped run (a kill can cut the last line) and the
    objects of the images that have a prediction row; return those images."""
    if not csv_path.exists():
        return set()
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != fields:
            raise InputError(f"cannot resume: predictions.csv has the columns {reader.fieldnames}, this model "
                             f"writes {fields}; use another --out folder or --overwrite", csv_path)
        rows = [r for r in reader if None not in r and all(r.get(k) not in (None, "") for k in fields)]
    done = {r["image"] for r in rows}
    objects = []
    if obj_path.exists():
        with open(obj_path, newline="", encoding="utf-8") as fh:
            objects = [r for r in csv.DictReader(fh) if None not in r and r.get("image") in done
                       and all(r.get(k) not in (None, "") for k in _OBJECT_FIELDS)]
    write_csv(csv_path, rows, fields)
    write_csv(obj_path, objects, _OBJECT_FIELDS)
    return done


class _Tables:
    """predictions.csv and objects.csv, opened at the first finished image, flushed per row."""

    def __init__(self, csv_path: Path, obj_path: Path, fields: list[str], append: bool):
        self.paths, self.fields, self.append = (csv_path, obj_path), fields, append
        self.fh = self.oh = None

    def open(self) -> None:
        if self.fh is not None:
            return
        csv_path, obj_path = self.paths
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        mode = "a" if self.append else "w"
        self.fh = open(csv_path, mode, newline="", encoding="utf-8")
        self.oh = open(obj_path, mode, newline="", encoding="utf-8")
        self.w, self.ow = csv.DictWriter(self.fh, fieldnames=self.fields), csv.writer(self.oh)
        if not self.append:
            self.w.writeheader()
            self.ow.writerow(_OBJECT_FIELDS)

    def objects(self, rows: list[list]) -> None:
        self.ow.writerows(rows)
        self.oh.flush()

    def prediction(self, row: dict) -> None:
        self.w.writerow(row)
        self.fh.flush()

    def close(self) -> None:
        for h in (self.fh, self.oh):
            if h is not None:
                h.close()


def _tile_for(lm, img: np.ndarray, tile: int | None, path: Path) -> int | None:
    """The tile size to use: the caller's, or automatic for images too big to do at once."""
    H, W = img.shape[1:]
    if tile is not None or H * W <= AUTO_TILE_PIXELS:
        return tile
    head = getattr(lm.model.config, "head", "max")
    if head == "max":
        warnings.warn(f"{path}: {H}x{W} px is too large to predict at once; tiling it ({AUTO_TILE} px tiles, "
                      "same result)", stacklevel=3)
        return AUTO_TILE
    avail = available_memory()
    if avail is not None and H * W * _BYTES_PER_PIXEL > 0.8 * avail:
        raise InputError(f"image is {H}x{W} px: predicting it at once needs about "
                         f"{H * W * _BYTES_PER_PIXEL / 1e9:.1f} GB but only {avail / 1e9:.1f} GB is free, and this "
                         f"model (head='{head}') cannot be tiled; crop the image into smaller fields", path)
    return None


def predict_wscnn_files(model, inputs: Sequence[Path], out: Path, *, device: str = "auto", tile: int | None = None,
                        overwrite: bool = False, resume: bool = False, saliency_config=None,
                        channels: Sequence[int] | None = None, channel_files: Sequence[str] | None = None,
                        saliency_mode: str = "map", precision: str = "fp32",
                        callback: ProgressCallback = None, cancel: CancelToken | None = None) -> Path:
    """Predict every image of ``inputs`` (files or folders) into ``out``.

    ``channels`` selects channels of the files (``--channels``); by default the model's
    stored selection is applied when a file has more channels than the model.
    ``channel_files``: images stored one file per channel, named by these substrings or
    regexes in the model's channel order (``--channel-files _Crfp,_Cgfp``); by default the
    patterns the model was trained with, if any. ``saliency_mode`` / ``precision``: as
    :func:`core.inference.predict.predict_wscnn` ('cam' and 'auto': the fast path)."""
    from ..device import resolve_device  # deferred: loads torch
    from ..inference.predict import predict_wscnn  # deferred: loads torch
    from ..io.modelfile import as_loaded  # deferred: loads torch
    from .shift import image_shift  # deferred: loads torch

    if overwrite and resume:
        raise InputError("choose one: --resume (continue the run in the output folder) or --overwrite "
                         "(start again, replacing its files)")
    lm = as_loaded(model, "wscnn")
    channel_files = channel_files or lm.meta.training.get("input", {}).get("channel_files")
    entries = image_entries(inputs, channel_files)
    files = [entry_path(e) for e in entries]
    names = entry_names(entries, channel_files)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError("the output path is a file; give a folder for the results", out)
    if not (overwrite or resume):
        existing = [p for p in output_paths(names, out) if p.exists()]
        if existing:
            raise OutputError(f"{len(existing)} result file(s) exist already (e.g. {existing[0].name}); use "
                              "--resume to continue that run or --overwrite to replace them", out)
    dev = resolve_device(device)  # a bad --device fails before anything is written
    ensure_writable_dir(out, create=False)
    csv_path, obj_path = out / "predictions.csv", out / "objects.csv"
    classes = list(lm.meta.class_names)
    fields = ["image", "name"] + [f"p_{c}" for c in classes] + ["predicted", "n_objects", "brightness", "size_ratio"]
    done = _prepare_resume(csv_path, obj_path, fields) if resume else set()
    scfg = saliency_config or SaliencyConfig()
    constant: list[str] = []
    notes: dict[str, list[str]] = {}
    n_done = len(done)
    tables = _Tables(csv_path, obj_path, fields, append=resume and csv_path.exists())

    def finish(f: Path, name: str, img: np.ndarray, pred) -> None:
        """Everything after the network for one image (objects, files, tables, shift check)."""
        det = segment_saliency(pred.saliency, scfg)
        tables.open()  # the first finished image creates the outputs (a failure before leaves nothing)
        write_tiff(out / f"{name}_saliency.tif", pred.saliency.astype(np.float32), overwrite=True)
        write_tiff(out / f"{name}_mask.tif", det.labels.astype(np.uint16), overwrite=True)
        areas = np.bincount(det.labels.ravel())
        rows = []
        for i, ((y, x), score) in enumerate(zip(det.peaks, det.scores)):
            lab = int(det.labels[int(round(y)), int(round(x))])
            rows.append([str(f), lab or i + 1, f"{y:.1f}", f"{x:.1f}", f"{score:.5g}",
                         int(areas[lab]) if lab < len(areas) else 0])
        tables.objects(rows)
        # the prediction row comes last: it marks the image as done for --resume
        shift = image_shift(lm, img)  # this image against the training images
        if shift.messages:
            notes[name] = shift.messages
        row = {"image": str(f), "name": name, "predicted": classes[int(np.argmax(pred.probabilities))],
               "n_objects": int(det.labels.max()),
               "brightness": "" if shift.brightness is None else f"{float(shift.brightness[0]):.3f}",
               "size_ratio": f"{shift.summary['size_ratio']:.3f}" if "size_ratio" in shift.summary else ""}
        row.update({f"p_{c}": f"{p:.6f}" for c, p in zip(classes, pred.probabilities)})
        tables.prediction(row)

    # Two stages: the network on image k (torch, both cores) runs while a worker thread does
    # image k-1's objects, files and shift check (numpy/scipy, one core, ~0.6 s of a 2048x2048
    # field); at most one image waits for its second stage, and rows are written in order.
    pending: list = []  # [(future, k)], at most one

    def settle() -> None:
        nonlocal n_done
        while pending:
            fut, k_done = pending.pop()
            fut.result()  # the second stage's error, if any, is raised here
            n_done += 1
            report_items(callback, k_done + 1, len(files))

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rarepheno-predict")
    try:
        for k, (entry, f, name) in enumerate(zip(entries, files, names)):
            if cancel is not None and cancel.cancelled:
                break
            if str(f) in done:
                continue
            try:
                img = read_entry(entry, channels, as_float=False)
            except InputError as e:
                settle()
                if not n_done:
                    raise
                raise InputError(f"{e} - the {n_done} image(s) finished before it are kept in {csv_path.name}; "
                                 "fix or remove this file, then run again with --resume", f) from None
            if is_constant(img):
                constant.append(f.name)
            try:
                pred = predict_wscnn(lm, img, saliency=True, tile=_tile_for(lm, img, tile, f), device=dev,
                                     path=f, cancel=cancel, saliency_mode=saliency_mode, precision=precision)
            except Cancelled:  # stopped inside a tiled image: keep what is finished
                break
            except (MemoryError, RuntimeError) as e:
                if not isinstance(e, MemoryError) and "memory" not in str(e).lower():
                    raise
                raise InputError(f"not enough memory to predict this {img.shape[1]}x{img.shape[2]} px image; "
                                 "use --tile 512 (or smaller)", f) from None
            settle()
            pending.append((pool.submit(finish, f, name, img, pred), k))
        settle()
        tables.open()  # a run with nothing (left) to do still leaves valid, empty tables
    finally:
        try:
            if pending:  # stopping on an error: the image already predicted is still finished and kept
                pending[0][0].exception()
        finally:
            pool.shutdown(wait=True)
            tables.close()
    if notes:
        write_text(out / "shift.json", json.dumps({"images_unlike_training": notes}, indent=2), "the shift report")
        first = next(iter(notes))
        warnings.warn(f"{len(notes)} image(s) unlike the training images, e.g. {first}: {notes[first][0]} "
                      "(all in shift.json; sort predictions.csv on brightness or size_ratio)", stacklevel=2)
    if constant:
        warnings.warn(f"{len(constant)} constant image(s) (every pixel equal, no signal): "
                      f"{', '.join(constant[:5])}{' ...' if len(constant) > 5 else ''}", stacklevel=2)
    return csv_path
