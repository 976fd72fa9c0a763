"""Data sets the project makes itself, and how labeled data is split.

* :mod:`.synthetic` - the WSCNN paper's simulation (rare circles among ellipses);
* :mod:`.yeast` - synthetic two-channel yeast fields and crops (12 DeepYeast classes);
* :mod:`.mosaic` - weakly labeled fields tiled from per-cell crops (e.g. the mitosis crops);
* :mod:`.splits` - train/val/test splits by movie position, field region or group, never at random.
"""
