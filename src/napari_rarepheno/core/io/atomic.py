"""Writing files so that nobody ever sees half of one: the one atomic-write helper.

Every file the engine writes (model files, images, CSV tables, JSON, whole data-set
folders) is first written under a hidden temporary name in the same folder
(``.NAME.XXXXXXXX.tmp``) and then renamed over ``NAME`` in one ``os.replace``. On any
failure (disk full, Ctrl-C, a bug) the temporary file is removed and an existing ``NAME``
is left exactly as it was. A killed process can leave only such hidden temporaries, which
:func:`remove_stale_temps` clears.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

from ..errors import InputError, output_error


@contextlib.contextmanager
def atomic_path(path: str | Path, what: str = "the file") -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to (for writers that take a file name:
    tifffile, safetensors); it replaces ``path`` when the block ends without error.

    An OSError becomes an :class:`~..errors.OutputError` naming ``path``: "could not write
    {what}: <reason>"."""
    path = Path(path)
    tmp = None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise output_error(e, path, f"could not write {what}") from None
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", what: str = "the file", *, encoding: str | None = "utf-8",
                newline: str | None = "") -> Iterator[IO]:
    """``open`` for writing whose result appears at ``path`` only when the block succeeds."""
    binary = "b" in mode
    with atomic_path(path, what) as tmp, open(tmp, mode, encoding=None if binary else encoding,
                                              newline=None if binary else newline) as fh:
        yield fh


def write_text(path: str | Path, text: str, what: str = "the file") -> Path:
    with atomic_open(path, "w", what, newline=None) as fh:
        fh.write(text)
    return Path(path)


def remove_stale_temps(*paths: str | Path) -> list[Path]:
    """Delete temporary files a killed run left beside ``paths`` (``.NAME.*.tmp``; the
    real files are intact, renames are atomic). Call only when starting a run on them."""
    removed = []
    for p in map(Path, paths):
        if not p.parent.is_dir():
            continue
        for tmp in [*p.parent.glob(f".{p.name}.*.tmp"), p.parent / f".{p.name}.tmp"]:
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def staged_dir(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """A whole folder written atomically: build it in a hidden sibling and move it to
    ``out_dir`` at the end.

    Yields the staging folder. On success it replaces ``out_dir`` (an existing
    non-empty ``out_dir`` is refused unless ``overwrite``); on any error the staging
    folder is removed and ``out_dir`` is left untouched.
    """

    out_dir = Path(out_dir).absolute()
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output {out_dir} exists and is not a folder", out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise InputError(f"output folder {out_dir} is not empty; choose an empty folder "
                         "or pass overwrite=True", out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield stage
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "data")
        try:
            os.replace(stage, out_dir)
        except BaseException:
            if old is not None:
                os.replace(old / "data", out_dir)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
