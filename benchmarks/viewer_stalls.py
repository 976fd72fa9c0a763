"""Viewer stalls: how long the napari GUI thread stops answering while the docks work.

A biologist feels a frozen viewer, not a slow network: while a job runs in a worker the
viewer must still pan, zoom and redraw. This benchmark opens the docks in a real viewer
(1600x1000 window) on the bundled HeLa field (1392x1040 px, one TIFF per channel), and a
QTimer ticking every 50 ms records the longest gap between two ticks (a stall of the GUI
thread shows as a gap well over 50 ms) in each phase:

a. WSCNN inference (Infer tab) on one field and on three fields (the field, mirrored
   left-right and top-bottom, one 2-channel layer each): from Run until the saliency,
   objects and peaks layers and the tables are shown (and 0.5 s after);
b. slider steps on the three results: threshold, smoothing and object extent changes
   (each waits until all three objects layers are updated), and a "drag" of ten
   threshold values 30 ms apart (only the last value has to be shown);
c. DeepYeast Classify on the field (built-in segmentation at 42 px: ~430 cells), from
   "Classify cells" until the cells layer, legend and tables are shown (and 0.5 s after).

The models have random weights (the stalls are about what happens after the network): a
narrow 2-channel WSCNN (seed 3) that finds ~560 objects in the field with the default
object settings -- what a weak model gives on a real field -- and a 2-channel DeepYeast
whose training statistics are crops of the field (so the shift columns are computed).
Goal: every phase's longest gap <= 100 ms.

    QT_API=pyqt6 QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1200x24" \\
        .venv/bin/python benchmarks/viewer_stalls.py [--label after-1] [--steps 8]
    .venv/bin/python benchmarks/viewer_stalls.py --summary   # medians per label prefix

Results go to ``benchmarks/results/viewer_stalls.json`` (``--out``) under ``runs[<label>]``
(other labels kept: ``--label before`` on the code as it was, then ``--label after``). The
machine's load average is recorded: other processes on the CPUs lengthen every gap, so
compare runs made one after the other.
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

from common import RESULTS, machine  # noqa: E402

GOAL_MS = 100.0
CHANNELS = ["H2B", "tubulin"]
PATTERNS = ["_Crfp", "_Cgfp"]
DIAMETER = 42          # the HeLa nuclei (the training crops of the DeepYeast model)
CLASSIFY_DIAMETER = 25 # splits some nuclei: ~430 cells, as many as a crowded field gives


# ------------------------------------------------------------------ models
def field_arrays():
    from napari_rarepheno.core.datasets.bundled import mitosis_field_files
    from napari_rarepheno.core.io.images import read_image

    files = mitosis_field_files()
    return files, np.concatenate([read_image(p, as_float=False) for p in files])


def wscnn_file(field: np.ndarray, folder: Path) -> Path:
    """A random narrow 2-channel WSCNN (seed 3: ~560 objects in the field, called positive)."""
    import torch

    from napari_rarepheno.core.io.images import to_float
    from napari_rarepheno.core.io.modelfile import ModelMeta, save_model
    from napari_rarepheno.core.nets.registry import config_to_dict
    from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig
    from napari_rarepheno.core.wscnn.shift import image_input_stats

    torch.manual_seed(3)
    cfg = WSCNNConfig(in_channels=2, widths=(8, 16, 16))
    meta = ModelMeta("wscnn", config_to_dict(cfg), ["negative", "positive"], None,
                     {"mean": [0.5] * 2, "std": [0.25] * 2}, channel_names=list(CHANNELS),
                     training={"input": {"channel_files": list(PATTERNS)}})
    meta.input_stats = image_input_stats(to_float(field)[None])
    return save_model(folder / "wscnn.safetensors", WSCNN(cfg).eval(), meta)


def deepyeast_file(field: np.ndarray, folder: Path) -> Path:
    """A random 2-channel DeepYeast whose training cells are crops of the field."""
    import torch

    from napari_rarepheno.core.cells.crops import extract_crops
    from napari_rarepheno.core.cells.segment import cells_from_labels, segment_field
    from napari_rarepheno.core.deepyeast.train import crop_input_stats
    from napari_rarepheno.core.inputs.normalize import Normalization
    from napari_rarepheno.core.io.images import to_float
    from napari_rarepheno.core.io.modelfile import LoadedModel, ModelMeta, save_model
    from napari_rarepheno.core.nets.deepyeast import DeepYeast, DeepYeastConfig
    from napari_rarepheno.core.nets.registry import config_to_dict

    torch.manual_seed(0)
    cfg = DeepYeastConfig(in_channels=2, n_classes=2, widths=(8,) * 8, fc_widths=(16, 16))
    meta = ModelMeta("deepyeast", config_to_dict(cfg), ["interphase", "mitotic"], channel_names=list(CHANNELS),
                     training={"input": {"channel_files": list(PATTERNS)}})
    cells = cells_from_labels(segment_field(field[0], diameter=DIAMETER).labels)
    centres = np.stack([cells["centroid_y"], cells["centroid_x"]], 1)[::3]
    crops = extract_crops(to_float(field), centres, cfg.input_size)
    meta.normalization = Normalization.fit(crops).to_dict()
    model = DeepYeast(cfg).eval()
    meta.input_stats = crop_input_stats(LoadedModel(model, meta), crops, np.arange(len(crops)) % 2)
    return save_model(folder / "deepyeast.safetensors", model, meta)


# ------------------------------------------------------------------- ticks
class Ticks:
    """A 50 ms QTimer; the gaps between its ticks say how long the GUI thread was busy."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.times: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(50)
        self.timer.timeout.connect(lambda: self.times.append(time.perf_counter()))
        self.timer.start()

    def gaps(self, t0: float, t1: float) -> list[tuple[float, float]]:
        """(gap s, end of the gap relative to t0) of the ticks in [t0, t1] (t0 counts as a tick)."""
        ts = [t0] + [t for t in self.times if t0 < t <= t1]
        return [(b - a, b - t0) for a, b in zip(ts, ts[1:])]

    def longest(self, t0: float, t1: float) -> float:
        g = self.gaps(t0, t1)
        return max((x for x, _ in g), default=0.0)


def pump(seconds: float = 0.0, until=None, timeout: float = 300.0) -> float:
    """Run the Qt event loop for ``seconds`` or until ``until()``; returns when it ended."""
    from qtpy.QtCore import QEventLoop
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    t0 = time.perf_counter()
    while True:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 10)
        now = time.perf_counter()
        if until is not None and until():
            return now
        if until is None and now - t0 >= seconds:
            return now
        if now - t0 > timeout:
            raise TimeoutError("the viewer did not get there in time")
        time.sleep(0.002)


def phase(ticks: Ticks, t0: float, t_ready: float, settle: float = 0.5, t_result: float | None = None) -> dict:
    """The longest gap from ``t0`` to ``settle`` s after ``t_ready``; with ``t_result`` (when
    the worker's result reached the GUI thread) also split into during / at the end."""
    t_end = pump(settle)
    top = sorted(ticks.gaps(t0, t_end), reverse=True)[:3]
    out = {"max_gap_ms": round(1000 * ticks.longest(t0, t_end), 1), "ready_s": round(t_ready - t0, 2),
           "top_gaps_ms_at_s": [[round(1000 * g, 1), round(at, 2)] for g, at in top]}
    if t_result is not None:
        end = [g for g, at in ticks.gaps(t0, t_end) if t0 + at > t_result]
        out["during_max_gap_ms"] = round(1000 * ticks.longest(t0, t_result), 1)
        out["end_max_gap_ms"] = round(1000 * max(end, default=0.0), 1)
        out["result_s"] = round(t_result - t0, 2)
    return out


def mark_call(obj, name: str, marks: list) -> None:
    """Record when ``obj.name`` is called (the worker's result handler, in the GUI thread)."""
    real = getattr(obj, name)

    def wrapper(*a, **kw):
        marks.append(time.perf_counter())
        return real(*a, **kw)

    setattr(obj, name, wrapper)


# ------------------------------------------------------------------ phases
def wscnn_runs(viewer, dock, field, ticks, steps: int) -> dict:
    panel = dock.infer
    out = {"saliency_mode": str(getattr(getattr(panel, "localisation", None), "value", "map (gradient)"))}
    fields = {"field A": field, "field B": field[:, :, ::-1].copy(), "field C": field[:, ::-1, :].copy()}
    for name, data in fields.items():
        viewer.add_image(data, name=name, visible=name == "field A")
    panel.positive_only.value = False  # objects in all three (a weak model calls some fields negative)

    def objects_shown(names):
        return lambda: (not panel.running and not panel.workers.busy
                        and all(f"{n} objects" in viewer.layers for n in names)
                        and len(panel.objects.rows) > 0)

    marks: list[float] = []
    mark_call(panel, "_on_layers_done", marks)
    for key, names in (("a1_infer_one_field", ["field A"]), ("a3_infer_three_fields", list(fields))):
        # (results of an earlier run are updated in place: removing two layers and adding one
        # crashes napari 0.9.2's canvas under Xvfb's software OpenGL)
        panel.cache.clear()
        pump(0.5)
        t0 = time.perf_counter()
        panel.run_layers([viewer.layers[n] for n in names])
        t_ready = pump(until=objects_shown(names))
        out[key] = phase(ticks, t0, t_ready, t_result=marks[-1])
        out[key]["objects"] = [int(len(viewer.layers[f"{n} objects"].features)) for n in names]
        print(f"  {key}: {out[key]}", flush=True)

    # b. slider steps on the three results
    layers = [viewer.layers[f"{n} objects"] for n in fields]
    seen: dict[int, int] = {}
    when: dict[int, float] = {}

    def on_data(i: int) -> None:
        seen[i] = seen.get(i, 0) + 1
        when[i] = time.perf_counter()

    for lay in layers:
        lay.events.data.connect(lambda e, i=id(lay): on_data(i))
    moves = [("threshold", 0.25), ("threshold", 0.3), ("sigma", 3.0), ("sigma", 5.0), ("peak_fraction", 0.5),
             ("threshold", 0.22), ("peak_fraction", 0.4), ("sigma", 4.0)][:steps]
    per_step = []
    for attr, value in moves:
        before = dict(seen)
        pump(0.3)
        t0 = time.perf_counter()
        getattr(panel, attr).value = value
        t_ready = pump(until=lambda before=before: not panel.workers.busy and all(
            seen.get(id(lay), 0) > before.get(id(lay), 0) for lay in layers))
        r = phase(ticks, t0, t_ready, settle=0.3)
        r["control"], r["value"] = attr, value
        r["shown_field_ready_s"] = round(when[id(layers[0])] - t0, 2)  # field A: the one in view
        per_step.append(r)
        print(f"  slider {attr}={value}: {r}", flush=True)
    out["b_slider_steps"] = per_step
    out["b_slider_max_gap_ms"] = max(r["max_gap_ms"] for r in per_step)
    out["b_slider_ready_s_median"] = float(np.median([r["ready_s"] for r in per_step]))
    out["b_slider_shown_field_ready_s_median"] = float(np.median([r["shown_field_ready_s"] for r in per_step]))
    # a drag: ten values 30 ms apart; the last one must be shown
    from napari_rarepheno.core.inference.segment import smooth_saliency

    values = [float(round(v, 2)) for v in np.linspace(0.3, 0.21, 10)]
    sigma = float(panel.sigma.value)
    want = [values[-1] * float(smooth_saliency(panel.cache[n].saliency, sigma).max()) for n in fields]

    def shown_final():
        thr = [lay.metadata.get("rarepheno", {}).get("threshold", np.nan) for lay in layers]
        return not panel.workers.busy and np.allclose(thr, want, rtol=1e-4)

    pump(0.3)
    t0 = time.perf_counter()
    for v in values:
        panel.threshold.value = v
        pump(0.03)
    t_ready = pump(until=shown_final)
    out["b_slider_drag"] = phase(ticks, t0, t_ready, settle=0.5)
    print(f"  slider drag (10 values, 30 ms apart): {out['b_slider_drag']}", flush=True)
    return out


def deepyeast_run(viewer, dock, field, files, ticks) -> dict:
    panel = dock.classify
    for c in (1, 0):
        viewer.add_image(field[c], name=files[c].stem)
    pump(0.5)
    panel.channels.set_model(dock.model.meta)
    panel.diameter.value = CLASSIFY_DIAMETER
    pump(0.5)
    marks: list[float] = []
    mark_call(panel, "_on_done", marks)
    t0 = time.perf_counter()
    panel.run_btn.native.click()
    t_ready = pump(until=lambda: not panel.running and len(panel.cells_table.rows) > 0)
    r = phase(ticks, t0, t_ready, t_result=marks[-1])
    r["cells"] = len(panel.cells_table.rows)
    print(f"  c_deepyeast_classify: {r}", flush=True)
    return r


def redraw_reference(viewer, ticks) -> dict:
    """napari's own cost of one redraw with these layers (five pans, nothing of the plugin's):
    the floor under every phase that changes what the canvas shows."""
    cam = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    pump(0.5)
    t0 = time.perf_counter()
    for k in range(5):
        c = list(cam.center)
        c[-1] += 40 if k % 2 == 0 else -40
        cam.center = tuple(c)
        pump(0.25)
    return phase(ticks, t0, time.perf_counter(), settle=0.1)


def add_reference(viewer, ticks) -> dict:
    """napari's own cost of showing one field's results, nothing of the plugin's: the field A
    saliency (image), objects (labels, outlines) and peaks (points) added with plain
    ``viewer.add_*`` calls, one per event-loop turn (as the dock does), then the objects
    layer's data replaced (what a slider step does)."""
    sal = viewer.layers["field A saliency"]
    obj = viewer.layers["field A objects"]
    pk = viewer.layers["field A peaks"]
    pump(0.5)
    t0 = time.perf_counter()
    added = [viewer.add_image(np.array(sal.data), name="ref saliency", colormap="magma", blending="additive")]
    pump(0.1)
    added.append(viewer.add_labels(np.array(obj.data), name="ref objects", colormap=obj.colormap))
    added[-1].contour = 2
    pump(0.1)
    added.append(viewer.add_points(np.array(pk.data), name="ref peaks", size=6, symbol="cross"))
    t_ready = pump(0.1)
    out = {"add": phase(ticks, t0, t_ready, settle=0.3)}
    t0 = time.perf_counter()
    added[1].data = np.array(obj.data)[::-1].copy()
    out["set_labels_data"] = phase(ticks, t0, pump(0.1), settle=0.3)
    for lay in added:
        lay.visible = False
    pump(0.3)
    return out


SUMMARY_KEYS = {"a1 WSCNN Infer, 1 field": ("a1_infer_one_field", "max_gap_ms"),
                "a1 ... at the end": ("a1_infer_one_field", "end_max_gap_ms"),
                "a3 WSCNN Infer, 3 fields": ("a3_infer_three_fields", "max_gap_ms"),
                "b slider step (worst)": ("b_slider_max_gap_ms", None),
                "b slider drag": ("b_slider_drag", "max_gap_ms"),
                "b mask of the field in view (s)": ("b_slider_shown_field_ready_s_median", None),
                "c DeepYeast Classify": ("c_deepyeast_classify", "max_gap_ms"),
                "reference: one pan": ("reference_pan_redraw", "max_gap_ms"),
                "reference: napari adds 3 layers": ("reference_add_layers", "max_gap_ms"),
                "reference: napari sets labels data": ("reference_set_labels", "max_gap_ms"),
                "load average": ("load_average", None)}


def summarize(path: Path) -> dict:
    """Medians per label prefix (runs made alternately on the old and the new code)."""
    data = json.loads(path.read_text())
    groups: dict[str, list[dict]] = {}
    for label, run in data.get("runs", {}).items():
        groups.setdefault(label.rsplit("-", 1)[0] if label[-1].isdigit() else label, []).append(run)

    def value(run, key, sub):
        v = run.get(key)
        return v.get(sub) if sub is not None and isinstance(v, dict) else v

    summary = {g: {name: float(np.median([value(r, k, sub) for r in runs if value(r, k, sub) is not None]))
                   for name, (k, sub) in SUMMARY_KEYS.items()} | {"runs": len(runs)}
               for g, runs in groups.items()}
    names = list(summary)
    print(f"{'median of the runs':34s}" + "".join(f"{g + ' (' + str(summary[g]['runs']) + ')':>16s}" for g in names))
    for name in SUMMARY_KEYS:
        print(f"{name:34s}" + "".join(f"{summary[g][name]:16.2f}" for g in names))
    data["summary"] = summary
    path.write_text(json.dumps(data, indent=2, default=float))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--label", default="current", help="key of this run in the results file (before, after...)")
    ap.add_argument("--steps", type=int, default=8, help="slider steps")
    ap.add_argument("--out", type=Path, default=RESULTS / "viewer_stalls.json",
                    help="results file (runs of other labels in it are kept)")
    ap.add_argument("--summary", action="store_true",
                    help="no run: medians of the runs in --out grouped by label prefix (before-1, before-2... "
                         "-> before), written to its 'summary'")
    args = ap.parse_args()
    if args.summary:
        summarize(args.out)
        return

    import napari

    from napari_rarepheno._widgets.deepyeast_dock import DeepYeastDock
    from napari_rarepheno._widgets.wscnn_dock import WSCNNDock

    files, field = field_arrays()
    tmp = Path(tempfile.mkdtemp(prefix="viewer-stalls-"))
    wpath, dpath = wscnn_file(field, tmp), deepyeast_file(field, tmp)

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    wdock, ddock = WSCNNDock(viewer), DeepYeastDock(viewer)
    viewer.window.add_dock_widget(wdock, name="WSCNN")
    viewer.window.add_dock_widget(ddock, name="DeepYeast")
    wdock.tabs.setCurrentIndex(1)
    ddock.tabs.setCurrentIndex(1)
    wdock.load_model(wpath)
    ddock.load_model(dpath)
    pump(until=lambda: wdock.model.ready and ddock.model.ready)
    pump(1.0)
    ticks = Ticks()
    pump(1.0)
    t0 = time.perf_counter()
    pump(2.0)
    idle = round(1000 * ticks.longest(t0, time.perf_counter()), 1)
    print(f"idle viewer: longest gap {idle} ms", flush=True)

    result = {"idle_max_gap_ms": idle}
    result.update(wscnn_runs(viewer, wdock, field, ticks, args.steps))
    result["c_deepyeast_classify"] = deepyeast_run(viewer, ddock, field, files, ticks)
    result["reference_pan_redraw"] = redraw_reference(viewer, ticks)
    print(f"  reference, one pan (napari's redraw): {result['reference_pan_redraw']}", flush=True)
    ref = add_reference(viewer, ticks)
    result["reference_add_layers"], result["reference_set_labels"] = ref["add"], ref["set_labels_data"]
    print(f"  reference, napari adds a field's three layers: {ref}", flush=True)
    viewer.close()

    def split(r):
        return f"during {r['during_max_gap_ms']:.0f} / end {r['end_max_gap_ms']:.0f} ms"

    a1, a3, c = result["a1_infer_one_field"], result["a3_infer_three_fields"], result["c_deepyeast_classify"]
    rows = [("idle viewer", idle, ""),
            ("a. WSCNN Infer, 1 field", a1["max_gap_ms"], f"{split(a1)}; shown after {a1['ready_s']} s, "
             f"{a1['objects']} objects"),
            ("a. WSCNN Infer, 3 fields", a3["max_gap_ms"], f"{split(a3)}; shown after {a3['ready_s']} s, "
             f"{a3['objects']} objects"),
            (f"b. slider step (worst of {len(result['b_slider_steps'])})", result["b_slider_max_gap_ms"],
             f"masks updated: field in view {result['b_slider_shown_field_ready_s_median']:.2f} s, all three "
             f"{result['b_slider_ready_s_median']:.2f} s (medians)"),
            ("b. slider drag (10 values)", result["b_slider_drag"]["max_gap_ms"],
             f"last value shown after {result['b_slider_drag']['ready_s']} s"),
            ("c. DeepYeast Classify", c["max_gap_ms"], f"{split(c)}; shown after {c['ready_s']} s, "
             f"{c['cells']} cells"),
            ("reference: one pan (napari)", result["reference_pan_redraw"]["max_gap_ms"],
             "a redraw with these layers, nothing of the plugin's"),
            ("reference: napari adds 3 layers", result["reference_add_layers"]["max_gap_ms"],
             "image + labels (outlines) + points of one field, plain viewer.add_*, one per turn"),
            ("reference: napari sets labels", result["reference_set_labels"]["max_gap_ms"],
             "one objects layer's data replaced (what a slider step shows)")]
    print(f"\nlongest gap between 50 ms ticks ({args.label}; goal <= {GOAL_MS:.0f} ms); "
          f"WSCNN localisation: {result['saliency_mode']}")
    print(f"{'phase':32s} {'max gap ms':>10s}  {'':4s} note")
    for name, gap, note in rows:
        print(f"{name:32s} {gap:10.1f}  {'ok' if gap <= GOAL_MS else 'SLOW':4s} {note}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"(load average {load:.1f} on {os.cpu_count()} CPUs: other processes lengthen every gap)")
    result["load_average"] = load

    path = args.out
    old = json.loads(path.read_text()) if path.exists() else {}
    runs = old.get("runs", {})
    runs[args.label] = dict(result, machine=machine())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"goal_max_gap_ms": GOAL_MS, "window": [1600, 1000], "runs": runs}, indent=2,
                               default=float))
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
