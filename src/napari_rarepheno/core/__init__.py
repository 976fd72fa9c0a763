"""The napari-free engine of napari-rarepheno.

Nothing in ``core`` imports napari, Qt or magicgui: the same code serves the ``rarepheno``
command, notebooks, tests and the napari docks. It is grouped in wings; a wing imports only
the shared base and wings listed before it (``docs/architecture.md`` has the picture):

* base: :mod:`.errors`, :mod:`.progress` (callback + cancel token), :mod:`.device`, :mod:`.metrics`;
* :mod:`.nets` - the two networks; :mod:`.inputs` - input normalisation;
* :mod:`.io` - files (images, folders, model files, tables, atomic writes);
* :mod:`.datasets` - simulated data, mosaics, splits; :mod:`.cells` - cells in fields, crops;
* :mod:`.inference` - prediction, tiling, big images, saliency, objects;
* :mod:`.training` - the one trainer; :mod:`.classic` - hand-made features, random forest;
* :mod:`.wscnn`, :mod:`.deepyeast` - each method's tasks; :mod:`.discover` - rank, review, cluster.
* :mod:`.plates` - screens as plates: wells and fields (folders, OME-Zarr HCS), per-well results, Dask;
* :mod:`.export` - models for other tools: a bioimage.io model package, validated offline.
"""
from .errors import InputError, ModelFileError, RarephenoError

__all__ = ["RarephenoError", "InputError", "ModelFileError"]
