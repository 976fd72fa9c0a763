"""Rank a folder of images by what a model sees, and list suspected mislabels.

Both stream: rows go to ``<out>.partial.csv`` (flushed per batch) while the images are
scored, so a stopped run keeps what it did and ``resume=True`` skips those images;
at the end the rows (small: a few numbers per image) are sorted and written to ``out``.

*Ranking* sorts by the chosen score, highest first: the probability of a target class
(WSCNN: positive) or the normalised entropy of the class probabilities (the images the
model is least sure about).

*Suspected mislabels* (Sailem et al. 2017, section 4.2: the network found multinucleate
cells in images labeled negative): every image sits in a class folder; its suspicion is
``1 - P(its folder's class)``, the model's confidence that the label is wrong; the
suggested label is the most probable other class. Highest suspicion first.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..io.modelfile import as_loaded
from ..io.tables import write_csv
from ..progress import CancelToken, Progress, ProgressCallback, report_items
from .distributed import score_files
from .scoring import (
    SCORES,
    LabeledFile,
    entropy,
    folder_files,
    labeled_files,
    score_stream,
    target_index,
)


def _fmt(v) -> str:
    return f"{v:.6f}" if isinstance(v, (float, np.floating)) else str(v)


def partial_path(out: Path) -> Path:
    return out.with_name(out.stem + ".partial.csv")


def _stream_rows(rows_of, model, files: list[LabeledFile], out: Path | None, fields: list[str], *,
                 resume: bool, overwrite: bool, batch_size: int, device: str, tta: bool, callback,
                 cancel, workers: int | None = None, scheduler: str | None = None) -> list[dict]:
    """Score ``files`` (skipping those already in the partial file when resuming), turn each
    into a row with ``rows_of(file, probs)``, append it to the partial CSV; return all rows.
    ``workers`` / ``scheduler``: score on Dask (:func:`.distributed.score_files`), same rows."""
    rows: list[dict] = []
    part = partial_path(out) if out is not None else None
    if out is not None:
        if out.exists() and not (overwrite or resume):
            raise InputError("exists already; use --overwrite to replace it (or --resume)", out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if resume and part.exists():
            with open(part, newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows and list(rows[0]) != fields:
                raise InputError("cannot resume: this partial file has other columns; start again with --overwrite",
                                 part)
    done = {r["image"] for r in rows}
    todo = [f for f in files if str(f.path.resolve()) not in done]
    fh = open(part, "a" if rows else "w", newline="") if part is not None else None
    try:
        w = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n") if fh else None
        if w is not None and not rows:
            w.writeheader()
        total = len(files)

        def prog(p: Progress) -> None:  # counts the images a resumed run had already scored
            report_items(callback, len(done) + p.batch, total, p.message)
        where = {} if workers is None and scheduler is None else {"workers": workers, "scheduler": scheduler}
        for f, p in (score_files if where else score_stream)(model, todo, batch_size=batch_size, device=device,
                                                             tta=tta, callback=prog, cancel=cancel, **where):
            row = rows_of(f, p)
            rows.append(row)
            if w is not None:
                w.writerow({k: _fmt(v) for k, v in row.items()})
                fh.flush()
    finally:
        if fh is not None:
            fh.close()
    return rows


def _numeric(r: dict) -> dict:
    for k, v in r.items():
        if k in ("score", "entropy", "suspicion") or k.startswith("p_"):
            r[k] = float(v)
        elif k == "rank":
            r[k] = int(v)
    return r


def _finish(rows: list[dict], key: str, out: Path | None, fields: list[str], complete: bool) -> list[dict]:
    rows = [_numeric(r) for r in rows]
    rows.sort(key=lambda r: -r[key])
    for i, r in enumerate(rows):
        r["rank"] = i + 1
    if out is not None:
        write_csv(out, [{k: _fmt(v) for k, v in r.items()} for r in rows], ["rank"] + fields, "the ranking")
        if complete:
            partial_path(out).unlink(missing_ok=True)
    return rows


def _prob_columns(names: Sequence[str]) -> list[str]:
    return [f"p_{c}" for c in names]


def _stored_channel_files(lm) -> list[str] | None:
    """The per-channel file patterns the model was trained with, if any."""
    return lm.meta.training.get("input", {}).get("channel_files")


def rank_images(model, inputs: Sequence[str | Path], out: str | Path | None = None, *, score: str = "probability",
                target: str | None = None, batch_size: int = 16, device: str = "auto", tta: bool = False,
                resume: bool = False, overwrite: bool = False, callback: ProgressCallback = None,
                cancel: CancelToken | None = None, channel_files: Sequence[str] | None = None,
                workers: int | None = None, scheduler: str | None = None) -> list[dict]:
    """Score every image of ``inputs`` (files or folders, recursive) and sort, highest first.
    ``channel_files``: images stored one file per channel (default: the model's patterns).
    ``workers`` / ``scheduler``: score on a local Dask cluster of N processes / the cluster at
    that address (:mod:`.distributed`); the rows are the same.

    Rows: rank, image, label (the parent folder when it is a class), predicted, score,
    entropy and ``p_<class>`` for every class. ``target`` picks the class whose probability
    is the score (default: WSCNN positive, DeepYeast the top class). ``tta``: average the
    probabilities over flips and quarter turns (8x slower, steadier)."""
    if score not in SCORES:
        raise InputError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
    lm = as_loaded(model)
    names = list(lm.meta.class_names)
    t = target_index(names, target, lm.meta.kind)
    files = folder_files(inputs, names, channel_files or _stored_channel_files(lm))
    fields = ["image", "label", "predicted", "score", "entropy"] + _prob_columns(names)

    def row(f: LabeledFile, p: np.ndarray) -> dict:
        ent = float(entropy(p[None])[0])
        s = ent if score == "entropy" else float(p[t] if t is not None else p.max())
        return {"image": str(f.path.resolve()), "label": f.label, "predicted": names[int(np.argmax(p))], "score": s,
                "entropy": ent, **{c: float(v) for c, v in zip(_prob_columns(names), p)}}

    out = Path(out) if out is not None else None
    rows = _stream_rows(row, lm, files, out, fields, resume=resume, overwrite=overwrite, batch_size=batch_size,
                        device=device, tta=tta, callback=callback, cancel=cancel, workers=workers,
                        scheduler=scheduler)
    return _finish(rows, "score", out, fields, complete=len(rows) == len(files))


def find_mislabels(model, labeled: str | Path, out: str | Path | None = None, *, top: int | None = None,
                   batch_size: int = 16, device: str = "auto", tta: bool = False, resume: bool = False,
                   overwrite: bool = False, callback: ProgressCallback = None, cancel: CancelToken | None = None,
                   channel_files: Sequence[str] | None = None) -> list[dict]:
    """Images whose class folder the model disagrees with, most suspicious first.

    ``labeled``: ``ROOT/<class>/`` (a split) or a data folder with splits. Rows: rank, image,
    split, label, suggested, suspicion (= 1 - P(label)), predicted, ``p_<class>``. ``top``:
    keep the ``top`` most suspicious images (default: those the model assigns to another
    class, i.e. the suggested class is more probable than the label). ``tta``: as in
    :func:`rank_images` (recommended here: it steadies the borderline calls)."""
    if top is not None and top < 1:
        raise InputError(f"--top must be at least 1, got {top}")
    lm = as_loaded(model)
    names = list(lm.meta.class_names)
    files = labeled_files(labeled, names, channel_files or _stored_channel_files(lm))
    fields = ["image", "split", "label", "suggested", "suspicion", "predicted"] + _prob_columns(names)

    def row(f: LabeledFile, p: np.ndarray) -> dict:
        li = names.index(f.label)
        others = p.copy()
        others[li] = -1.0
        return {"image": str(f.path.resolve()), "split": f.split, "label": f.label,
                "suggested": names[int(np.argmax(others))], "suspicion": float(1.0 - p[li]),
                "predicted": names[int(np.argmax(p))],
                **{c: float(v) for c, v in zip(_prob_columns(names), p)}}

    out_p = Path(out) if out is not None else None
    rows = _stream_rows(row, lm, files, out_p, fields, resume=resume, overwrite=overwrite, batch_size=batch_size,
                        device=device, tta=tta, callback=callback, cancel=cancel)
    complete = len(rows) == len(files)
    rows = _finish(rows, "suspicion", None, fields, complete)
    rows = rows[:top] if top is not None else [r for r in rows if r["predicted"] != r["label"]]
    return _finish(rows, "suspicion", out_p, fields, complete)


def read_ranking(path: str | Path) -> list[dict]:
    """Rows of a ranking or suspects CSV (numbers as floats)."""
    path = Path(path)
    if not path.exists():
        raise InputError("ranking file not found", path)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "image" not in rows[0]:
        raise InputError("not a ranking file: it has no 'image' column", path)
    try:
        return [_numeric(r) for r in rows]
    except ValueError as e:
        raise InputError(f"a number in the ranking file cannot be read ({e})", path) from None


def precision_recall_at(rows: Sequence[dict], truth: set[str], k: int) -> tuple[float, float]:
    """Precision and recall of the first ``k`` rows against the set of truly wrong images."""
    hits = sum(str(r["image"]) in truth for r in rows[:k])
    return hits / max(1, min(k, len(rows))), hits / max(1, len(truth))
