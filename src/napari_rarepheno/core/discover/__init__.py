"""Interactive discovery: rank, review, cluster and relabel what the models find.

* :mod:`.scoring` - streaming batch scoring of many files (one batch in memory);
* :mod:`.rank` - :func:`rank_images` (probability / entropy) and :func:`find_mislabels`;
* :mod:`.decisions` - the review log, :func:`apply_decisions` (preview, apply, undo file), :func:`undo`;
* :mod:`.gallery` - :func:`build_gallery`: crops of saliency peaks (WSCNN) or cells (DeepYeast),
  embedded and clustered;
* :mod:`.clusters` - k-means / HDBSCAN and the 2-D map of embeddings;
* :mod:`.gallery_files` - montage, save/load, :func:`name_cluster` (a cluster becomes a class);
* :mod:`.retraining` - :func:`retrain` from corrected labels or new classes.

Import from the module that defines a name (``from ...discover.decisions import
record_decision``): this package imports nothing, so the review log stays torch-free.
"""
