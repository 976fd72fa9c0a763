"""Per-protein (per-group) aggregation of single-cell predictions.

Pärnamaa & Parts (2017), "Protein-level classification": the compartment of a
protein in one cell is a draw from a multinomial over the K compartments; with
an uninformative Dirichlet(alpha) prior, the posterior after observing the cells
of the protein is Dirichlet(alpha + counts), and the protein is assigned its
maximum a posteriori compartment.

Counts can be *hard* (each cell adds 1 to its argmax class) or *soft* (each
cell adds its whole probability vector). **Soft is the default**: the paper
describes the estimate as "softly counting the number of cells assigned with
each compartment", and a cell the classifier finds ambiguous (0.5 nucleus /
0.5 cytoplasm) should not vote as if it were certain. Soft counts also keep
mixtures (a protein in nucleus *and* cytoplasm) visible in the posterior mass
instead of letting a slight per-cell bias decide every cell the same way.
Hard counts are the literal multinomial model; use them for classifiers whose
probabilities are badly calibrated (e.g. forests with few trees).
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..errors import InputError

__all__ = ["GroupPosterior", "aggregate", "posterior_table", "is_mixture", "group_accuracy"]


@dataclass
class GroupPosterior:
    """Dirichlet posterior of one group (protein, well, strain...).

    ``alpha`` is the posterior concentration (prior + counts), ``mean`` its
    mean, ``credible`` a (K, 2) array of marginal lower/upper bounds from the
    Beta(alpha_k, alpha_0 - alpha_k) marginals. ``map_class`` is the index of
    the posterior mode (argmax of ``alpha``; ties go to the first class), or
    -1 for a group without cells, where only the prior speaks.
    """

    group: Hashable
    n_cells: int
    alpha: np.ndarray
    mean: np.ndarray
    map_class: int
    class_names: tuple[str, ...]
    credible: np.ndarray
    counts: np.ndarray
    credible_level: float = 0.9

    @property
    def map_name(self) -> str:
        return self.class_names[self.map_class] if self.map_class >= 0 else ""

    @property
    def mode(self) -> np.ndarray:
        """Posterior mode (the MAP composition); equals counts / n for alpha = 1."""
        a = self.alpha - 1.0
        if np.all(a >= 0) and a.sum() > 0:
            return a / a.sum()
        return self.mean.copy()


def _as_probs(probs, n_classes: int | None) -> np.ndarray:
    p = np.asarray(probs)
    if p.ndim == 1:  # integer class labels, one per cell
        if p.size and not np.issubdtype(p.dtype, np.integer):
            raise InputError("1-D predictions must be integer class indices; pass (N, K) probabilities otherwise.")
        if n_classes is None:
            raise InputError("class_names are needed to aggregate integer class labels.")
        if p.size and (p.min() < 0 or p.max() >= n_classes):
            raise InputError(f"class indices must lie in 0..{n_classes - 1}, got {p.min()}..{p.max()}.")
        return np.eye(n_classes)[p] if p.size else np.zeros((0, n_classes))
    if p.ndim != 2:
        raise InputError(f"probs must be (N, K) per-cell probabilities, got shape {p.shape}.")
    p = p.astype(np.float64)
    if not np.all(np.isfinite(p)):
        raise InputError("probs contains NaN or infinite values; check the classifier output.")
    return p


def aggregate(
    probs,
    groups: Sequence[Hashable] | np.ndarray,
    class_names: Sequence[str],
    prior: float | Sequence[float] = 1.0,
    soft: bool = True,
    credible_level: float = 0.9,
    all_groups: Sequence[Hashable] | None = None,
) -> list[GroupPosterior]:
    """Dirichlet posterior per group from per-cell class probabilities.

    probs: (N, K) per-cell probabilities (or (N,) integer labels = hard counts).
    groups: (N,) group key of each cell. Groups come out in order of first appearance;
    ``all_groups`` fixes the order and adds groups without cells (posterior = prior,
    ``map_class = -1``). prior: Dirichlet concentration, scalar or (K,), > 0.
    soft: sum probabilities (default) instead of counting argmax classes.
    credible_level: central mass of the marginal intervals (0.9 -> 5%..95%).
    """
    names = tuple(str(c) for c in class_names)
    k = len(names)
    if k < 2 or len(set(names)) != k:
        raise InputError(f"class_names must hold at least two distinct names, got {list(names)}.")
    p = _as_probs(probs, k)
    if p.shape[1] != k:
        raise InputError(f"probs has {p.shape[1]} columns but {k} class names were given.")
    if isinstance(groups, np.ndarray) and groups.ndim != 1:
        raise InputError(f"groups must be one key per cell (1-D), got shape {groups.shape}.")
    keys = groups.tolist() if isinstance(groups, np.ndarray) else list(groups)
    if len(keys) != len(p):
        raise InputError(f"groups must give one key per cell: {len(p)} cells but {len(keys)} group keys.")
    alpha0 = np.asarray(prior, dtype=np.float64)
    alpha0 = np.full(k, float(alpha0)) if alpha0.ndim == 0 else alpha0
    if alpha0.shape != (k,) or not np.all(alpha0 > 0):
        raise InputError(f"prior must be a positive number or {k} positive numbers, got {prior!r}.")
    if not 0 < credible_level < 1:
        raise InputError(f"credible_level must be in (0, 1), got {credible_level}.")
    if soft:
        if np.any(p < -1e-6) or (len(p) and np.abs(p.sum(1) - 1).max() > 1e-3):
            raise InputError("soft aggregation needs per-cell probabilities that are >= 0 and sum to 1; "
                             "apply a softmax to logits first, or use soft=False.")
        w = np.clip(p, 0, None)
    else:
        w = np.eye(k)[p.argmax(1)] if len(p) else p

    # group index per cell, in order of first appearance
    index: dict = {}
    if all_groups is not None:
        for key in all_groups:
            index.setdefault(key, len(index))
    codes = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        if key not in index:
            if all_groups is not None:
                raise InputError(f"group {key!r} is not listed in all_groups.")
            index[key] = len(index)
        codes[i] = index[key]
    counts = np.zeros((len(index), k))
    np.add.at(counts, codes, w)
    n_cells = np.bincount(codes, minlength=len(index))

    lo_q, hi_q = (1 - credible_level) / 2, (1 + credible_level) / 2
    out = []
    for key, j in index.items():
        a = alpha0 + counts[j]
        total = a.sum()
        rest = total - a
        interval = np.stack([stats.beta.ppf(lo_q, a, rest), stats.beta.ppf(hi_q, a, rest)], axis=1)
        out.append(GroupPosterior(
            group=key, n_cells=int(n_cells[j]), alpha=a, mean=a / total,
            map_class=int(np.argmax(a)) if n_cells[j] > 0 else -1, class_names=names,
            credible=interval, counts=counts[j], credible_level=credible_level))
    return out


def is_mixture(post: GroupPosterior, min_mass: float = 0.2) -> list[str]:
    """Compartments holding at least ``min_mass`` posterior mean mass, largest first.

    Two or more names = a mixed localization (e.g. ``['nucleus', 'cytoplasm']``).
    """
    if not 0 < min_mass <= 1:
        raise InputError(f"min_mass must be in (0, 1], got {min_mass}.")
    order = np.argsort(-post.mean, kind="stable")
    return [post.class_names[i] for i in order if post.mean[i] >= min_mass]


def posterior_table(posteriors: Sequence[GroupPosterior], intervals: bool = False,
                    min_mass: float = 0.2) -> list[dict]:
    """One plain dict per group, ready for ``csv.DictWriter`` or a napari features table.

    Columns: group, n_cells, map_class, map_prob, compartments (mixture, '+'-joined),
    p_<class> (posterior mean) and, with ``intervals``, lo_<class> / hi_<class>.
    """
    rows = []
    for post in posteriors:
        g = post.group.item() if isinstance(post.group, np.generic) else post.group
        row = {"group": g, "n_cells": post.n_cells, "map_class": post.map_name,
               "map_prob": float(post.mean[post.map_class]) if post.map_class >= 0 else float("nan"),
               "compartments": "+".join(is_mixture(post, min_mass)) if post.n_cells else ""}
        for i, name in enumerate(post.class_names):
            row[f"p_{name}"] = float(post.mean[i])
        if intervals:
            for i, name in enumerate(post.class_names):
                row[f"lo_{name}"] = float(post.credible[i, 0])
                row[f"hi_{name}"] = float(post.credible[i, 1])
        rows.append(row)
    return rows


def group_accuracy(posteriors: Sequence[GroupPosterior], true_class_by_group: Mapping[Hashable, int | str],
                   min_cells: int = 1) -> float:
    """Fraction of groups whose MAP class is the true one.

    Groups with fewer than ``min_cells`` cells are left out (the paper also reports
    accuracy for proteins with at least ten cells). True classes may be indices or names.
    """
    used = [p for p in posteriors if p.n_cells >= max(min_cells, 1)]
    if not used:
        raise InputError(f"no group has at least {max(min_cells, 1)} cells; nothing to score.")
    missing = [p.group for p in used if p.group not in true_class_by_group]
    if missing:
        raise InputError(f"no true class given for {len(missing)} group(s), e.g. {missing[:3]!r}.")
    correct = 0
    for post in used:
        truth = true_class_by_group[post.group]
        if isinstance(truth, (int, np.integer)):
            correct += int(truth) == post.map_class
        elif str(truth) in post.class_names:
            correct += str(truth) == post.map_name
        else:
            raise InputError(f"true class {truth!r} of group {post.group!r} is not one of "
                             f"{list(post.class_names)}.")
    return correct / len(used)
