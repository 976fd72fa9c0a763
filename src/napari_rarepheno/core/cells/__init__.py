"""Cells in whole fields: find them, list them, cut one crop per cell.

* :mod:`.segment` - built-in segmentation of one channel at any cell size (every length from
  one diameter, measured from the image); a table of any label image's cells;
* :mod:`.size` - the typical object diameter: a scale-normalised Laplacian-of-Gaussian search;
* :mod:`.crops` - fixed-size crops centred on cells (exact centring, padded at the border) and
  the size of the object at a crop's centre;
* :mod:`.simulate` - synthetic nuclei fields of any size with known labels (for tests, benchmarks).
"""
