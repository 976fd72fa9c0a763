"""Screens as screens: plates of wells and fields, per-well results, many machines.

* :mod:`.layout` - well names (``A01``), plate formats (96, 384, 1536 wells);
* :mod:`.reading` - a plate as a list of fields: folder plates (``PLATE/<well>/`` or well and
  field taken from file names by a regex) and OME-Zarr HCS plates (lazily, any resolution level);
* :mod:`.synthetic` - simulated plates with the rare phenotype in known wells (both forms);
* :mod:`.wells` - scoring a plate field by field (in this process or on Dask), per-well scores
  and tables, streamed and resumable;
* :mod:`.results` - a results folder read back (tables and ``plate.json``: which plate, read how);
* :mod:`.heatmap` - the plate heatmap.
"""
