"""Visual analysis of a trained classifier, written as PNG and CSV files.

As in Pärnamaa & Parts (2017, Fig. 3b): t-SNE of chosen layers' outputs for up to 1,000
random cells coloured by their true class, plus the confusion matrix and per-class
precision/recall. Figures are drawn with matplotlib's Agg canvas (no pyplot, no GUI), so
this runs headless; the CSVs carry the same numbers for the napari docks and notebooks.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..io.tables import write_csv
from ..metrics import multiclass_metrics
from ..progress import ProgressCallback, report_items


def tsne_2d(features: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """(N, 2) t-SNE embedding of (N, D) features (standardised first; PCA to 50 dims if wider)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < 3:
        raise InputError(f"t-SNE needs at least 3 points as (N, D) features, got shape {x.shape}")
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)
    if x.shape[1] > 50 and len(x) > 50:
        x = PCA(50, random_state=seed).fit_transform(x)
    perp = float(min(perplexity, max(1.0, (len(x) - 1) / 3)))
    return TSNE(2, perplexity=perp, init="pca", random_state=seed).fit_transform(x).astype(np.float32)


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _colours(k: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if k <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(k)]


def plot_scatter(xy: np.ndarray, labels: np.ndarray, class_names: Sequence[str], path: str | Path,
                 title: str = "") -> Path:
    """2-D points coloured by class, with a legend, as a PNG."""
    fig = _figure(7.5, 6)
    ax = fig.add_subplot(111)
    for k, (name, col) in enumerate(zip(class_names, _colours(len(class_names)))):
        m = labels == k
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=9, color=col, label=f"{name} ({int(m.sum())})", alpha=0.8,
                       linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def plot_confusion(confusion, class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows = true class) with counts, as a PNG."""
    conf = np.asarray(confusion, np.float64)
    rates = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    k = len(class_names)
    fig = _figure(1.6 + 0.55 * k, 1.2 + 0.5 * k)
    ax = fig.add_subplot(111)
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            if conf[i, j]:
                ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def per_class_rows(metrics: dict) -> list[dict]:
    """One row per class (class, n, precision, recall) from a ``multiclass_metrics`` result."""
    return [{"class": c, "n": v["n"], "precision": round(v["precision"], 6), "recall": round(v["recall"], 6)}
            for c, v in metrics["per_class"].items()]


def confusion_rows(confusion, class_names: Sequence[str]) -> list[dict]:
    return [{"true": t, **{p: int(v) for p, v in zip(class_names, row)}} for t, row in zip(class_names, confusion)]


def explore(loaded, data, out_dir: str | Path, layers: Sequence[str] = ("fc1",), max_points: int = 1000,
            seed: int = 0, device: str = "auto", callback: ProgressCallback = None) -> dict:
    """Write confusion.png/.csv, per_class.csv, tsne_<layer>.png/.csv and summary.json for
    ``loaded`` (a DeepYeast model) on ``data`` (an ImageSet aligned to the model's classes)."""
    from ..io.modelfile import as_loaded  # deferred: loads torch
    from .classify import classify_crops, embed_crops  # deferred: loads torch
    from .evaluate import group_summary  # deferred: loads scipy, torch

    lm = as_loaded(loaded, "deepyeast")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(lm.meta.class_names)
    probs = classify_crops(lm, data.images, device=device)
    pred = probs.argmax(1)
    metrics = multiclass_metrics(data.labels, pred, names)
    metrics.update(group_summary(probs, data.labels, data.groups, names))
    files = {"confusion_png": plot_confusion(metrics["confusion"], names, out / "confusion.png",
                                             f"accuracy {metrics['accuracy']:.3f} (n = {metrics['n']})"),
             "confusion_csv": write_csv(out / "confusion.csv", confusion_rows(metrics["confusion"], names)),
             "per_class_csv": write_csv(out / "per_class.csv", per_class_rows(metrics))}
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(data), min(max_points, len(data)), replace=False))
    for i, layer in enumerate(layers):
        feats = embed_crops(lm, data.images[pick], layer, device=device)
        xy = tsne_2d(feats, seed)
        files[f"tsne_{layer}_png"] = plot_scatter(xy, data.labels[pick], names, out / f"tsne_{layer}.png",
                                                  f"t-SNE of {layer} ({len(pick)} cells)")
        files[f"tsne_{layer}_csv"] = write_csv(out / f"tsne_{layer}.csv", [
            {"id": data.relpath(j) if len(set(data.paths)) > 1 else f"row{j}", "x": float(a), "y": float(b),
             "class": names[data.labels[j]], "predicted": names[pred[j]]} for j, (a, b) in zip(pick, xy)])
        report_items(callback, i + 1, len(layers))
    summary = {**metrics, "layers": list(layers), "n_tsne": int(len(pick)),
               "files": {k: str(v) for k, v in files.items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary
