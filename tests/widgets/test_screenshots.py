"""The user guide's screenshot script works on tiny data and produces real pictures.

(``docs/screenshots.py`` makes ``docs/images/*.png`` from the demo's output; this runs
two of its functions on the test fixtures so the script cannot rot unnoticed.)
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui

SCRIPT = Path(__file__).parents[2] / "docs" / "screenshots.py"


@pytest.fixture(scope="module")
def shots_module():
    spec = importlib.util.spec_from_file_location("rarepheno_screenshots", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _looks_like_a_window(path: Path) -> None:
    import imageio.v3 as iio

    img = iio.imread(path)[..., :3].astype(float)
    assert img.shape[0] > 500 and img.shape[1] > 1000
    assert img.std() > 15
    assert len(np.unique(img.reshape(-1, 3)[::5], axis=0)) > 200


def test_screenshot_of_the_infer_dock(shots_module, make_napari_viewer, tmp_path, wscnn_model, wscnn_data):
    pos = sorted((wscnn_data / "test" / "positive").glob("*.png"))[0]
    viewer = make_napari_viewer(show=True)
    out = shots_module.shot_wscnn_infer(wscnn_model, pos, tmp_path / "infer.png", truth=[(10, 10, 30, 30)],
                                        viewer=viewer)
    _looks_like_a_window(out)
    assert "positive image saliency" in viewer.layers


def test_screenshot_of_the_deepyeast_dock(shots_module, make_napari_viewer, tmp_path, deepyeast_model):
    viewer = make_napari_viewer(show=True)
    out = shots_module.shot_deepyeast(deepyeast_model, tmp_path / "dy.png", viewer=viewer)
    _looks_like_a_window(out)
    assert "protein cells" in viewer.layers


def test_screenshot_of_the_similar_tab(shots_module, make_napari_viewer, tmp_path, deepyeast_model, yeast_data):
    viewer = make_napari_viewer(show=True)
    labels = tmp_path / "labels"
    out = shots_module.shot_similar(deepyeast_model, yeast_data / "crops", tmp_path / "sim.png", labels, viewer=viewer)
    _looks_like_a_window(out)
    assert "similar cells" in viewer.layers
    accepted = [p for d in labels.iterdir() if not d.name.startswith("not_") for p in d.iterdir()]
    rejected = [p for d in labels.iterdir() if d.name.startswith("not_") for p in d.iterdir()]
    assert len(accepted) == 2 and len(rejected) == 1  # y, y, n


def test_screenshot_of_the_plate_dock(shots_module, make_napari_viewer, tmp_path):
    from helpers import random_wscnn

    from napari_rarepheno.core.datasets.synthetic import SimConfig
    from napari_rarepheno.core.plates.synthetic import (
        SMALL_FIELDS,
        PlateSim,
        simulate_plate,
    )

    model = random_wscnn(tmp_path / "m.safetensors")
    plate = simulate_plate(tmp_path / "plate", PlateSim(sim=SimConfig(seed=3, **SMALL_FIELDS), rows=2, cols=3,
                                                         fields=2, positive_wells=("A02",)), "folder")
    viewer = make_napari_viewer(show=True)
    out = shots_module.shot_plate(model, plate, tmp_path / "plate.png", viewer=viewer)
    _looks_like_a_window(out)
    assert "plate heatmap" in viewer.layers and any(lay.name.endswith(" saliency") for lay in viewer.layers)
