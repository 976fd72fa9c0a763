"""Classifier heads on per-cell features: random forest (the DeepYeast paper's baseline,
hyper-parameters chosen on validation data or grouped CV), standardised logistic
regression, and the few-shot transfer curve."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import product

import numpy as np

from ..errors import InputError


@dataclass
class ForestConfig:
    """Reduced version of the paper's grid (trees 50..1000, mtry 10..300 of 435, leaf 1..50;
    they chose 500 / 100 (~23%) / 1). More trees never hurt much, so the tree counts are
    grown incrementally (warm start) rather than refitted."""

    n_estimators: tuple[int, ...] = (100, 300)
    max_features: tuple = ("sqrt", 0.25)
    min_samples_leaf: tuple[int, ...] = (1, 5)
    seed: int = 0
    n_jobs: int = 1
    cv_folds: int = 3


@dataclass
class ForestChoice:
    """The hyperparameters picked, their score and how they were picked (``grid``: every try)."""

    n_estimators: int
    max_features: object
    min_samples_leaf: int
    score: float
    selected_by: str
    grid: list = field(default_factory=list)

    def as_kwargs(self) -> dict:
        d = asdict(self)
        return {k: d[k] for k in ("n_estimators", "max_features", "min_samples_leaf")}


def _check_xy(x, y, what="training") -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise InputError(f"{what} data must be X (N, F) and y (N,), got {x.shape} and {y.shape}.")
    if not np.all(np.isfinite(x)):
        raise InputError(f"{what} features contain NaN/inf; run extract_features (it replaces them).")
    return x, y


def _grow_scores(params: dict, xtr, ytr, xva, yva, trees, cfg: ForestConfig) -> list[float]:
    from sklearn.ensemble import RandomForestClassifier

    rf = RandomForestClassifier(warm_start=True, random_state=cfg.seed, n_jobs=cfg.n_jobs, **params)
    scores = []
    for t in trees:
        rf.set_params(n_estimators=t)
        rf.fit(xtr, ytr)
        scores.append(float((rf.predict(xva) == yva).mean()))
    return scores


def fit_forest(X, y, config: ForestConfig | None = None, X_val=None, y_val=None, groups=None):
    """Random forest with hyperparameters chosen on (X_val, y_val), else by k-fold CV on X.

    groups: optional (N,) block ids (field region, plate...) so CV never splits one block.
    Returns (fitted RandomForestClassifier, ForestChoice). With a validation set the model
    is trained on X only (as in the paper); with CV it is refitted on all of X.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    cfg = config or ForestConfig()
    x, y = _check_xy(X, y)
    trees = sorted(set(cfg.n_estimators))
    combos = list(product(cfg.max_features, cfg.min_samples_leaf))
    if X_val is not None:
        xv, yv = _check_xy(X_val, y_val, "validation")
        splits, how = [(x, y, xv, yv)], "validation set"
    else:
        folds = min(cfg.cv_folds, int(np.unique(y, return_counts=True)[1].min()))
        if groups is not None:
            folds = min(cfg.cv_folds, len(np.unique(groups)))
        if folds < 2 or len(combos) * len(trees) == 1:
            splits, how = [], "no search (too few examples per class, or a single setting)"
        else:
            cv = GroupKFold(folds) if groups is not None else StratifiedKFold(folds, shuffle=True,
                                                                              random_state=cfg.seed)
            splits = [(x[a], y[a], x[b], y[b]) for a, b in cv.split(x, y, groups)]
            how = f"{folds}-fold CV" + (" by group" if groups is not None else "")
    grid, best = [], None
    for mf, leaf in combos:
        params = {"max_features": mf, "min_samples_leaf": leaf}
        per = np.mean([_grow_scores(params, *s, trees, cfg) for s in splits], 0) if splits \
            else np.zeros(len(trees))
        for t, sc in zip(trees, per):
            grid.append({"n_estimators": t, **params, "score": float(sc)})
            if best is None or sc > best["score"] + 1e-12:  # ties keep the cheaper, earlier setting
                best = grid[-1]
    choice = ForestChoice(best["n_estimators"], best["max_features"], best["min_samples_leaf"],
                          best["score"] if splits else float("nan"), how, grid)
    model = RandomForestClassifier(random_state=cfg.seed, n_jobs=cfg.n_jobs, **choice.as_kwargs())
    return model.fit(x, y), choice


def fit_linear(X, y, C: float = 1.0, penalty: str = "l2", seed: int = 0):
    """Standardised logistic regression (penalty 'l2', or 'l1' as in the paper's transfer test)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if penalty not in ("l1", "l2"):
        raise InputError(f"penalty must be 'l1' or 'l2', got {penalty!r}.")
    x, y = _check_xy(X, y)
    kw = {"solver": "saga" if penalty == "l1" else "lbfgs", "max_iter": 3000, "random_state": seed}
    if LogisticRegression().get_params().get("penalty") == "deprecated":  # scikit-learn >= 1.8
        kw["l1_ratio"] = 1.0 if penalty == "l1" else 0.0
    else:
        kw["penalty"] = penalty
    clf = LogisticRegression(C=C, **kw)
    return make_pipeline(StandardScaler(), clf).fit(x, y)


def few_shot_curve(X_train, y_train, X_test, y_test, shots=(1, 3, 5, 10, 25, 50), seed: int = 0,
                   repeats: int = 3, head: str = "forest", config: ForestConfig | None = None) -> dict:
    """Mean test accuracy when training on ``shot`` random examples per class, for each shot.

    Each shot is repeated ``repeats`` times with different draws. Shots larger than the
    smallest class are left out of the result (that many examples do not exist). The forest
    uses the first setting of ``config`` (no search: one example per class cannot be CV'd).
    """
    from sklearn.ensemble import RandomForestClassifier

    if head not in ("forest", "logreg"):
        raise InputError(f"head must be 'forest' or 'logreg', got {head!r}.")
    x, y = _check_xy(X_train, y_train)
    xt, yt = _check_xy(X_test, y_test, "test")
    cfg = config or ForestConfig()
    classes, counts = np.unique(y, return_counts=True)
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y == c) for c in classes]
    curve = {}
    for shot in sorted(set(int(s) for s in shots)):
        if shot < 1 or shot > counts.min():
            continue
        accs = []
        for _ in range(repeats):
            idx = np.concatenate([rng.choice(ix, shot, replace=False) for ix in by_class])
            if head == "forest":
                model = RandomForestClassifier(n_estimators=max(cfg.n_estimators), max_features=cfg.max_features[0],
                                               min_samples_leaf=1, random_state=int(rng.integers(2**31)),
                                               n_jobs=cfg.n_jobs).fit(x[idx], y[idx])
            else:
                model = fit_linear(x[idx], y[idx], seed=seed)
            accs.append(float((model.predict(xt) == yt).mean()))
        curve[shot] = float(np.mean(accs))
    if not curve:
        raise InputError(f"no shot in {tuple(shots)} is possible: the smallest class has {counts.min()} examples.")
    return curve
