"""Cells in whole fields: find them, list them, cut one crop per cell.

* :mod:`.segment` - built-in segmentation of one channel; a table of any label image's cells;
* :mod:`.crops` - fixed-size crops centred on cells (exact centring, padded at the border).
"""
