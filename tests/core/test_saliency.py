"""Saliency: geometry of the class maps, gradient saliency modes, segmentation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_rarepheno.core.errors import InputError
from napari_rarepheno.core.inference.saliency import (
    class_activation_maps,
    evidence_map,
    gradient_saliency,
    gradient_saliency_batch,
    objective_weights,
    saliency_from_weights,
    unit_geometry,
)
from napari_rarepheno.core.inference.segment import SaliencyConfig, segment_saliency
from napari_rarepheno.core.nets.wscnn import WSCNN, WSCNNConfig

SQ = 9  # side of the planted squares


def blob_detector(threshold: float = 0.5) -> WSCNN:
    """A hand-built WSCNN whose positive class map fires on bright ~9x9 blobs.

    conv1 channel 0 = 9x9 box average (zero ring in the 11x11 kernel); the next layers
    pass that channel through their centre taps (so the class map is the box response,
    max-pooled); positive class map = response - threshold, negative class map = 0.
    BatchNorm layers are exact identities."""
    torch.manual_seed(0)
    m = WSCNN(WSCNNConfig(widths=(2, 2, 2)))
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.fill_(1.0)
                mod.running_mean.zero_()
                mod.running_var.fill_(1.0 - mod.eps)
        convs = [mod for mod in m.features if isinstance(mod, torch.nn.Conv2d)]
        convs[0].weight[0, 0, 1:10, 1:10] = 1.0 / 81
        convs[1].weight[0, 0, 1, 1] = 1.0
        convs[2].weight[0, 0, 2, 2] = 1.0
        m.classifier.weight[1, 0, 2, 2] = 1.0
        m.classifier.bias[1] = -threshold
    return m.eval()


def field(centres, shape=(128, 128), levels=None, seed=0) -> torch.Tensor:
    """Dark noisy image with bright SQxSQ squares centred at ``centres`` (y, x)."""
    rng = np.random.default_rng(seed)
    img = 0.1 + 0.02 * rng.standard_normal(shape).astype(np.float32)
    for k, (y, x) in enumerate(centres):
        img[y - SQ // 2:y + SQ // 2 + 1, x - SQ // 2:x + SQ // 2 + 1] = 1.0 if levels is None else levels[k]
    return torch.from_numpy(img)[None, None]


@pytest.mark.parametrize("cfg,offset", [(WSCNNConfig(widths=(2, 2, 2)), 22.5),
                                        (WSCNNConfig(widths=(2, 2, 2), conv2_kernel=7), 26.5),
                                        (WSCNNConfig(widths=(2, 2, 2), depth=6), 22.5)])
def test_unit_geometry_matches_gradient_support(cfg, offset):
    torch.manual_seed(1)
    m = WSCNN(cfg).eval()
    assert unit_geometry(m) == (offset, 8)
    # linear twin (average pooling, no ReLU): the gradient support is the whole receptive field
    for i, mod in enumerate(m.features):
        if isinstance(mod, torch.nn.MaxPool2d):
            m.features[i] = torch.nn.AvgPool2d(2)
        elif isinstance(mod, torch.nn.ReLU):
            m.features[i] = torch.nn.Identity()
    assert unit_geometry(m) == (offset, 8)
    x = torch.randn(1, 1, 160, 160, requires_grad=True)
    maps = m.class_maps(x)
    i = maps.shape[-1] // 2
    (g,) = torch.autograd.grad(maps[0, 1, i, i], x)
    rows = torch.nonzero(g[0, 0].abs().sum(1)).flatten()
    cols = torch.nonzero(g[0, 0].abs().sum(0)).flatten()
    rf = m.receptive_field()[0]
    assert (rows.max() - rows.min() + 1).item() == rf
    assert (rows.min() + rows.max()).item() / 2 == offset + 8 * i
    assert (cols.min() + cols.max()).item() / 2 == offset + 8 * i


def test_cam_is_aligned_with_the_object():
    m = blob_detector()
    for y, x in [(40, 50), (77, 90), (60, 33)]:
        cam = class_activation_maps(m, field([(y, x)]))
        ev = evidence_map(cam, 1)
        assert ev.shape == (128, 128) and ev.min() == 0 and ev[y, x] > 0
        det = segment_saliency(ev, SaliencyConfig())
        assert len(det) == 1 and det.labels[y, x] == 1
        assert cam.shape == (2, 128, 128) and cam.dtype == np.float32
        pos = cam[1]
        top = np.argwhere(pos >= pos.max() - 1e-6)  # flat top of max-pooled response
        centre = top.mean(0)
        assert abs(centre[0] - y) <= 4 and abs(centre[1] - x) <= 4, (y, x, centre)


def test_map_saliency_finds_every_planted_square_max_finds_one():
    m = blob_detector()
    centres = [(30, 30), (40, 95), (95, 60)]
    x = field(centres, levels=[1.0, 0.9, 0.8])
    cfg = SaliencyConfig(sigma=2.0, threshold=0.25, min_distance=6, min_area=20)

    sal = gradient_saliency(m, x, target=1, mode="map")
    assert sal.shape == (128, 128) and sal.dtype == np.float32
    det = segment_saliency(sal, cfg)
    assert len(det) == det.labels.max() == 3
    for y, xx in centres:
        lab = det.labels[y, xx]
        assert lab > 0, f"square at {(y, xx)} missed"
        py, px = det.peaks[lab - 1]
        assert abs(py - y) <= 3 and abs(px - xx) <= 3
        # the component covers the square
        assert det.mask[y - SQ // 2:y + SQ // 2 + 1, xx - SQ // 2:xx + SQ // 2 + 1].mean() > 0.9
    assert set(np.unique(det.labels)) == {0, 1, 2, 3}
    # margin weighting: the most confident object is the brightest, and is listed first
    assert det.labels[centres[0]] == 1 and det.scores[0] > det.scores[1] > det.scores[2]
    assert len(segment_saliency(sal, SaliencyConfig())) == 3  # the defaults find them too

    one = segment_saliency(gradient_saliency(m, x, mode="max"), cfg)
    assert len(one) == 1
    hits = [one.labels[y, xx] > 0 for y, xx in centres]
    assert hits == [True, False, False]  # the brightest square, i.e. the global max unit


def test_negative_image_has_empty_saliency_and_no_objects():
    m = blob_detector()
    sal = gradient_saliency(m, field([]), mode="map")
    assert not sal.any()
    det = segment_saliency(sal, SaliencyConfig())
    assert len(det) == 0 and not det.mask.any() and det.labels.dtype == np.int32


def test_saliency_leaves_the_model_untouched():
    m = blob_detector()
    m.train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    gradient_saliency(m, field([(60, 60)]))
    assert m.training  # mode restored
    assert all(p.grad is None for p in m.parameters())
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # BN stats unchanged


def test_batch_equals_single_and_modes_are_checked():
    m = blob_detector()
    xs = torch.cat([field([(40, 40)]), field([(80, 70)], seed=1), field([], seed=2)])
    batch = gradient_saliency_batch(m, xs, batch_size=2)
    assert batch.shape == (3, 128, 128)
    for i in range(3):
        np.testing.assert_allclose(batch[i], gradient_saliency(m, xs[i:i + 1]), atol=1e-7)
    with torch.no_grad():
        maps = m.class_maps(xs)
    lin = saliency_from_weights(m, xs, objective_weights(maps, 1, "map")).abs().amax(1).numpy()
    np.testing.assert_allclose(lin, batch, atol=1e-7)  # the linearised objective is the same gradient
    with pytest.raises(ValueError, match="mode"):
        gradient_saliency(m, xs[:1], mode="nope")
    with pytest.raises(ValueError, match="one image"):
        gradient_saliency(m, xs)


# ------------------------------------------------------------------ segmentation
def blobs(centres, shape=(96, 96), sigma=3.0, amps=None) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    out = np.zeros(shape, np.float32)
    for k, (y, x) in enumerate(centres):
        a = 1.0 if amps is None else amps[k]
        out += a * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma ** 2))
    return out


def test_touching_blobs_are_split_one_label_per_peak():
    s = blobs([(40, 40), (40, 51)])  # overlapping: one thresholded component, two peaks
    det = segment_saliency(s, SaliencyConfig(sigma=0, threshold=0.2, min_distance=4, min_area=5, peak_fraction=0))
    assert len(det) == 2 and det.labels.max() == 2
    from scipy import ndimage as ndi
    assert ndi.label(det.mask)[1] == 1
    for i, (y, x) in enumerate(det.peaks):
        assert det.labels[int(y), int(x)] == i + 1
        assert ndi.label(det.labels == i + 1)[1] == 1  # each label one connected piece
    assert np.array_equal(det.mask, det.labels > 0)
    assert det.areas.sum() == det.mask.sum()
    f = det.features()
    assert list(f) == ["label", "y", "x", "score", "area"] and len(f["score"]) == 2


def test_peak_fraction_gives_each_object_its_own_extent():
    """A strong object next to a weak one: with the image-wide threshold alone the strong
    one's mask is much larger (and reaches towards its neighbour); trimmed to a fraction of
    each object's own peak, two blobs of the same shape get the same size."""
    s = blobs([(40, 30), (40, 62)], amps=[1.0, 0.35], sigma=6.0)
    plain = segment_saliency(s, SaliencyConfig(sigma=0, threshold=0.1, min_distance=4, min_area=5, peak_fraction=0))
    own = segment_saliency(s, SaliencyConfig(sigma=0, threshold=0.1, min_distance=4, min_area=5, peak_fraction=0.5))
    assert len(plain) == len(own) == 2
    assert plain.areas[0] > 1.5 * plain.areas[1]
    assert abs(int(own.areas[0]) - int(own.areas[1])) <= 0.1 * own.areas.max()
    assert own.mask.sum() < plain.mask.sum() and not (own.mask & ~plain.mask).any()  # only ever removes
    for k, (y, x) in enumerate(own.peaks.astype(int)):
        assert own.labels[y, x] == k + 1  # a peak keeps itself
        assert s[own.labels == k + 1].min() >= 0.5 * s[y, x] - 1e-6
    assert np.array_equal(own.areas, np.bincount(own.labels.ravel(), minlength=3)[1:])


def test_trimming_a_plain_segmentation_equals_segmenting_with_the_fraction():
    """The benchmark's sweep segments once per threshold and trims for each fraction; that
    must give exactly what segment_saliency gives with the fraction set, and leave the
    untrimmed detections as they were."""
    from napari_rarepheno.core.inference.segment import (
        smooth_saliency,
        trim_to_peak_fraction,
    )

    rng = np.random.default_rng(3)
    s = blobs([(20, 20), (22, 52), (60, 40), (75, 80)], amps=[1.0, 0.5, 0.3, 0.8], sigma=5.0)
    s = s + 0.05 * rng.random(s.shape)
    for sigma in (0.0, 2.0):
        base = SaliencyConfig(sigma=sigma, threshold=0.15, min_distance=4, min_area=5, peak_fraction=0)
        plain = segment_saliency(s, base)
        before = plain.labels.copy()
        for f in (0.0, 0.3, 0.6):
            want = segment_saliency(s, SaliencyConfig(**{**base.__dict__, "peak_fraction": f}))
            got = trim_to_peak_fraction(plain, smooth_saliency(s, sigma), f)
            assert np.array_equal(got.labels, want.labels) and np.array_equal(got.areas, want.areas)
            assert np.array_equal(got.mask, want.mask) and np.array_equal(got.peaks, want.peaks)
        assert np.array_equal(plain.labels, before)
        assert got.mask.sum() < plain.mask.sum()  # 0.6 did cut something


def test_threshold_modes_min_area_and_scores():
    s = blobs([(20, 20), (70, 70)], amps=[1.0, 0.3])
    rel = segment_saliency(s, SaliencyConfig(sigma=1, threshold=0.5, threshold_mode="relative"))
    assert len(rel) == 1 and rel.peaks[0].tolist() == [20, 20]
    ab = segment_saliency(s, SaliencyConfig(sigma=1, threshold=0.1, threshold_mode="absolute"))
    assert len(ab) == 2 and ab.scores[0] > ab.scores[1]  # ordered by score
    otsu = segment_saliency(s, SaliencyConfig(sigma=1, threshold_mode="otsu"))
    assert 1 <= len(otsu) <= 2 and otsu.threshold > 0
    tiny = segment_saliency(s, SaliencyConfig(sigma=0, threshold=0.1, threshold_mode="absolute", min_area=500))
    assert len(tiny) == 0
    score_map = np.full_like(s, 7.0)
    assert segment_saliency(s, SaliencyConfig(threshold=0.5), score_map=score_map).scores.tolist() == [7.0]
    assert len(segment_saliency(np.zeros((10, 10)), SaliencyConfig())) == 0
    assert len(segment_saliency(np.full((10, 10), 3.0), SaliencyConfig(threshold_mode="otsu"))) == 0


def test_object_at_the_image_border_is_found():
    det = segment_saliency(blobs([(0, 48)]), SaliencyConfig(sigma=1, threshold=0.3))
    assert len(det) == 1 and det.peaks[0][0] <= 1


@pytest.mark.parametrize("bad", [dict(threshold_mode="mean"), dict(sigma=-1), dict(threshold=1.5),
                                 dict(min_distance=0), dict(min_area=-3), dict(peak_fraction=1.0),
                                 dict(peak_fraction=-0.1), dict(peak_fraction=float("nan"))])
def test_bad_config_is_refused(bad):
    with pytest.raises(InputError):
        segment_saliency(blobs([(20, 20)]), SaliencyConfig(**bad))


def test_segmentation_is_cheap_enough_for_live_sliders():
    import time
    s = blobs([(60 + 130 * i, 60 + 130 * j) for i in range(4) for j in range(4)], shape=(512, 512))
    t = time.perf_counter()
    det = segment_saliency(s, SaliencyConfig())
    assert len(det) == 16
    assert time.perf_counter() - t < 1.0  # typically ~30 ms; generous for loaded CI machines


def test_class_map_evidence_is_calibrated_onto_the_gradient_saliency(wscnn_model, positive_image):
    """Training stores where the model's class-map evidence sits relative to what the
    gradient saliency marks (``training.cam_shift``); the forward-only localisation with it
    overlaps the gradient map at least as well as without it, and a model without one is
    calibrated on the first image it sees."""
    import torch

    from napari_rarepheno.core.inference.predict import predict_wscnn, prepare_image
    from napari_rarepheno.core.inference.saliency import calibrate_cam, cam_offsets, unit_geometry
    from napari_rarepheno.core.inputs.normalize import Normalization
    from napari_rarepheno.core.io.modelfile import load_model

    lm = load_model(wscnn_model)
    shift = lm.meta.training.get("cam_shift")
    assert shift is not None and len(shift) == 2 and all(abs(v) <= 24 for v in shift)
    grad = predict_wscnn(lm, positive_image[None], saliency=True, saliency_mode="map").saliency
    cam = predict_wscnn(lm, positive_image[None], saliency=True, saliency_mode="cam").saliency
    lm.meta.training["cam_shift"] = [0, 0]
    raw = predict_wscnn(lm, positive_image[None], saliency=True, saliency_mode="cam").saliency

    def overlap(a, b):
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    assert overlap(cam, grad) >= overlap(raw, grad) - 1e-6
    # without a stored shift, each image calibrates itself (nothing kept: results must not
    # depend on which image came first, or on how images are shared out between processes)
    del lm.meta.training["cam_shift"]
    nrm = Normalization.of_model(lm.meta)
    x = nrm.apply_torch(torch.from_numpy(nrm.scale_samples(prepare_image(lm, positive_image[None])[None])))
    found = calibrate_cam(lm.model, x, 1)
    offset, _ = unit_geometry(lm.model)
    assert cam_offsets(lm, x, 1) == (offset + found[0], offset + found[1])
    assert "cam_shift" not in lm.meta.training
