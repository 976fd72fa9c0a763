"""CSV tables: one writer for every table the engine writes (atomic, columns in first-seen
order over all rows, so rows that gained a column still fit)."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

from .atomic import atomic_open


def columns_of(rows: Iterable[dict]) -> list[str]:
    """Every key of ``rows``, in the order they first appear."""
    return list(dict.fromkeys(k for row in rows for k in row))


def write_csv(path: str | Path, rows: Sequence[dict], fields: Sequence[str] | None = None,
              what: str = "the table") -> Path:
    """Write ``rows`` (dicts) under a header of ``fields`` (default: :func:`columns_of`),
    atomically; missing values are left empty."""
    fields = list(fields) if fields is not None else columns_of(rows)
    with atomic_open(path, "w", what) as fh:
        w = csv.DictWriter(fh, fieldnames=fields, restval="", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return Path(path)
