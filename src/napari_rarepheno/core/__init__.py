"""The napari-free engine of napari-rarepheno.

Nothing in ``core`` imports napari, Qt or magicgui: the same code serves the
``rarepheno`` command, notebooks, tests and the napari docks.
"""
from .errors import InputError, ModelFileError, RarephenoError

__all__ = ["RarephenoError", "InputError", "ModelFileError"]
