"""Plate dock: Run scores a tiny simulated plate into a heatmap layer and a ranked wells table;
a click on a well (table row or heatmap) opens its fields with saliency and objects; a
results folder opens without scoring; Stop keeps the finished fields and Resume continues.

A random-weight WSCNN: the scores mean nothing, but they must be the ones in wells.csv and
fields.csv, in their order."""
from __future__ import annotations

import contextlib
import csv
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import random_wscnn

from napari_rarepheno._widgets import plate_panel
from napari_rarepheno._widgets.plate_dock import PlateDock
from napari_rarepheno.core.datasets.synthetic import SimConfig
from napari_rarepheno.core.plates.layout import parse_well
from napari_rarepheno.core.plates.synthetic import (
    SMALL_FIELDS,
    PlateSim,
    simulate_plate,
)

pytestmark = pytest.mark.gui


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def plates(tmp_path_factory) -> dict[str, Path]:
    """A 2x3 plate, 2 fields of 64x80 px per well, the rare phenotype in A02: well folders and OME-Zarr."""
    root = tmp_path_factory.mktemp("plates")
    cfg = PlateSim(sim=SimConfig(seed=3, **SMALL_FIELDS), rows=2, cols=3, fields=2, positive_wells=("A02",))
    return {form: simulate_plate(root / form, cfg, form) for form in ("folder", "zarr")}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return random_wscnn(tmp_path_factory.mktemp("plate-model") / "wscnn.safetensors")


@pytest.fixture
def dock(make_napari_viewer, model):
    viewer = make_napari_viewer()
    d = PlateDock(viewer)
    viewer.window.add_dock_widget(d, name="Plate")
    d.set_model(model)
    d.panel.device.value = "cpu"
    return viewer, d, d.panel


def _field_layers(viewer, well: str) -> list[str]:
    return [lay.name for lay in viewer.layers if lay.name.startswith(f"{well}/")]


def test_run_shows_the_heatmap_and_ranked_wells_and_a_click_opens_a_well(dock, plates, qtbot, tmp_path):
    viewer, _d, p = dock
    p.plate_path.path = plates["folder"]
    p.out.path = tmp_path / "out"
    assert not p.regex.native.isHidden() and p.zarr_row.native.isHidden()  # a folder plate: no zarr level
    states = []
    p.job.changed.connect(lambda new, old: states.append(new.value))
    p.run_btn.native.click()
    assert p.state.value == "running" and not p.run_btn.enabled and p.stop_btn.enabled and not p.open_btn.enabled
    qtbot.waitUntil(lambda: not p.running, timeout=90_000)
    assert states == ["running", "done"] and p.run_btn.enabled and p.open_btn.enabled

    wells = rows_of(tmp_path / "out" / "wells.csv")
    assert len(wells) == 6 and (tmp_path / "out" / "plate.png").exists() and (tmp_path / "out" / "plate.json").exists()
    # the table ranks the wells as wells.csv does
    assert p.wells_table.column("well") == [w["well"] for w in wells]
    assert p.wells_table.column("rank") == list(range(1, 7))
    assert p.wells_table.columns[:3] == ["rank", "well", "score"]
    np.testing.assert_allclose(p.wells_table.column("score"), [float(w["score"]) for w in wells])
    # the heatmap: one pixel per well, a well as large as a field (80 px), the score as its value
    heat = viewer.layers["plate heatmap"]
    assert heat.visible and heat.data.shape == (2, 3) and heat.colormap.name == "viridis"
    cell = float(heat.scale[-1])
    assert cell == 80.0 and heat.colorbar.visible
    for w in wells:
        r, c = parse_well(w["well"])
        assert heat.data[r, c] == pytest.approx(float(w["score"]), abs=1e-6)
    grid = viewer.layers["plate wells"]
    assert len(grid.data) == 6 and list(grid.features["well"]) == ["A01", "A02", "A03", "B01", "B02", "B03"]
    ranks = dict(zip(grid.features["well"], grid.features["rank"]))
    assert all(ranks[w["well"]] == int(w["rank"]) for w in wells)
    assert f"{wells[0]['well']}\n#1" in set(grid.features["label"])

    # a row of the table opens that well's fields below the plate: image, saliency, objects, peaks
    top = wells[0]["well"]
    fields = [f for f in rows_of(tmp_path / "out" / "fields.csv") if f["well"] == top]
    p.wells_table.select_row(0, emit=True)
    qtbot.waitUntil(lambda: p.opened is not None and p.opened.well == top, timeout=60_000)
    for f in fields:
        key = f"{top}/{f['field']}"
        kinds = {s: viewer.layers[key + s]._type_string for s in ("", " saliency", " objects", " peaks")}
        assert kinds == {"": "image", " saliency": "image", " objects": "labels", " peaks": "points"}
        assert all(viewer.layers[key + s].visible for s in kinds)
        sal = viewer.layers[f"{key} saliency"]
        # predicted as the run scored it: fields.csv's probability
        assert sal.metadata["rarepheno"]["probability"] == pytest.approx(float(f["p_positive"]), abs=2e-6)
        assert sal.data.shape == (64, 80) and viewer.layers[key].translate[0] >= 2 * cell  # below the plate
    assert p.fields_table.column("field") == [f["field"] for f in fields]
    assert p.fields_table.columns == ["field", "score", "predicted", "objects", "peak_y", "peak_x"]
    assert top in p.status.value

    # a click on another well of the heatmap opens it and closes the first; a drag (pan) does not
    other = wells[-1]["well"]
    r, c = parse_well(other)
    assert p._on_canvas_click in viewer.mouse_drag_callbacks

    def mouse(*types):
        ev = SimpleNamespace(button=1, position=((r + 0.5) * cell, (c + 0.5) * cell), type="mouse_press")
        gen = p._on_canvas_click(viewer, ev)
        next(gen)
        for t in types:
            ev.type = t
            with contextlib.suppress(StopIteration):
                next(gen)
    before = p._open_gen
    mouse("mouse_move", "mouse_release")
    assert p.opened.well == top and p._open_gen == before
    mouse("mouse_release")
    qtbot.waitUntil(lambda: p.opened.well == other, timeout=60_000)
    assert _field_layers(viewer, top) == [] and len(_field_layers(viewer, other)) == 4 * len(fields)
    assert p.wells_table.column("well")[p.wells_table.selected_row()] == other
    assert p.open_at(-5.0, 10.0) is None  # outside the plate: nothing


def test_a_results_folder_opens_without_scoring_and_its_wells_from_its_plate(dock, plates, model, qtbot, tmp_path,
                                                                            monkeypatch):
    from napari_rarepheno.core.plates.wells import score_plate

    res = score_plate(model, plates["zarr"], tmp_path / "res", device="cpu")  # e.g. `rarepheno plate`
    viewer, _d, p = dock

    def no_scoring(*a, **k):
        raise AssertionError("opening results must not score")
    monkeypatch.setattr(plate_panel, "score_plate", no_scoring)
    p.out.path = tmp_path / "res"
    p.open_btn.native.click()
    qtbot.waitUntil(lambda: p.state.value == "done", timeout=30_000)
    assert p.wells_table.column("well") == [w["well"] for w in res.wells]
    assert viewer.layers["plate heatmap"].data.shape == (2, 3)
    # plate.json said which plate: the dock now names it (a zarr plate: its level, no regex)
    assert p.plate_path.path == Path(plates["zarr"]) and not p.zarr_row.native.isHidden()
    assert p.regex.native.isHidden()
    well = res.wells[1]["well"]
    p.wells_table.select_row(1, emit=True)
    qtbot.waitUntil(lambda: p.opened is not None and p.opened.well == well, timeout=60_000)
    fields = [f for f in res.fields if f["well"] == well]
    assert [f"{well}/{f['field']}" for f in fields] == [n for n in _field_layers(viewer, well) if " " not in n]
    key = f"{well}/{fields[0]['field']}"
    assert viewer.layers[f"{key} saliency"].metadata["rarepheno"]["probability"] == pytest.approx(
        fields[0]["p_positive"], abs=2e-6)


def test_stop_keeps_the_finished_fields_and_resume_scores_the_rest(dock, plates, qtbot, tmp_path, monkeypatch):
    from napari_rarepheno.core.plates import wells as core_wells

    _viewer, _d, p = dock
    gate, seen = threading.Event(), []
    real = core_wells.score_field

    def slow(lm, f, spec):  # the 4th field waits until Stop was pressed
        seen.append(f.key)
        if len(seen) == 4:
            gate.wait(30)
        return real(lm, f, spec)
    monkeypatch.setattr(core_wells, "score_field", slow)
    p.plate_path.path = plates["folder"]
    p.out.path = tmp_path / "out"
    p.run_btn.native.click()
    qtbot.waitUntil(lambda: len(seen) >= 4, timeout=60_000)
    p.stop_btn.native.click()
    assert p.state.value == "stopping" and not p.stop_btn.enabled
    gate.set()
    qtbot.waitUntil(lambda: not p.running, timeout=30_000)
    assert p.state.value == "idle" and "Resume" in p.status.value
    assert len(rows_of(tmp_path / "out" / "fields.partial.csv")) == 4
    assert p.wells_table.column("well") and len(p.wells_table.rows) == 2  # A01 and A02 (2 fields each)
    asked = []
    monkeypatch.setattr(plate_panel, "ask_existing", lambda parent, out, partial: asked.append(partial) or "resume")
    t0 = time.monotonic()
    p.run_btn.native.click()
    qtbot.waitUntil(lambda: p.state.value == "done", timeout=60_000)
    assert asked == [True] and len(seen) == 4 + 8 and time.monotonic() - t0 < 60
    assert len(p.wells_table.rows) == 6 and not (tmp_path / "out" / "fields.partial.csv").exists()
    assert "12 of 12 field(s) scored (8 now)" in p.status.value


def test_run_without_a_plate_or_model_says_what_is_missing(make_napari_viewer, monkeypatch):
    errors = []
    monkeypatch.setattr(plate_panel._workers, "notify_error", lambda e, context="": errors.append(str(e)))
    d = PlateDock(make_napari_viewer())
    d.set_model(None)  # (a new dock adopts the model of any other dock still alive)
    assert d.panel.run() is None and "model file" in errors[-1]
    d.set_model("/nowhere/m.safetensors")
    assert d.panel.run() is None and "choose the plate" in errors[-1]
    assert d.panel.open_results() is None and "results folder" in errors[-1]
    assert d.panel.state.value == "idle"


def test_a_deepyeast_plate_opens_its_wells_cells(dock, plates, qtbot, tmp_path):
    """DeepYeast: wells are the paper's aggregation of their cells; a well opens with its cells by class."""
    import torch

    from napari_rarepheno.core.inputs.normalize import Normalization
    from napari_rarepheno.core.io.modelfile import ModelMeta, save_model
    from napari_rarepheno.core.nets.deepyeast import DeepYeast, DeepYeastConfig
    from napari_rarepheno.core.nets.registry import config_to_dict

    torch.manual_seed(0)
    cfg = DeepYeastConfig(in_channels=1, n_classes=3, widths=(8,) * 8, fc_widths=(16, 16))
    meta = ModelMeta("deepyeast", config_to_dict(cfg), ["cytoplasm", "nucleus", "vacuole"])
    meta.normalization = Normalization.fit(np.random.default_rng(0).random((8, 1, 64, 64), np.float32)).to_dict()
    model = save_model(tmp_path / "dy.safetensors", DeepYeast(cfg).eval(), meta)
    viewer, d, p = dock
    d.set_model(model)
    p.plate_path.path = plates["zarr"]  # no results folder: shown, not written
    p.run_btn.native.click()
    qtbot.waitUntil(lambda: p.state.value == "done", timeout=90_000)
    assert {"class", "n_cells", "compartments", "p_nucleus"} <= set(p.wells_table.columns)
    assert len(p.wells_table.rows) == 6 and p.wells_table.column("rank") == list(range(1, 7))
    well = p.wells_table.column("well")[0]
    p.wells_table.select_row(0, emit=True)
    qtbot.waitUntil(lambda: p.opened is not None and p.opened.well == well, timeout=60_000)
    cells = [lay for lay in viewer.layers if lay.name.startswith(f"{well}/") and lay.name.endswith(" cells")]
    assert len(cells) == 2 and all(lay._type_string == "labels" and len(lay.features) for lay in cells)
    assert p.fields_table.columns == ["field", "score", "class", "n_cells"]


def test_the_reader_opens_a_plate_and_its_results_and_the_dock_takes_them(make_napari_viewer, plates, model,
                                                                          tmp_path):
    from napari_rarepheno import _reader
    from napari_rarepheno.core.plates.wells import score_plate

    assert _reader.get_reader(str(plates["folder"])) is None  # folder plates: the dock reads them
    viewer = make_napari_viewer()
    viewer.open(str(plates["zarr"]), plugin="napari-rarepheno")
    ov, grid = viewer.layers["plate overview"], viewer.layers["plate wells"]
    # each well's first field at the coarsest level (64x80 -> 32x40) in its square of the grid
    assert ov.data.shape == (2 * 40, 3 * 40) and float(ov.scale[-1]) == 2.0  # a square: 80 world units
    assert ov.data[:32, :40].std() > 0 and ov.metadata["rarepheno"]["plate"] == str(plates["zarr"])
    assert len(grid.data) == 6 and list(grid.features["label"]) == ["A01", "A02", "A03", "B01", "B02", "B03"]
    assert list(grid.features["n_fields"]) == [2] * 6
    d = PlateDock(viewer)  # the dock takes the plate opened in the viewer
    assert d.panel.plate_path.path == Path(plates["zarr"]) and d.panel.out.path is None

    res = score_plate(model, plates["zarr"], tmp_path / "res", device="cpu")
    viewer = make_napari_viewer()
    d = PlateDock(viewer)
    viewer.open(str(tmp_path / "res"), plugin="napari-rarepheno")
    heat = viewer.layers["plate heatmap"]
    for w in res.wells:
        r, c = parse_well(w["well"])
        assert heat.data[r, c] == pytest.approx(w["score"], abs=1e-6)
    assert float(heat.scale[-1]) == 80.0 and len(viewer.layers["plate wells"].data) == 6
    assert d.panel.out.path == tmp_path / "res"  # then Open results shows it in the dock
