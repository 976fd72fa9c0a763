"""More like this and what to label next, measured on the shipped mitosis crops.

The CellCognition crops shipped in the package (8 mitotic stages, 64x64 RGB PNG, channels
0,1 = H2B, tubulin) are split by region of the field (core.datasets.splits.split_by_region,
60/20/20, whole regions with their cell tracks on one side; never at random). A DeepYeast is
trained on the train split (30 epochs, batch 32, selected on the val split).

(a) **Precision at 10 of "more like this"**: the index (core.discover.similar) of the whole
    folder -- the screen -- in the network's fc1 embedding and in hand-made features; for
    each class with >= 25 crops, up to 10 held-out (val+test) query cells drawn at random;
    precision@10 = the fraction of the 10 nearest *other cells* of the query's class. Other
    cells: the query's own track (the same cell at other time points,
    core.datasets.splits.link_tracks) is left out. Also printed: counting the track
    (what the user sees) and a pool of held-out cells only. Goal: >= 0.8 on average.
(b) **Learning curve**: a random forest (150 trees, fixed seed) on fixed features, trained
    on the labels chosen so far from the train split, scored on the test split; start: one
    random cell per class (8 labels), then 8 labels per round chosen by
    core.discover.suggest.suggest_order (uncertainty x diversity; its uncertainty from the
    forest's probabilities), by uncertainty alone, or at random; 5 repeats (different
    starts). Reported: the labels each strategy needs until its mean accuracy reaches the
    full-data accuracy (the same forest on every training label). Goal: suggested <= half
    of random. Features: hand-made (no label has shaped them) and fc1 (the network was
    trained on all the training labels: its features already know them; shown for comparison).
(c) **Query time** of the index for 100,000 cells x 512 dimensions (synthetic clustered
    embeddings written through the index writer into a memory-mapped file): median / p95 /
    max of 50 queries and the first (cold) one; scikit-learn's brute-force NearestNeighbors
    on the same matrix for comparison (and agreement of the results).

    .venv/bin/python benchmarks/similar.py              # ~20 min on 2 busy CPU cores
    .venv/bin/python benchmarks/similar.py --reuse      # keep the network of the last run
    .venv/bin/python benchmarks/similar.py --quick      # smoke run (2 epochs, 2 repeats, 20k cells)

Prints the tables and writes benchmarks/results/similar.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]

from common import MITOSIS, machine  # noqa: E402

MODEL_DIR = ROOT / "benchmarks" / "data" / "similar"
GOAL_P10 = 0.8


def table(rows: list[list], header: list[str]) -> str:
    cells = [header] + [[f"{c:.3f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def make_split(data: Path, tmp: Path, seed: int) -> dict:
    """tmp/<split>/<class>/ symlinks (split by region) and tmp/heldout/<class>/ (val + test)."""
    from napari_rarepheno.core.datasets.splits import split_by_region, split_counts

    items = [(p, p.parent.name) for p in sorted(data.glob("*/*.png"))]
    parts = split_by_region(items, (0.6, 0.2, 0.2), seed=seed)
    for split, got in parts.items():
        for p, cls in got:
            for folder in [split] + (["heldout"] if split != "train" else []):
                (tmp / folder / cls).mkdir(parents=True, exist_ok=True)
                (tmp / folder / cls / p.name).symlink_to(p)
    return split_counts(parts)


def epoch_lines(p) -> None:
    if p.stage == "epoch":
        m = p.metrics
        print(f"  epoch {p.epoch:3d}/{p.n_epochs}  train loss {m['train_loss']:.3f}  val loss "
              f"{m.get('val_loss', float('nan')):.3f} acc {m.get('val_accuracy', float('nan')):.3f}  "
              f"{m['seconds']:.0f} s{'  *' if m.get('best') else ''}", flush=True)


# --------------------------------------------------------------------------- (a)
def precision_at_10(index, queries: dict[str, list[Path]], k: int = 10, exclude_track: bool = True) -> dict:
    """{class: mean precision@k over its queries}: the k nearest cells of ``index`` other than
    the query (and, with ``exclude_track``, other than the query's own track)."""
    from napari_rarepheno.core.datasets.splits import link_tracks

    names = [Path(p).name for p in index.images]
    tracks = np.asarray(link_tracks(names))
    labels = np.asarray(index.labels)
    out = {}
    for cls, qs in queries.items():
        ps = []
        for q in qs:
            row = index.find(q)
            drop = tracks == tracks[row] if exclude_track else np.arange(len(labels)) == row
            rows, _ = index.search(np.asarray(index.embeddings[row]), k + int(drop.sum()), row)
            rows = [r for r in rows if not drop[r]][:k]
            ps.append(float(np.mean(labels[rows] == cls)))
        out[cls] = float(np.mean(ps))
    return out


# --------------------------------------------------------------------------- (b)
def forest(seed: int = 0):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=150, random_state=seed, n_jobs=1)


def learning_curve(x, y, emb, xt, yt, strategy: str, start: np.ndarray, step: int, rng) -> list[tuple[int, float]]:
    """[(n labels, test accuracy)] growing the labeled set from ``start`` by ``step`` per round."""
    from napari_rarepheno.core.discover.suggest import suggest_order

    labeled = list(start)
    curve = []
    while True:
        idx = np.sort(np.asarray(labeled))  # the same set always gives the same forest
        rf = forest().fit(x[idx], y[idx])
        curve.append((len(idx), float((rf.predict(xt) == yt).mean())))
        rest = np.setdiff1d(np.arange(len(y)), idx)
        if len(rest) == 0:
            return curve
        n = min(step, len(rest))
        if strategy == "random":
            new = rng.choice(rest, n, replace=False)
        else:
            probs = rf.predict_proba(x[rest])
            s = suggest_order(probs, emb[rest], n, labeled=emb[idx],
                              diversity="kcenter" if strategy == "suggested" else "none")
            new = rest[s.order]
        labeled += [int(i) for i in new]


def labels_needed(curve: list[tuple[int, float]], target: float) -> int:
    return next(n for n, a in curve if a >= target - 1e-9)


def run_curves(name, x, y, emb, xt, yt, repeats: int, step: int, strategies) -> dict:
    full = float((forest().fit(x, y).predict(xt) == yt).mean())
    classes = np.unique(y)
    res = {"full_data_accuracy": full, "n_pool": len(y), "n_test": len(yt), "strategies": {}}
    for strategy in strategies:
        curves = []
        for r in range(repeats):
            rng = np.random.default_rng(100 + r)
            start = np.array([rng.choice(np.flatnonzero(y == c)) for c in classes])
            t0 = time.perf_counter()
            curves.append(learning_curve(x, y, emb, xt, yt, strategy, start, step, np.random.default_rng(200 + r)))
            print(f"  {name:10s} {strategy:11s} repeat {r + 1}/{repeats}: {time.perf_counter() - t0:.0f} s", flush=True)
        ns = [n for n, _ in curves[0]]
        mean = [float(np.mean([c[i][1] for c in curves])) for i in range(len(ns))]
        res["strategies"][strategy] = {
            "labels": ns, "mean_accuracy": mean,
            "labels_needed_mean_curve": labels_needed(list(zip(ns, mean)), full),
            "labels_needed_per_repeat": [labels_needed(c, full) for c in curves],
            "accuracy_at": {str(n): a for n, a in zip(ns, mean) if n in (8, 16, 32, 64, 96, 128, 192, 256)}}
    return res


# --------------------------------------------------------------------------- (c)
def query_time(n: int, dim: int, tmp: Path, queries: int = 50) -> dict:
    from sklearn.neighbors import NearestNeighbors

    from napari_rarepheno.core.discover.similar import IndexWriter, search

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(500, dim)).astype(np.float32)
    t0 = time.perf_counter()
    w = IndexWriter(tmp, n)
    for s in range(0, n, 4096):
        b = min(4096, n - s)
        w.add(s, centres[rng.integers(0, len(centres), b)] + rng.normal(0, 0.8, (b, dim)).astype(np.float32))
    w.finish(False)
    del w
    write_s = time.perf_counter() - t0
    emb = np.load(tmp / "embeddings.npy", mmap_mode="r")
    qrows = rng.integers(0, n, queries)
    times, found = [], []
    for q in qrows:
        t0 = time.perf_counter()
        rows, _ = search(emb, np.asarray(emb[q]), 10)
        times.append(time.perf_counter() - t0)
        found.append(rows)
    t0 = time.perf_counter()
    nn = NearestNeighbors(n_neighbors=10, algorithm="brute", metric="cosine").fit(np.asarray(emb))
    fit_s = time.perf_counter() - t0
    sk_times, agree = [], []
    for q, rows in zip(qrows[:10], found):
        t0 = time.perf_counter()
        ref = nn.kneighbors(np.asarray(emb[q])[None], return_distance=False)[0]
        sk_times.append(time.perf_counter() - t0)
        agree.append(len(set(ref.tolist()) & set(rows.tolist())) / 10)
    t = np.asarray(times)
    return {"n": n, "dim": dim, "matrix_mb": round(n * dim * 4 / 2 ** 20, 1), "write_seconds": round(write_s, 2),
            "first_query_s": float(t[0]), "median_s": float(np.median(t)), "p95_s": float(np.percentile(t, 95)),
            "max_s": float(t.max()), "queries": queries,
            "sklearn_bruteforce": {"fit_s": round(fit_s, 2), "median_query_s": float(np.median(sk_times)),
                                   "top10_agreement": float(np.mean(agree))}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(MITOSIS))
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--reuse", action="store_true", help="use the network of the last run if it exists")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 epochs, 2 repeats, 20k cells")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--step", type=int, default=8, help="labels per round of the learning curve")
    ap.add_argument("--queries", type=int, default=10, help="query cells per class for precision@10")
    ap.add_argument("--cells", type=int, default=100_000, help="index size for the query time")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 on a busy machine)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/similar.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.repeats, args.cells = 2, 2, 20_000

    import torch

    from napari_rarepheno.core.deepyeast.data import DeepYeastOptions
    from napari_rarepheno.core.deepyeast.train import train_deepyeast
    from napari_rarepheno.core.discover.similar import build_index
    from napari_rarepheno.core.training.trainer import TrainConfig

    if args.threads is None and os.getloadavg()[0] > (os.cpu_count() or 1):
        args.threads = 1  # OpenMP with all cores on a busy machine is many times slower than one thread
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    result = {"benchmark": "similar", "machine": machine(), "epochs": args.epochs, "repeats": args.repeats,
              "step": args.step, "load_average_at_start": os.getloadavg()[0], "quick": args.quick}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        counts = make_split(Path(args.data), tmp, 0)
        result["split"] = {"how": "by region of the field (split_by_region, 60/20/20, seed 0)", "counts": counts}
        print("split by region:", json.dumps(counts))

        # ------------------------------------------------------------------ the network
        model = MODEL_DIR / f"deepyeast{'-quick' if args.quick else ''}.safetensors"
        MODEL_DIR.mkdir(parents=True, exist_ok=True)
        if not (args.reuse and model.exists()):
            t0 = time.perf_counter()
            res = train_deepyeast(tmp / "train", model, DeepYeastOptions(channels=[0, 1]),
                                  TrainConfig(epochs=args.epochs, batch_size=32, seed=0, threads=args.threads),
                                  val_dir=tmp / "val", callback=epoch_lines)
            result["train"] = {"seconds": round(time.perf_counter() - t0, 1), "best_epoch": res.best_epoch}
        else:
            result["train"] = {"reused": str(model)}
        print(f"network: {model}")

        # ------------------------------------------------------------------ (a) precision@10
        cache = tmp / "cache"
        total = {c: sum(v.get(c, 0) for v in counts.values()) for c in counts["train"]}
        classes = sorted(c for c, n in total.items() if n >= 25)
        rng = np.random.default_rng(0)
        heldout = {c: sorted((tmp / "heldout" / c).iterdir()) for c in classes}
        queries = {c: [heldout[c][i] for i in rng.choice(len(heldout[c]), min(args.queries, len(heldout[c])),
                                                         replace=False)] for c in classes}
        screen = tmp / "screen"  # the whole folder as one pool (links, so that paths match the queries)
        for split in ("train", "val", "test"):
            for f in (tmp / split).glob("*/*.png"):
                (screen / f.parent.name).mkdir(parents=True, exist_ok=True)
                (screen / f.parent.name / f.name).symlink_to(f.resolve())
        queries_screen = {c: [screen / c / q.name for q in qs] for c, qs in queries.items()}
        p10, builds = {}, {}
        for emb_name, m in (("fc1", str(model)), ("hand-made", None)):
            t0 = time.perf_counter()
            idx = build_index(m, screen, channels=[0, 1], cache_dir=cache, device="cpu")
            builds[emb_name] = {"seconds": round(time.perf_counter() - t0, 2), "n": len(idx),
                                "dim": int(idx.embeddings.shape[1])}
            again = time.perf_counter()
            assert build_index(m, screen, channels=[0, 1], cache_dir=cache, device="cpu").cached
            builds[emb_name]["cached_seconds"] = round(time.perf_counter() - again, 3)
            held = build_index(m, tmp / "heldout", channels=[0, 1], cache_dir=cache, device="cpu")
            p10[emb_name] = {
                "screen_other_cells": precision_at_10(idx, queries_screen, exclude_track=True),
                "screen_with_track": precision_at_10(idx, queries_screen, exclude_track=False),
                "heldout_other_cells": precision_at_10(held, queries, exclude_track=True)}
        result["precision_at_10"] = {"classes": classes, "queries_per_class": {c: len(q) for c, q in queries.items()},
                                     "index_build": builds, **p10}
        rows = []
        for c in classes + ["mean"]:
            row = [c]
            for e in p10:
                for variant in ("screen_other_cells", "screen_with_track", "heldout_other_cells"):
                    v = p10[e][variant]
                    row.append(float(np.mean(list(v.values()))) if c == "mean" else v[c])
            rows.append(row)
        for e in p10:
            for variant in p10[e]:
                p10[e][variant]["mean"] = float(np.mean([p10[e][variant][c] for c in classes]))
        print("\n(a) precision@10 of more like this (held-out queries; columns: pool / what counts)")
        print(table(rows, ["class"] + [f"{e}: {v}" for e in p10 for v in ("screen, other cells", "screen, +track",
                                                                             "held-out pool")]))
        result["precision_at_10"]["goal"] = GOAL_P10

        # ------------------------------------------------------------------ (b) learning curves
        curves = {}
        for emb_name, m in (("hand-made", None), ("fc1", str(model))):
            tr = build_index(m, tmp / "train", channels=[0, 1], cache_dir=cache, device="cpu")
            te = build_index(m, tmp / "test", channels=[0, 1], cache_dir=cache, device="cpu")
            if emb_name == "hand-made":  # the forest takes the raw features; the index's vectors give diversity
                from napari_rarepheno.core.classic.features import FeatureConfig, extract_features
                from napari_rarepheno.core.io.folders import read_entry

                def feats(index):
                    x = np.stack([read_entry(e, [0, 1]) for e in index.entries])
                    return extract_features(x, config=FeatureConfig(marker_channel=0, protein_channel=1))[0]

                x, xt = feats(tr), feats(te)
            else:
                from napari_rarepheno.core.deepyeast.classify import embed_crops
                from napari_rarepheno.core.io.folders import read_entry

                x = embed_crops(str(model), np.stack([read_entry(e, [0, 1]) for e in tr.entries]), "fc1", device="cpu")
                xt = embed_crops(str(model), np.stack([read_entry(e, [0, 1]) for e in te.entries]), "fc1",
                                 device="cpu")
            y, yt = np.asarray(tr.labels), np.asarray(te.labels)
            curves[emb_name] = run_curves(emb_name, x, y, np.asarray(tr.embeddings), xt, yt, args.repeats, args.step,
                                          ("suggested", "uncertainty", "random"))
        result["learning_curve"] = curves
        print("\n(b) labels needed to reach the full-data accuracy (random forest on fixed features, mean of "
              f"{args.repeats} repeats)")
        rows = []
        for e, c in curves.items():
            s = c["strategies"]
            rows.append([e, c["n_pool"], c["full_data_accuracy"],
                         s["suggested"]["labels_needed_mean_curve"], s["uncertainty"]["labels_needed_mean_curve"],
                         s["random"]["labels_needed_mean_curve"],
                         s["suggested"]["labels_needed_mean_curve"] / s["random"]["labels_needed_mean_curve"]])
        print(table(rows, ["features", "pool", "full-data acc", "suggested", "uncertainty only", "random",
                           "suggested / random"]))
        for e, c in curves.items():
            print(f"  {e}: mean accuracy at 16 / 32 / 64 / 128 labels: " + "; ".join(
                f"{k} " + " ".join(f"{c['strategies'][k]['accuracy_at'].get(str(n), float('nan')):.3f}"
                                   for n in (16, 32, 64, 128)) for k in c["strategies"]))

        # ------------------------------------------------------------------ (c) query time
        qt = query_time(args.cells, 512, Path(tempfile.mkdtemp(dir=tmp)))
        result["query_time"] = qt
        print(f"\n(c) query time, {qt['n']:,} cells x {qt['dim']} dims ({qt['matrix_mb']} MB memory-mapped): "
              f"median {qt['median_s'] * 1000:.1f} ms, p95 {qt['p95_s'] * 1000:.1f} ms, max {qt['max_s'] * 1000:.1f} "
              f"ms, first {qt['first_query_s'] * 1000:.1f} ms (index written in {qt['write_seconds']} s); "
              f"scikit-learn brute force: {qt['sklearn_bruteforce']['median_query_s'] * 1000:.1f} ms/query, "
              f"top-10 agreement {qt['sklearn_bruteforce']['top10_agreement']:.2f}")
    result["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    print(f"\nresults written to {out} ({result['wall_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
