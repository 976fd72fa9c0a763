"""Discovery engine: streaming ranking, suspected mislabels, decisions with undo, gallery, retrain."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_rarepheno.core.discover import scoring
from napari_rarepheno.core.discover.decisions import (
    apply_decisions,
    read_decisions,
    record_decision,
    undo,
)
from napari_rarepheno.core.discover.gallery import (
    GalleryConfig,
    build_gallery,
    crop_at,
    pool_around,
)
from napari_rarepheno.core.discover.gallery_files import (
    load_gallery,
    name_cluster,
    save_gallery,
)
from napari_rarepheno.core.discover.rank import (
    find_mislabels,
    precision_recall_at,
    rank_images,
    read_ranking,
)
from napari_rarepheno.core.discover.retraining import retrain
from napari_rarepheno.core.errors import InputError
from napari_rarepheno.core.io.images import read_image
from napari_rarepheno.core.progress import CancelToken


@pytest.fixture
def data_copy(wscnn_data, tmp_path) -> Path:
    out = tmp_path / "data"
    shutil.copytree(wscnn_data, out)
    return out


def test_rank_streams_batches_and_sorts(wscnn_model, wscnn_data, tmp_path, monkeypatch):
    seen = []
    real = scoring.probabilities
    monkeypatch.setattr(scoring, "probabilities", lambda lm, x, dev: seen.append(len(x)) or real(lm, x, dev))
    out = tmp_path / "ranking.csv"
    rows = rank_images(wscnn_model, [wscnn_data / "test"], out, batch_size=4, device="cpu")
    assert len(rows) == 10 and max(seen) <= 4 and sum(seen) == 10
    scores = [r["score"] for r in rows]
    assert scores == sorted(scores, reverse=True) and [r["rank"] for r in rows] == list(range(1, 11))
    assert all(r["label"] == Path(r["image"]).parent.name for r in rows)
    assert all(abs(r["p_negative"] + r["p_positive"] - 1) < 1e-5 for r in rows)
    assert all(r["score"] == r["p_positive"] for r in rows)
    assert read_ranking(out)[0]["image"] == rows[0]["image"] and not (tmp_path / "ranking.partial.csv").exists()
    with pytest.raises(InputError, match="exists already"):
        rank_images(wscnn_model, [wscnn_data / "test"], out)


def test_rank_stops_and_resumes(wscnn_model, wscnn_data, tmp_path):
    token = CancelToken()
    out = tmp_path / "r.csv"
    part = rank_images(wscnn_model, [wscnn_data / "test"], out, batch_size=3, device="cpu", cancel=token,
                       callback=lambda p: token.cancel())
    assert len(part) == 3 and (tmp_path / "r.partial.csv").exists()
    full = rank_images(wscnn_model, [wscnn_data / "test"], out, batch_size=3, device="cpu", resume=True)
    ref = rank_images(wscnn_model, [wscnn_data / "test"], None, batch_size=5, device="cpu")
    assert [r["image"] for r in full] == [r["image"] for r in ref]
    assert np.allclose([r["score"] for r in full], [r["score"] for r in ref], atol=1e-5)
    assert not (tmp_path / "r.partial.csv").exists()


def test_entropy_and_target_scores(wscnn_model, wscnn_data):
    ent = rank_images(wscnn_model, [wscnn_data / "val"], score="entropy", device="cpu")
    assert all(r["score"] == r["entropy"] and 0 <= r["entropy"] <= 1 for r in ent)
    neg = rank_images(wscnn_model, [wscnn_data / "val"], target="negative", device="cpu")
    assert all(r["score"] == r["p_negative"] for r in neg)
    with pytest.raises(InputError, match="unknown class"):
        rank_images(wscnn_model, [wscnn_data / "val"], target="mitotic")


def test_tta_averages_eight_flips_and_turns(wscnn_model, wscnn_data, monkeypatch):
    shapes = []
    real = scoring.probabilities
    monkeypatch.setattr(scoring, "probabilities", lambda lm, x, dev: shapes.append(x.shape) or real(lm, x, dev))
    rows = rank_images(wscnn_model, [wscnn_data / "test" / "positive"], tta=True, batch_size=8, device="cpu")
    assert len(shapes) == 8 and {s[2:] for s in shapes} == {(96, 128), (128, 96)}
    assert all(abs(r["p_negative"] + r["p_positive"] - 1) < 1e-5 for r in rows)


def test_mislabels_rank_flipped_images_first(wscnn_model, data_copy, monkeypatch):
    """A model that sees the true class: images moved to the wrong folder come first."""
    train = data_copy / "train"
    flipped = [train / "negative" / "img_00001.png", train / "positive" / "img_00003.png"]
    truth = {f.name + "/" + c: c for c in ("negative", "positive") for f in (train / c).iterdir()}
    moved = []
    for f in flipped:
        other = "positive" if f.parent.name == "negative" else "negative"
        dst = train / other / ("flip_" + f.name)
        f.rename(dst)
        truth[dst.name + "/" + other] = f.parent.name
        moved.append(str(dst.resolve()))

    def fake(lm, x, dev):
        return fake.queue.pop(0)
    files = scoring.labeled_files(train, ["negative", "positive"])
    rng = np.random.default_rng(0)
    p = [0.97 - 0.2 * rng.random() if truth[f.path.name + "/" + f.label] == "positive" else 0.03 + 0.2 * rng.random()
         for f in files]
    fake.queue = [np.array([[1 - v, v] for v in p[s:s + 16]]) for s in range(0, len(p), 16)]
    monkeypatch.setattr(scoring, "probabilities", fake)
    rows = find_mislabels(wscnn_model, train, device="cpu")
    assert {r["image"] for r in rows} == set(moved)
    assert all(r["suspicion"] > 0.5 and r["suggested"] != r["label"] for r in rows)
    assert precision_recall_at(rows, set(moved), 2) == (1.0, 1.0)


def test_mislabels_real_model_and_bad_folders(wscnn_model, data_copy, tmp_path):
    rows = find_mislabels(wscnn_model, data_copy, tmp_path / "s.csv", top=5, device="cpu")
    assert len(rows) == 5 and {r["split"] for r in rows} <= {"train", "val", "test"}
    sus = [r["suspicion"] for r in rows]
    assert sus == sorted(sus, reverse=True)
    (data_copy / "train" / "mitotic").mkdir()
    with pytest.raises(InputError, match="not classes of the model"):
        find_mislabels(wscnn_model, data_copy / "train")
    with pytest.raises(InputError, match="class folders"):
        find_mislabels(wscnn_model, tmp_path)


def test_decisions_preview_apply_undo(data_copy, tmp_path):
    train = data_copy / "train"
    a, b, c = (train / "negative" / "img_00000.png", train / "negative" / "img_00001.png",
               train / "positive" / "img_00002.png")
    objects_before = (train / "objects.csv").read_text()
    dec = tmp_path / "decisions.csv"
    record_decision(dec, a.resolve(), "negative", "positive", "confirm")
    record_decision(dec, b.resolve(), "negative", "positive", "confirm")
    record_decision(dec, b.resolve(), "negative", "positive", "reject")   # changed one's mind
    record_decision(dec, "train/positive/img_00002.png", "positive", "negative", "confirm")  # relative path
    assert list(csv.DictReader(open(dec)))[0].keys() >= {"image", "current_label", "suggested_label", "decision",
                                                         "timestamp"}
    assert read_decisions(dec)[str(b.resolve())]["decision"] == "reject"

    plan = apply_decisions(data_copy, dec)  # preview: nothing moves
    assert (plan.count("move"), plan.count("skip"), plan.count("error")) == (2, 1, 0) and not plan.applied
    assert a.exists() and c.exists()
    # negative/img_00000.png and positive/img_00000.png both exist: the moved file gets a new name
    assert "renamed to img_00000__from_negative.png" in plan.moves[0].reason
    plan = apply_decisions(data_copy, dec, dry_run=False)
    assert plan.applied and Path(plan.undo_file).exists()
    moved = train / "positive" / "img_00000__from_negative.png"
    assert not a.exists() and moved.exists() and (train / "negative" / "img_00002__from_positive.png").exists()
    assert b.exists()
    objects = (train / "objects.csv").read_text()
    assert f"positive/{moved.name}" in objects and f"negative/{a.name}," not in objects
    again = apply_decisions(data_copy, dec)
    assert again.count("skip") == 3  # moved already

    back = undo(plan.undo_file)
    assert back.count("move") == 2 and a.exists() and c.exists()
    assert (train / "objects.csv").read_text() == objects_before
    with pytest.raises(InputError, match="used already"):
        undo(plan.undo_file)


def test_apply_refuses_problems_and_bad_files(data_copy, tmp_path):
    dec = tmp_path / "d.csv"
    img = data_copy / "train" / "negative" / "img_00000.png"
    record_decision(dec, img, "positive", "negative", "confirm")  # wrong current label
    record_decision(dec, tmp_path / "elsewhere.png", "negative", "positive", "confirm")
    plan = apply_decisions(data_copy, dec)
    assert plan.count("error") == 2
    with pytest.raises(InputError, match="nothing moved"):
        apply_decisions(data_copy, dec, dry_run=False)
    assert img.exists()
    with pytest.raises(InputError, match="decision must be"):
        record_decision(dec, img, "negative", "positive", "maybe")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\nx,y\n")
    with pytest.raises(InputError, match="not a decisions file"):
        read_decisions(bad)


def test_crop_and_pool_helpers():
    img = np.arange(2 * 10 * 12, dtype=np.float32).reshape(2, 10, 12)
    c = crop_at(img, 1, 1, 6)
    assert c.shape == (2, 6, 6) and c[0, 0, 0] == 0 and c[0, 2, 2] == img[0, 0, 0]
    assert np.array_equal(crop_at(img, 5, 6, 4), img[:, 3:7, 4:8])
    fmap = np.zeros((3, 4, 4), np.float32)
    fmap[:, 1, 2] = [1, 2, 3]
    v = pool_around(fmap, 8 + 8 * 1, 8 + 8 * 2, 8.0, 8, 1.0)
    assert v.shape == (3,) and np.array_equal(v, [1, 2, 3])


def test_gallery_crops_embeds_clusters_and_names(wscnn_model, wscnn_data, tmp_path):
    cfg = GalleryConfig(min_probability=0.0, max_per_image=2, n_clusters=3, crop_size=32)
    g = build_gallery(wscnn_model, [wscnn_data / "test" / "positive"], cfg, device="cpu")
    n = len(g)
    assert 1 <= n <= 10 and g.crops.shape == (n, 1, 32, 32) and g.features.shape == (n, 100)
    assert g.clusters.shape == (n,) and g.xy.shape == (n, 2) and g.clusters.max() < 3
    i = 0
    src = read_image(g.table["image"][i])
    assert np.allclose(g.crops[i], crop_at(src, g.table["y"][i], g.table["x"][i], 32))
    files = save_gallery(g, tmp_path / "gal")
    assert {"csv", "png", "crops", "features", "json"} <= set(files) and files["png"].stat().st_size > 0
    g2 = load_gallery(tmp_path / "gal")
    assert np.array_equal(g2.clusters, g.clusters) and np.allclose(g2.crops, g.crops)
    k = int(g.clusters[0])
    written = name_cluster(g2, k, "round", tmp_path / "crops")
    assert len(written) == int((g.clusters == k).sum()) and all(p.parent.name == "round" for p in written)
    back = read_image(written[0])
    assert back.shape == (1, 32, 32) and np.allclose(back, g.crops[np.flatnonzero(g.clusters == k)[0]], atol=1 / 255)
    with pytest.raises(InputError, match="plain folder name"):
        name_cluster(g2, k, "../x", tmp_path / "crops")
    small = build_gallery(wscnn_model, [wscnn_data / "test" / "positive"],
                          GalleryConfig(min_probability=0.0, max_crops=2, method="hdbscan"), device="cpu")
    assert len(small) == 2
    with pytest.raises(InputError, match="no salient cells"):
        build_gallery(wscnn_model, [wscnn_data / "test" / "positive"], GalleryConfig(min_probability=1.0))


def test_retrain_fine_tunes_from_corrected_folder(wscnn_model, data_copy, tmp_path):
    from napari_rarepheno.core.io.modelfile import load_model
    from napari_rarepheno.core.training.trainer import TrainConfig

    res = retrain(wscnn_model, data_copy, tmp_path / "new.safetensors", TrainConfig(epochs=1, batch_size=8,
                                                                                    device="cpu"))
    new, old = load_model(res.best_path), load_model(wscnn_model)
    assert new.model.config == old.model.config and new.meta.normalization == old.meta.normalization
    with pytest.raises(InputError, match="new file"):
        retrain(wscnn_model, data_copy, wscnn_model)


def test_deepyeast_rank_mislabels_and_gallery(deepyeast_model, yeast_data):
    crops = yeast_data / "crops"
    rows = rank_images(deepyeast_model, [crops], device="cpu")
    assert rows and all(r["label"] == Path(r["image"]).parent.name for r in rows)
    assert all(r["score"] == max(r[k] for k in r if k.startswith("p_")) for r in rows)
    sus = find_mislabels(deepyeast_model, crops, top=3, device="cpu")
    assert len(sus) == 3 and all(r["suggested"] != r["label"] for r in sus)
    g = build_gallery(deepyeast_model, [crops], GalleryConfig(min_probability=0.0, n_clusters=2, max_crops=12),
                      device="cpu")
    assert len(g) == 12 and g.kind == "deepyeast" and g.features.shape[0] == 12
