"""``rarepheno demo``: simulate, train a WSCNN, and look at what it found in napari.

1. simulates the WSCNN paper's task (white circles, the rare phenotype, among ellipses)
   on 128x160 px fields into ``OUT/data`` (300 images per class over train/val/test);
2. trains a WSCNN on the CPU for 8 epochs (``OUT/model.safetensors``);
3. predicts one positive and one negative test image (``OUT/predictions/``:
   predictions.csv, objects.csv, saliency and mask TIFFs);
4. opens napari with both images (negative on the right), the saliency overlay, the
   detected objects and peaks, the true rare objects, and the WSCNN dock holding the
   trained model (its sliders re-segment live).

``--headless`` saves ``OUT/demo.png`` (the whole window) instead of showing it, and
exits; ``--quick`` makes it a one-minute smoke run (40 images per class, 2 epochs).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from .._sample_data import boxes_layer
from .._widgets.wscnn_results import Cached
from ..core.datasets.synthetic import SimConfig, simulate
from ..core.errors import InputError
from ..core.io.images import read_image
from ..core.progress import CancelToken
from ..core.wscnn.predict_files import predict_wscnn_files
from .common import TrainBar, count_bar, ctrl_c_cancels

#: the demo's simulation: the paper's task (white circles among ellipses) on smaller fields
#: with fewer, more elongated ellipses, so a CPU learns it in a few minutes
DEMO_SIM = dict(height=128, width=160, grid=(4, 5), n_objects=(10, 16), rare_fraction=0.2,
                ellipse_ratio=(0.45, 0.7))


def first_image(folder: Path) -> Path:
    """The first simulated PNG of ``folder`` (sorted by name)."""
    files = sorted(folder.glob("*.png"))
    if not files:
        raise InputError("no test images were simulated", folder)
    return files[0]


def truth_boxes(split_dir: Path, image: Path) -> list[tuple[int, int, int, int]]:
    """The rare objects' boxes ``(x0, y0, x1, y1)`` of ``image`` from ``split_dir/objects.csv``."""
    import csv

    path = split_dir / "objects.csv"
    if not path.exists():
        return []
    rel = image.relative_to(split_dir).as_posix()
    with open(path, newline="") as fh:
        return [(int(r["x0"]), int(r["y0"]), int(r["x1"]), int(r["y1"])) for r in csv.DictReader(fh)
                if r["image"] == rel and r.get("kind", "rare") == "rare"]


def _pump(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def cmd_demo(args) -> int:
    from ..core.training.augment import AugmentConfig  # deferred: loads torch
    from ..core.training.trainer import TrainConfig  # deferred: loads torch
    from ..core.wscnn.train import WSCNNOptions, train_wscnn  # deferred: loads torch

    out = Path(args.out)
    n_per_class = args.n_per_class or (40 if args.quick else 300)
    epochs = args.epochs or (2 if args.quick else 8)
    data = out / "data"
    if not (data / "simulation.json").exists():
        print(f"[demo] simulating {n_per_class} images per class into {data}", file=sys.stderr)
        simulate(data, SimConfig(n_per_class=n_per_class, seed=args.seed, **DEMO_SIM), overwrite=True,
                 callback=count_bar("simulating", args.quiet))
    model_path = out / "model.safetensors"
    if args.reuse_model and model_path.exists():
        from ..core.io.modelfile import load_model  # deferred: loads torch

        print(f"[demo] reusing {model_path}", file=sys.stderr)
        lm = load_model(model_path, expect_kind="wscnn")
        model, meta, best = lm.model, lm.meta, model_path
    else:
        print(f"[demo] training a WSCNN for {epochs} epoch(s) on the CPU -> {model_path}", file=sys.stderr)
        with ctrl_c_cancels(CancelToken()) as token:
            # mild augmentation (flips, the paper's rotations, small shifts): learns in few epochs
            aug = AugmentConfig(rotation_ranges=[(-20.0, 20.0), (160.0, 200.0)], translate_px=8.0)
            res = train_wscnn(data, model_path, WSCNNOptions(augment=aug),
                              TrainConfig(epochs=epochs, device=args.device, seed=args.seed, threads=args.threads,
                                          batch_size=args.batch_size, lr=args.lr),
                              callback=TrainBar(args.quiet), cancel=token)
        model, meta, best = res.model, res.meta, res.best_path
    pos = first_image(data / "test" / "positive")
    neg = first_image(data / "test" / "negative")
    pred_dir = out / "predictions"
    from ..core.io.modelfile import LoadedModel  # deferred: loads torch

    loaded = LoadedModel(model.cpu(), meta, best)
    csv_path = predict_wscnn_files(loaded, [pos, neg], pred_dir, device="cpu", overwrite=True)
    print(f"[demo] predictions: {csv_path}", file=sys.stderr)
    return show(args, loaded, pos, neg, data / "test", pred_dir)


def show(args, loaded, pos: Path, neg: Path, test_dir: Path, pred_dir: Path) -> int:
    """Open napari with the two images, their results and the WSCNN dock."""
    if args.headless:  # no toasts over the screenshot (warnings still go to the terminal)
        import os

        os.environ.setdefault("NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL", "error")
    import napari

    from .._widgets.wscnn_dock import (
        WSCNNDock,  # deferred: loads magicgui, napari, qtpy, superqt
    )
    from ..core.inference.predict import predict_wscnn  # deferred: loads torch

    viewer = napari.Viewer(title="napari-rarepheno demo", show=True)
    viewer.window.resize(1600, 1000)
    dock = WSCNNDock(viewer)
    viewer.window.add_dock_widget(dock, name="Rare phenotype (WSCNN)", area="right")
    dock.model.set(loaded, loaded.path)
    results, truth = [], []
    gap = 20
    for path, label in ((pos, "positive"), (neg, "negative")):
        img = read_image(path, as_float=False)[0]
        name = f"{label} test image"
        geom = {"translate": (0.0, 0.0)} if label == "positive" else {"translate": (0.0, img.shape[1] + gap)}
        viewer.add_image(img, name=name, colormap="gray", **geom)
        pred = predict_wscnn(loaded, read_image(path), saliency=True, device="cpu")
        results.append(Cached(name, pred.saliency, pred.probabilities, list(pred.class_names), geom, str(path)))
        if label == "positive":
            truth = truth_boxes(test_dir, path)
    dock.select_tab(dock.infer)
    dock.infer.show_results(results)
    if truth:  # on top, so the true rare objects stay visible over the saliency
        data, kw, _ = boxes_layer(truth, "rare objects (truth)", "#a0ff40", edge_width=1.0)
        viewer.add_shapes(data, **kw)
    dock.infer.images.select_row(0, emit=True)  # the positive image's objects in the table
    _pump(0.5)
    viewer.reset_view()
    if args.headless:
        _pump(1.0)
        png = Path(args.out) / "demo.png"
        viewer.screenshot(str(png), canvas_only=False)
        print(f"[demo] screenshot: {png}", file=sys.stderr)
        summary = ", ".join(f"{r.source}: P(positive) = {r.p_positive:.3f}" for r in results)
        print(f"[demo] {summary}", file=sys.stderr)
        viewer.close()
        return 0
    napari.run()
    return 0


def add_parser(sub, train_sub) -> None:
    p = sub.add_parser("demo", help="simulate data, train a WSCNN, and show the result in napari")
    p.add_argument("--out", default="demo-output", help="folder for the data, model and results")
    p.add_argument("--headless", action="store_true", help="write OUT/demo.png instead of opening a window")
    p.add_argument("--quick", action="store_true", help="a tiny, fast run (40 images per class, 2 epochs)")
    p.add_argument("--n-per-class", type=int, default=None, help="simulated images per class (default 300)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 8)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="images per step (small: more steps per epoch, learns in fewer epochs)")
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda | mps (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reuse-model", action="store_true", help="use OUT/model.safetensors if it exists")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
