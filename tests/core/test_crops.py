"""Fields -> labels -> centred crops, on a synthetic field with known cells."""
import numpy as np
import pytest
from skimage.draw import disk

from napari_rarepheno.core.cells.crops import crops_from_labels, extract_crops
from napari_rarepheno.core.cells.segment import cells_from_labels, segment_cells
from napari_rarepheno.core.errors import InputError

# two pairs of touching (overlapping) disks, isolated ones, one near the border
CENTRES = [(40, 40), (40, 120), (40, 140), (150, 60), (100, 250), (170, 200), (100, 150), (120, 165), (20, 280)]


def synthetic_field(rng, radius=12, shape=(200, 300)):
    img = np.zeros(shape)
    for y, x in CENTRES:
        img[disk((y, x), radius, shape=shape)] = 1.0
    return img + rng.normal(0, 0.1, shape)


@pytest.mark.parametrize("method", ["otsu", "li"])
def test_segment_cells_finds_known_centroids(method):
    img = synthetic_field(np.random.default_rng(0))
    img[5:7, 5:7] = 3.0  # a speck smaller than min_area
    labels = segment_cells(img, method=method, min_area=50)
    assert labels.dtype == np.int32 and labels.shape == img.shape
    table = cells_from_labels(labels)
    assert list(table) == ["id", "centroid_y", "centroid_x", "area"]
    assert len(table["id"]) == len(CENTRES)
    np.testing.assert_array_equal(table["id"], np.arange(1, len(CENTRES) + 1))
    found = np.stack([table["centroid_y"], table["centroid_x"]], 1)
    dist = np.linalg.norm(found[:, None] - np.array(CENTRES)[None], axis=2)
    assert dist.min(0).max() < 2.0  # every true cell found within 2 px
    assert np.all(table["area"] > 250)


def test_without_splitting_touching_cells_merge():
    img = synthetic_field(np.random.default_rng(0))
    labels = segment_cells(img, split_touching=False)
    assert labels.max() == len(CENTRES) - 2
    assert segment_cells(np.full((50, 50), 3.0)).max() == 0  # flat image: no cells


def test_crops_match_manual_slicing_and_border_keeps_centre():
    rng = np.random.default_rng(3)
    field = rng.integers(0, 255, (2, 120, 150), dtype=np.uint8)
    crops = extract_crops(field, [(60, 70), (60.4, 69.6)], size=32)
    assert crops.shape == (2, 2, 32, 32) and crops.dtype == np.uint8
    np.testing.assert_array_equal(crops[0], field[:, 44:76, 54:86])
    np.testing.assert_array_equal(crops[1], crops[0])  # rounding to the nearest pixel
    odd = extract_crops(field, [(60, 70)], size=31)
    np.testing.assert_array_equal(odd[0], field[:, 45:76, 55:86])
    corner = extract_crops(field, [(0, 149)], size=32)[0]
    assert np.all(corner[:, 16, 16] == field[:, 0, 149])  # the centre stays at the crop centre
    np.testing.assert_array_equal(corner[:, 16:, :17], field[:, :16, 133:])
    assert np.all(corner[:, :16] == 0) and np.all(corner[:, :, 17:] == 0)
    for mode in ("reflect", "edge", "symmetric", "wrap"):
        padded = np.pad(field, ((0, 0), (16, 16), (16, 16)), mode=mode)
        got = extract_crops(field, [(0, 149), (3, 2)], size=32, pad_mode=mode)
        np.testing.assert_array_equal(got[0], padded[:, 0:32, 149:181])
        np.testing.assert_array_equal(got[1], padded[:, 3:35, 2:34])


def test_crops_from_labels_masks_other_cells():
    rng = np.random.default_rng(0)
    img = synthetic_field(rng)
    labels = segment_cells(img)
    field = np.stack([img, 2 * img]).astype(np.float32)
    crops, ids, cen = crops_from_labels(field, labels, size=64)
    assert crops.shape == (len(CENTRES), 2, 64, 64) and len(ids) == len(cen) == len(CENTRES)
    manual = extract_crops(field, cen, size=64)
    np.testing.assert_array_equal(crops, manual)
    masked, ids2, _, masks = crops_from_labels(field, labels, size=64, mask_others=True, return_masks=True)
    np.testing.assert_array_equal(ids, ids2)
    lab_crops = extract_crops(labels, cen, size=64)[:, 0]
    for i, cell in enumerate(ids):
        other = (lab_crops[i] != 0) & (lab_crops[i] != cell)
        assert np.all(masked[i][:, other] == 0)
        np.testing.assert_array_equal(masked[i][:, ~other], crops[i][:, ~other])
        assert masks[i][32, 32] and np.array_equal(masks[i], lab_crops[i] == cell)
    empty = crops_from_labels(field, np.zeros(img.shape, int))
    assert empty[0].shape == (0, 2, 64, 64) and len(empty[1]) == 0


@pytest.mark.parametrize("call, match", [
    (lambda f: extract_crops(f, [(200, 10)]), "outside"),
    (lambda f: extract_crops(f, [(10, 10, 3)]), r"\(N, 2\)"),
    (lambda f: extract_crops(f, [(10, 10)], size=0), "size"),
    (lambda f: extract_crops(f, [(10, 10)], pad_mode="mirror"), "pad_mode"),
    (lambda f: extract_crops(f.transpose(1, 2, 0), [(10, 10)]), "channels-last"),
    (lambda f: crops_from_labels(f, np.zeros((10, 10), int)), "do not match"),
    (lambda f: crops_from_labels(f, np.zeros((2, 100, 120), int)), "2-D"),
    (lambda f: crops_from_labels(f, np.full((100, 120), 0.5)), "integer"),
    (lambda f: segment_cells(f), "2-D"),
    (lambda f: segment_cells(f[0], method="triangle"), "method"),
])
def test_bad_input_is_explained(call, match):
    field = np.zeros((2, 100, 120), np.float32)
    with pytest.raises(InputError, match=match):
        call(field)
