"""The npe2 manifest, lazy imports, sample data, reader and writers."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import napari_rarepheno

MANIFEST = Path(napari_rarepheno.__file__).parent / "napari.yaml"
WIDGETS = ("wscnn_dock", "deepyeast_dock", "explore_dock", "plate_dock")


def test_manifest_validates():
    from npe2 import PluginManifest

    pm = PluginManifest.from_file(MANIFEST)
    pm.validate_imports()  # every python_name imports and exists
    assert {w.display_name for w in pm.contributions.widgets} >= {
        "Rare phenotype (WSCNN)", "Localization classes (DeepYeast)", "Explore", "Plate"}
    assert {s.key for s in pm.contributions.sample_data} == {
        "wscnn_positive", "wscnn_negative", "yeast_field", "mitosis_mosaic", "hela_field"}
    # the installed distribution points at the same manifest, as `npe2 validate napari-rarepheno` checks
    installed = PluginManifest._from_package_or_name("napari-rarepheno")
    assert installed.name == "napari-rarepheno"
    root_link = Path(__file__).parents[2] / "napari.yaml"
    if root_link.exists():
        assert root_link.resolve() == MANIFEST.resolve()


def test_npe2_validate_cli():
    exe = Path(sys.executable).with_name("npe2")
    res = subprocess.run([str(exe), "validate", "napari-rarepheno"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("module", ["napari_rarepheno", "napari_rarepheno._workers", "napari_rarepheno._layers",
                                    "napari_rarepheno._reader", "napari_rarepheno._writer",
                                    "napari_rarepheno._sample_data", "napari_rarepheno.core.inference.segment"]
                         + [f"napari_rarepheno._widgets.{w}" for w in WIDGETS])
def test_import_does_not_load_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'torch was imported'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_opening_the_docks_does_not_load_torch():
    code = """
import sys, time
from qtpy.QtWidgets import QApplication
import napari
v = napari.Viewer(show=False)
t0 = time.perf_counter()
from napari_rarepheno._widgets.wscnn_dock import WSCNNDock
from napari_rarepheno._widgets.deepyeast_dock import DeepYeastDock
from napari_rarepheno._widgets.explore_dock import ExploreDock
from napari_rarepheno._widgets.plate_dock import PlateDock
docks = [WSCNNDock(v), DeepYeastDock(v), ExploreDock(v), PlateDock(v)]
for d in docks:
    v.window.add_dock_widget(d)
QApplication.processEvents()
print(f"docks opened in {time.perf_counter() - t0:.2f} s")
assert 'torch' not in sys.modules, 'opening a dock imported torch'
v.close()
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "docks opened" in res.stdout


def test_sample_data_loads(make_napari_viewer, monkeypatch, tmp_path):
    viewer = make_napari_viewer()
    monkeypatch.delenv("RAREPHENO_MITOSIS_CROPS", raising=False)
    for key in ("wscnn_positive", "wscnn_negative", "yeast_field", "mitosis_mosaic", "hela_field"):
        viewer.open_sample("napari-rarepheno", key)
    names = [lay.name for lay in viewer.layers]
    assert "WSCNN positive" in names and "rare objects (truth)" in names and "WSCNN negative" in names
    assert "yeast protein" in names and "yeast cytoplasm marker" in names
    mosaic = [lay for lay in viewer.layers if "mosaic" in lay.name]
    assert mosaic and mosaic[0].data.shape == (256, 256, 3) and mosaic[0].rgb
    assert mosaic[0].name == "mitosis mosaic (positive)"  # the real crops shipped with the plugin
    field = [lay for lay in viewer.layers if lay.name.startswith("tubulin_P0040")]
    assert sorted(lay.name for lay in field) == ["tubulin_P0040_T00001_Cgfp_Z1_S1", "tubulin_P0040_T00001_Crfp_Z1_S1"]
    assert all(lay.data.shape == (1040, 1392) for lay in field)


def test_mitosis_mosaic_from_user_crops(monkeypatch, tmp_path):
    """With RAREPHENO_MITOSIS_CROPS set, the mosaic is tiled from those crops (once, then cached)."""
    from napari_rarepheno import _sample_data
    from napari_rarepheno.core.io.images import write_png

    crops = tmp_path / "crops"
    rng = np.random.default_rng(0)
    for cls in ("inter", "meta", "pro"):
        (crops / cls).mkdir(parents=True)
        for i in range(6):
            write_png(crops / cls / f"P0001_T{i:05d}_X{100 + 60 * i:04d}_Y0100.png",
                      rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    monkeypatch.setenv("RAREPHENO_MITOSIS_CROPS", str(crops))
    monkeypatch.setenv("RAREPHENO_CACHE", str(tmp_path / "cache"))
    layers = _sample_data.mitosis_mosaic()
    assert layers[0][1]["name"] == "mitosis mosaic (positive)" and layers[0][0].shape == (256, 256, 3)
    assert layers[1][2] == "shapes" and 1 <= len(layers[1][0]) <= 3
    assert (tmp_path / "cache" / "mitosis-mosaic" / "mosaic.json").exists()


def test_writers_and_reader_roundtrip(tmp_path):
    import tifffile

    from napari_rarepheno import _reader, _writer

    labels = np.zeros((20, 30), np.int32)
    labels[2:6, 3:9] = 1
    labels[10:15, 12:20] = 300
    (out,) = _writer.write_labels(str(tmp_path / "img_mask"), labels, {})
    assert out.endswith("img_mask.tif")
    back = tifffile.imread(out)
    assert back.dtype == np.uint16 and np.array_equal(back, labels)
    sal = np.random.default_rng(0).random((20, 30)).astype(np.float64)
    (out2,) = _writer.write_image(str(tmp_path / "img_saliency.tif"), sal, {})
    assert tifffile.imread(out2).dtype == np.float32
    (tmp_path / "img_objects.csv").write_text("index,y,x,score,area\n1,4,5,0.9,24\n300,12,15,0.5,40\n")
    reader = _reader.get_reader(str(tmp_path / "img_mask.tif"))
    (data, kw, kind), = reader(str(tmp_path / "img_mask.tif"))
    assert kind == "labels" and kw["name"] == "img objects" and list(kw["features"]["index"]) == [1, 300]
    (sdata, skw, skind), = _reader.get_reader(out2)(out2)
    assert skind == "image" and skw["blending"] == "additive" and np.allclose(sdata, sal.astype(np.float32))
    assert _reader.get_reader(str(tmp_path / "other.png")) is None


@pytest.mark.parametrize("name", ["Rare phenotype (WSCNN)", "Localization classes (DeepYeast)", "Explore", "Plate"])
def test_docks_open_from_the_plugins_menu_without_private_access(make_napari_viewer, name):
    """napari hands plugin docks a proxy viewer; private attribute access would warn (and break later)."""
    import warnings

    viewer = make_napari_viewer()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Private attribute access", category=FutureWarning)
        dock_widget, widget = viewer.window.add_plugin_dock_widget("napari-rarepheno", name)
        viewer.add_image(np.zeros((32, 32), np.uint8), name="img")
        viewer.add_labels(np.zeros((32, 32), np.int32), name="lab")
    assert widget.workers is not None


def test_npe2_writers_through_napari(make_napari_viewer, tmp_path):
    import tifffile

    viewer = make_napari_viewer()
    labels = np.zeros((16, 16), np.int32)
    labels[3:8, 3:8] = 7
    viewer.add_labels(labels, name="lab")
    viewer.add_image(np.linspace(0, 1, 256, dtype=np.float64).reshape(16, 16), name="sal")
    out = viewer.layers["lab"].save(str(tmp_path / "lab.tif"), plugin="napari-rarepheno")
    assert tifffile.imread(out[0]).dtype == np.uint16
    out = viewer.layers["sal"].save(str(tmp_path / "sal.tif"), plugin="napari-rarepheno")
    assert tifffile.imread(out[0]).dtype == np.float32


def test_checkpoint_names_match_the_trainer(tmp_path):
    from napari_rarepheno._widgets._train_panel import checkpoint_files
    from napari_rarepheno.core.training.trainer import checkpoint_paths

    for name in ("m.safetensors", "model"):
        assert checkpoint_files(tmp_path / name) == list(checkpoint_paths(tmp_path / name))


def test_export_all_then_open_the_folder(make_napari_viewer, tmp_path):
    """Result layers of an image whose name has spaces survive Export all + File > Open."""
    from types import SimpleNamespace

    from napari_rarepheno import _layers, _reader
    from napari_rarepheno._widgets import _export

    viewer = make_napari_viewer()
    labels = np.zeros((24, 24), np.int32)
    labels[2:8, 2:8], labels[12:20, 10:18] = 1, 2
    det = SimpleNamespace(labels=labels, peaks=np.array([[5.0, 5.0], [16.0, 14.0]]), scores=np.array([0.9, 0.4]),
                          areas=np.array([36, 64]), threshold=0.2)
    src = "well A1 field 3"
    viewer.add_image(np.zeros((24, 24), np.uint8), name=src)
    for ldt in (_layers.saliency_layer(np.random.default_rng(0).random((24, 24)), src),
                _layers.objects_layer(det, src), _layers.peaks_layer(det, src)):
        _layers.add_or_update(viewer, ldt)
    assert viewer.layers[f"{src} objects"].contour == 2
    table = {"image": [src], "p_positive": [0.9], "called": ["positive"], "objects": [2]}
    written = _export.export_all(None, viewer.layers, tmp_path / "out", {"predictions.csv": table}, confirm=False)
    assert {p.name for p in written} == {"well_A1_field_3_saliency.tif", "well_A1_field_3_mask.tif",
                                         "well_A1_field_3_objects.csv", "well_A1_field_3_peaks.csv",
                                         "predictions.csv"}
    layers = _reader.get_reader(str(tmp_path / "out"))(str(tmp_path / "out"))
    kinds = sorted(k for _, _, k in layers)
    assert kinds == ["image", "labels"]
    lab = next(d for d, _, k in layers if k == "labels")
    assert np.array_equal(lab, labels)


def test_stacked_docks_stay_usable_at_1600x1000(make_napari_viewer, qtbot, mitosis_field):
    """Two docks stacked at 1600x1000 share the height (neither squeezed to a strip), and nothing
    is cut off at their right edge: Save CSV buttons inside the view, long layer names elided."""
    from napari_rarepheno._widgets._dock import MIN_HEIGHT
    from napari_rarepheno._widgets._table import ResultsTable
    from napari_rarepheno._widgets.deepyeast_dock import DeepYeastDock
    from napari_rarepheno._widgets.wscnn_dock import WSCNNDock

    viewer = make_napari_viewer(show=True)
    viewer.window.resize(1600, 1000)
    for c, name in enumerate(mitosis_field["names"]):  # a microscope's long file names
        viewer.add_image(mitosis_field["field"][c], name=name + "_with_a_long_acquisition_suffix")
    docks = [WSCNNDock(viewer), DeepYeastDock(viewer)]
    for dock, name in zip(docks, ("WSCNN", "DeepYeast")):
        viewer.window.add_dock_widget(dock, name=name)
        dock.tabs.setCurrentIndex(1)
    qtbot.wait(300)
    for dock in docks:
        scroll = dock.tabs.currentWidget()
        panel = scroll.widget()
        assert dock.height() >= MIN_HEIGHT and scroll.viewport().height() > 150
        assert panel.width() <= scroll.viewport().width() or scroll.horizontalScrollBar().maximum() > 0
        for table in panel.findChildren(ResultsTable):
            btn = table.save_btn
            assert btn.mapTo(panel, btn.rect().topRight()).x() <= scroll.viewport().width()
    assert abs(docks[0].width() - docks[1].width()) <= 2 and docks[0].width() < 560
