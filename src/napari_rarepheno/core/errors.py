"""Exceptions with messages a biologist can act on.

Every error raised for bad input names the file (or folder) and the problem,
so the CLI can print it as one line and the docks as a notification.
"""
from __future__ import annotations

from pathlib import Path


class RarephenoError(Exception):
    """Base class for all errors the engine raises on purpose."""


class InputError(RarephenoError, ValueError):
    """Bad input data: a file, folder, table or parameter that cannot be used."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        if path is not None and str(path) not in message:
            message = f"{path}: {message}"
        super().__init__(message)


class ModelFileError(RarephenoError):
    """A model file that is missing, corrupt, unsafe or of the wrong kind."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        if path is not None and str(path) not in message:
            message = f"{path}: {message}"
        super().__init__(message)


class Cancelled(RarephenoError):
    """Raised inside long work when the user asked it to stop."""
