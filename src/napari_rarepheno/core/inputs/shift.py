"""Is a new input like the inputs the model was trained on? The statistics a model keeps of
its training inputs, and the comparison every prediction makes, so that a model never gives
confident answers on data it has never seen without saying so.

A model file keeps (``meta.input_stats``):

* ``intensity``: per channel, the distribution over training samples of each sample's
  99th and 50th percentile, in the units the samples were read in (before any scaling), and
  the share of training samples that are over-exposed (``saturated_share``: at least
  :data:`SATURATED_PIXELS` of a channel's pixels sit at that channel's maximum);
* ``object_diameter``: the typical object (cell, nucleus) diameter in px of the training
  images or crops (:func:`core.cells.segment.estimate_diameter` on the marker channel);
* ``confidence``: the share of validation samples (training samples where there is no
  validation set) whose most probable class is below :data:`LOW_CONFIDENCE`;
* ``embedding``: the distribution of the network's own embedding of the training samples
  (DeepYeast: fc1): mean, the main principal axes with their variances, and the 50th/99th
  percentile of the training samples' own distance, so a distance can be read as "beyond
  99% of the training cells".

:func:`compare` reads new samples against them and returns a :class:`ShiftReport`:
per-sample scores to sort on (``shift_score``: embedding distance over the training 99th
percentile, > 1 = outside what the network saw; ``brightness``: the sample's 99th
percentile over the training median, per channel the most deviating) and plain-language
messages such as "these cells are 2.3x brighter than the training cells (H2B)" or "71% of
the cells lie outside the training distribution". Docks show the messages, the CLI prints
them and writes them next to its tables, and the tables carry the per-sample scores.

Over-exposure is the one brightness change a per-sample scaling cannot undo: clipped pixels
lose the texture (condensed chromatin, spindles) the classes depend on. On the region split
of the mitosis crops the shipped DeepYeast loses 8 points with the test crops x2 as bright
(clipped at 255) and none at x0.5 (benchmarks/transfer.py). A sample counts as over-exposed
when at least 2% of a channel's pixels share its maximum value: 2-6% of the curated training
crops, every crop at x2, 94-96% at x1.5 (``saturated``, per sample: the largest such share of
its channels); more than 10% of the samples, and twice the training share, is reported.

A kind of cell the model never learned can sit inside the training distribution of its
features (it looks like a class it knows) and still show in its answers: the apoptotic cells
of a movie the model never saw (leave-one-movie-out, 6 apoptotic training crops from another
movie) were called late or early anaphase, none outside the embedding's 99th percentile, but
41% of them with a top probability below 0.7 against 5-9% of the raw HeLa field's cells (as
is, at 0.7x and 1.4x magnification, x2 exposure; same model family). More than 10% of the
cells below it, and twice the validation share, is reported.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

#: brightness or object size further than this factor from the training inputs is reported
BRIGHTNESS_FACTOR = 1.5
SIZE_FACTOR = 1.25
#: report when more than this share of the samples lies beyond the training 99th percentile
OUTSIDE_SHARE = 0.10
#: a sample is over-exposed when at least this share of a channel's pixels sit at its maximum
SATURATED_PIXELS = 0.02
#: a sample's most probable class below this is a low-confidence call
LOW_CONFIDENCE = 0.7
_N_AXES = 16


# ------------------------------------------------------------------- fitting
def intensity_stats(samples: np.ndarray) -> dict:
    """Per-channel distribution of each sample's 99th and 50th percentile ((N, C, H, W) as read)."""
    x = np.asarray(samples, np.float32)
    p99, p50 = per_sample_levels(x)
    q = lambda a: np.percentile(a, (25, 50, 75), axis=0).T.tolist()  # noqa: E731  (C, 3)
    sat = per_sample_saturation(x).max(1) if len(x) else np.zeros(0)
    return {"p99": q(p99), "p50": q(p50), "n": int(len(x)),
            "saturated_share": float((sat >= SATURATED_PIXELS).mean()) if len(sat) else 0.0}


def per_sample_saturation(x: np.ndarray) -> np.ndarray:
    """(N, C) share of each sample's channel pixels at that channel's maximum (within float
    rounding: a clipped plateau resampled stays at its value); 0 for a constant channel."""
    x = np.asarray(x, np.float32)
    if x.ndim == 3:
        x = x[None]
    hi = x.max(axis=(-2, -1), keepdims=True)
    lo = x.min(axis=(-2, -1), keepdims=True)
    at_max = x >= hi - 1e-5 * np.maximum(np.abs(hi), 1e-12)
    share = at_max.mean(axis=(-2, -1))
    return np.where((hi > lo)[..., 0, 0], share, 0.0).astype(np.float32)


def per_sample_levels(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) 99th and 50th percentile of each sample's channels."""
    x = np.asarray(x, np.float32)
    if x.ndim == 3:
        x = x[None]
    p99, p50 = np.percentile(x, (99, 50), axis=(-2, -1))
    return p99.astype(np.float32), p50.astype(np.float32)


def embedding_stats(emb: np.ndarray, n_axes: int = _N_AXES) -> dict:
    """The training embedding's mean, main axes, their variances and the training distances'
    50th/99th percentile (:func:`embedding_distance`)."""
    e = np.asarray(emb, np.float64)
    mean = e.mean(0)
    c = e - mean
    k = int(max(1, min(n_axes, len(e) - 1, e.shape[1])))
    _, s, vt = np.linalg.svd(c, full_matrices=False)
    axes, var = vt[:k], np.maximum(s[:k] ** 2 / max(len(e) - 1, 1), 1e-12)
    resid = c - (c @ axes.T) @ axes
    rvar = max(float((resid ** 2).sum(1).mean()), 1e-12)
    st = {"mean": mean.tolist(), "axes": axes.tolist(), "variances": var.tolist(), "residual": rvar}
    d = _distance(st, e)
    st.update(d50=float(np.percentile(d, 50)), d99=float(np.percentile(d, 99)), n=int(len(e)))
    return st


def _distance(st: dict, emb: np.ndarray) -> np.ndarray:
    e = np.asarray(emb, np.float64) - np.asarray(st["mean"])
    axes = np.asarray(st["axes"])
    proj = e @ axes.T
    resid = e - proj @ axes
    d2 = (proj ** 2 / np.asarray(st["variances"])).sum(1) + (resid ** 2).sum(1) / st["residual"]
    return np.sqrt(d2 / (len(st["variances"]) + 1))


def embedding_distance(stats: dict, emb: np.ndarray) -> np.ndarray:
    """(N,) distance of each embedding from the training embeddings over the training 99th
    percentile: <= 1 for 99% of the training samples, > 1 outside what the network saw."""
    st = stats.get("embedding") if "embedding" in stats else stats
    return (_distance(st, emb) / max(st["d99"], 1e-12)).astype(np.float32)


def confidence_stats(probabilities: np.ndarray) -> dict:
    """The share of samples whose most probable class is below :data:`LOW_CONFIDENCE`."""
    p = np.asarray(probabilities, np.float64).max(1)
    return {"low": LOW_CONFIDENCE, "low_share": float((p < LOW_CONFIDENCE).mean()) if len(p) else 0.0,
            "n": int(len(p))}


def fit_input_stats(samples: np.ndarray, *, embeddings: np.ndarray | None = None,
                    diameter: float | None = None, probabilities: np.ndarray | None = None) -> dict:
    """Everything :func:`compare` needs, from the training samples (as read), their
    embeddings, the typical object diameter and class probabilities of held-out samples."""
    out = {"intensity": intensity_stats(samples)}
    if probabilities is not None and len(probabilities):
        out["confidence"] = confidence_stats(probabilities)
    if diameter is not None and np.isfinite(diameter):
        out["object_diameter"] = float(diameter)
    if embeddings is not None and len(embeddings) >= 3:
        out["embedding"] = embedding_stats(embeddings)
    return out


# --------------------------------------------------------------- comparing
@dataclass
class ShiftReport:
    """How new inputs compare with the training inputs: per-sample scores and messages."""

    messages: list[str] = field(default_factory=list)
    shift_score: np.ndarray | None = None     # (N,) embedding distance / training 99th percentile
    brightness: np.ndarray | None = None      # (N,) 99th percentile / training median, most deviating channel
    saturated: np.ndarray | None = None       # (N,) share of pixels at the maximum, most saturated channel
    summary: dict = field(default_factory=dict)

    @property
    def shifted(self) -> bool:
        return bool(self.messages)

    def columns(self, i: int) -> dict:
        """The per-sample columns of table row ``i``."""
        row = {}
        if self.shift_score is not None:
            row["shift_score"] = round(float(self.shift_score[i]), 3)
        if self.brightness is not None:
            row["brightness"] = round(float(self.brightness[i]), 3)
        if self.saturated is not None:
            row["saturated"] = round(float(self.saturated[i]), 3)
        return row


def _factor(r: float) -> str:
    return f"{r:.1f}x brighter" if r >= 1 else f"{1 / r:.1f}x darker"


def over_exposed(rep: ShiftReport, samples: np.ndarray, inten: dict, names: Sequence[str], what: str) -> None:
    """Per-sample ``saturated`` shares into ``rep``, and a message when clearly more samples
    are over-exposed than among the training samples. A model trained before this statistic
    existed gets the column but no message: flat synthetic shapes (the WSCNN simulations) sit
    at their maximum by design, and only the training share tells that from over-exposure."""
    sat = per_sample_saturation(samples)
    rep.saturated = sat.max(1).astype(np.float32)
    flagged = sat >= SATURATED_PIXELS
    share = float(flagged.any(1).mean())
    rep.summary["saturated_share"] = share
    if "saturated_share" not in inten:
        return
    ref = float(inten["saturated_share"])
    if share > max(OUTSIDE_SHARE, 2 * ref):
        over = np.flatnonzero(flagged.mean(0) > OUTSIDE_SHARE)
        chans = [names[c] if c < len(names) else f"channel {c}" for c in over]
        rep.messages.append(
            f"{100 * share:.0f}% of the {what} are over-exposed (at least {100 * SATURATED_PIXELS:.0f}% of their "
            f"pixels at the maximum{', ' + ', '.join(chans) if chans else ''}; {100 * ref:.0f}% of the training "
            f"{what}): clipping erases the texture the classes depend on, so expect more errors there; lower the "
            "exposure, or sort on 'saturated'")


def compare(stats: dict, samples: np.ndarray | None = None, *, embeddings: np.ndarray | None = None,
            diameter: float | None = None, channel_names: Sequence[str] | None = None,
            what: str = "cells", scaled: bool = False, probabilities: np.ndarray | None = None) -> ShiftReport:
    """New ``samples`` (N, C, H, W as read; or None), their ``embeddings``, the objects'
    ``diameter`` and the model's class ``probabilities`` for them against a model's ``stats``
    (:func:`fit_input_stats`). ``scaled``: the model
    scales each sample by its own percentiles, so brightness alone does not change its answers
    (the message says so). Models without stats give an empty report."""
    rep = ShiftReport()
    if not stats:
        return rep
    inten = stats.get("intensity")
    if samples is not None and inten is not None and len(samples):
        p99, _ = per_sample_levels(samples)
        ref = np.asarray(inten["p99"])[:, 1]                          # training median per channel
        n = min(p99.shape[1], len(ref))
        ratio = p99[:, :n] / np.maximum(ref[:n], 1e-12)
        worst = np.take_along_axis(ratio, np.abs(np.log(np.maximum(ratio, 1e-12))).argmax(1)[:, None], 1)[:, 0]
        rep.brightness = worst.astype(np.float32)
        med = np.median(ratio, axis=0)
        rep.summary["brightness_ratio"] = [float(m) for m in med]
        names = list(channel_names or [])[:n] + [f"channel {c}" for c in range(len(channel_names or []), n)]
        off = [f"{_factor(float(m))} ({names[c]})" for c, m in enumerate(med)
               if not 1 / BRIGHTNESS_FACTOR <= m <= BRIGHTNESS_FACTOR]
        if off:
            tail = ("; this model scales each one by its own percentiles, so brightness alone does not change "
                    "its answers") if scaled else "; this model reads absolute intensities: expect wrong classes"
            rep.messages.append(f"these {what} are {', '.join(off)} than the training {what}{tail}")
        over_exposed(rep, samples, inten, names, what)
    d0 = stats.get("object_diameter")
    if diameter is not None and d0:
        r = float(diameter) / float(d0)
        rep.summary["size_ratio"] = r
        if not 1 / SIZE_FACTOR <= r <= SIZE_FACTOR:
            rep.messages.append(f"the objects are {r:.1f}x the size of the training objects ({diameter:.0f} vs "
                                f"{d0:.0f} px across): the pixel size or magnification differs")
    emb = stats.get("embedding")
    if embeddings is not None and emb is not None and len(embeddings):
        rep.shift_score = embedding_distance(emb, embeddings)
        share = float((rep.shift_score > 1).mean())
        rep.summary["outside_share"] = share
        if share > OUTSIDE_SHARE:
            rep.messages.append(f"{100 * share:.0f}% of the {what} lie outside the training distribution (beyond "
                                f"99% of the training {what} in the network's own features): treat their classes "
                                "with care and sort on shift_score")
    conf = stats.get("confidence")
    if probabilities is not None and conf is not None and len(probabilities):
        low = float(conf.get("low", LOW_CONFIDENCE))
        share = float((np.asarray(probabilities).max(1) < low).mean())
        ref = float(conf["low_share"])
        rep.summary["low_confidence_share"] = share
        if share > max(OUTSIDE_SHARE, 2 * ref):
            rep.messages.append(f"{100 * share:.0f}% of the {what} are called with low confidence (top class below "
                                f"{low:.1f}; {100 * ref:.0f}% of the validation {what}): they may be a kind the model "
                                "was not trained on; check them (sort on p_class) and label examples")
    return rep
