"""Per-protein Dirichlet aggregation, checked against hand-computed posteriors."""
import csv
import io

import numpy as np
import pytest
from scipy import stats

from napari_rarepheno.core.deepyeast.aggregate import (
    aggregate,
    group_accuracy,
    is_mixture,
    posterior_table,
)
from napari_rarepheno.core.errors import InputError

NAMES = ["nucleus", "cytoplasm", "vacuole"]


def onehot(labels, k=3):
    return np.eye(k)[labels]


def test_counts_301_alpha1_gives_hand_computed_posterior():
    probs = onehot([0, 0, 0, 2])
    for soft in (True, False):  # one-hot cells: soft and hard counts agree
        (post,) = aggregate(probs, ["YFG1"] * 4, NAMES, prior=1.0, soft=soft)
        np.testing.assert_allclose(post.alpha, [4, 1, 2])
        np.testing.assert_allclose(post.mean, [4 / 7, 1 / 7, 2 / 7])
        np.testing.assert_allclose(post.mode, [3 / 4, 0, 1 / 4])
        assert post.map_class == 0 and post.map_name == "nucleus" and post.n_cells == 4
        # marginal of Dirichlet(4, 1, 2) for nucleus is Beta(4, 3)
        np.testing.assert_allclose(post.credible[0], stats.beta.ppf([0.05, 0.95], 4, 3))
        assert np.all(post.credible[:, 0] <= post.mean) and np.all(post.mean <= post.credible[:, 1])


def test_soft_and_hard_counts_differ_on_uncertain_cells():
    probs = np.array([[0.6, 0.4, 0.0]] * 3 + [[0.0, 1.0, 0.0]])
    (soft,) = aggregate(probs, [0] * 4, NAMES, soft=True)
    (hard,) = aggregate(probs, [0] * 4, NAMES, soft=False)
    np.testing.assert_allclose(soft.counts, [1.8, 2.2, 0.0])
    np.testing.assert_allclose(hard.counts, [3, 1, 0])
    assert soft.map_name == "cytoplasm" and hard.map_name == "nucleus"


def test_fifty_fifty_mixture_shows_both_compartments():
    hard = onehot([0] * 10 + [1] * 10)
    (post,) = aggregate(hard, ["mix"] * 20, NAMES)
    np.testing.assert_allclose(post.mean, [11 / 23, 11 / 23, 1 / 23])
    assert set(is_mixture(post, min_mass=0.2)) == {"nucleus", "cytoplasm"}
    soft = np.tile([0.5, 0.5, 0.0], (20, 1))  # every cell itself looks mixed
    (post,) = aggregate(soft, ["mix"] * 20, NAMES)
    assert set(is_mixture(post)) == {"nucleus", "cytoplasm"}
    row = posterior_table([post])[0]
    assert set(row["compartments"].split("+")) == {"nucleus", "cytoplasm"}
    (pure,) = aggregate(onehot([2] * 20), ["pure"] * 20, NAMES)
    assert is_mixture(pure) == ["vacuole"]


def test_single_cell_group():
    (post,) = aggregate(np.array([[0.1, 0.7, 0.2]]), ["one"], NAMES)
    np.testing.assert_allclose(post.mean, [1.1 / 4, 1.7 / 4, 1.2 / 4])
    assert post.n_cells == 1 and post.map_name == "cytoplasm"
    # one cell barely moves a flat prior: wide intervals
    assert np.all(post.credible[:, 1] - post.credible[:, 0] > 0.5)


def test_empty_groups_and_empty_input():
    assert aggregate(np.zeros((0, 3)), [], NAMES) == []
    posts = aggregate(onehot([1, 1]), ["a", "a"], NAMES, all_groups=["b", "a"])
    assert [p.group for p in posts] == ["b", "a"]
    empty = posts[0]
    assert empty.n_cells == 0 and empty.map_class == -1 and empty.map_name == ""
    np.testing.assert_allclose(empty.mean, [1 / 3] * 3)  # the prior alone
    row = posterior_table(posts)[0]
    assert row["map_class"] == "" and np.isnan(row["map_prob"]) and row["compartments"] == ""
    with pytest.raises(InputError, match="all_groups"):
        aggregate(onehot([0]), ["c"], NAMES, all_groups=["a"])


def test_several_groups_integer_labels_and_prior():
    groups = np.array([7, 3, 7, 3, 3])
    labels = np.array([0, 2, 0, 2, 1])
    posts = aggregate(labels, groups, NAMES, prior=[2.0, 1.0, 1.0])
    assert [p.group for p in posts] == [7, 3]  # order of first appearance
    np.testing.assert_allclose(posts[0].alpha, [4, 1, 1])
    np.testing.assert_allclose(posts[1].alpha, [2, 2, 3])
    rows = posterior_table(posts, intervals=True)
    assert type(rows[0]["group"]) is int
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    header = buf.getvalue().splitlines()[0].split(",")
    assert header[:5] == ["group", "n_cells", "map_class", "map_prob", "compartments"]
    assert {"p_nucleus", "lo_vacuole", "hi_cytoplasm"} <= set(header)
    assert group_accuracy(posts, {7: "nucleus", 3: 2}) == 1.0
    assert group_accuracy(posts, {7: 1, 3: 2}) == 0.5
    assert group_accuracy(posts, {7: 0, 3: 0}, min_cells=3) == 0.0  # only group 3 counts
    with pytest.raises(InputError, match="no true class"):
        group_accuracy(posts, {7: 0})
    with pytest.raises(InputError, match="at least 10 cells"):
        group_accuracy(posts, {7: 0, 3: 0}, min_cells=10)


@pytest.mark.parametrize("kwargs, match", [
    ({"probs": np.array([[2.0, -1.0, 0.5]])}, "softmax"),
    ({"groups": ["a", "b"]}, "one key per cell"),
    ({"prior": 0.0}, "prior"),
    ({"class_names": ["a", "a", "b"]}, "distinct"),
    ({"probs": np.array([[np.nan, 0.5, 0.5]])}, "NaN"),
    ({"probs": np.array([3])}, "class indices"),
])
def test_bad_input_is_explained(kwargs, match):
    args = {"probs": np.array([[0.2, 0.3, 0.5]]), "groups": ["a"], "class_names": NAMES}
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        aggregate(**args)
