"""What a network is given: the input normalisation stored in every model file and applied
the same way on every path (training, crops, fields, tiles).

* :mod:`.normalize` - :class:`Normalization` (per-channel statistics, optional clipping).
"""
