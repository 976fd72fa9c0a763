"""Classification metrics and the paper's localisation metric."""
from __future__ import annotations

import numpy as np
import pytest

from napari_rarepheno.core.errors import InputError
from napari_rarepheno.core.io.boxes import Box
from napari_rarepheno.core.metrics import (
    binary_metrics,
    box_coverage,
    detection_counts,
    localization_counts,
    localization_metrics,
    multiclass_metrics,
)


def test_binary_metrics_counts_and_ratios():
    m = binary_metrics([1, 1, 1, 0, 0, 0, 0], [1, 1, 0, 1, 0, 0, 0])
    assert (m["tp"], m["fn"], m["fp"], m["tn"], m["n"]) == (2, 1, 1, 3, 7)
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # string labels and another positive class
    s = binary_metrics(["a", "b", "b"], ["b", "b", "a"], positive="b")
    assert (s["tp"], s["fp"], s["fn"], s["tn"]) == (1, 1, 1, 0)


def test_binary_zero_divisions_are_zero_not_nan():
    m = binary_metrics([0, 0, 1], [0, 0, 0])  # no predicted positives
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    assert m["tp"] + m["fp"] == 0  # "undefined" stays visible in the counts
    none = binary_metrics([0, 0], [0, 0])  # no true positives at all
    assert none["recall"] == 0.0 and none["accuracy"] == 1.0
    empty = binary_metrics([], [])
    assert empty["n"] == 0 and empty["accuracy"] == 0.0
    assert not any(isinstance(v, float) and np.isnan(v) for v in {**m, **none, **empty}.values())


def test_binary_mismatched_lengths():
    with pytest.raises(InputError, match="3 labels but y_pred has 2"):
        binary_metrics([0, 1, 1], [0, 1])


def test_multiclass_metrics():
    names = ["G1", "S", "M"]
    m = multiclass_metrics([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], names)
    assert m["accuracy"] == pytest.approx(4 / 6) and m["n"] == 6
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]  # rows = true class
    assert m["per_class"]["S"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "n": 2}
    assert m["per_class"]["M"]["precision"] == 1.0 and m["per_class"]["M"]["recall"] == 0.5
    by_name = multiclass_metrics(["G1", "S"], ["G1", "M"], names)
    assert by_name["confusion"] == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert by_name["per_class"]["M"] == {"precision": 0.0, "recall": 0.0, "n": 0}  # never true, zero division
    with pytest.raises(InputError, match="outside 0..2"):
        multiclass_metrics([0, 3], [0, 0], names)
    with pytest.raises(InputError, match="not among"):
        multiclass_metrics(["G1", "X"], ["G1", "S"], names)


def test_localization_counts_paper_rule():
    mask = np.zeros((50, 60), bool)
    mask[10:20, 10:20] = True          # covers a rare box fully
    mask[30:40, 30:39] = True          # covers 90% of a 10x10 common box
    boxes = [(10, 10, 20, 20, "rare"),          # tp
             (40, 5, 50, 15, "rare"),           # fn (not covered)
             (30, 30, 40, 40, "common"),        # fp: exactly 90% covered counts
             Box("img.png", 0, 40, 10, 50, "common")]  # tn, Box objects accepted
    c = localization_counts(mask, boxes)
    assert (c["tp"], c["fn"], c["fp"], c["tn"]) == (1, 1, 1, 1)
    # 89% coverage is not enough
    mask2 = mask.copy()
    mask2[10, 10] = False
    mask2[10:20, 10:12] = False
    assert localization_counts(mask2, boxes[:1])["fn"] == 1


def test_detection_counts_peak_in_box():
    boxes = [(0, 0, 64, 64, "rare"), (64, 0, 128, 64, "rare"), (0, 64, 64, 128, "common"),
             (64, 64, 128, 128, "common")]
    peaks = np.array([[10.0, 20.0],     # (y, x) in the first rare tile
                      [100.0, 70.0],    # in the second common tile
                      [63.9, 63.9]])    # still the first rare tile (half-open boxes)
    c = detection_counts(peaks, boxes)
    assert (c["tp"], c["fn"], c["fp"], c["tn"]) == (1, 1, 1, 1)
    m = localization_metrics([c, detection_counts(np.zeros((0, 2)), boxes)], prefix="detection")
    assert m["detection_recall"] == 0.25 and m["detection_precision"] == 0.5 and m["detection_images"] == 2
    assert "localization_recall" not in m
    with pytest.raises(InputError, match="kind"):
        detection_counts(peaks, [(0, 0, 5, 5, "odd")])


def test_localization_edge_cases():
    empty = np.zeros((30, 30), bool)
    c = localization_counts(empty, [(0, 0, 5, 5, "rare"), (10, 10, 15, 15, "common")])
    assert (c["tp"], c["fn"], c["fp"], c["tn"]) == (0, 1, 0, 1)
    # a box partly outside the image is clipped to the visible part
    mask = np.zeros((30, 30), bool)
    mask[20:30, 25:30] = True
    assert box_coverage(mask, (25, 20, 35, 40, "rare")) == 1.0
    assert localization_counts(mask, [(25, 20, 35, 40, "rare")])["tp"] == 1
    out = localization_counts(mask, [(40, 40, 50, 50, "rare")])  # entirely outside
    assert out["outside"] == 1 and out["tp"] + out["fn"] == 0
    # no rare objects at all: recall and precision are 0.0, accuracy from the common ones
    m = localization_metrics([localization_counts(empty, [(0, 0, 5, 5, "common")])])
    assert m["localization_recall"] == 0.0 and m["localization_precision"] == 0.0
    assert m["localization_accuracy"] == 1.0
    assert localization_metrics([])["localization_accuracy"] == 0.0
    with pytest.raises(InputError, match="kind"):
        localization_counts(empty, [(0, 0, 5, 5, "odd")])
    with pytest.raises(InputError, match="2-D"):
        localization_counts(np.zeros(5, bool), [])
    with pytest.raises(InputError, match="x0, y0, x1, y1, kind"):
        localization_counts(empty, [(0, 0, 5)])


def test_localization_metrics_pool_images():
    counts = [{"tp": 9, "fn": 1, "fp": 2, "tn": 88}, {"tp": 1, "fn": 0, "fp": 0, "tn": 9, "outside": 3}]
    m = localization_metrics(counts)
    assert m["localization_recall"] == pytest.approx(10 / 11)
    assert m["localization_precision"] == pytest.approx(10 / 12)
    assert m["localization_accuracy"] == pytest.approx(107 / 110)
    assert m["localization_images"] == 2 and m["localization_tp"] == 10
