"""What to label next: the cells the model is least sure about, spread over the embedding.

:func:`uncertainty` turns class probabilities into a 0..1 score (``margin``: 1 - (p1 - p2),
the gap between the two likeliest classes; ``entropy``: normalised entropy).
:func:`suggest_order` picks ``n`` cells greedily: among the ``prefilter * n`` most uncertain
cells of the pool, each step takes the cell with the largest

    uncertainty x (cosine distance to the nearest labeled or already picked cell)

(an uncertainty-weighted k-center greedy): the first pick is the most uncertain cell
far from the labeled set, and a near-copy of a picked cell scores ~0, so one batch does
not spend labels on the same kind of cell. ``diversity="none"`` is plain uncertainty order.

:func:`suggest_labels` does it for a folder: the pool's embeddings and probabilities
come from the similarity index (:mod:`.similar`, cached), the labeled set from class
folders (also indexed), and the result is a table written as CSV.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..io.files import entry_path
from ..io.tables import write_csv
from ..progress import CancelToken, ProgressCallback, report_items
from .similar import build_index, pool_items, read_batches

HOW = ("margin", "entropy")
DIVERSITY = ("kcenter", "none")
COLUMNS = ("rank", "image", "predicted", "uncertainty", "margin", "entropy", "novelty")


def margin(probs: np.ndarray) -> np.ndarray:
    """p(first) - p(second) per row (1: sure, 0: a tie)."""
    p = np.asarray(probs, np.float64)
    if p.shape[1] < 2:
        return np.ones(len(p))
    top2 = np.sort(p, 1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def entropy(probs: np.ndarray) -> np.ndarray:
    """Normalised entropy in [0, 1] per row."""
    p = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    k = p.shape[1]
    return -(p * np.log(p)).sum(1) / np.log(k) if k > 1 else np.zeros(len(p))


def uncertainty(probs: np.ndarray, how: str = "margin") -> np.ndarray:
    """0..1, larger = less sure: ``1 - margin`` or the normalised entropy."""
    if how not in HOW:
        raise InputError(f"uncertainty must be one of {', '.join(HOW)}, got {how!r}")
    p = np.asarray(probs, np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise InputError(f"probabilities must be (N, K) with N >= 1, got shape {p.shape}")
    return 1.0 - margin(p) if how == "margin" else entropy(p)


@dataclass
class Suggestion:
    """``order``: pool rows to label, first = most useful; ``uncertainty`` (N,) of the whole
    pool; ``novelty`` (n,): distance of each pick to the nearest labeled / earlier pick at the
    time it was picked (inf for a first pick without labeled cells)."""

    order: np.ndarray
    uncertainty: np.ndarray
    novelty: np.ndarray


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def suggest_order(probs: np.ndarray | None, embeddings: np.ndarray, n: int = 20, *,
                  labeled: np.ndarray | None = None, how: str = "margin", diversity: str = "kcenter",
                  prefilter: int = 10, exclude: Sequence[int] = (), callback: ProgressCallback = None,
                  cancel: CancelToken | None = None) -> Suggestion:
    """``n`` rows of the unlabeled pool to label next (see the module doc).

    probs: (N, K) class probabilities of the pool (None: no model yet, every cell equally
    uncertain: pure k-center on the embedding); embeddings: (N, D) (scaled to unit length
    here); labeled: (M, D) embeddings of cells labeled already; exclude: pool rows never to
    suggest (e.g. labeled already). ``prefilter``: only the ``prefilter * n`` most uncertain
    cells are candidates (0: all)."""
    if diversity not in DIVERSITY:
        raise InputError(f"diversity must be one of {', '.join(DIVERSITY)}, got {diversity!r}")
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or len(emb) == 0:
        raise InputError(f"embeddings must be (N, D) with N >= 1, got shape {emb.shape}")
    if n < 1:
        raise InputError(f"the number of suggestions must be at least 1, got {n}")
    u = np.ones(len(emb)) if probs is None else uncertainty(probs, how)
    if len(u) != len(emb):
        raise InputError(f"{len(u)} probability rows for {len(emb)} embeddings")
    allowed = np.ones(len(emb), bool)
    allowed[np.asarray(list(exclude), np.int64)] = False
    cand = np.flatnonzero(allowed)
    n = min(int(n), len(cand))
    if n == 0:
        return Suggestion(np.zeros(0, np.int64), u, np.zeros(0))
    by_u = cand[np.lexsort((cand, -u[cand]))]       # most uncertain first, ties by row
    if diversity == "none":
        return Suggestion(by_u[:n], u, np.full(n, np.nan))
    if prefilter:
        by_u = by_u[:max(n, int(prefilter) * n)]
    x = _unit(np.asarray(emb[np.sort(by_u)]))
    rows = np.sort(by_u)
    uu = u[rows]
    near = np.full(len(rows), np.inf)
    if labeled is not None and len(labeled):
        lab = _unit(np.asarray(labeled))
        for a in range(0, len(lab), 4096):
            near = np.minimum(near, np.clip(1.0 - x @ lab[a:a + 4096].T, 0.0, 2.0).min(1))
    picked, novelty = [], []
    taken = np.zeros(len(rows), bool)
    for k in range(n):
        if cancel is not None and cancel.cancelled:
            break
        score = np.where(np.isinf(near), uu * 4.0, uu * near)  # 4 > any distance: unexplored first
        score[taken] = -np.inf
        best = np.flatnonzero(score == score.max())
        j = int(best[np.argmax(uu[best])])                      # ties: the less sure, then the lower row
        picked.append(int(rows[j]))
        novelty.append(float(near[j]))
        taken[j] = True
        near = np.minimum(near, np.clip(1.0 - x @ x[j], 0.0, 2.0))
        report_items(callback, k + 1, n, "choosing")
    return Suggestion(np.asarray(picked, np.int64), u, np.asarray(novelty))


def suggest_labels(model, folder: str | Path, n: int = 20, *, labeled: str | Path | None = None,
                   out: str | Path | None = None, how: str = "margin", diversity: str = "kcenter",
                   channel_files: Sequence[str] | None = None, channels: Sequence[int] | None = None,
                   cache_dir: str | Path | None = None, batch_size: int = 64, device: str = "auto",
                   index=None, callback: ProgressCallback = None, cancel: CancelToken | None = None) -> list[dict]:
    """The ``n`` images of ``folder`` (recursive) to label next, as rows ``rank, image,
    predicted, uncertainty, margin, entropy, novelty`` (written to ``out`` when given).

    ``model``: a DeepYeast/WSCNN model (its probabilities give the uncertainty, its embedding
    the diversity) or None/``"features"`` (hand-made features: diversity alone).
    ``labeled``: class folders of the cells labeled so far; suggestions keep away from them
    and never repeat them (a pool image that is also in ``labeled`` is skipped)."""
    if index is None:
        index = build_index(model, folder, channel_files=channel_files, channels=channels, cache_dir=cache_dir,
                            batch_size=batch_size, device=device, callback=callback, cancel=cancel)
    lab_emb, exclude = None, []
    if labeled is not None:
        lab_entries, lab_emb = labeled_vectors(index, labeled, model, channel_files=channel_files,
                                               channels=channels, cache_dir=cache_dir, batch_size=batch_size,
                                               device=device, cancel=cancel)
        names = {entry_path(e).name for e in lab_entries}
        exclude = [i for i, e in enumerate(index.entries) if entry_path(e).name in names]
    probs = None if index.probabilities is None else np.asarray(index.probabilities)
    s = suggest_order(probs, index.embeddings, n, labeled=lab_emb, how=how, diversity=diversity, exclude=exclude,
                      cancel=cancel)
    classes = index.class_names
    rows = []
    for k, (i, nov) in enumerate(zip(s.order, s.novelty)):
        r = {"rank": k + 1, "image": str(entry_path(index.entries[i])), "predicted": "",
             "uncertainty": float(s.uncertainty[i]), "margin": "", "entropy": "",
             "novelty": float(nov) if np.isfinite(nov) else "", "index": int(i), "label": index.labels[i]}
        if probs is not None:
            p = probs[i:i + 1]
            r.update(predicted=classes[int(p.argmax())] if classes else int(p.argmax()),
                     margin=float(margin(p)[0]), entropy=float(entropy(p)[0]))
        rows.append(r)
    report_items(callback, len(rows), len(rows), "suggested")
    if out is not None:
        write_csv(out, [{c: r[c] for c in COLUMNS} for r in rows], list(COLUMNS), "the suggestions table")
    return rows


def labeled_vectors(index, labeled: str | Path, model=None, *, channel_files: Sequence[str] | None = None,
                    channels: Sequence[int] | None = None, cache_dir: str | Path | None = None,
                    batch_size: int = 64, device: str = "auto", cancel: CancelToken | None = None):
    """``(entries, (M, D) unit vectors)`` of the cells in the class folders ``labeled``, in the
    pool index's embedding: a network's from their own (cached) index; hand-made features
    standardised with the pool's statistics."""
    if index.meta.get("center") is None:
        lab = build_index(index.embedder if index.embedder is not None else model, labeled,
                          channel_files=channel_files, channels=channels, cache_dir=cache_dir,
                          batch_size=batch_size, device=device, cancel=cancel)
        return lab.entries, np.asarray(lab.embeddings)
    if index.embedder is None:
        raise InputError("the pool index was loaded without its embedder; build it with build_index")
    items = pool_items(labeled, channel_files)
    out = np.zeros((len(items), index.embeddings.shape[1]), np.float32)
    for start, x in read_batches(index.embedder.read, items, batch_size):
        out[start:start + len(x)] = index.embed(x)
    return [it.entry for it in items], out
