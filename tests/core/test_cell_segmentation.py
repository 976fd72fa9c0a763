"""Size-adaptive cell segmentation: the diameter estimate, detection F1 at small and large
object sizes, explicit arguments, and the detection metric."""
import numpy as np
import pytest
from skimage.transform import rescale

from napari_rarepheno.core.cells.segment import estimate_diameter, segment_cells, segment_field
from napari_rarepheno.core.cells.simulate import nuclei_field
from napari_rarepheno.core.errors import InputError
from napari_rarepheno.core.metrics import match_labels


def true_diameter(labels):
    area = np.bincount(labels.ravel())[1:]
    return 2 * np.sqrt(np.median(area[area > 0]) / np.pi)


@pytest.fixture(scope="module")
def field16():
    return nuclei_field(16, shape=(240, 240), seed=4)


def test_diameter_estimate_scales_with_the_image(field16):
    img, lab = field16
    d = estimate_diameter(img)
    assert d == pytest.approx(true_diameter(lab), rel=0.15)
    for s in (0.5, 2.0):
        resized = rescale(img, s, anti_aliasing=s < 1, preserve_range=True)
        assert estimate_diameter(resized) / (s * d) == pytest.approx(1.0, abs=0.15), s


def test_sparse_objects_do_not_inflate_the_estimate():
    img, lab = nuclei_field(20, shape=(400, 400), fill=0.01, seed=2)  # 5 nuclei on 1% of the field
    first = estimate_diameter(img, refine=False)
    assert first > 1.5 * true_diameter(lab)  # the whole-image guess reads them too large ...
    assert estimate_diameter(img) == pytest.approx(true_diameter(lab), rel=0.15)  # ... the refined one does not


@pytest.mark.parametrize("diameter, shape", [(10, None), (80, (480, 480))])
def test_one_call_finds_small_and_large_nuclei(diameter, shape):
    img, lab = nuclei_field(diameter, shape=shape, seed=1)
    res = segment_field(img)
    assert res.estimated and res.diameter == pytest.approx(true_diameter(lab), rel=0.2)
    assert res.labels.dtype == np.int32 and res.labels.shape == img.shape
    m = match_labels(res.labels, lab)
    assert m["f1"] >= 0.9, m
    np.testing.assert_array_equal(segment_cells(img), res.labels)  # the labels alone, same call


def test_explicit_arguments_win():
    img, lab = nuclei_field(40, shape=(300, 300), seed=3)
    res = segment_field(img, diameter=25.0, min_area=200, smooth_sigma=2.5, min_distance=7)
    assert (res.diameter, res.estimated) == (25.0, False)
    assert (res.min_area, res.smooth_sigma, res.min_distance) == (200, 2.5, 7)
    assert np.bincount(res.labels.ravel())[1:].min() >= 200
    derived = segment_field(img, diameter=25.0)
    assert (derived.min_area, derived.min_distance) == (74, 5)  # 15% of a 25 px disk, 0.2 x 25
    n = segment_cells(img).max()
    assert segment_cells(img, min_distance=80).max() < n  # seeds two nuclei apart: touching ones merge
    assert segment_cells(img, split_touching=False).max() < n
    assert segment_cells(img, min_area=10 ** 6).max() == 0


def test_flat_image_gives_no_objects():
    flat = np.full((120, 150), 7.0)
    assert segment_cells(flat).max() == 0
    assert segment_cells(flat, diameter=30).max() == 0
    res = segment_field(flat)
    assert res.labels.dtype == np.int32 and res.labels.max() == 0
    assert np.isnan(estimate_diameter(flat))


@pytest.mark.parametrize("call, match", [
    (lambda: segment_cells(np.zeros((2, 30, 30))), "2-D"),
    (lambda: segment_cells(np.ones((30, 30)), diameter=0), "diameter"),
    (lambda: segment_cells(np.ones((30, 30)), min_distance=0), "min_distance"),
    (lambda: estimate_diameter(np.full((30, 30), np.nan)), "NaN"),
    (lambda: match_labels(np.zeros((3, 3), int), np.zeros((3, 4), int)), "same shape"),
    (lambda: match_labels(np.zeros((3, 3)) + 0.5, np.zeros((3, 3), int)), "integer"),
    (lambda: match_labels(np.zeros((3, 3), int), np.zeros((3, 3), int), iou=0), "iou"),
])
def test_bad_input_is_explained(call, match):
    with pytest.raises(InputError, match=match):
        call()


def strips(*runs, n=24):
    """A 1-row label image: ``(label, start, stop)`` runs of columns."""
    lab = np.zeros((1, n), int)
    for k, a, b in runs:
        lab[0, a:b] = k
    return lab


def test_match_labels_counts_one_to_one_matches():
    truth = strips((1, 0, 10), (2, 10, 20))
    pred = strips((5, 2, 16), (9, 0, 2))  # IoU: 5-1 0.5, 5-2 1/3, 9-1 0.2
    m = match_labels(pred, truth)
    assert (m["tp"], m["fp"], m["fn"], m["n_pred"], m["n_true"]) == (1, 1, 1, 2, 2)
    assert m["precision"] == m["recall"] == m["f1"] == 0.5 and m["mean_iou"] == pytest.approx(0.5)
    # below 0.5 the best one-to-one matching pairs 5-2 and 9-1 (greedy by IoU would stop at 5-1)
    low = match_labels(pred, truth, iou=0.15)
    assert (low["tp"], low["fp"], low["fn"]) == (2, 0, 0)
    assert low["mean_iou"] == pytest.approx((1 / 3 + 0.2) / 2)
    assert match_labels(truth, truth)["f1"] == 1.0
    assert match_labels(pred, truth, iou=0.6)["tp"] == 0
    empty = match_labels(np.zeros((4, 4), int), strips((3, 0, 4), n=4).repeat(4, 0))
    assert (empty["tp"], empty["fn"], empty["f1"]) == (0, 1, 0.0)
