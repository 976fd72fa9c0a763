"""DeepYeast evaluation: per-cell metrics and, where crops come in groups (proteins,
wells), per-group accuracy from the Dirichlet posterior (the paper's protein level)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..io.modelfile import as_loaded
from ..metrics import multiclass_metrics
from ..progress import ProgressCallback
from .aggregate import aggregate, group_accuracy
from .classify import classify_crops, model_options
from .data import DeepYeastOptions, align_labels, load_crops


def group_summary(probs: np.ndarray, labels: np.ndarray, groups: Sequence[str], class_names: Sequence[str],
                  min_cells: int = 10) -> dict:
    """Per-group (protein) accuracy from the Dirichlet posterior, when groups are meaningful:
    more than one group, fewer groups than cells and one true class per group."""
    groups = list(groups)
    keys = set(groups)
    if not groups or not 1 < len(keys) < len(groups):
        return {}
    truth: dict = {}
    for g, y in zip(groups, labels):
        if truth.setdefault(g, int(y)) != int(y):
            return {"groups_note": f"group {g!r} holds cells of several classes; no per-group accuracy"}
    post = aggregate(probs, groups, class_names)
    out = {"group_accuracy": group_accuracy(post, truth), "n_groups": len(post)}
    big = [p for p in post if p.n_cells >= min_cells]
    if big:
        out[f"group_accuracy_min{min_cells}"] = group_accuracy(big, truth)
        out[f"n_groups_min{min_cells}"] = len(big)
    return out


def evaluate_deepyeast(model, test_dir: str | Path, *, device: str = "auto", opts: DeepYeastOptions | None = None,
                       batch_size: int = 128, min_cells: int = 10, callback: ProgressCallback = None,
                       return_probabilities: bool = False) -> dict:
    """accuracy, n, per_class{name: precision, recall, n}, confusion and, with groups,
    group_accuracy and n_groups (also for groups of at least ``min_cells`` cells)."""
    lm = as_loaded(model, "deepyeast")
    opts = model_options(lm, opts)
    data = align_labels(load_crops(test_dir, opts, callback), lm.meta.class_names)
    probs = classify_crops(lm, data.images, device=device, batch_size=batch_size)
    out = multiclass_metrics(data.labels, probs.argmax(1), lm.meta.class_names)
    out.update(group_summary(probs, data.labels, data.groups, lm.meta.class_names, min_cells))
    if return_probabilities:
        out["probabilities"], out["labels"], out["groups"] = probs, data.labels, data.groups
    return out
