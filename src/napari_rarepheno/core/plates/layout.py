"""Well names and plate formats.

A well is named by its row letters and column number, written ``A01`` (two-digit columns):
``A1``, ``a01``, ``A-01``, ``A_1`` all name the same well, and ``A/1`` (OME-Zarr's row/column
folders) too. Rows run A..Z, then AA..AF for 1536-well plates.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

from ..errors import InputError

#: standard plate formats: wells -> (rows, columns)
FORMATS = {6: (2, 3), 12: (3, 4), 24: (4, 6), 48: (6, 8), 96: (8, 12), 384: (16, 24), 1536: (32, 48)}

_WELL = re.compile(r"^([A-Za-z]{1,2})[-_/ ]?0*(\d{1,3})$")


def row_index(letters: str) -> int:
    """0-based row of ``letters`` (A -> 0, Z -> 25, AA -> 26)."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + (ord(ch) - ord("A") + 1)
    return n - 1


def row_letters(index: int) -> str:
    """Inverse of :func:`row_index`."""
    index += 1
    out = ""
    while index > 0:
        index, r = divmod(index - 1, 26)
        out = chr(ord("A") + r) + out
    return out


def parse_well(text: str, path=None) -> tuple[int, int]:
    """(row, column), both 0-based, of a well name; :class:`InputError` naming ``path`` if it is none."""
    m = _WELL.match(str(text).strip())
    if not m or int(m.group(2)) < 1:
        raise InputError(f"{text!r} is not a well name (expected a row letter and a column number, like A01)",
                         path)
    return row_index(m.group(1)), int(m.group(2)) - 1


def is_well(text: str) -> bool:
    m = _WELL.match(str(text).strip())
    return bool(m) and int(m.group(2)) >= 1


def well_name(row: int, column: int) -> str:
    """``A01`` from 0-based row and column (three digits beyond column 99)."""
    return f"{row_letters(row)}{column + 1:02d}"


def canonical_well(text: str, path=None) -> str:
    """The one spelling of a well: ``a1`` -> ``A01``."""
    return well_name(*parse_well(text, path))


def plate_shape(wells: Iterable[str]) -> tuple[int, int]:
    """(rows, columns) of the smallest standard format holding ``wells`` (or just their extent
    when no standard format does)."""
    rc = [parse_well(w) for w in wells]
    if not rc:
        return FORMATS[96]
    need_r, need_c = max(r for r, _ in rc) + 1, max(c for _, c in rc) + 1
    for rows, cols in sorted(FORMATS.values()):
        if need_r <= rows and need_c <= cols:
            return rows, cols
    return need_r, need_c


def well_sort_key(well: str) -> tuple[int, int]:
    """Plate order: row by row, column by column (A01, A02, ..., B01)."""
    return parse_well(well)


def natural_key(text: str) -> tuple:
    """Sort key with numbers compared as numbers (s2 before s10)."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", str(text)) if t)
