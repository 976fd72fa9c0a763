"""The ground-truth box table shared by every weakly labeled data set.

Contract (tests and benchmarks rely on it)::

    DATA/<split>/objects.csv
    image,x0,y0,x1,y1,kind
    positive/img_00012.png,40,17,58,33,rare

* ``image`` is the image path relative to the split folder, with ``/`` separators;
* ``x`` is the column and ``y`` the row, integer pixels;
* boxes are half-open: the box covers columns ``x0 .. x1-1`` and rows ``y0 .. y1-1``;
* ``kind`` is ``rare`` (the phenotype the network should find) or ``common``.

An image that does not appear in the table has no objects.

The module also holds the two small I/O helpers that every generator of such data
sets uses: :func:`staged_dir` (build a folder next to its destination and rename it
into place, so a failure never leaves half-written output) and PNG read/write.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from ..errors import InputError
from .atomic import atomic_open

COLUMNS = ("image", "x0", "y0", "x1", "y1", "kind")
KINDS = ("rare", "common")


@dataclass(frozen=True)
class Box:
    """One object's box; half-open ``[x0, x1) x [y0, y1)``, x = column."""

    image: str
    x0: int
    y0: int
    x1: int
    y1: int
    kind: str

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def problem(self) -> str | None:
        """Why this box is invalid (shape-independent checks), or None."""
        if self.kind not in KINDS:
            return f"kind {self.kind!r} is not one of {', '.join(KINDS)}"
        if self.x0 < 0 or self.y0 < 0:
            return f"box starts at a negative coordinate (x0={self.x0}, y0={self.y0})"
        if self.x1 <= self.x0 or self.y1 <= self.y0:
            return (f"box is empty: x0={self.x0}, x1={self.x1}, y0={self.y0}, y1={self.y1} "
                    "(need x1 > x0 and y1 > y0)")
        return None


def write_objects(path: str | Path, boxes: Iterable[Box]) -> Path:
    """Write ``boxes`` to ``path`` atomically (temporary file, then ``os.replace``)."""
    path = Path(path)
    rows = []
    for box in boxes:
        why = box.problem()
        if why:
            raise InputError(f"cannot write box for image {box.image!r}: {why}", path)
        rows.append((box.image.replace("\\", "/"), int(box.x0), int(box.y0),
                     int(box.x1), int(box.y1), box.kind))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w", "the box table", encoding=None) as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


def _as_int(value: str, column: str, path: Path, line: int) -> int:
    text = (value or "").strip()
    try:
        return int(text)
    except ValueError:
        raise InputError(f"line {line}: column {column} must be an integer pixel "
                         f"coordinate, got {value!r}", path) from None


def read_objects(path: str | Path,
                 image_shapes: Mapping[str, tuple[int, int]] | None = None,
                 ) -> dict[str, list[Box]]:
    """Read and validate an objects table; returns ``{image: [Box, ...]}``.

    ``image_shapes`` maps ``image`` (as written in the table) to ``(height, width)``;
    when given, every image must be in it and every box must lie inside its image.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"objects table not found: {path}", path)
    out: dict[str, list[Box]] = {}
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise InputError(f"objects table {path} is empty; expected the header "
                             f"{','.join(COLUMNS)}", path)
        header = [h.strip() for h in header]
        missing = [c for c in COLUMNS if c not in header]
        extra = [c for c in header if c not in COLUMNS]
        if missing or extra or len(header) != len(COLUMNS):
            parts = []
            if missing:
                parts.append("missing column(s) " + ", ".join(missing))
            if extra:
                parts.append("unexpected column(s) " + ", ".join(extra))
            if not parts:
                parts.append("duplicated column(s)")
            raise InputError(f"objects table {path}: {'; '.join(parts)}; the header must be "
                             f"exactly {','.join(COLUMNS)}", path)
        index = {c: header.index(c) for c in COLUMNS}
        for line, row in enumerate(reader, start=2):
            if not row or all(not v.strip() for v in row):
                continue
            if len(row) != len(COLUMNS):
                raise InputError(f"objects table {path}, line {line}: expected "
                                 f"{len(COLUMNS)} values, got {len(row)}", path)
            image = row[index["image"]].strip().replace("\\", "/")
            coords = {c: _as_int(row[index[c]], c, path, line) for c in ("x0", "y0", "x1", "y1")}
            box = Box(image, coords["x0"], coords["y0"], coords["x1"], coords["y1"],
                      row[index["kind"]].strip())
            why = box.problem()
            if why:
                raise InputError(f"objects table {path}, line {line}, image {image}: {why}", path)
            if image_shapes is not None:
                if image not in image_shapes:
                    raise InputError(f"objects table {path}, line {line}: image {image} is "
                                     "not among the images of this data set", path)
                h, w = image_shapes[image][:2]
                if box.x1 > w or box.y1 > h:
                    raise InputError(
                        f"objects table {path}, line {line}, image {image}: box "
                        f"[{box.x0},{box.x1})x[{box.y0},{box.y1}) lies outside the "
                        f"{w}x{h} (width x height) image", path)
            out.setdefault(image, []).append(box)
    return out
