"""Cell / non-cell filter on real HeLa crops (red = chromatin, green = tubulin)."""
import re

import numpy as np
import pytest

from napari_rarepheno.core.classic.quality import (
    NEGATIVE_KINDS,
    QualityConfig,
    QualityFilter,
    make_negative_crops,
)
from napari_rarepheno.core.datasets.bundled import MITOSIS_CROPS, bundled
from napari_rarepheno.core.errors import InputError

MITOSIS = bundled(MITOSIS_CROPS)  # the real crops shipped in the package


def load_real(n_per_region: int, seed: int = 0):
    """Real crops from the top (Y < 500) and the bottom of the fields, all stages mixed."""
    from PIL import Image

    files = sorted(MITOSIS.glob("*/*.png"))
    ys = np.array([int(re.search(r"_Y(\d+)", f.name).group(1)) for f in files])
    rng = np.random.default_rng(seed)
    out = []
    for region in (ys < 500, ys >= 500):
        pick = rng.choice(np.flatnonzero(region), n_per_region, replace=False)
        out.append(np.stack([np.asarray(Image.open(files[i]).convert("RGB"))[..., :2].transpose(2, 0, 1)
                             for i in pick]).astype(np.float32))
    return out


def test_negative_crops_cover_all_kinds_and_scale():
    top, _ = load_real(30)
    neg, kinds = make_negative_crops(top, np.random.default_rng(0), n=24, return_kinds=True)
    assert neg.shape == (24, 2, 64, 64) and neg.dtype == np.float32
    assert sorted(set(kinds)) == sorted(NEGATIVE_KINDS) and np.all(np.isfinite(neg))
    assert neg.min() >= 0 and neg.max() <= top.max() + 1e-3
    empty = neg[[k == "empty" for k in kinds]]
    assert empty.std() < top.std()  # background only
    again = make_negative_crops(top, np.random.default_rng(0), n=24)
    np.testing.assert_array_equal(neg, again)  # seeded
    with pytest.raises(InputError, match="kinds"):
        make_negative_crops(top, np.random.default_rng(0), kinds=("smudge",))


def test_filter_keeps_real_cells_and_drops_non_cells():
    top, bottom = load_real(100)
    qf = QualityFilter(QualityConfig(n_estimators=100, seed=0)).fit(top)  # trained on the top of the fields
    neg, kinds = make_negative_crops(bottom, np.random.default_rng(123), n=96, return_kinds=True)
    kept_real = qf.keep(bottom)  # unseen real cells from the bottom of the fields
    dropped = ~qf.keep(neg)
    kinds = np.array(kinds)
    per_kind = {k: float(dropped[kinds == k].mean()) for k in NEGATIVE_KINDS}
    acc = (kept_real.sum() + dropped.sum()) / (len(bottom) + len(neg))
    print(f"\nquality filter: {kept_real.mean():.3f} of real cells kept, non-cells dropped {per_kind}, "
          f"accuracy {acc:.3f}")
    assert acc >= 0.9
    assert kept_real.mean() >= 0.9
    assert per_kind["empty"] == 1.0 and per_kind["noise"] == 1.0
    p = qf.predict_proba(bottom[:5])
    assert p.shape == (5,) and np.all((p >= 0) & (p <= 1))


def test_filter_input_errors():
    qf = QualityFilter()
    with pytest.raises(InputError, match="not trained"):
        qf.predict_proba(np.zeros((2, 2, 64, 64)))
    with pytest.raises(InputError, match="at least 5"):
        qf.fit(np.zeros((2, 2, 64, 64)))
    with pytest.raises(InputError, match="N, C, H, W"):
        qf.fit(np.zeros((10, 64, 64)))
