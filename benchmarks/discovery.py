"""Interactive discovery, measured: suspected mislabels on simulated data, and the gallery of
salient cells on real HeLa mosaics.

    .venv/bin/python benchmarks/discovery.py            # both parts (~15-20 min on 2 busy CPU cores)
    .venv/bin/python benchmarks/discovery.py --reuse    # re-measure with the models of the last run
    .venv/bin/python benchmarks/discovery.py --quick    # smoke run

Sizes (chosen for a shared 2-core CPU): part 1 uses 300 fields per class (200 for
training), 12 epochs; part 2 uses 120 mosaics per class (72 for training), 4 epochs,
conv2 3x3 (``--conv2-kernel 7`` is the paper's choice for cells, 3x slower).

1. **Mislabels** (Sailem et al. 2017, 4.2): WSCNN simulated data (circles among ellipses;
   64x96 px fields of 3-6 objects, a third circles in positives), 5% of the *training*
   labels flipped on purpose (files moved to the
   other class folder). Train a WSCNN on the noisy folders, list suspected mislabels of
   DATA/train, and print precision and recall of the top k and 2k (k = number flipped),
   scoring the images as they are and averaged over 8 flips/rotations (``tta``).
   Aim: >= 90% of the flipped images within the top 2k.
2. **Gallery** on real cells: 3x3 mosaics of the CellCognition crops (interphase common;
   1-2 mitotic cells per positive field; split by field region). Train a WSCNN, crop the
   saliency peaks of the positive val+test fields, and report, by ground truth
   (tiles.csv): the fraction of gallery crops that are mitotic (against the fraction of
   mitotic tiles in those fields), and the adjusted Rand index between k-means clusters
   and mitotic stage (against a permutation null, and raw-pixel clustering).

Prints the numbers and writes benchmarks/results/discovery.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
from common import DATA, MITOSIS, RESULTS, save, table, timed

SIM = dict(height=64, width=96, grid=(2, 3), n_objects=(3, 6), size=(14, 18), rare_fraction=0.34,
           ellipse_ratio=(0.4, 0.65))
RARE = ("pro", "prometa", "meta", "earlyana", "lateana", "telo")


def train(data, out, epochs: int, lr: float, bs: int, seed: int = 0, **opts):
    from napari_rarepheno.core.training.augment import AugmentConfig
    from napari_rarepheno.core.training.trainer import TrainConfig
    from napari_rarepheno.core.wscnn.train import WSCNNOptions, train_wscnn

    def cb(p):
        if p.stage == "epoch":
            m = p.metrics
            print(f"  epoch {p.epoch}/{p.n_epochs} train {m['train_loss']:.3f}/{m['train_accuracy']:.3f} "
                  f"val {m.get('val_loss', float('nan')):.3f}/{m.get('val_accuracy', float('nan')):.3f} "
                  f"({m['seconds']:.0f} s)", flush=True)
    aug = AugmentConfig(rot90=True)  # flips and quarter turns: exact, and cheap on small fields
    return train_wscnn(data, out, WSCNNOptions(augment=aug, **opts),
                       TrainConfig(epochs=epochs, lr=lr, batch_size=bs, seed=seed), callback=cb)


# ------------------------------------------------------------------ part 1
def flip_labels(data: Path, fraction: float, seed: int) -> set[str]:
    """Move ``fraction`` of each class's training images to the other class folder, then
    give every training image a fresh random name (nothing in a name tells a flip)."""
    rng = np.random.default_rng(seed)
    picks = {}
    for cls in ("negative", "positive"):  # choose both classes' flips before moving any
        files = sorted((data / "train" / cls).glob("*.png"))
        picks[cls] = rng.choice(files, max(1, round(fraction * len(files))), replace=False)
    flipped = set()
    for cls, other in (("negative", "positive"), ("positive", "negative")):
        for f in picks[cls]:
            dst = data / "train" / other / f"flipped_{cls}_{f.name}"
            f.rename(dst)
            flipped.add(dst.name)
    files = sorted((data / "train").glob("*/*.png"))
    truth = set()
    for f, k in zip(files, rng.permutation(len(files))):  # two steps: new names may equal old ones
        f.rename(f.with_name(f"tmp_{k:05d}.png"))
        if f.name in flipped:
            truth.add(str(f.with_name(f"img_{k:05d}.png").resolve()))
    for f in sorted((data / "train").glob("*/tmp_*.png")):
        f.rename(f.with_name(f.name.replace("tmp_", "img_")))
    (data / "train" / "objects.csv").unlink(missing_ok=True)  # its names are stale now
    return truth


def mislabels(args, times) -> dict:
    from napari_rarepheno.core.datasets.synthetic import SimConfig, simulate
    from napari_rarepheno.core.discover.rank import find_mislabels, precision_recall_at, rank_images

    clean = DATA / "discovery-sim"
    cfg = SimConfig(n_per_class=args.sim_n, seed=3, **SIM)
    with timed("simulate", times):
        marker = clean / "simulation.json"
        if not marker.exists() or json.loads(marker.read_text())["config"]["n_per_class"] != args.sim_n:
            simulate(clean, cfg, overwrite=True)
    noisy = DATA / "discovery-sim-noisy"
    model = DATA / "models" / "discovery-sim.safetensors"
    if args.reuse and model.exists() and (noisy / "flipped.json").exists():
        print(f"reusing {model} (--reuse)")
        flipped, best_epoch = set(json.loads((noisy / "flipped.json").read_text())), None
    else:
        shutil.rmtree(noisy, ignore_errors=True)
        shutil.copytree(clean, noisy, ignore=shutil.ignore_patterns("test"))
        flipped = flip_labels(noisy, args.flip, seed=7)
        (noisy / "flipped.json").write_text(json.dumps(sorted(flipped), indent=1))
        best_epoch = None
    n_train = sum(1 for _ in (noisy / "train").glob("*/*.png"))
    print(f"\n[mislabels] {n_train} training images, {len(flipped)} labels flipped ({args.flip:.0%})")
    if best_epoch is None and not (args.reuse and model.exists()):
        with timed("train sim", times):
            best_epoch = train(noisy, model, args.sim_epochs, args.lr, 16).best_epoch
    k = len(flipped)
    out: dict = {}
    for tta in (False, True):
        name = "tta" if tta else "plain"
        with timed(f"score train + test ({name})", times):
            rows = find_mislabels(model, noisy / "train", top=n_train, device=args.device, tta=tta)
            test = rank_images(model, [clean / "test"], device=args.device, tta=tta)
        p_k, r_k = precision_recall_at(rows, flipped, k)
        p_2k, r_2k = precision_recall_at(rows, flipped, 2 * k)
        disagree = [r for r in rows if r["predicted"] != r["label"]]
        p_d, r_d = precision_recall_at(disagree, flipped, len(disagree))
        acc = float(np.mean([r["predicted"] == r["label"] for r in test]))
        print(f"\nscores {'averaged over 8 flips/rotations (--tta)' if tta else 'of the images as they are'}")
        print(table([[f"top k = {k}", p_k, r_k], [f"top 2k = {2 * k}", p_2k, r_2k],
                     [f"model disagrees ({len(disagree)})", p_d, r_d]], ["suspects", "precision", "recall"]))
        print(f"clean test accuracy of the model trained on noisy labels: {acc:.2%}; aim: recall@2k >= 90% "
              f"({'met' if r_2k >= 0.9 else 'NOT met'})")
        out[name] = {"precision_at_k": p_k, "recall_at_k": r_k, "precision_at_2k": p_2k, "recall_at_2k": r_2k,
                     "n_disagree": len(disagree), "precision_disagree": p_d, "recall_disagree": r_d,
                     "test_accuracy": acc}
    return {"n_train": n_train, "n_flipped": k, "flip_fraction": args.flip, "epochs": args.sim_epochs,
            "best_epoch": best_epoch, "sim_config": SIM, "n_per_class": args.sim_n, **out}


# ------------------------------------------------------------------ part 2
def tile_classes(split_dir: Path) -> dict[str, list[tuple[int, int, int, int, str]]]:
    out: dict[str, list] = {}
    with open(split_dir / "tiles.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            out.setdefault(r["image"], []).append((int(r["x0"]), int(r["y0"]), int(r["x1"]), int(r["y1"]), r["class"]))
    return out


def class_at(tiles, y: float, x: float) -> str:
    for x0, y0, x1, y1, c in tiles:
        if x0 <= x < x1 and y0 <= y < y1:
            return c
    return "none"


def ari_vs_null(truth, clusters, n: int = 1000, seed: int = 0) -> dict:
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(seed)
    ari = adjusted_rand_score(truth, clusters)
    null = np.array([adjusted_rand_score(truth, rng.permutation(clusters)) for _ in range(n)])
    return {"ari": float(ari), "null_mean": float(null.mean()), "null_p95": float(np.percentile(null, 95)),
            "p_value": float((1 + (null >= ari).sum()) / (n + 1))}


def gallery(args, times) -> dict:
    from napari_rarepheno.core.datasets.mosaic import MosaicConfig, build_mosaics
    from napari_rarepheno.core.discover.clusters import cluster_features
    from napari_rarepheno.core.discover.gallery import GalleryConfig, build_gallery
    from napari_rarepheno.core.discover.gallery_files import save_gallery

    data = DATA / "discovery-mitosis"
    model = DATA / "models" / "discovery-mitosis.safetensors"
    print(f"\n[gallery] 3x3 mosaics, {args.mosaic_n} fields per class")
    if args.reuse and model.exists() and (data / "mosaic.json").exists():
        print(f"reusing {model} (--reuse)")
        best_epoch, best = None, {}
    else:
        with timed("mosaics", times):
            build_mosaics(MITOSIS, data, MosaicConfig(rare=RARE, common=("inter",), grid=(3, 3),
                                                      rare_per_positive=(1, 2), n_per_class=args.mosaic_n, seed=0),
                          overwrite=True)
        with timed("train mitosis", times):
            res = train(data, model, args.mosaic_epochs, args.lr, 16, channels=[0, 1], conv2_kernel=args.conv2_kernel)
        best_epoch, best = res.best_epoch, res.history[res.best_epoch - 1] if res.best_epoch else {}
    splits = ("val", "test")
    cfg = GalleryConfig(crop_size=64, max_per_image=2, min_probability=0.5, n_clusters=args.clusters, seed=0)
    with timed("gallery", times):
        g = build_gallery(model, [data / s / "positive" for s in splits], cfg, device=args.device)
        save_gallery(g, DATA / "discovery-gallery", overwrite=True)
    tiles = {f"{s}/{k}": v for s in splits for k, v in tile_classes(data / s).items()}
    stage = np.array([class_at(tiles[f"{Path(p).parent.parent.name}/positive/{Path(p).name}"], y, x)
                      for p, y, x in zip(g.table["image"], g.table["y"], g.table["x"])])
    mitotic = np.isin(stage, RARE)
    base_rate = float(np.mean([c in RARE for key, v in tiles.items() if key.split("/")[1] == "positive"
                               for *_, c in v]))
    n_fields = sum(len(list((data / s / "positive").glob("*.png"))) for s in splits)
    frac = float(mitotic.mean())
    m = np.flatnonzero(mitotic)
    k_stage = min(args.clusters, len(set(stage[m]))) if len(m) else 1
    emb = cluster_features(g.features[m], k_stage, seed=0) if len(m) >= 2 else np.zeros(len(m), int)
    pix = cluster_features(g.crops[m].reshape(len(m), -1), k_stage, seed=0) if len(m) >= 2 else emb
    ari = ari_vs_null(stage[m], emb) if len(m) >= 2 else {}
    ari_pix = ari_vs_null(stage[m], pix) if len(m) >= 2 else {}
    ari_all = ari_vs_null(stage, g.clusters)
    counts = {str(c): int((stage == c).sum()) for c in sorted(set(stage.tolist()))}
    print(f"gallery: {len(g)} crops from {n_fields} positive fields; by ground truth {counts}")
    print(table([["mitotic fraction of gallery crops", frac], ["mitotic fraction of tiles in those fields", base_rate]],
                ["", "value"]))
    print(table([[f"network features, k={k_stage}, mitotic crops ({len(m)})", f"{ari.get('ari', float('nan')):.3f}",
                  f"{ari.get('null_mean', float('nan')):.3f}", f"{ari.get('null_p95', float('nan')):.3f}",
                  f"{ari.get('p_value', float('nan')):.3f}"],
                 [f"raw pixels, k={k_stage}, mitotic crops", f"{ari_pix.get('ari', float('nan')):.3f}",
                  f"{ari_pix.get('null_mean', float('nan')):.3f}", f"{ari_pix.get('null_p95', float('nan')):.3f}",
                  f"{ari_pix.get('p_value', float('nan')):.3f}"],
                 [f"network features, k={args.clusters}, all crops (stage incl. inter)", f"{ari_all['ari']:.3f}",
                  f"{ari_all['null_mean']:.3f}", f"{ari_all['null_p95']:.3f}", f"{ari_all['p_value']:.3f}"]],
                ["adjusted Rand index vs stage", "ARI", "null mean", "null 95%", "p"]))
    return {"n_per_class": args.mosaic_n, "epochs": args.mosaic_epochs, "best_epoch": best_epoch,
            "best_val": best, "n_crops": len(g),
            "n_positive_fields": n_fields, "stage_counts": counts, "mitotic_fraction": frac,
            "mitotic_base_rate": base_rate, "ari_mitotic_network": ari, "ari_mitotic_pixels": ari_pix,
            "ari_all_network": ari_all, "k_stage": k_stage, "k_all": args.clusters}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--part", choices=["all", "mislabels", "gallery"], default="all")
    ap.add_argument("--sim-n", type=int, default=None, help="simulated images per class (all splits)")
    ap.add_argument("--sim-epochs", type=int, default=None)
    ap.add_argument("--flip", type=float, default=0.05)
    ap.add_argument("--mosaic-n", type=int, default=None, help="mosaic fields per class (all splits)")
    ap.add_argument("--mosaic-epochs", type=int, default=None)
    ap.add_argument("--clusters", type=int, default=6)
    ap.add_argument("--conv2-kernel", type=int, default=3, choices=[3, 5, 7],
                    help="the paper uses 7 for cell images; 3 is 3x cheaper on a CPU")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--reuse", action="store_true", help="reuse the data and models of an earlier run (no training)")
    args = ap.parse_args()
    args.sim_n = args.sim_n or (90 if args.quick else 300)
    args.sim_epochs = args.sim_epochs or (1 if args.quick else 12)
    args.mosaic_n = args.mosaic_n or (40 if args.quick else 120)
    args.mosaic_epochs = args.mosaic_epochs or (1 if args.quick else 4)
    name = "discovery" + ("_quick" if args.quick else "")
    # one part at a time updates its own entry of the results file
    path = RESULTS / f"{name}.json"
    res: dict = json.loads(path.read_text()) if args.part != "all" and path.exists() else {}
    res.pop("machine", None)
    t_all = time.perf_counter()
    for part, run in (("mislabels", mislabels), ("gallery", gallery)):
        if args.part in ("all", part):
            times: dict[str, float] = {}
            t0 = time.perf_counter()
            res[part] = run(args, times)
            res[part].update(settings=dict(vars(args)), times_s=times, total_s=time.perf_counter() - t0,
                             date=time.strftime("%Y-%m-%d %H:%M:%S"))
    print(f"\ntotal wall time {(time.perf_counter() - t_all) / 60:.1f} min")
    save(name, res)


if __name__ == "__main__":
    main()
