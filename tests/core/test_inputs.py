"""What a network is given: one normalisation on every path, the shift checks, channels named
and mapped (per-channel files, empty channels), intensity augmentation."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_rarepheno.core.datasets.bundled import MITOSIS_CROPS, mitosis_field_files
from napari_rarepheno.core.deepyeast.classify import classify_crops
from napari_rarepheno.core.deepyeast.data import DeepYeastOptions, load_crops
from napari_rarepheno.core.deepyeast.fields import classify_field
from napari_rarepheno.core.errors import InputError
from napari_rarepheno.core.inputs.normalize import Normalization, sample_ranges
from napari_rarepheno.core.inputs.shift import compare, fit_input_stats
from napari_rarepheno.core.io.files import entry_names, image_entries
from napari_rarepheno.core.io.folders import (
    ImageSet,
    drop_empty_channels,
    pair_channel_files,
    read_entry,
)
from napari_rarepheno.core.io.modelfile import LoadedModel, ModelMeta
from napari_rarepheno.core.nets.deepyeast import DeepYeast, DeepYeastConfig
from napari_rarepheno.core.nets.registry import config_to_dict
from napari_rarepheno.core.training.augment import AugmentConfig, augment_batch


def _mitosis(n: int = 40) -> np.ndarray:
    """Real crops (float [0, 1] from 8-bit PNG), H2B and tubulin."""
    return load_crops(MITOSIS_CROPS, DeepYeastOptions(channels=[0, 1])).images[::7][:n]


# ----------------------------------------------------------------- normalisation
def test_percentile_scaling_removes_gain_and_offset():
    x = _mitosis()
    norm = Normalization(scale="percentile")
    a = norm.scale_samples(x)
    b = norm.scale_samples(0.5 * x + 0.1)
    np.testing.assert_allclose(a, b, atol=1e-4)
    np.testing.assert_allclose(np.percentile(a, 99.8, axis=(2, 3)), 1.0, atol=1e-5)
    np.testing.assert_array_equal(Normalization().scale_samples(x), x)  # scale None: the papers' path


def test_a_field_tile_by_tile_uses_the_whole_fields_percentiles():
    h2b, tub = mitosis_field_files()
    field = np.stack([tifffile.imread(h2b), tifffile.imread(tub)]).astype(np.float32) / 255
    norm = Normalization(scale="percentile")
    whole = norm.scale_samples(field)
    ranges = norm.ranges(field)
    window = norm.scale_window(field[:, 100:300, 200:500], ranges)
    np.testing.assert_allclose(window, whole[:, 100:300, 200:500], atol=1e-6)
    # a lazily read field (anything with read()) gives the same percentiles
    lazy = type("Lazy", (), {"shape": field.shape, "read": lambda s, y0, y1, x0, x1: field[:, y0:y1, x0:x1]})()
    np.testing.assert_allclose(sample_ranges(lazy), ranges, rtol=1e-6)


def _tiny_deepyeast(scale: str | None, stats: dict | None = None) -> LoadedModel:
    torch.manual_seed(0)
    cfg = DeepYeastConfig(in_channels=2, n_classes=3, widths=(8,) * 8, fc_widths=(16, 16))
    model = DeepYeast(cfg).eval()
    norm = Normalization.fit(_mitosis(), scale=scale)
    meta = ModelMeta("deepyeast", config_to_dict(cfg), ["a", "b", "c"], [0, 1], normalization=norm.to_dict(),
                     channel_names=["H2B", "tubulin"], input_stats=stats or {})
    return LoadedModel(model, meta)


@pytest.mark.parametrize("scale", [None, "percentile"])
def test_a_crop_cut_from_a_field_reaches_the_network_as_the_same_crop_read_alone(scale):
    """The field path (classify_field: cut, scale, classify) and the crop path
    (classify_crops on the crop itself) give the network the same input."""
    lm = _tiny_deepyeast(scale)
    rng = np.random.default_rng(0)
    field = (rng.random((2, 200, 260)) * 200).astype(np.uint8)
    centres = np.array([[60.0, 80.0], [130.0, 190.0]])
    got = classify_field(lm, field, centroids=centres, device="cpu")
    crops = np.stack([field[:, 28:92, 48:112], field[:, 98:162, 158:222]])
    np.testing.assert_allclose(got.probabilities, classify_crops(lm, crops, device="cpu"),
                               atol=1e-5)


def test_old_deepyeast_files_keep_their_crop_scaling():
    lm = _tiny_deepyeast(None)
    lm.meta.training["input"] = {"crop_scale": "percentile"}  # written before the scaling moved
    for k in ("scale", "scale_percentiles"):
        lm.meta.normalization.pop(k)
    norm = Normalization.of_model(lm.meta)
    assert norm.scale == "percentile" and norm.scale_percentiles == (1.0, 99.9)


# ------------------------------------------------------------------------ shift
def test_shift_warning_fires_on_twice_as_bright_cells_not_on_the_training_cells():
    x = _mitosis(60) * 0.45  # cells at a mid exposure, so that x2 does not saturate
    stats = fit_input_stats(x)
    assert compare(stats, x, channel_names=["H2B", "tubulin"]).messages == []
    rep = compare(stats, np.clip(2 * x, 0, 1), channel_names=["H2B", "tubulin"], scaled=True)
    assert len(rep.messages) == 1 and "2.0x brighter" in rep.messages[0] and "H2B" in rep.messages[0]
    assert np.median(rep.brightness) == pytest.approx(2.0, rel=0.05)
    dim = compare(stats, 0.5 * x)
    assert "2.0x darker" in dim.messages[0] and "absolute intensities" in dim.messages[0]


def test_over_exposed_cells_are_reported_and_darker_or_gamma_shifted_ones_not():
    """x2 on 8-bit crops clips their bright end (the one change per-crop scaling cannot undo);
    x0.5 and gamma do not, and neither do the training crops themselves."""
    x = _mitosis(80)
    stats = fit_input_stats(x[::2])
    eight_bit = lambda a: np.round(np.clip(a, 0, 1) * 255) / 255  # noqa: E731
    same = compare(stats, x[1::2], channel_names=["H2B", "tubulin"], scaled=True)
    assert not any("over-exposed" in m for m in same.messages)
    assert same.saturated is not None and np.median(same.saturated) < 0.02
    for a in (eight_bit(0.5 * x), eight_bit(x ** 0.7)):
        assert not any("over-exposed" in m for m in compare(stats, a, scaled=True).messages)
    over = compare(stats, eight_bit(2 * x), channel_names=["H2B", "tubulin"], scaled=True)
    msg = [m for m in over.messages if "over-exposed" in m]
    assert len(msg) == 1 and "H2B" in msg[0] and over.summary["saturated_share"] > 0.9
    assert np.median(over.saturated) > 0.05 and "saturated" in over.columns(0)
    old = {k: v for k, v in stats.items()}
    old["intensity"] = {k: v for k, v in stats["intensity"].items() if k != "saturated_share"}
    legacy = compare(old, eight_bit(2 * x), scaled=True)  # a model file from before the statistic
    assert legacy.saturated is not None and not any("over-exposed" in m for m in legacy.messages)


def test_low_confidence_calls_are_reported_against_the_validation_share():
    rng = np.random.default_rng(0)

    def probs(n, low_share):  # 3 classes; a share of the cells called at p_max ~0.45
        p = np.full((n, 3), 0.02)
        p[:, 0] = 0.96
        k = int(round(low_share * n))
        p[:k] = [0.45, 0.35, 0.20]
        return rng.permutation(p)

    stats = fit_input_stats(np.zeros((3, 1, 8, 8)), probabilities=probs(100, 0.06))
    assert stats["confidence"]["low_share"] == pytest.approx(0.06)
    assert compare(stats, probabilities=probs(200, 0.08)).messages == []
    rep = compare(stats, probabilities=probs(200, 0.41))
    assert rep.summary["low_confidence_share"] == pytest.approx(0.41)
    assert len(rep.messages) == 1 and "41% of the cells are called with low confidence" in rep.messages[0]
    # a model that had many uncertain validation cells: twice its share is the bar
    assert compare(fit_input_stats(np.zeros((3, 1, 8, 8)), probabilities=probs(100, 0.3)),
                   probabilities=probs(200, 0.41)).messages == []
    assert compare({"intensity": stats["intensity"]}, probabilities=probs(200, 0.9)).messages == []  # older file


def test_saturation_survives_resampling_and_ignores_constant_channels():
    from napari_rarepheno.core.inputs.shift import per_sample_saturation

    img = np.zeros((2, 40, 40), np.float32)
    img[0, 10:30, 10:30] = 1.0
    img[0] = img[0] * np.float32(0.7) / np.float32(0.7)  # a plateau that went through float arithmetic
    sat = per_sample_saturation(img)
    assert sat.shape == (1, 2) and sat[0, 0] == pytest.approx(400 / 1600) and sat[0, 1] == 0.0


def test_shift_score_separates_cells_unlike_the_training_cells():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(400, 32))
    stats = fit_input_stats(np.zeros((3, 1, 8, 8)), embeddings=train)
    same = compare(stats, embeddings=rng.normal(size=(200, 32)))
    assert same.messages == [] and 0.0 <= (same.shift_score > 1).mean() < 0.05
    moved = compare(stats, embeddings=rng.normal(size=(200, 32)) + 4.0)
    assert (moved.shift_score > 1).mean() > 0.9
    assert "lie outside the training distribution" in moved.messages[0]


def test_size_shift_is_reported():
    stats = fit_input_stats(np.zeros((3, 1, 8, 8)), diameter=20.0)
    assert compare(stats, diameter=21.0).messages == []
    assert "1.6x the size" in compare(stats, diameter=32.0).messages[0]


def _discs(side: int, diameter: float, noise: float, seed: int) -> np.ndarray:
    """(1, side, side) dim background with bright discs of ``diameter`` px and pixel noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side]
    img = np.full((side, side), 0.1, np.float32)
    step = int(diameter * 1.8)
    for cy in range(step // 2, side - step // 2, step):
        for cx in range(step // 2, side - step // 2, step):
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < (diameter / 2) ** 2] = 0.6
    return np.clip(img + rng.normal(0, noise, img.shape), 0, 1)[None].astype(np.float32)


def test_wscnn_size_check_follows_magnification_not_pixel_noise():
    """Training images with grainy cells (curated crops) and a field with smooth cells of the
    same size: no size warning; the same field at 2x magnification: a 2x warning."""
    from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig
    from napari_rarepheno.core.wscnn.shift import image_input_stats, image_shift

    train = np.stack([_discs(192, 30, 0.5, s) for s in range(6)])
    cfg = WSCNNConfig(in_channels=1, widths=(4, 4, 4))
    meta = ModelMeta("wscnn", config_to_dict(cfg), ["negative", "positive"],
                     normalization={"mean": [0.3], "std": [0.2]})
    meta.input_stats = image_input_stats(train)
    assert meta.input_stats["object_diameter"] == pytest.approx(30, rel=0.2)
    lm = LoadedModel(WSCNN(cfg).eval(), meta)
    same = image_shift(lm, _discs(384, 30, 0.02, 9))
    assert same.summary["size_ratio"] == pytest.approx(1.0, abs=0.2)
    assert not any("size" in m for m in same.messages)
    zoomed = image_shift(lm, _discs(384, 60, 0.02, 9))
    assert zoomed.summary["size_ratio"] == pytest.approx(2.0, rel=0.2)
    assert any("the size of the training objects" in m for m in zoomed.messages)


def test_deepyeast_field_rows_carry_the_shift_score():
    crops = _mitosis(60)
    lm = _tiny_deepyeast("percentile")
    from napari_rarepheno.core.deepyeast.train import crop_input_stats
    lm.meta.input_stats = crop_input_stats(lm, crops)
    assert {"intensity", "embedding"} <= set(lm.meta.input_stats)
    field = np.zeros((2, 160, 160), np.float32)
    field[:, 16:80, 16:80] = crops[0]
    res = classify_field(lm, field, centroids=[[48, 48]], device="cpu")
    assert {"shift_score", "brightness", "saturated"} <= set(res.rows[0])


# --------------------------------------------------------------------- channels
def test_per_channel_files_pair_by_a_token_anywhere_in_the_name(tmp_path):
    for s in (1, 2):
        for tok, v in (("Crfp", 10), ("Cgfp", 20)):
            tifffile.imwrite(tmp_path / f"tubulin_P0040_T0000{s}_{tok}_Z1_S1.tif", np.full((8, 9), v * s, np.uint8))
    (tmp_path / "notes.tif").write_bytes(b"")  # matches no channel: left out
    files = sorted(tmp_path.glob("*.tif"))
    pairs = pair_channel_files(tmp_path, files, ["_Crfp", "_Cgfp"])
    assert [tuple(p.name for p in e) for e in pairs] == [
        ("tubulin_P0040_T00001_Crfp_Z1_S1.tif", "tubulin_P0040_T00001_Cgfp_Z1_S1.tif"),
        ("tubulin_P0040_T00002_Crfp_Z1_S1.tif", "tubulin_P0040_T00002_Cgfp_Z1_S1.tif")]
    img = read_entry(pairs[1], as_float=False)
    assert img.shape == (2, 8, 9) and img.dtype == np.uint8 and img[0, 0, 0] == 20 and img[1, 0, 0] == 40
    assert pair_channel_files(tmp_path, files, [r"C(rfp)", r"C(gfp)"]) == pairs  # regexes too
    (tmp_path / "notes.tif").unlink()
    entries = image_entries([tmp_path], ["_Crfp", "_Cgfp"])
    assert entry_names(entries, ["_Crfp", "_Cgfp"]) == ["tubulin_P0040_T00001_Z1_S1", "tubulin_P0040_T00002_Z1_S1"]
    (tmp_path / "tubulin_P0040_T00002_Cgfp_Z1_S1.tif").unlink()
    with pytest.raises(InputError, match="no matching file for channel.*_Cgfp"):
        pair_channel_files(tmp_path, sorted(tmp_path.glob("*.tif")), ["_Crfp", "_Cgfp"])


def test_the_bundled_field_is_one_image_of_two_channels():
    h2b, tub = mitosis_field_files()
    (entry,) = image_entries([h2b.parent], ["_Crfp", "_Cgfp"])
    assert entry == (h2b, tub)
    assert read_entry(entry).shape == (2, 1040, 1392)


def test_an_empty_rgb_channel_is_never_demanded():
    imgs = np.zeros((4, 3, 8, 8), np.float32)
    imgs[:, :2] = np.random.default_rng(0).random((4, 2, 8, 8))
    data = ImageSet(imgs, np.zeros(4, np.int64), ["a"], [], [], None)
    with pytest.warns(UserWarning, match="channel.*2 are empty"):
        out, keep = drop_empty_channels(data, None)
    assert keep == [0, 1] and out.images.shape == (4, 2, 8, 8)
    assert drop_empty_channels(ImageSet(imgs, np.zeros(4, np.int64), ["a"], [], [], None), [0, 2])[1] == [0, 2]


# ------------------------------------------------------------------ augmentation
def test_intensity_augmentation_leaves_the_geometric_draws_alone():
    x = torch.rand(8, 2, 32, 32)
    plain = augment_batch(x, AugmentConfig.deepyeast(), torch.Generator().manual_seed(3))
    shaded = augment_batch(x, AugmentConfig.deepyeast().with_intensity(), torch.Generator().manual_seed(3))
    again = augment_batch(x, AugmentConfig.deepyeast().with_intensity(), torch.Generator().manual_seed(3))
    torch.testing.assert_close(shaded, again)  # seeded
    assert not torch.allclose(plain, shaded)
    # the same geometry: shaded images correlate with their un-shaded versions
    r = [np.corrcoef(plain[i].flatten(), shaded[i].flatten())[0, 1] for i in range(8)]
    assert min(r) > 0.5
    half = augment_batch(x, AugmentConfig.deepyeast().with_intensity(), torch.Generator().manual_seed(3),
                         select=slice(0, 4))
    torch.testing.assert_close(half, shaded[:4])  # a DDP rank's share
