"""More like this and what to label next: the similarity index (embedding, exact search,
cache), queries, labelling copies, and the uncertainty x diversity suggestions."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_rarepheno.core.deepyeast.classify import classify_crops, embed_crops
from napari_rarepheno.core.discover import similar
from napari_rarepheno.core.discover.labeling import accept_reject, unlabel
from napari_rarepheno.core.discover.similar import (
    build_index,
    cache_root,
    cell_at,
    more_like_this,
    search,
    unit_rows,
)
from napari_rarepheno.core.discover.suggest import (
    margin,
    suggest_labels,
    suggest_order,
    uncertainty,
)
from napari_rarepheno.core.errors import Cancelled, InputError
from napari_rarepheno.core.io.folders import read_entry
from napari_rarepheno.core.io.modelfile import ModelMeta, save_model
from napari_rarepheno.core.nets.deepyeast import DeepYeast, DeepYeastConfig
from napari_rarepheno.core.nets.registry import config_to_dict
from napari_rarepheno.core.progress import CancelToken


def shape_crop(kind: str, seed: int, size: int = 32) -> np.ndarray:
    """uint8 (size, size) crop: a disk, a horizontal bar or a ring, with noise and jitter."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2 - rng.uniform(-1.5, 1.5, 2)[:, None, None]
    r = np.hypot(yy, xx)
    if kind == "disk":
        m = r < rng.uniform(7, 9)
    elif kind == "bar":
        m = (np.abs(yy) < rng.uniform(2, 3)) & (np.abs(xx) < rng.uniform(11, 13))
    else:
        m = (r > 8) & (r < rng.uniform(10.5, 12))
    img = 20 + 180 * m + rng.normal(0, 6, m.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def shapes(tmp_path) -> Path:
    """pool/<disk|bar|ring>/*.tif, 6 crops each (one channel)."""
    root = tmp_path / "pool"
    for k, kind in enumerate(("disk", "bar", "ring")):
        (root / kind).mkdir(parents=True)
        for i in range(6):
            tifffile.imwrite(root / kind / f"{kind}_{i}.tif", shape_crop(kind, 10 * k + i))
    return root


def tiny_deepyeast(path: Path, seed: int, in_channels: int = 1) -> Path:
    torch.manual_seed(seed)
    cfg = DeepYeastConfig(in_channels=in_channels, n_classes=3, input_size=32, widths=(4,) * 8, fc_widths=(16, 8))
    meta = ModelMeta("deepyeast", config_to_dict(cfg), ["a", "b", "c"], None,
                     {"mean": [0.5] * in_channels, "std": [0.25] * in_channels})
    return save_model(path, DeepYeast(cfg), meta)


# --------------------------------------------------------------------------- index and search
def test_search_is_exact_nearest_first_across_blocks():
    rng = np.random.default_rng(0)
    emb = unit_rows(rng.normal(size=(1000, 16)))
    q = unit_rows(rng.normal(size=16))[0]
    rows, dist = search(emb, q, 7, block=64)  # 16 blocks: the best of each block are merged
    ref = np.argsort(1 - emb @ q, kind="stable")[:7]
    assert rows.tolist() == ref.tolist()
    assert np.all(np.diff(dist) >= 0) and np.allclose(dist, 1 - emb[ref] @ q, atol=1e-6)
    assert len(search(emb, q, 5000)[0]) == 1000


def test_query_itself_first_nearest_first_and_same_shapes_near(shapes):
    idx = build_index(None, shapes, batch_size=4)
    assert len(idx) == 18 and idx.meta["kind"] == "features" and idx.meta["standardized"]
    assert isinstance(idx.embeddings, np.memmap) and np.allclose(np.linalg.norm(idx.embeddings, axis=1), 1, atol=1e-5)
    labels = np.array(idx.labels)
    assert sorted(set(labels)) == ["bar", "disk", "ring"]
    hits = []
    for i, f in enumerate(idx.images):
        rows = more_like_this(None, f, shapes, top=6, index=idx)
        assert rows[0]["image"] == f and rows[0]["distance"] == 0.0 and rows[0]["rank"] == 1
        d = [r["distance"] for r in rows]
        assert d == sorted(d) and [r["rank"] for r in rows] == list(range(1, 7))
        hits.append(np.mean([r["label"] == labels[i] for r in rows[1:]]))
    assert np.mean(hits) >= 0.9  # three clearly different shapes: neighbours share the shape


def test_deepyeast_index_is_fc1_with_probabilities(deepyeast_model, yeast_data):
    crops = yeast_data / "crops"
    idx = build_index(deepyeast_model, crops, batch_size=16, device="cpu")
    x = np.stack([read_entry(e, [0, 1]) for e in idx.entries])
    fc1 = embed_crops(deepyeast_model, x, "fc1", device="cpu")
    assert idx.meta["kind"] == "deepyeast" and idx.meta["layer"] == "fc1" and not idx.meta["standardized"]
    assert np.allclose(idx.embeddings, unit_rows(fc1), atol=1e-4)
    assert np.allclose(idx.probabilities, classify_crops(deepyeast_model, x, device="cpu", precision="fp32"),
                       atol=1e-3)
    q = idx.images[7]
    assert more_like_this(deepyeast_model, q, crops, top=3, index=idx)[0]["image"] == q


def test_wscnn_index_pools_the_gallery_features(models, tmp_path):
    from helpers import noise

    (tmp_path / "pool").mkdir()
    for i in range(5):
        tifffile.imwrite(tmp_path / "pool" / f"c{i}.tif", noise(i))
    idx = build_index(models["wscnn"], tmp_path / "pool", device="cpu", cache_dir=tmp_path / "cache")
    width = idx.embedder.lm.model.classifier.in_channels
    assert idx.embeddings.shape == (5, width) and idx.probabilities.shape == (5, 2)
    assert more_like_this(models["wscnn"], 3, tmp_path / "pool", index=idx, top=2)[0]["index"] == 3


# --------------------------------------------------------------------------- cache
def test_second_build_is_cached_and_a_changed_folder_is_not(shapes, monkeypatch):
    calls = []
    real = similar.HandmadeEmbedder.__call__
    monkeypatch.setattr(similar.HandmadeEmbedder, "__call__", lambda self, x: calls.append(len(x)) or real(self, x))
    first = build_index(None, shapes, batch_size=4)
    assert not first.cached and max(calls) <= 4 and sum(calls) == 18
    calls.clear()
    again = build_index(None, shapes, batch_size=4)
    assert again.cached and calls == [] and again.path == first.path
    assert np.array_equal(again.embeddings, first.embeddings)
    shutil.copy(shapes / "disk" / "disk_0.tif", shapes / "disk" / "disk_new.tif")
    changed = build_index(None, shapes, batch_size=4)
    assert not changed.cached and sum(calls) == 19 and len(changed) == 19 and changed.path != first.path
    assert not first.path.exists()  # the stale index of the same folder is removed
    calls.clear()
    st = os.stat(shapes / "bar" / "bar_1.tif")
    os.utime(shapes / "bar" / "bar_1.tif", ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))  # rewritten file
    assert not build_index(None, shapes).cached and sum(calls) == 19
    assert build_index(None, shapes, rebuild=True).cached is False


def test_a_changed_model_file_builds_a_new_index(shapes, tmp_path):
    model = tiny_deepyeast(tmp_path / "m.safetensors", seed=0)
    a = build_index(model, shapes, device="cpu")
    assert not a.cached and build_index(model, shapes, device="cpu").cached
    tiny_deepyeast(model, seed=1)  # retrained in place: same path, other weights
    b = build_index(model, shapes, device="cpu")
    assert not b.cached and b.path != a.path and not np.allclose(a.embeddings, b.embeddings)


def test_stopped_build_leaves_no_index(shapes, tmp_path):
    token = CancelToken()
    cache = tmp_path / "cache"
    with pytest.raises(Cancelled):
        build_index(None, shapes, batch_size=4, callback=lambda p: token.cancel(), cancel=token, cache_dir=cache)
    assert list(cache.iterdir()) == []  # neither an index nor its hidden staging folder
    assert not build_index(None, shapes, cache_dir=cache).cached
    assert cache_root() != cache and len(list(cache.iterdir())) == 1


def test_array_query_and_channel_files(tmp_path):
    pool = tmp_path / "pool"
    for k, kind in enumerate(("disk", "bar")):
        (pool / kind).mkdir(parents=True)
        for i in range(4):
            img = shape_crop(kind, 10 * k + i)
            tifffile.imwrite(pool / kind / f"{kind}{i}_c0.tif", img)
            tifffile.imwrite(pool / kind / f"{kind}{i}_c1.tif", 255 - img)
    idx = build_index(None, pool, channel_files=["_c0", "_c1"])
    assert len(idx) == 8 and all(isinstance(e, tuple) and len(e) == 2 for e in idx.entries)
    q = pool / "bar" / "bar2_c1.tif"  # the second channel's file stands for its image
    rows = more_like_this(None, q, pool, top=4, channel_files=["_c0", "_c1"])
    assert Path(rows[0]["image"]).name == "bar2_c0.tif" and rows[0]["distance"] == 0.0
    crop = np.stack([shape_crop("bar", 99), 255 - shape_crop("bar", 99)]).astype(np.float32) / 255
    rows = more_like_this(None, crop, pool, top=4, index=idx)
    assert rows[0]["distance"] > 0 and [r["label"] for r in rows].count("bar") >= 3
    tifffile.imwrite(pool / "bar" / "notes.tif", shape_crop("bar", 0))  # in no channel's pattern
    with pytest.raises(InputError, match="matches none"):
        more_like_this(None, pool / "bar" / "notes.tif", pool, index=idx, channel_files=["_c0", "_c1"])


def test_cell_at_cuts_the_pool_shape_with_its_channels():
    field = np.zeros((3, 50, 60), np.uint8)
    field[:, 20:28, 30:38] = [[[10]], [[200]], [[99]]]
    c = cell_at(field, 23.5, 33.5, (2, 16, 16), channels=[0, 1])
    assert c.shape == (2, 16, 16) and c.dtype == np.float32
    assert np.isclose(c[1].max(), 200 / 255) and c[1].sum() == pytest.approx(64 * 200 / 255, rel=1e-5)
    edge = cell_at(field[0], 0, 0, (16, 16))  # (H, W) image, window half outside: zeros there
    assert edge.shape == (1, 16, 16) and not edge[:, :8].any()


def test_accept_reject_copies_and_undo(shapes, tmp_path):
    idx = build_index(None, shapes)
    rows = more_like_this(None, idx.images[0], shapes, top=5, index=idx)
    got = accept_reject(idx.entries, [r["index"] for r in rows[:3]], [rows[4]["index"]], tmp_path / "labels",
                        "roundish")
    assert [len(w) for w in got["accepted"]] == [1, 1, 1]
    assert sorted(p.name for p in (tmp_path / "labels" / "roundish").iterdir()) == \
        sorted(Path(r["image"]).name for r in rows[:3])
    assert [p.name for p in (tmp_path / "labels" / "not_roundish").iterdir()] == [Path(rows[4]["image"]).name]
    again = accept_reject(idx.entries, [rows[0]["index"]], [], tmp_path / "labels", "roundish")  # joins the class
    assert again["accepted"][0][0].name.endswith("_1.tif")
    assert all(Path(r["image"]).exists() for r in rows)  # the pool is untouched
    assert unlabel(again["accepted"]) == 1 and len(list((tmp_path / "labels" / "roundish").iterdir())) == 3
    assert unlabel(got["rejected"]) == 1 and not (tmp_path / "labels" / "not_roundish").exists()  # emptied: gone
    with pytest.raises(InputError, match="both accepted and rejected"):
        accept_reject(idx.entries, [1], [1], tmp_path / "labels", "x")
    with pytest.raises(InputError, match="plain folder name"):
        accept_reject(idx.entries, [1], [], tmp_path / "labels", "../x")


# --------------------------------------------------------------------------- suggestions
def test_uncertainty_scores():
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.4, 0.35, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    assert np.allclose(margin(p), [1, 0, 0.05, 0])
    assert np.allclose(uncertainty(p, "margin"), [0, 1, 0.95, 1])
    ent = uncertainty(p, "entropy")
    assert ent[0] < 1e-6 and abs(ent[3] - 1) < 1e-9 and ent[1] < ent[2] < ent[3]
    with pytest.raises(InputError):
        uncertainty(p, "variance")


def _constructed():
    """Pool rows 0-4: five near-copies of one uncertain cell (p = 0.55/0.45) at direction e0;
    row 5: a slightly less uncertain cell (0.6/0.4) at e1; rows 6-15: sure cells (0.99/0.01)
    spread along e2..e11 (diverse but certain)."""
    rng = np.random.default_rng(0)
    emb = np.zeros((16, 12))
    emb[:5, 0] = 1
    emb[5, 1] = 1
    for i in range(10):
        emb[6 + i, 2 + i] = 1
    emb += rng.normal(0, 0.01, emb.shape)
    probs = np.array([[0.55, 0.45]] * 5 + [[0.6, 0.4]] + [[0.99, 0.01]] * 10)
    return probs, emb


def test_suggestions_prefer_uncertain_and_diverse_cells():
    probs, emb = _constructed()
    plain = suggest_order(probs, emb, 2, diversity="none").order
    assert set(plain) <= set(range(5))  # uncertainty alone spends both labels on near-copies
    s = suggest_order(probs, emb, 2)
    assert s.order[0] in range(5) and s.order[1] == 5  # one of the copies, then the other uncertain cell
    assert np.isinf(s.novelty[0]) and s.novelty[1] > 0.9
    four = suggest_order(probs, emb, 3, prefilter=0).order
    assert four[0] in range(5) and four[1] == 5 and four[2] >= 6  # a sure cell only when the uncertain are covered
    near_first = emb[:1] + 0.001
    lab = suggest_order(probs, emb, 1, labeled=near_first).order
    assert lab.tolist() == [5]  # the copies are labeled already in effect: the other uncertain cell
    assert 5 not in suggest_order(probs, emb, 3, exclude=[5]).order
    no_model = suggest_order(None, emb, 3).order
    assert len({0, 1, 2, 3, 4} & set(no_model.tolist())) == 1  # no model: pure k-center, one of the copies


def test_suggest_labels_on_a_folder(deepyeast_model, yeast_data, tmp_path):
    crops = yeast_data / "crops"
    out = tmp_path / "suggest.csv"
    rows = suggest_labels(deepyeast_model, crops, 5, out=out, device="cpu")
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5] and len({r["image"] for r in rows}) == 5
    header = out.read_text().splitlines()[0].split(",")
    assert header == ["rank", "image", "predicted", "uncertainty", "margin", "entropy", "novelty"]
    assert all(abs(r["uncertainty"] - (1 - r["margin"])) < 1e-6 for r in rows)
    labeled = tmp_path / "labeled"
    shutil.copytree(crops / "er", labeled / "er")
    again = suggest_labels(deepyeast_model, crops, 50, labeled=labeled, device="cpu")
    assert not {Path(r["image"]).name for r in again} & {p.name for p in (labeled / "er").iterdir()}
    assert len(again) == 55 - len(list((labeled / "er").iterdir()))
