"""DeepYeast on synthetic yeast: per-cell and per-protein accuracy, and few-shot transfer.

Synthetic fields (core.data.yeast.simulate_yeast; protein k has class k % 12) are split
*by protein*: per class 9 proteins train, 3 validate (small fields, ~9 cells each), and
4 test proteins come from a second simulation (larger fields, ~29 cells each). The network
is trained on 8 of the 12 classes; the other 4 (``--new``) are the transfer task, as in
the paper's Fig. 4 (new classes, features from the first FC layer + a random forest,
1..50 examples per class) against the same forest on hand-made features.

Paper (real yeast): per cell 87% (DeepYeast) vs 75% (forest); per protein 99% (all) and
100% with >= 10 cells (forest 95% / 96%); transfer: network features beat CellProfiler
features for small training sets.

    .venv/bin/python benchmarks/deepyeast_synthetic.py [--epochs 20] [--field 192] [--crop-scale none]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE)]

from common import machine  # noqa: E402
from deepyeast_mitosis import epoch_lines  # noqa: E402

PAPER = {"cell_network": 0.87, "cell_forest": 0.75, "protein_network": 0.99, "protein_network_min10": 1.00,
         "protein_forest": 0.95, "protein_forest_min10": 0.96}
NEW = ("er", "golgi", "mitochondrion", "vacuole")


def build(tmp: Path, args) -> dict:
    """Two simulations: many training proteins with few cells each (small fields: protein
    diversity is what a classifier must generalise over), and test proteins with many
    cells each (larger fields, another seed), so per-protein accuracy can use >= 10 cells."""
    from napari_rarepheno.core.datasets.yeast import YeastConfig, simulate_yeast

    n_train, n_val = args.train_proteins, max(1, args.train_proteins // 3)
    fit = simulate_yeast(tmp / "sim_fit", n_proteins=12 * (n_train + n_val), seed=args.sim_seed,
                         cfg=YeastConfig(height=args.train_field, width=args.train_field))
    test = simulate_yeast(tmp / "sim_test", n_proteins=12 * args.test_proteins, seed=args.sim_seed + 1,
                          cfg=YeastConfig(height=args.field, width=args.field))
    for sim, fit_set in ((tmp / "sim_fit", True), (tmp / "sim_test", False)):
        for cdir in (sim / "crops").iterdir():
            for f in cdir.iterdir():
                j = int(f.name[2:6]) // 12
                split = ("train" if j < n_train else "val") if fit_set else "test"
                if cdir.name in NEW:
                    split = "new_train" if fit_set else "new_test"
                (tmp / split / cdir.name).mkdir(parents=True, exist_ok=True)
                (tmp / split / cdir.name / f.name).symlink_to(f)
    return {"n_cells": fit["n_cells"] + test["n_cells"], "train_field": args.train_field, "test_field": args.field,
            "split": f"by protein: per class {n_train} train and {n_val} val proteins ({args.train_field} px fields), "
                     f"{args.test_proteins} test proteins ({args.field} px fields, another seed); the 4 new classes: "
                     "the fit proteins for few-shot training, the test proteins for testing",
            "counts": {s: sum(1 for _ in (tmp / s).rglob("*.tif"))
                       for s in ("train", "val", "test", "new_train", "new_test")}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--recipe", default="fast")
    ap.add_argument("--crop-scale", default="percentile", help="'percentile' (each crop channel to its 1..99.9%%: "
                    "proteins differ in brightness) or 'none' (the paper's plain mean subtraction)")
    ap.add_argument("--width", type=float, default=1.0, help="layer width scale (1 = the paper's network)")
    ap.add_argument("--field", type=int, default=192, help="test field side (px): ~29 cells at 192")
    ap.add_argument("--train-field", type=int, default=128, help="training field side (px): ~9 cells at 128")
    ap.add_argument("--train-proteins", type=int, default=9, help="training proteins per class (+1/3 for val)")
    ap.add_argument("--test-proteins", type=int, default=4, help="test proteins per class")
    ap.add_argument("--sim-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shots", default="1,3,5,10,25,50")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32, help="32: ~10 updates per epoch on these small sets "
                    "(the recipes' 100 gives 3); 0 = the recipe's")
    ap.add_argument("--select-on", default="val_loss", choices=["val_loss", "val_accuracy"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precision", default="auto", help="auto (bf16 on GPUs and AMX CPUs), bf16 or fp32")
    ap.add_argument("--out", default=str(HERE / "results/deepyeast_synthetic.json"))
    args = ap.parse_args(argv)

    import torch

    from napari_rarepheno.core.deepyeast.baseline import run_baseline, run_transfer
    from napari_rarepheno.core.deepyeast.data import DeepYeastOptions, load_crops
    from napari_rarepheno.core.deepyeast.evaluate import evaluate_deepyeast
    from napari_rarepheno.core.deepyeast.train import train_deepyeast
    from napari_rarepheno.core.training.trainer import TrainConfig

    t_start = time.perf_counter()
    if args.threads is None and os.getloadavg()[0] > (os.cpu_count() or 1):
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    from napari_rarepheno.core.device import resolve_device, resolve_precision
    args.precision_used = str(resolve_precision(args.precision, resolve_device("cpu")) or "fp32")
    res = {"benchmark": "deepyeast_synthetic", "machine": machine(), "paper": PAPER, "epochs": args.epochs,
           "recipe": args.recipe, "crop_scale": args.crop_scale, "width": args.width,
           "precision": args.precision_used, "threads": args.threads,
           "batch_size": args.batch_size or "recipe", "select_on": args.select_on,
           "load_average_at_start": os.getloadavg()[0], "new_classes": list(NEW)}
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        t0 = time.perf_counter()
        res["data"] = build(tmp, args)
        res["data"]["simulate_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"synthetic yeast: {res['data']}")
        cfg = TrainConfig(epochs=args.epochs, recipe=args.recipe, seed=args.seed, precision=args.precision,
                          batch_size=args.batch_size or None, select_on=args.select_on,
                          threads=args.threads, step_every=max(1, round(args.epochs * 25 / 300)))
        t0 = time.perf_counter()
        opts = DeepYeastOptions(crop_scale=None if args.crop_scale == "none" else args.crop_scale, width=args.width)
        tr = train_deepyeast(tmp / "train", tmp / "net.safetensors", opts, cfg, val_dir=tmp / "val",
                             callback=epoch_lines)
        train_s = time.perf_counter() - t0
        net = evaluate_deepyeast(tmp / "net.safetensors", tmp / "test", device="cpu")
        net.update(best_epoch=tr.best_epoch, train_seconds=round(train_s, 1), history=tr.history)
        print(f"network: per cell {net['accuracy']:.3f}, per protein {net['group_accuracy']:.3f} "
              f"({train_s:.0f} s training)")
        t0 = time.perf_counter()
        train, val, test = (load_crops(tmp / s) for s in ("train", "val", "test"))
        rf = run_baseline(train, test, val=val)
        rf["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"forest: per cell {rf['accuracy']:.3f}, per protein {rf['group_accuracy']:.3f}")
        shots = [int(s) for s in args.shots.split(",")]
        transfer = run_transfer(tmp / "net.safetensors", load_crops(tmp / "new_train"), load_crops(tmp / "new_test"),
                                shots, repeats=args.repeats, seed=args.seed, device="cpu")
    res.update(network=net, forest=rf, transfer=transfer, wall_seconds=round(time.perf_counter() - t_start, 1))

    k10 = "group_accuracy_min10"
    print(f"\n{'':28s}{'network':>9s}{'paper':>7s}{'forest':>9s}{'paper':>7s}")
    print(f"{'per-cell accuracy':28s}{net['accuracy']:9.3f}{PAPER['cell_network']:7.2f}{rf['accuracy']:9.3f}"
          f"{PAPER['cell_forest']:7.2f}")
    print(f"{'per-protein accuracy':28s}{net['group_accuracy']:9.3f}{PAPER['protein_network']:7.2f}"
          f"{rf['group_accuracy']:9.3f}{PAPER['protein_forest']:7.2f}   ({net['n_groups']} test proteins)")
    if k10 in net:
        print(f"{'per-protein, >= 10 cells':28s}{net[k10]:9.3f}{PAPER['protein_network_min10']:7.2f}"
              f"{rf.get(k10, float('nan')):9.3f}{PAPER['protein_forest_min10']:7.2f}   "
              f"({net['n_groups_min10']} proteins)")
    print(f"\nper-class recall ({net['n']} test cells of {len(net['per_class'])} classes)")
    for c in net["per_class"]:
        print(f"  {c:18s}{net['per_class'][c]['recall']:7.3f}{rf['per_class'][c]['recall']:9.3f}")
    print(f"\nfew-shot transfer to classes the network never saw ({', '.join(NEW)}), random forest head, "
          f"{transfer['n_test']} test cells")
    print(f"  {'examples/class':16s}" + "".join(f"{s:>7s}" for s in transfer["deep"]))
    for kind in ("deep", "hand"):
        print(f"  {kind + ' features':16s}" + "".join(f"{transfer[kind][s]:7.3f}" for s in transfer["deep"]))
    print(f"\nwall time {res['wall_seconds']:.0f} s on {res['machine']['cpu_count']} CPU core(s) "
          f"({args.threads or 'all'} thread(s), {args.precision_used}), torch {res['machine']['torch']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=float))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
