"""DeepYeast engine: architecture, every input layout, a tiny training run, embeddings, fields."""
import warnings

import numpy as np
import pytest
import tifffile
import torch

from napari_rarepheno.core.datasets.yeast import YeastConfig, simulate_yeast
from napari_rarepheno.core.deepyeast.classify import classify_crops, embed_crops
from napari_rarepheno.core.deepyeast.data import (
    DeepYeastOptions,
    fit_size,
    holdout,
    load_crops,
)
from napari_rarepheno.core.deepyeast.evaluate import evaluate_deepyeast
from napari_rarepheno.core.deepyeast.fields import classify_field
from napari_rarepheno.core.deepyeast.train import train_deepyeast
from napari_rarepheno.core.errors import InputError
from napari_rarepheno.core.inputs.normalize import Normalization
from napari_rarepheno.core.io.deeploc_h5 import load_deeploc_h5, write_deeploc_h5
from napari_rarepheno.core.io.images import write_png
from napari_rarepheno.core.io.modelfile import load_model
from napari_rarepheno.core.nets.deepyeast import DeepYeast, DeepYeastConfig
from napari_rarepheno.core.nets.registry import count_parameters
from napari_rarepheno.core.training.trainer import TrainConfig

CLASSES = ("cell_periphery", "cytoplasm", "nucleus")
pytestmark = [pytest.mark.filterwarnings("ignore:.*centre-cropping"), pytest.mark.usefixtures("one_thread")]


def test_architecture_matches_the_paper():
    model = DeepYeast(DeepYeastConfig(in_channels=2, n_classes=12))
    assert count_parameters(model) > 10_000_000  # "over 10,000,000 total"
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 256, 256]
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) and c.padding == (1, 1) for c in convs)
    model.eval()
    x = torch.zeros(3, 2, 64, 64)
    assert model.features(x).shape == (3, 256, 8, 8)  # 64 -> 32 -> 16 -> 8
    assert model(x).shape == (3, 12)
    assert model.embed(x, "fc1").shape == (3, 512)


# ----------------------------------------------------------------------------- layouts
@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """The same two-channel uint8 crops written in every supported layout."""
    root = tmp_path_factory.mktemp("layouts")
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (4, 2, 64, 64), dtype=np.uint8)
    labels = np.array([0, 0, 1, 1])
    names = ["a", "b"]
    writers = {
        "png_rgb_hwc": lambda p, c: write_png(p.with_suffix(".png"), np.dstack([c[0], c[1], np.zeros_like(c[0])])),
        "tif_hwc": lambda p, c: tifffile.imwrite(p.with_suffix(".tif"), np.moveaxis(c, 0, -1)),
        "tif_chw": lambda p, c: tifffile.imwrite(p.with_suffix(".tif"), c),
        "tif_16bit": lambda p, c: tifffile.imwrite(p.with_suffix(".tif"), c.astype(np.uint16) * 257),
        "tif_float": lambda p, c: tifffile.imwrite(p.with_suffix(".tif"), c.astype(np.float32) / 255),
        "channel_files": lambda p, c: [tifffile.imwrite(p.with_name(p.name + f"_{t}.tif"), c[i])
                                       for i, t in enumerate(("rfp", "gfp"))],
    }
    for layout, write in writers.items():
        for i, (crop, y) in enumerate(zip(crops, labels)):
            (root / layout / names[y]).mkdir(parents=True, exist_ok=True)
            write(root / layout / names[y] / f"P{i}_cell{i}", crop)
    write_deeploc_h5(root / "deeploc.h5", crops, labels, names)
    return root, crops.astype(np.float32) / 255, labels


@pytest.mark.parametrize("layout,options", [
    ("png_rgb_hwc", dict(channels=[0, 1])), ("tif_hwc", {}), ("tif_chw", {}), ("tif_16bit", {}), ("tif_float", {}),
    ("channel_files", dict(channel_files=["rfp", "gfp"])), ("deeploc.h5", {})])
def test_every_layout_gives_the_same_tensor(layouts, layout, options):
    root, expected, labels = layouts
    data = load_crops(root / layout, DeepYeastOptions(**options))
    assert data.class_names == ["a", "b"]
    np.testing.assert_array_equal(data.labels, labels)
    np.testing.assert_allclose(data.images, expected, atol=1e-6)


def test_channel_order_groups_and_h5_errors(layouts, tmp_path):
    root, expected, _ = layouts
    swapped = load_crops(root / "channel_files", DeepYeastOptions(channel_files=["gfp", "rfp"]))
    np.testing.assert_allclose(swapped.images, expected[:, ::-1], atol=1e-6)
    data = load_crops(root / "tif_chw", DeepYeastOptions(group_regex=r"cell(\d)"))
    assert data.groups == ["0", "1", "2", "3"]
    assert load_crops(root / "tif_chw").groups == ["P0", "P1", "P2", "P3"]
    renamed = load_deeploc_h5(root / "deeploc.h5", ["x", "y"])
    assert renamed.class_names == ["x", "y"]
    import h5py
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["data1"] = np.zeros((3, 2 * 64 * 64), np.uint8)
        f["Index1"] = np.eye(2)[[0, 1]]
    with pytest.raises(InputError, match="3 crops but 'Index1' has 2"):
        load_deeploc_h5(tmp_path / "bad.h5")
    with h5py.File(tmp_path / "odd.h5", "w") as f:
        f["data1"] = np.zeros((2, 1000), np.uint8)
        f["Index1"] = np.eye(2)
    with pytest.raises(InputError, match="odd.h5.*not a whole number"):
        load_deeploc_h5(tmp_path / "odd.h5")
    with pytest.warns(UserWarning, match="class_0"):
        assert load_deeploc_h5(tmp_path / "odd.h5", size=10).class_names == ["class_0", "class_1"]


def test_off_size_crops_are_centre_cropped_or_padded():
    x = np.arange(70 * 70, dtype=np.float32).reshape(1, 1, 70, 70)
    with pytest.warns(UserWarning, match="centre"):
        out = fit_size(x, 64)
    np.testing.assert_array_equal(out[0, 0], x[0, 0, 3:67, 3:67])
    with pytest.warns(UserWarning):
        small = fit_size(x[:, :, :60, :60], 64)
    np.testing.assert_array_equal(small[0, 0, 2:62, 2:62], x[0, 0, :60, :60])
    assert small[0, 0, :2].sum() == 0


# -------------------------------------------------------------------- synthetic yeast
@pytest.fixture(scope="module")
def yeast(tmp_path_factory):
    """Synthetic yeast, 3 proteins per class; 3 distinct classes; train on the first two proteins
    of each class, test on the third (held-out proteins). The network is the paper's at a quarter
    of the width on 32x32 centre crops (the 64x64 crops, centre-cropped), for speed."""
    root = tmp_path_factory.mktemp("yeast")
    simulate_yeast(root / "sim", n_proteins=36, seed=1, cfg=YeastConfig(height=224, width=224, n_cells=(20, 30)))
    for split, keep in (("train", lambda k: k < 24), ("test", lambda k: k >= 24)):
        for cls in CLASSES:
            (root / split / cls).mkdir(parents=True)
            for f in (root / "sim" / "crops" / cls).iterdir():
                if keep(int(f.name[2:6])):
                    (root / split / cls / f.name).symlink_to(f)
    cfg = TrainConfig(epochs=15, batch_size=16, lr=3e-3, seed=0, channels_last=False)
    opts = DeepYeastOptions(width=0.25, val_split="random", input_size=32)
    with pytest.warns(UserWarning, match="centre-cropping"):
        res = train_deepyeast(root / "train", root / "tiny.safetensors", opts, cfg)
    return root, res


def test_tiny_training_beats_chance_on_held_out_proteins(yeast):
    root, res = yeast
    assert res.best_path.exists() and res.log_path.exists()
    with pytest.warns(UserWarning, match="centre-cropping"):
        ev = evaluate_deepyeast(res.best_path, root / "test", device="cpu")
    assert set(ev) >= {"accuracy", "n", "per_class", "confusion", "group_accuracy", "n_groups"}
    assert ev["n_groups"] == 3 and len(ev["confusion"]) == 3
    assert ev["accuracy"] > 0.6, ev  # chance is 1/3
    assert ev["group_accuracy"] >= 2 / 3
    conf = load_model(res.best_path).meta.input_stats["confidence"]  # scored on the held-out crops
    assert conf["source"] == "validation" and 0 < conf["n"] < 60 and 0.0 <= conf["low_share"] <= 1.0


def test_position_holdout_keeps_groups_apart(yeast):
    root, _ = yeast
    data = load_crops(root / "train")
    assert len(set(data.groups)) == 6
    tr, va = holdout(data, "position", 0.3)
    assert set(tr.groups).isdisjoint(va.groups) and len(va)
    with pytest.raises(InputError, match="at least 2 groups"):
        holdout(data.subset(np.flatnonzero(np.asarray(data.groups) == data.groups[0])), "position", 0.3)


def test_embed_shapes(yeast):
    root, res = yeast
    crops = load_crops(root / "test").images[:5]  # 64x64: centre-cropped to the model's 32x32
    cfg = res.model.config
    assert cfg.input_size == 32
    assert embed_crops(res.best_path, crops, "fc1", device="cpu").shape == (5, cfg.fc_widths[0])
    assert embed_crops(res.best_path, crops, "conv3", device="cpu").shape == (5, cfg.widths[2])
    assert embed_crops(res.best_path, crops, "conv8", device="cpu").shape == (5, cfg.widths[7] * 16)
    assert embed_crops(res.best_path, crops, "logits", device="cpu").shape == (5, 3)
    p = classify_crops(res.best_path, crops, device="cpu")
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    with pytest.raises(InputError, match="unknown layer"):
        embed_crops(res.best_path, crops, "conv9")
    with pytest.raises(InputError, match="expects 2 channel"):
        classify_crops(res.best_path, crops[:, :1])


def test_classify_field_with_labels_centroids_or_segmentation(yeast):
    root, res = yeast
    field = tifffile.imread(root / "sim" / "fields" / "YP0032_f0.tif")  # a held-out nucleus protein
    labels = tifffile.imread(root / "sim" / "fields" / "YP0032_f0_labels.tif")
    table = np.genfromtxt(root / "sim" / "fields" / "YP0032_f0_cells.csv", delimiter=",", names=True,
                          dtype=None, encoding="utf-8")
    out = classify_field(res.best_path, field, labels, device="cpu", group="YP0032")
    assert len(out.rows) == len(table) == out.probabilities.shape[0]
    assert set(out.rows[0]) >= {"id", "class", "p_nucleus", "centroid_y", "centroid_x", "area"}
    got = np.array([[r["centroid_y"], r["centroid_x"]] for r in out.rows])
    assert np.abs(got - np.stack([table["y"], table["x"]], 1)).max() < 2.0
    assert len(out.posterior) == 1 and out.posterior[0]["n_cells"] == len(table)
    assert out.posterior[0]["map_class"] == "nucleus"
    cen = classify_field(res.best_path, field, centroids=np.stack([table["y"], table["x"]], 1), device="cpu")
    assert cen.labels is None and [r["id"] for r in cen.rows] == list(range(1, len(table) + 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = classify_field(res.best_path, field, segment_channel=0, device="cpu")
    assert seg.labels.shape == labels.shape and 0.7 * len(table) <= len(seg.rows) <= 1.3 * len(table)


def test_crop_scaling_and_fine_tuning_to_new_classes(yeast, tmp_path):
    root, res = yeast
    x = load_crops(root / "test").images[:4]
    pct = Normalization(scale="percentile", scale_percentiles=(1.0, 99.9))
    y = pct.scale_samples(x)
    np.testing.assert_allclose(np.percentile(y, 99.9, axis=(2, 3)), 1, atol=1e-5)
    np.testing.assert_allclose(pct.scale_samples(3 * x + 0.01), y, atol=1e-4)  # brightness-free
    np.testing.assert_array_equal(Normalization().scale_samples(x), x)
    new = tmp_path / "new"
    new.mkdir()
    for cls in ("vacuole", "spindle_pole"):
        (new / cls).symlink_to(root / "sim" / "crops" / cls)
    cfg = TrainConfig(epochs=1, batch_size=16, seed=0, channels_last=False)
    opts = DeepYeastOptions(width=0.25, input_size=32, val_split=None, crop_scale=None)
    with pytest.raises(InputError, match="crop scaling percentile, this run uses none"):
        train_deepyeast(new, None, opts, cfg, init_from=res.best_path)  # the base model scales each crop
    opts.crop_scale = "percentile"
    tuned = train_deepyeast(new, tmp_path / "tuned.safetensors", opts, cfg, init_from=res.best_path)
    assert tuned.model.config.n_classes == 2 and tuned.meta.class_names == ["spindle_pole", "vacuole"]
    torch.testing.assert_close(tuned.model.features[0].weight, res.model.features[0].weight, atol=0.05, rtol=0)
    scaled = train_deepyeast(new, tmp_path / "scaled.safetensors", DeepYeastOptions(
        width=0.125, input_size=32, val_split=None, crop_scale="percentile"), cfg)
    p1 = classify_crops(scaled.best_path, x, device="cpu", precision="fp32")
    p2 = classify_crops(scaled.best_path, 3 * x + 0.01, device="cpu", precision="fp32")  # brighter field, same cells
    np.testing.assert_allclose(p1, p2, atol=1e-3)
