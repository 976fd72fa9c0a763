"""The README demo, end to end and headless: simulate, train, predict, screenshot."""
from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.gui]


def test_headless_quick_demo(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "xcb"))
    res = subprocess.run([sys.executable, "-m", "napari_rarepheno.cli", "demo", "--headless", "--quick",
                          "--quiet", "--out", str(out)], capture_output=True, text=True, env=env, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("model.safetensors", "model.log.csv", "predictions/predictions.csv", "predictions/objects.csv",
                 "demo.png"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader(open(out / "predictions" / "predictions.csv")))
    assert len(rows) == 2 and {"p_negative", "p_positive", "predicted", "n_objects"} <= set(rows[0])
    masks = sorted((out / "predictions").glob("*_mask.tif"))
    assert len(masks) == 2 and len(list((out / "predictions").glob("*_saliency.tif"))) == 2

    import imageio.v3 as iio

    png = iio.imread(out / "demo.png")
    assert png.ndim == 3 and png.shape[0] > 600 and png.shape[1] > 1000
    rgb = png[..., :3].astype(float)
    assert rgb.std() > 20  # not a blank window
    # the canvas shows the images: many distinct colours, not only the GUI's greys
    assert len(np.unique(rgb.reshape(-1, 3)[::7], axis=0)) > 500
    assert "P(positive)" in res.stderr
