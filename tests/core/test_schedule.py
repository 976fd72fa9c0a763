"""Learning-rate schedules: shapes the recipes rely on, and a state that survives a resume."""
import json
import math

import pytest

from napari_rarepheno.core.training.schedule import LRSchedule, recipe_for


def lrs(kind: str, total: int = 1000, **kw) -> list[float]:
    s = LRSchedule(kind, 1e-3, total, **kw)
    out = []
    for _ in range(total):
        out.append(s.lr())
        s.after_batch()
    return out


def test_onecycle_warms_up_then_decays():
    v = lrs("onecycle")
    peak = max(range(len(v)), key=v.__getitem__)
    assert v[0] == pytest.approx(4e-5) and 140 <= peak <= 160 and v[peak] == pytest.approx(1e-3, rel=1e-3)
    assert all(a >= b for a, b in zip(v[peak:], v[peak + 1:]))  # monotone decay after the peak
    assert v[-1] < 2e-5


def test_wsd_holds_the_peak_then_decays():
    v = lrs("wsd")
    assert v[0] == pytest.approx(4e-5) and v[49] < 1e-3 <= v[50] * (1 + 1e-9)
    assert all(x == 1e-3 for x in v[50:600])  # stable until 60% of the run
    assert all(a >= b for a, b in zip(v[600:], v[601:])) and v[-1] < 2e-5
    on = lrs("onecycle")
    assert sum(v) > 1.3 * sum(on)  # more of the run at a high rate than the cosine one-cycle


def test_plateau_and_step():
    s = LRSchedule("plateau", 1e-2, 100, patience=1)
    for epoch, loss in enumerate([1.0, 0.9, 0.95, 0.95], 1):
        s.after_epoch(epoch, loss)
    assert s.lr() == pytest.approx(1e-3)  # two epochs without improvement > patience 1
    s = LRSchedule("step", 0.1, 100, factor=0.5, step_every=5)
    for epoch in range(1, 11):
        s.after_epoch(epoch, None)
    assert s.lr() == pytest.approx(0.025)


def test_state_round_trip_and_recipes():
    s = LRSchedule("wsd", 3e-4, 100)
    for _ in range(70):
        s.after_batch()
    t = LRSchedule("wsd", 3e-4, 100)
    t.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert t.lr() == s.lr() and not math.isnan(t.lr())
    assert recipe_for("wscnn", "fast")["schedule"] in ("onecycle", "wsd")
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe_for("wscnn", "turbo")
