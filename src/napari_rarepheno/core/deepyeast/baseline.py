"""The paper's two comparisons on crop sets: the random-forest baseline on hand-made
features, and transfer (network features + a classical head for classes the network
never saw) as a few-shot curve against hand-made features.

Both take :class:`ImageSet` s loaded by ``core.deepyeast.data.load_crops`` (the one loader)
and return plain dicts with the same keys as ``evaluate_deepyeast`` / the CLI JSON.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..io.folders import ImageSet
from ..metrics import multiclass_metrics


def hand_features(data: ImageSet, marker_channel: int = 0, protein_channel: int | None = None):
    """(N, F) hand-made features (intensity, shape, Haralick, Zernike, Gabor...) of a crop set."""
    from ..classic.features import (  # deferred: loads scipy, skimage
        FeatureConfig,
        extract_features,
    )

    c = data.n_channels
    prot = protein_channel if protein_channel is not None else (1 if c > 1 else 0)
    if not (0 <= marker_channel < c and 0 <= prot < c):
        raise InputError(f"marker channel {marker_channel} / protein channel {prot} out of range for crops with "
                         f"{c} channel(s)", data.root)
    x, names = extract_features(data.images, config=FeatureConfig(marker_channel=marker_channel,
                                                                  protein_channel=prot))
    return x, names


def cv_groups(data: ImageSet, folds: int = 3) -> np.ndarray | None:
    """Blocks for group-aware CV (regions / proteins), or None when they do not group cells
    or when some class lives in fewer than ``folds`` blocks (its held-out fold would never
    have been seen in training)."""
    from .data import split_keys  # deferred: loads torch

    keys = np.asarray(split_keys(data))
    if not folds <= len(set(keys.tolist())) < len(keys):
        return None
    per_class = [len(set(keys[data.labels == c].tolist())) for c in np.unique(data.labels)]
    return keys if min(per_class) >= folds else None


def run_baseline(train: ImageSet, test: ImageSet, *, val: ImageSet | None = None, forest=None,
                 marker_channel: int = 0, protein_channel: int | None = None, min_cells: int = 10,
                 return_probabilities: bool = False) -> dict:
    """Random forest on hand-made features scored on ``test`` (same keys as evaluate).

    Hyperparameters are chosen on ``val`` when given (the paper; the forest is fitted on
    ``train`` only), else by CV on ``train`` (by region/protein where the names allow)."""
    from ..classic.classifiers import (  # deferred: loads scipy, skimage
        ForestConfig,
        fit_forest,
    )
    from .data import align_labels  # deferred: loads torch
    from .evaluate import group_summary  # deferred: loads scipy, torch

    test = align_labels(test, train.class_names)
    t0 = time.perf_counter()
    xtr, names = hand_features(train, marker_channel, protein_channel)
    xte, _ = hand_features(test, marker_channel, protein_channel)
    if val is not None:
        val = align_labels(val, train.class_names)
        xva, _ = hand_features(val, marker_channel, protein_channel)
        model, choice = fit_forest(xtr, train.labels, forest or ForestConfig(), X_val=xva, y_val=val.labels)
    else:
        model, choice = fit_forest(xtr, train.labels, forest or ForestConfig(), groups=cv_groups(train))
    t_feat = time.perf_counter() - t0
    k = len(train.class_names)
    probs = np.zeros((len(xte), k))
    probs[:, model.classes_] = model.predict_proba(xte)
    out = multiclass_metrics(test.labels, probs.argmax(1), train.class_names)
    out.update(group_summary(probs, test.labels, test.groups, train.class_names, min_cells))
    out["forest"] = {kk: (v if kk != "grid" else None) for kk, v in choice.__dict__.items() if kk != "grid"}
    out.update(n_features=len(names), n_train=len(train), fit_seconds=round(t_feat, 2),
               seconds=round(time.perf_counter() - t0, 2))
    if return_probabilities:
        out["probabilities"] = probs
    return out


def run_transfer(model, train: ImageSet, test: ImageSet, shots: Sequence[int] = (1, 3, 5, 10, 25, 50), *,
                 layer: str = "fc1", head: str = "forest", repeats: int = 3, seed: int = 0, device: str = "auto",
                 hand: bool = True, marker_channel: int = 0, protein_channel: int | None = None) -> dict:
    """Few-shot accuracy on ``test`` when training a ``head`` on ``shot`` examples per class of
    ``train``, with the network's ``layer`` outputs ('deep') and with hand-made features ('hand')."""
    from ..classic.classifiers import few_shot_curve  # deferred: loads scipy, skimage
    from ..io.modelfile import as_loaded  # deferred: loads torch
    from .classify import embed_crops  # deferred: loads torch

    lm = as_loaded(model, "deepyeast")
    test = _align_new(test, train.class_names)
    t0 = time.perf_counter()
    dtr = embed_crops(lm, train.images, layer, device=device)
    dte = embed_crops(lm, test.images, layer, device=device)
    out = {"shots": sorted(set(int(s) for s in shots)), "layer": layer, "head": head, "repeats": repeats,
           "classes": list(train.class_names), "n_train": len(train), "n_test": len(test),
           "seen_by_network": sorted(set(train.class_names) & set(lm.meta.class_names)),
           "deep": {str(k): v for k, v in few_shot_curve(dtr, train.labels, dte, test.labels, shots, seed,
                                                          repeats, head).items()}}
    if hand:
        htr, _ = hand_features(train, marker_channel, protein_channel)
        hte, _ = hand_features(test, marker_channel, protein_channel)
        out["hand"] = {str(k): v for k, v in few_shot_curve(htr, train.labels, hte, test.labels, shots, seed,
                                                             repeats, head).items()}
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def _align_new(test: ImageSet, class_names: Sequence[str]) -> ImageSet:
    from .data import align_labels  # deferred: loads torch

    try:
        return align_labels(test, class_names)
    except InputError:
        raise InputError(f"test classes {', '.join(test.class_names)} must all appear among the training "
                         f"classes {', '.join(class_names)}", test.root) from None
