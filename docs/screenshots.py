"""Regenerate the user guide's screenshots (docs/images/*.png) in a real napari viewer.

    make demo ARGS=--headless                      # once: demo-output/ (data + WSCNN model)
    xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python docs/screenshots.py

Uses ``demo-output/`` (the WSCNN demo) and builds ``demo-output/yeast*`` (synthetic
yeast fields and a DeepYeast model) and ``demo-output/plate/`` (a simulated 96-well
OME-Zarr plate and a WSCNN for its fields) on first use. Each picture drives the docks the way
a user does (set values, click, wait for the worker), then saves the whole window.
``tests/widgets/test_screenshots.py`` runs the same functions on tiny data.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
HERE = Path(__file__).resolve().parent


def pump(seconds: float = 0.3, until=None, timeout: float = 1800) -> None:
    from qtpy.QtWidgets import QApplication

    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end or (until is not None and not until()):
        QApplication.processEvents()
        time.sleep(0.02)
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("the worker did not finish")


def new_viewer(size=(1600, 1000)):
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*size)
    return viewer


class _Viewer:
    """Use the given viewer (tests) or make one and close it afterwards (the script)."""

    def __init__(self, viewer=None):
        self.given, self.viewer = viewer, viewer

    def __enter__(self):
        if self.viewer is None:
            self.viewer = new_viewer()
        else:
            self.viewer.window._qt_window.resize(1600, 1000)
        return self.viewer

    def __exit__(self, *exc):
        if self.given is None:
            self.viewer.close()


def snap(viewer, path: Path) -> Path:
    pump(0.8)
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False)
    print(f"wrote {path}", file=sys.stderr)
    return path


# ----------------------------------------------------------------------- WSCNN
def shot_wscnn_train(data: Path, out: Path, epochs: int = 4, model_out: Path | None = None,
                     viewer=None, batch: int = 16, lr: float = 1e-3, augment: str = "mild") -> Path:
    from napari_rarepheno._widgets.wscnn_dock import WSCNNDock

    with _Viewer(viewer) as viewer:
        dock = WSCNNDock(viewer)
        viewer.window.add_dock_widget(dock, name="Rare phenotype (WSCNN)")
        p = dock.train
        p.data.path = data
        p.epochs.value = epochs
        p.batch.value, p.lr.value, p.augment.value = batch, lr, augment
        p.device.value = "cpu"
        p.out.path = model_out or out.with_suffix(".safetensors")
        p.start_btn.native.click()
        pump(0.5, until=lambda: not p.running)
        return snap(viewer, out)


def shot_wscnn_infer(model: Path, image: Path, out: Path, truth=(), viewer=None) -> Path:
    from napari_rarepheno._widgets.wscnn_dock import WSCNNDock
    from napari_rarepheno.core.io.images import read_image

    with _Viewer(viewer) as viewer:
        dock = WSCNNDock(viewer)
        viewer.window.add_dock_widget(dock, name="Rare phenotype (WSCNN)")
        dock.load_model(model)
        pump(0.2, until=lambda: dock.model.ready)
        viewer.add_image(read_image(image, as_float=False)[0], name="positive image", colormap="gray")
        viewer.layers.selection.active = viewer.layers["positive image"]
        dock.tabs.setCurrentIndex(1)
        dock.infer.run_btn.native.click()
        pump(0.5, until=lambda: dock.infer.worker is None)
        if truth:  # on top of the results
            from napari_rarepheno._sample_data import boxes_layer

            data, kw, _ = boxes_layer(truth, "rare objects (truth)", "#a0ff40")
            viewer.add_shapes(data, **kw)
        dock.infer.objects.select_row(0, emit=True)
        viewer.reset_view()
        return snap(viewer, out)


# ------------------------------------------------------------------- DeepYeast
def shot_deepyeast(model: Path, out: Path, viewer=None) -> Path:
    from napari_rarepheno import _sample_data
    from napari_rarepheno._widgets.deepyeast_dock import DeepYeastDock

    with _Viewer(viewer) as viewer:
        dock = DeepYeastDock(viewer)
        viewer.window.add_dock_widget(dock, name="Localization classes (DeepYeast)")
        dock.load_model(model)
        pump(0.2, until=lambda: dock.model.ready)
        image, _, cls = _sample_data.yeast_field_arrays("spindle_pole", seed=21, size=320)
        viewer.add_image(image, channel_axis=0, name=["marker", "protein"], colormap=["magenta", "green"],
                         blending="additive")
        dock.tabs.setCurrentIndex(1)
        c = dock.classify
        c.channels.rows[0].value, c.channels.rows[1].value = "marker", "protein"  # the channel mapping
        c.run_btn.native.click()
        pump(0.5, until=lambda: c.worker is None)
        pump(0.5)  # the cells layer and tables are handed over one per event-loop turn
        if "cell diameter" in viewer.layers:  # the ruler, not a result
            viewer.layers.remove("cell diameter")
        viewer.reset_view()
        return snap(viewer, out)


def shot_explore(model: Path, test_crops: Path, fewshot_train: Path, fewshot_test: Path, out_dir: Path,
                 max_points: int = 400, viewer=None) -> list[Path]:
    from napari_rarepheno._widgets.explore_dock import ExploreDock
    from napari_rarepheno._widgets.explore_tsne import FOLDER

    with _Viewer(viewer) as viewer:
        dock = ExploreDock(viewer)
        viewer.window.add_dock_widget(dock, name="Explore")
        dock.load_model(model)
        pump(0.2, until=lambda: dock.model.ready)
        shots = []
        ev = dock.evaluate
        ev.folder.path = test_crops
        ev.run_btn.native.click()
        pump(0.5, until=lambda: ev.worker is None)
        shots.append(snap(viewer, out_dir / "explore-evaluate.png"))
        dock.tabs.setCurrentIndex(1)
        ts = dock.tsne
        ts.source.value = FOLDER
        ts.folder.path = test_crops
        ts.max_points.value = max_points
        ts.run_btn.native.click()
        pump(0.5, until=lambda: ts.worker is None)
        ts.show_point(0)
        shots.append(snap(viewer, out_dir / "explore-tsne.png"))
        dock.tabs.setCurrentIndex(2)
        fs = dock.fewshot
        fs.train_dir.path, fs.test_dir.path = fewshot_train, fewshot_test
        fs.shots.value = "1,3,5,10"
        fs.run_btn.native.click()
        pump(0.5, until=lambda: fs.worker is None)
        shots.append(snap(viewer, out_dir / "explore-fewshot.png"))
        return shots


# ----------------------------------------------------------------------- plates
def shot_similar(model: Path, pool: Path, out: Path, labels: Path, viewer=None) -> Path:
    """Discover dock, Similar tab: the index of a crop folder, "more like this" for one crop
    (the gallery of the nearest cells), two verdicts given with the y / n keys."""
    from napari_rarepheno._widgets.discover import DiscoverDock

    with _Viewer(viewer) as viewer:
        dock = DiscoverDock(viewer)
        viewer.window.add_dock_widget(dock, name="Discover", area="right")
        dock.set_model(model)
        sp = dock.similar
        dock.select_tab(sp)
        sp.folder.path = pool
        sp.device.value = "cpu"
        sp.run_btn.native.click()
        pump(0.5, until=lambda: sp.worker is None and not sp.running)
        cls = "nucleolus" if (pool / "nucleolus").is_dir() else sorted(d.name for d in pool.iterdir() if d.is_dir())[0]
        query = sorted(p for p in (pool / cls).iterdir() if p.suffix.lower() in (".png", ".tif"))[0]
        sp.top.value = 12
        sp.query_file.path = query
        sp.like_file_btn.native.click()
        pump(0.5, until=lambda: sp.worker is None and not sp.running)
        sp.labels.path = labels
        sp.class_name.value = cls
        for key in ("y", "y", "n"):
            sp.key(key)
            pump(0.3)
        viewer.reset_view()
        return snap(viewer, out)


def shot_plate(model: Path, plate: Path, out: Path, viewer=None) -> Path:
    """The Plate dock after a run: the heatmap, the ranked wells, the best well's fields open."""
    from napari_rarepheno._widgets.plate_dock import PlateDock

    with _Viewer(viewer) as viewer:
        dock = PlateDock(viewer)
        viewer.window.add_dock_widget(dock, name="Plate")
        dock.set_model(model)
        p = dock.panel
        p.plate_path.path = plate
        p.device.value = "cpu"
        p.run_btn.native.click()
        pump(0.5, until=lambda: not p.running)
        p.wells_table.select_row(0, emit=True)
        pump(0.5, until=lambda: p.opened is not None and not p.steps.busy)
        viewer.reset_view()
        return snap(viewer, out)


def shot_samples(out: Path, viewer=None) -> Path:
    with _Viewer(viewer) as viewer:
        viewer.open_sample("napari-rarepheno", "mitosis_mosaic")
        viewer.reset_view()
        return snap(viewer, out)


# ------------------------------------------------------------------------ data
def yeast_sets(work: Path, device: str = "cpu", epochs: int = 8) -> dict:
    """Synthetic yeast: training crops (12 classes), held-out test crops, a DeepYeast model,
    and a few-shot split (4 classes the model saw as 'other' data)."""
    import shutil

    from napari_rarepheno.core.datasets.yeast import YeastConfig, simulate_yeast
    from napari_rarepheno.core.deepyeast.data import DeepYeastOptions
    from napari_rarepheno.core.deepyeast.train import train_deepyeast
    from napari_rarepheno.core.training.trainer import TrainConfig

    train, test = work / "yeast-train", work / "yeast-test"
    small = YeastConfig(height=256, width=256, n_cells=(18, 26))
    if not (train / "yeast.json").exists():
        simulate_yeast(train, n_proteins=48, fields_per_protein=1, seed=1, overwrite=True, cfg=small)
    if not (test / "yeast.json").exists():
        simulate_yeast(test, n_proteins=24, fields_per_protein=1, seed=2, overwrite=True, cfg=small)
    model = work / "deepyeast.safetensors"
    if not model.exists():
        train_deepyeast(train / "crops", model, DeepYeastOptions(width=0.25, val_split="position"),
                        TrainConfig(epochs=epochs, device=device, seed=0))
    few = work / "fewshot"
    if not few.exists():
        for split, src in (("train", train), ("test", test)):
            for cls in ("golgi", "peroxisome", "endosome", "spindle_pole"):
                shutil.copytree(src / "crops" / cls, few / split / cls)
    return {"model": model, "test_crops": test / "crops", "few_train": few / "train", "few_test": few / "test"}


def plate_set(work: Path, device: str = "cpu") -> dict:
    """A simulated 96-well OME-Zarr plate (2 fields per well, the rare phenotype in 5 wells) and
    a WSCNN trained briefly on fields like its (benchmarks/plates.py's recipe: about a minute on
    2 CPU cores), built on first use."""
    from napari_rarepheno.core.datasets.synthetic import SimConfig, simulate
    from napari_rarepheno.core.plates.synthetic import (
        SMALL_FIELDS,
        PlateSim,
        simulate_plate,
    )
    from napari_rarepheno.core.training.augment import AugmentConfig
    from napari_rarepheno.core.training.trainer import TrainConfig
    from napari_rarepheno.core.wscnn.train import WSCNNOptions, train_wscnn

    root = work / "plate"
    model, plate = root / "model.safetensors", root / "plate.zarr"
    if not model.exists():
        simulate(root / "train", SimConfig(n_per_class=128, seed=5, **SMALL_FIELDS), overwrite=True)
        aug = AugmentConfig(rotation_ranges=[(-20.0, 20.0), (160.0, 200.0)], translate_px=8.0)
        train_wscnn(root / "train", model, WSCNNOptions(augment=aug),
                    TrainConfig(epochs=8, seed=0, batch_size=16, device=device))
    if not (plate / "simulation.json").exists():
        simulate_plate(plate, PlateSim(sim=SimConfig(seed=21, **SMALL_FIELDS), fields=2), "zarr", overwrite=True)
    return {"model": model, "plate": plate}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="demo-output", help="the demo's output folder (data, models)")
    ap.add_argument("--images", default=str(HERE / "images"))
    ap.add_argument("--only", nargs="*", default=None,
                    help="some of: train infer deepyeast explore similar plate samples (default: all)")
    args = ap.parse_args(argv)
    want = set(args.only or ("train", "infer", "deepyeast", "explore", "similar", "plate", "samples"))
    work, images = Path(args.work), Path(args.images)
    if want & {"train", "infer"} and not (work / "model.safetensors").exists():
        sys.exit(f"{work}/model.safetensors not found: run `make demo ARGS=--headless` first")
    os.environ.setdefault("NAPARI_APPLICATION_GUI_NOTIFICATION_LEVEL", "error")  # no toasts in pictures
    os.environ.setdefault("RAREPHENO_CACHE", str(work / "cache"))
    from napari_rarepheno.cli.demo import first_image, truth_boxes

    if "train" in want:  # the demo's data set, trained again through the dock
        shot_wscnn_train(work / "data", images / "wscnn-train.png", epochs=8,
                         model_out=work / "train-shot.safetensors")
    if "infer" in want:
        pos = first_image(work / "data" / "test" / "positive")
        shot_wscnn_infer(work / "model.safetensors", pos, images / "wscnn-infer.png",
                         truth_boxes(work / "data" / "test", pos))
    if want & {"deepyeast", "explore"}:
        ys = yeast_sets(work)
        if "deepyeast" in want:
            shot_deepyeast(ys["model"], images / "deepyeast-classify.png")
        if "explore" in want:
            shot_explore(ys["model"], ys["test_crops"], ys["few_train"], ys["few_test"], images)
    if "similar" in want:
        ys = yeast_sets(work)
        shot_similar(ys["model"], ys["test_crops"], images / "discover-similar.png", work / "similar-labels")
    if "plate" in want:
        ps = plate_set(work)
        shot_plate(ps["model"], ps["plate"], images / "plate.png")
    if "samples" in want:
        shot_samples(images / "sample-mitosis-mosaic.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
