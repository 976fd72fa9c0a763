"""The WSCNN simulation: counts, shapes measured on the rendered pixels, layout, determinism."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from skimage.measure import label, regionprops

from napari_rarepheno.core.datasets.synthetic import (
    SimConfig,
    image_rng,
    render_image,
    simulate,
)
from napari_rarepheno.core.errors import InputError
from napari_rarepheno.core.io.boxes import read_objects
from napari_rarepheno.core.io.images import read_png

CFG = SimConfig()


def _measure(image, boxes):
    """regionprops of the object inside each box (threshold halfway to the dimmest object)."""
    lab = label(image > (CFG.background + CFG.intensity[0]) / 2)
    props = {p.label: p for p in regionprops(lab)}
    out = []
    for x0, y0, x1, y1, kind in boxes:
        ids = np.bincount(lab[y0:y1, x0:x1].ravel())
        ids[0] = 0
        out.append((props[int(ids.argmax())], kind))
    return lab.max(), out


@pytest.fixture(scope="module")
def rendered():
    return [(pos, *render_image(image_rng(CFG, pos, i), CFG, pos))
            for i in range(30) for pos in (False, True)]


def test_counts_and_rare_fraction(rendered):
    for positive, image, boxes in rendered:
        assert image.shape == (210, 280) and image.dtype == np.uint8
        n = len(boxes)
        assert 30 <= n <= 48
        n_rare = sum(b[4] == "rare" for b in boxes)
        assert n_rare == (max(1, round(0.1 * n)) if positive else 0)
    assert len({len(b) for _, _, b in rendered}) > 5  # the count really varies


def test_boxes_inside_image_and_disjoint(rendered):
    for _, image, boxes in rendered:
        b = np.array([x[:4] for x in boxes])
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
        assert (b[:, 2] <= 280).all() and (b[:, 3] <= 210).all()
        canvas = np.zeros(image.shape, int)
        for x0, y0, x1, y1 in b:
            canvas[y0:y1, x0:x1] += 1
        assert canvas.max() == 1


def test_measured_sizes_and_shapes(rendered):
    ecc = {"rare": [], "common": []}
    for _, image, boxes in rendered:
        n_regions, measured = _measure(image, boxes)
        assert n_regions == len(boxes)  # objects never touch
        for (p, kind), (x0, y0, x1, y1, _) in zip(measured, boxes):
            r0, c0, r1, c1 = p.bbox
            assert x0 <= c0 and y0 <= r0 and c1 <= x1 and r1 <= y1  # box holds the object
            assert 14.0 <= p.axis_major_length <= 21.0
            ecc[kind].append(p.eccentricity)
            if kind == "common":  # minor/major within the documented 0.55-0.75
                assert 0.45 <= p.axis_minor_length / p.axis_major_length <= 0.82
    assert len(ecc["rare"]) > 60
    assert max(ecc["rare"]) < 0.45 < 0.55 < min(ecc["common"])


def test_deterministic_per_seed():
    a = render_image(image_rng(CFG, True, 7), CFG, True)
    b = render_image(image_rng(CFG, True, 7), CFG, True)
    c = render_image(image_rng(SimConfig(seed=1), True, 7), CFG, True)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    assert not np.array_equal(a[0], c[0])


def test_render_is_fast():
    t0 = time.perf_counter()
    for i in range(50):
        render_image(image_rng(CFG, True, i), CFG, True)
    # ~3 ms on an idle 2-core machine; the margin tolerates a busy one, not a pixel loop
    assert (time.perf_counter() - t0) / 50 < 0.05


def test_simulate_layout_and_tables(tmp_path):
    cfg = SimConfig(n_per_class=12, seed=3)
    summary = simulate(tmp_path / "sim", cfg)
    root = tmp_path / "sim"
    assert summary["counts"] == {s: {"negative": 4, "positive": 4} for s in cfg.splits}
    meta = json.loads((root / "simulation.json").read_text())
    assert meta["config"]["n_per_class"] == 12 and meta["config"]["grid"] == [6, 8]
    names = set()
    for split in cfg.splits:
        files = sorted((root / split).glob("*/*.png"))
        assert len(files) == 8
        shapes = {f"{f.parent.name}/{f.name}": read_png(f).shape for f in files}
        assert all(s == (210, 280) for s in shapes.values())
        table = read_objects(root / split / "objects.csv", shapes)  # validates the boxes
        assert set(table) == set(shapes)
        for name, boxes in table.items():
            rare = sum(b.kind == "rare" for b in boxes)
            assert (rare >= 1) if name.startswith("positive/") else (rare == 0)
        names |= {f"{f.parent.name}/{f.name}" for f in files}
    assert len(names) == 24  # file names are unique across splits
    assert [p.name for p in tmp_path.iterdir()] == ["sim"]  # no staging folder left


def test_simulate_is_deterministic_and_guards_output(tmp_path):
    cfg = SimConfig(n_per_class=3)
    simulate(tmp_path / "a", cfg, workers=2)
    simulate(tmp_path / "b", cfg, workers=1)
    for f in (tmp_path / "a").rglob("*.*"):
        if f.suffix != ".json":
            assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()
    with pytest.raises(InputError, match="not empty"):
        simulate(tmp_path / "a", cfg)
    calls = []
    simulate(tmp_path / "a", SimConfig(n_per_class=3, seed=9), overwrite=True,
             callback=lambda p: calls.append((p.batch, p.n_batches)))
    assert calls[-1] == (6, 6)
    assert read_png(tmp_path / "a/train/positive/img_00000.png").tobytes() != \
        read_png(tmp_path / "b/train/positive/img_00000.png").tobytes()


def test_config_is_checked(tmp_path):
    with pytest.raises(InputError, match="n_objects"):
        simulate(tmp_path / "x", SimConfig(n_objects=(30, 60)))
    with pytest.raises(InputError, match="rare_fraction"):
        simulate(tmp_path / "x", SimConfig(rare_fraction=1.5))
    with pytest.raises(InputError, match="do not fit"):
        simulate(tmp_path / "x", SimConfig(size=(15, 34)))
    assert not (tmp_path / "x").exists()
