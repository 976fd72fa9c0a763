"""Interactive discovery: rank, review, cluster and relabel what the models find.

* :mod:`.scoring` - streaming batch scoring of many files (one batch in memory);
* :mod:`.rank` - :func:`rank_images` (probability / entropy) and :func:`find_mislabels`;
* :mod:`.decisions` - the review log, :func:`apply_decisions` (preview, apply, undo file), :func:`undo`;
* :mod:`.gallery` - :func:`build_gallery`: crops of saliency peaks (WSCNN) or cells (DeepYeast) + embeddings;
* :mod:`.clusters` - k-means / HDBSCAN, t-SNE map, montage, save/load, :func:`name_cluster`;
* :mod:`.retraining` - :func:`retrain` from corrected labels or new classes.

Names are imported on first use, so ``from ...discover import record_decision`` (the
review log, used in the GUI thread) does not import torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "rank": ("rank_images", "find_mislabels", "read_ranking", "precision_recall_at"),
    "decisions": ("record_decision", "read_decisions", "apply_decisions", "undo", "ApplyPlan"),
    "gallery": ("GalleryConfig", "Gallery", "build_gallery"),
    "clusters": ("cluster_gallery", "montage", "save_gallery", "load_gallery", "name_cluster"),
    "retraining": ("retrain",),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
