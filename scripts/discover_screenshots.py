"""Screenshots of the Discover dock for docs/discovery.md, with the benchmark's models.

Run ``benchmarks/discovery.py`` first (it trains the models and writes the data), then::

    xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python scripts/discover_screenshots.py

Writes docs/images/discover_{ranking,review,gallery,new_class}.png. Nothing in the
benchmark data is changed: the review works on a copy.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
OUT = ROOT / "docs" / "images"


def pump(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        QApplication.processEvents()
        time.sleep(0.02)


def wait(cond, timeout: float = 900) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("the dock did not finish in time")
        pump(0.1)
    pump(0.5)


def shot(viewer, name: str) -> None:
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    pump(0.5)
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # start-up warnings are not part of the picture
    pump(0.3)
    OUT.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(OUT / f"discover_{name}.png"), canvas_only=False)
    print(f"wrote {OUT / f'discover_{name}.png'}")


def _stage_of(path, y: float, x: float) -> str:
    import csv

    p = Path(str(path))
    with open(p.parent.parent / "tiles.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            if r["image"] == f"{p.parent.name}/{p.name}" and int(r["x0"]) <= x < int(r["x1"]) \
                    and int(r["y0"]) <= y < int(r["y1"]):
                return r["class"]
    return "none"


def _purity(stage, clusters, c) -> float:
    members = [s for s, k in zip(stage, clusters) if k == c]
    if len(members) < 4:
        return 0.0
    return max(members.count(s) for s in set(members)) / len(members)


def main() -> int:
    import napari

    from napari_rarepheno._widgets.discover import DiscoverDock
    from napari_rarepheno._widgets.discover_review import MODES

    sim_model = DATA / "models" / "discovery-sim.safetensors"
    mit_model = DATA / "models" / "discovery-mitosis.safetensors"
    for p in (sim_model, mit_model, DATA / "discovery-sim-noisy", DATA / "discovery-mitosis"):
        if not p.exists():
            print(f"missing {p}: run benchmarks/discovery.py first", file=sys.stderr)
            return 1
    tmp = Path(tempfile.mkdtemp(prefix="discover-shots-"))
    noisy = tmp / "sim"
    shutil.copytree(DATA / "discovery-sim-noisy", noisy)

    viewer = napari.Viewer(title="napari-rarepheno: Discover", show=True)
    viewer.window._qt_window.resize(1600, 1000)
    dock = DiscoverDock(viewer)
    viewer.window.add_dock_widget(dock, name="Discover", area="right")
    rv, gp = dock.review, dock.gallery

    # 1. ranking of clean test images by P(positive); the top image opened with its saliency
    dock.set_model(sim_model)
    rv.mode.value = MODES[1]
    rv.folder.path = DATA / "discovery-sim" / "test"
    rv.run_btn.native.click()
    wait(lambda: rv.worker is None and rv.table.rowCount() > 0)
    rv.table.select_index(0)
    wait(lambda: "review image saliency" in viewer.layers and "#1 " in rv.status.value)
    shot(viewer, "ranking")

    # 2. suspected mislabels of the noisy training folder, two decisions made with y / n
    rv.mode.value = MODES[0]
    rv.folder.path = noisy / "train"
    rv.top.value = 30
    rv.run_btn.native.click()
    wait(lambda: rv.worker is None and "suggested" in rv.table.columns)
    for d in ("confirm", "confirm", "reject"):
        rv.decide(d)
    rv.table.select_index(0)  # back to the most suspicious image: a 'negative' with circles
    wait(lambda: "review image saliency" in viewer.layers and "#1 " in rv.status.value, 120)
    shot(viewer, "review")

    # 3. gallery of salient cells in positive HeLa mosaics, clustered; one crop selected
    for name in ("review image", "review image saliency"):
        if name in viewer.layers:
            viewer.layers.remove(name)
    dock.set_model(mit_model)
    dock.tabs.setCurrentIndex(1)
    gp.folder.path = DATA / "discovery-mitosis" / "test" / "positive"
    gp.k.value = 6
    gp.run_btn.native.click()
    wait(lambda: gp.worker is None and gp.gallery is not None)
    gp.scatter.point_clicked.emit(0)
    viewer.reset_view()
    shot(viewer, "gallery")

    # 4. a cluster named and written as a new class; its crops shown as a small grid. The
    # name a biologist would give it is taken here from the ground truth (tiles.csv).
    g = gp.gallery
    stage = [_stage_of(p, y, x) for p, y, x in zip(g.table["image"], g.table["y"], g.table["x"])]
    def major(c):
        return max(set(stage), key=lambda s: sum(a == s and k == c for a, k in zip(stage, g.clusters)))
    mitotic = [c for c in set(g.clusters.tolist()) if major(c) not in ("inter", "none")]
    k = int(max(mitotic, key=lambda c: _purity(stage, g.clusters, c)))
    gp.select_crop(int(np.flatnonzero(g.clusters == k)[0]))
    gp.cluster.value = k
    gp.class_name.value = f"{major(k)}_like"
    gp.crops_out.path = tmp / "new_classes"
    written = gp.save_cluster()
    from napari_rarepheno.core.discover.gallery_files import display_crops

    members = np.flatnonzero(gp.gallery.clusters == k)
    disp = display_crops(gp.gallery.crops)[members]
    cols = int(np.ceil(np.sqrt(len(disp))))
    s = disp.shape[1]
    grid = np.zeros((int(np.ceil(len(disp) / cols)) * (s + 4), cols * (s + 4)) + disp.shape[3:], np.float32)
    for i, c in enumerate(disp):
        r, q = divmod(i, cols)
        grid[r * (s + 4):r * (s + 4) + s, q * (s + 4):q * (s + 4) + s] = c
    viewer.layers.clear()  # only the new class on the canvas
    viewer.add_image(grid, name=f"new class '{gp.class_name.value}' ({len(written)} crops)", rgb=grid.ndim == 3)
    viewer.reset_view()
    shot(viewer, "new_class")
    viewer.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
