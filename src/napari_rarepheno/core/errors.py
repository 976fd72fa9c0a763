"""Exceptions with messages a biologist can act on.

Every error raised for bad input names the file (or folder) and the problem,
so the CLI can print it as one line and the docks as a notification.
``docs/troubleshooting.md`` lists the messages and what to do about each.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

#: how to pick channels, said the same way by every message that needs it (CLI and docks)
CHOOSE_CHANNELS = ("choose the channels to use (--channels or --channel-files on the command line; the channel "
                   "mapping in the dock)")


class RarephenoError(Exception):
    """Base class for all errors the engine raises on purpose."""


def _with_path(message: str, path: str | Path | None) -> str:
    if path is not None and str(path) not in message:
        return f"{path}: {message}"
    return message


class InputError(RarephenoError, ValueError):
    """Bad input data: a file, folder, table or parameter that cannot be used."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        super().__init__(_with_path(message, path))


class OutputError(InputError):
    """An output that cannot be written: folder not writable, disk full, file in the way.

    A subclass of :class:`InputError` (the output location is a parameter the user chose),
    so callers that catch ``InputError`` keep working."""


class ModelFileError(RarephenoError):
    """A model file that is missing, corrupt, unsafe or of the wrong kind."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        super().__init__(_with_path(message, path))


class Cancelled(RarephenoError):
    """Raised inside long work when the user asked it to stop."""


# ------------------------------------------------------------------ OS errors -> messages
_HINTS = {
    errno.ENOSPC: "the disk is full; free some space (or choose another folder) and run again"
                  " (training: add --resume to continue from the last completed epoch)",
    errno.EDQUOT: "the disk quota is exceeded; free some space and run again",
    errno.EROFS: "the folder is on a read-only disk; choose another output folder",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "permission denied; choose a folder you can write to",
    errno.ENOTDIR: "a file of that name is in the way (a folder is needed there)",
    errno.EEXIST: "a file of that name is in the way (a folder is needed there)",
    errno.EISDIR: "this is a folder, a file name is needed",
    errno.ENAMETOOLONG: "the path is too long; choose a shorter output path",
}


def os_error_message(e: OSError) -> str:
    """A short, actionable description of an OS error (no traceback, no errno jargon)."""
    hint = _HINTS.get(e.errno or -1)
    if hint:
        return hint
    return (e.strerror or str(e) or type(e).__name__).rstrip(".")


def output_error(e: OSError, path: str | Path, what: str = "cannot write here") -> OutputError:
    return OutputError(f"{what}: {os_error_message(e)}", path)


def ensure_writable_dir(folder: str | Path, create: bool = True) -> Path:
    """Create ``folder`` if needed and prove it is writable by creating a temporary file.

    ``os.access`` alone is not enough: it says yes to root on a read-only mount and
    cannot see a full disk. ``create=False`` checks without creating anything (for checks
    made before long work): the nearest existing parent must be a writable folder.
    Raises :class:`OutputError` naming the folder."""
    folder = Path(folder) if str(folder) else Path(".")
    blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        if blocker == folder:
            raise OutputError("the output path is a file, not a folder; choose another path", folder)
        raise OutputError(f"cannot create the output folder {folder}: {blocker} is a file, not a folder; "
                          "choose another output path", folder)
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise output_error(e, folder, "cannot create the output folder") from None
        probe_dir = folder
    else:
        probe_dir = next(p for p in [folder, *folder.parents] if p.exists())
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        raise OutputError(f"the folder {probe_dir} is not writable; choose a folder you can write to", folder)
    try:
        fd, probe = tempfile.mkstemp(prefix=".rarepheno-write-test-", dir=probe_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise output_error(e, folder, f"cannot write to {probe_dir}") from None
    return folder
