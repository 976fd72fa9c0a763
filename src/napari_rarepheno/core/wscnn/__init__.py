"""WSCNN tasks: what a user does with the weakly supervised network.

* :mod:`.train` - train on ``DATA/{train,val}/{negative,positive}`` (image-level labels only);
* :mod:`.evaluate` - classification, and the paper's localisation metric with ``objects.csv``;
* :mod:`.predict_files` - predict many files: streamed, resumable CSVs, saliency and masks.
"""
