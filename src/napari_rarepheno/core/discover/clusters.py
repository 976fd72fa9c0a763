"""Cluster embeddings and map them to 2-D: the colours, PCA, k-means / HDBSCAN and t-SNE that
the gallery and the Discover dock share.

Features are standardised and reduced by PCA (at most 20 dimensions) before k-means
or HDBSCAN (scikit-learn >= 1.3; -1 marks noise); the 2-D map is t-SNE
(``core.deepyeast.explore.tsne_2d``), or PCA when there are too few crops for t-SNE.
"""
from __future__ import annotations

import numpy as np

from ..deepyeast.explore import tsne_2d
from ..errors import InputError

CLUSTER_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
                  "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2")
NOISE_COLOR = "#7f7f7f"


def cluster_color(k: int) -> str:
    return NOISE_COLOR if k < 0 else CLUSTER_COLORS[int(k) % len(CLUSTER_COLORS)]


def reduce(features: np.ndarray, dims: int = 20, seed: int = 0) -> np.ndarray:
    from sklearn.decomposition import PCA

    x = np.asarray(features, np.float64)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)
    n = min(dims, x.shape[1], len(x) - 1)
    return PCA(n, random_state=seed).fit_transform(x) if n >= 2 and n < x.shape[1] else x


def cluster_features(features: np.ndarray, n_clusters: int = 5, method: str = "kmeans", seed: int = 0) -> np.ndarray:
    """(N,) cluster ids (0..K-1; HDBSCAN: -1 = noise)."""
    n = len(features)
    if n == 0:
        return np.zeros(0, np.int64)
    x = reduce(features, seed=seed)
    if method == "hdbscan":
        from sklearn.cluster import HDBSCAN

        if n < 3:
            return np.zeros(n, np.int64)
        return HDBSCAN(min_cluster_size=max(3, n // 50), copy=True).fit_predict(x).astype(np.int64)
    if method != "kmeans":
        raise InputError(f"clustering method must be kmeans or hdbscan, got {method!r}")
    from sklearn.cluster import KMeans

    k = max(1, min(int(n_clusters), n))
    return KMeans(k, n_init=10, random_state=seed).fit_predict(x).astype(np.int64)


def embed_2d(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 2) t-SNE map of the features (PCA for fewer than 6 crops)."""
    n = len(features)
    if n >= 6:
        return tsne_2d(features, seed)
    x = reduce(features, dims=2, seed=seed)
    out = np.zeros((n, 2), np.float32)
    out[:, : min(2, x.shape[1] if x.ndim == 2 else 0)] = x[:, :2]
    return out
