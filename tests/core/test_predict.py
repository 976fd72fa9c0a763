"""WSCNN prediction: channel checks, batches, and tiled == untiled."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_rarepheno.core.errors import Cancelled, InputError
from napari_rarepheno.core.inference.border import (
    border_margin,
    crop_border,
    pad_border,
)
from napari_rarepheno.core.inference.predict import (
    classify_batch,
    predict_wscnn,
    saliency_batch,
)
from napari_rarepheno.core.inference.tiling import (
    default_overlap,
    min_overlap,
    owned_units,
    plan_tiles,
)
from napari_rarepheno.core.io.modelfile import (
    LoadedModel,
    ModelMeta,
    load_model,
    save_model,
)
from napari_rarepheno.core.nets.registry import config_to_dict
from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig
from napari_rarepheno.core.progress import CancelToken


def random_wscnn(channels=None, in_channels=1, head="max", depth=4, seed=0) -> LoadedModel:
    """Random weights with non-trivial BatchNorm statistics (eval mode)."""
    torch.manual_seed(seed)
    m = WSCNN(WSCNNConfig(in_channels=in_channels, widths=(4, 4, 4), head=head, depth=depth))
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.3)
                mod.running_var.uniform_(0.5, 2.0)
    meta = ModelMeta("wscnn", config_to_dict(m.config), ["negative", "positive"], channels=channels,
                     normalization={"mean": [0.4] * in_channels, "std": [0.2] * in_channels})
    return LoadedModel(m.eval(), meta)


@pytest.fixture(scope="module")
def big_image():
    rng = np.random.default_rng(0)
    img = rng.random((1, 600, 700), dtype=np.float32) * 0.3
    img[0, 300:315, 410:425] = 1.0  # something bright for the class maps to see
    return img


@pytest.fixture(scope="module")
def untiled(big_image):
    lm = random_wscnn()
    return lm, predict_wscnn(lm, big_image, saliency=True)


def test_untiled_prediction_shapes(untiled, big_image):
    lm, p = untiled
    assert p.probabilities.shape == (2,) and abs(p.probabilities.sum() - 1) < 1e-6
    assert p.class_maps.shape == (2, 600, 700) and p.class_maps.dtype == np.float32
    assert p.saliency.shape == (600, 700) and p.saliency.dtype == np.float32
    assert p.class_names == ["negative", "positive"] and p.predicted in p.class_names and p.n_tiles == 1
    # probabilities agree with the plain forward pass of the image with its border margin
    with torch.no_grad():
        x = (torch.from_numpy(pad_border(big_image, border_margin(lm)))[None] - 0.4) / 0.2
        ref = torch.softmax(lm.model(x), 1)[0].numpy()
    np.testing.assert_allclose(p.probabilities, ref, atol=1e-6)


@pytest.mark.parametrize("tile,mode", [(256, "map"), (384, "max")])
def test_tiled_equals_untiled(untiled, big_image, tile, mode):
    lm, ref = untiled
    if mode != "map":
        ref = predict_wscnn(lm, big_image, saliency_mode=mode)
    calls = []
    p = predict_wscnn(lm, big_image, tile=tile, saliency_mode=mode, callback=calls.append)
    assert p.n_tiles > 1 and calls and calls[-1].fraction == 1.0
    scale = np.abs(ref.class_maps).max()
    assert np.abs(p.class_maps - ref.class_maps).max() <= 1e-4 * scale
    np.testing.assert_allclose(p.probabilities, ref.probabilities, atol=1e-5)
    assert np.abs(p.saliency - ref.saliency).max() <= 1e-4 * ref.saliency.max()


def test_tile_plan_and_ownership():
    lm = random_wscnn()
    m = lm.model
    assert min_overlap(m) == 72 and default_overlap(m) == 80  # receptive field 70 px
    for n in (130, 600, 701, 1000):
        spans = plan_tiles(n, 256, 80, 8)
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(s % 8 == 0 for s, _ in spans)
        assert all(b[0] <= a[1] - 80 for a, b in zip(spans, spans[1:]))  # overlap >= 80 px
        own = owned_units(m, n, spans)  # a partition of the global class map
        assert own[0][0] == 0 and own[-1][1] == m.class_map_size(n, n)[0]
        assert all(a[1] == b[0] for a, b in zip(own, own[1:]))
        assert all(b - a < 256 + 8 for a, b in spans)
    for n, tile, k in ((2048, 1024, 3), (2048, 512, 5), (10_000, 1024, 11)):
        spans = plan_tiles(n, tile, 80, 8)  # the fewest spans, of about equal size: little repeated work
        assert len(spans) == k and sum(b - a for a, b in spans) <= n + (k - 1) * (80 + 8) + 8, spans


def test_tiling_refusals(big_image):
    with pytest.raises(InputError, match="overlap 40 px is too small"):
        predict_wscnn(random_wscnn(), big_image, tile=256, overlap=40, saliency=False)
    with pytest.raises(InputError, match="tile size 64 px is too small"):
        predict_wscnn(random_wscnn(), big_image, tile=64, saliency=False)
    avg = random_wscnn(head="avg")
    with pytest.raises(InputError, match="head='avg'"):
        predict_wscnn(avg, big_image, tile=256, saliency=False)
    small = big_image[:, :200, :200]
    assert predict_wscnn(avg, small, saliency=False).saliency is None  # untiled avg head is fine
    with pytest.raises(InputError, match="saliency mode"):
        predict_wscnn(random_wscnn(), small, saliency_mode="sum")
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        predict_wscnn(random_wscnn(), big_image, tile=256, cancel=token)


def test_channel_selection_and_refusals():
    rng = np.random.default_rng(1)
    img3 = rng.random((3, 96, 96), dtype=np.float32)
    lm = random_wscnn(channels=[2])
    a = predict_wscnn(lm, img3, saliency=False)
    b = predict_wscnn(lm, img3[2:3], saliency=False)
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    plain = random_wscnn()
    with pytest.raises(InputError, match="expects 1 channel\\(s\\) but the image has 3"):
        predict_wscnn(plain, img3)
    two = random_wscnn(in_channels=2)
    with pytest.raises(InputError, match="expects 2 channel\\(s\\) but the image has 1"):
        predict_wscnn(two, img3[:1], path="cells.tif")
    with pytest.raises(InputError, match="smaller than the network's minimum input of 46x46"):
        predict_wscnn(plain, img3[:1, :40, :90])
    with pytest.raises(InputError, match="NaN"):
        bad = img3[:1].copy()
        bad[0, 3, 3] = np.nan
        predict_wscnn(plain, bad)


def test_integer_images_are_scaled_like_read_image():
    lm = random_wscnn()
    f = np.random.default_rng(2).random((1, 80, 80), dtype=np.float32)
    u8 = np.round(f * 255).astype(np.uint8)
    a = predict_wscnn(lm, u8, saliency=False, device=torch.device("cpu"))
    b = predict_wscnn(lm, u8.astype(np.float32) / 255, saliency=False)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)


def test_batches_match_single_images(tmp_path):
    lm = random_wscnn()
    path = save_model(tmp_path / "m.safetensors", lm.model, lm.meta)
    lm = load_model(path)  # the way the GUI and CLI get their models
    imgs = np.random.default_rng(3).random((5, 1, 96, 112), dtype=np.float32)
    probs = classify_batch(lm, imgs, batch_size=2, device="cpu")
    p2, sal = saliency_batch(lm, imgs, device="cpu", batch_size=3)
    assert probs.shape == (5, 2) and sal.shape == (5, 96, 112)
    np.testing.assert_allclose(probs, p2, atol=1e-6)
    for i in (0, 4):
        single = predict_wscnn(lm, imgs[i])
        np.testing.assert_allclose(single.probabilities, probs[i], atol=1e-6)
        np.testing.assert_allclose(single.saliency, sal[i], atol=1e-7)
    assert saliency_batch(lm, imgs, saliency=False)[1] is None
    u8 = np.round(imgs[:2] * 255).astype(np.uint8)
    np.testing.assert_allclose(classify_batch(lm, u8), classify_batch(lm, u8 / np.float32(255)), atol=1e-6)
    with pytest.raises(InputError, match="expects 1 channel\\(s\\) but the images have 3"):
        classify_batch(lm, np.zeros((2, 3, 96, 96), np.float32))
    with pytest.raises(InputError, match="minimum input"):
        saliency_batch(lm, np.zeros((2, 1, 30, 96), np.float32))
    assert all(p.grad is None for p in lm.model.parameters())


def test_border_margin_and_padding():
    """Half the receptive field of background around the image (the outermost class-map units
    would otherwise sit 22.5 px inside it); none for heads that see the whole image at once."""
    lm = random_wscnn()
    assert border_margin(lm) == lm.model.receptive_field()[0] // 2 == 35
    assert border_margin(random_wscnn(head="avg")) == 0
    fc = WSCNN(WSCNNConfig(in_channels=1, widths=(4, 4, 4), head="fc", input_size=(64, 64)))
    assert border_margin(LoadedModel(fc, ModelMeta("wscnn", config_to_dict(fc.config), ["negative", "positive"]))) == 0
    img = np.full((2, 2, 20, 30), 0.2, np.float32)
    img[:, 1] = 0.7
    img[0, 0, 5:8, 5:8] = 1.0
    out = pad_border(img, 4)
    assert out.shape == (2, 2, 28, 38) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 4:-4, 4:-4], img)
    assert np.all(out[:, 0, :4] == 0.2) and np.all(out[:, 1, :, -4:] == 0.7)  # the median per image and channel
    assert pad_border(img, 0) is img
    np.testing.assert_array_equal(crop_border(out, 4), img)
    u8 = np.array([[[[10, 10, 10], [10, 200, 11]]]], np.uint8)  # integer data stays integer (read as before)
    pu = pad_border(u8, 2)
    assert pu.dtype == np.uint8 and pu.shape == (1, 1, 6, 7) and pu[0, 0, 0, 0] == 10
    np.testing.assert_array_equal(pu[..., 2:-2, 2:-2], u8)


def test_training_validates_with_and_without_the_border_margin_and_records_the_better(wscnn_model, wscnn_data):
    """Every epoch the val split is scored with and without the margin; the lower loss gives
    the epoch's val numbers (and so the best checkpoint), and the best epoch's choice is
    stored for prediction. Evaluating the saved model on val reproduces those numbers."""
    import csv

    from napari_rarepheno.core.io.modelfile import load_model
    from napari_rarepheno.core.training.trainer import checkpoint_paths
    from napari_rarepheno.core.wscnn.evaluate import evaluate_wscnn

    lm = load_model(wscnn_model)
    t = lm.meta.training
    assert border_margin(lm, recorded=False) == 35
    rows = list(csv.DictReader(open(checkpoint_paths(wscnn_model)[2])))
    assert len(rows) == 3
    for r in rows:
        pick = "border" if float(r["val_loss_border"]) <= float(r["val_loss_plain"]) else "plain"
        assert r["val_input"] == pick and float(r["val_loss"]) == float(r[f"val_loss_{pick}"])
    best = rows[t["best_epoch"] - 1]
    assert float(best["val_loss"]) == min(float(r["val_loss"]) for r in rows)
    use = 35 if best["val_input"] == "border" else 0
    assert t["border_margin"] == use == border_margin(lm)
    chk = t["border_check"]
    assert chk["margin"] == 35 and chk["val_loss_with"] == pytest.approx(float(best["val_loss_border"]))
    ev = evaluate_wscnn(lm, wscnn_data / "val", device="cpu", localization=False)
    assert ev["n"] == t["n_val"]
    assert ev["accuracy"] == pytest.approx(float(best["val_accuracy"]), abs=1e-9)
    # the recorded decision is what prediction applies, either way
    lm.meta.training["border_margin"] = 35 - use
    assert border_margin(lm) == 35 - use and border_margin(lm, recorded=False) == 35


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("hw", [(9, 13), (16, 10)])
def test_pair_pool_is_max_pool_without_gradient_and_max_pool_with_one(dtype, hw):
    from napari_rarepheno.core.nets.folding import _PairMaxPool2d

    torch.manual_seed(0)
    x = torch.randn(2, 5, *hw).to(dtype).contiguous(memory_format=torch.channels_last)
    pool = _PairMaxPool2d(2)
    with torch.no_grad():
        assert torch.equal(pool(x), torch.nn.functional.max_pool2d(x, 2))
    xg = x.float().requires_grad_(True)  # with a gradient: max_pool2d's (one arg-max per window)
    pool(xg).sum().backward()
    assert xg.grad.sum().item() == pytest.approx(2 * 5 * (hw[0] // 2) * (hw[1] // 2))


@pytest.mark.parametrize("k", [2, 3])
def test_cam_evidence_equals_the_evidence_of_the_upsampled_maps(k):
    from napari_rarepheno.core.inference.predict import cam_evidence
    from napari_rarepheno.core.inference.saliency import evidence_map, upsample_maps

    torch.manual_seed(1)
    maps = torch.randn(1, k, 12, 17)
    for target in range(k):
        want = evidence_map(upsample_maps(maps, (90, 130), (20.5, 24.5), 8)[0].numpy(), target)
        got = cam_evidence(maps, (90, 130), (20.5, 24.5), 8, target)
        assert got.shape == (90, 130) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert (got > 0).any()
