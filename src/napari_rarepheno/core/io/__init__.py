"""Files in and out, with clear errors and nothing half-written.

* :mod:`.images` - read microscopy images as (C, H, W), write TIFF/PNG;
* :mod:`.folders` - labeled class folders -> in-memory :class:`ImageSet` (per-channel files, groups);
* :mod:`.files` - many loose files: expand folders, unique output names;
* :mod:`.deeploc_h5` - DeepLoc-layout HDF5 crops;
* :mod:`.boxes` - the ground-truth box table (``objects.csv``);
* :mod:`.modelfile` - model files: safetensors + JSON metadata, never unpickled; :func:`as_loaded`;
* :mod:`.atomic` - the one atomic-write helper (temporary file, then rename) and staged folders;
* :mod:`.tables` - the one CSV writer.
"""
