"""Augmentation on tensors: exact where it should be, within the paper's ranges."""
import math

import torch

from napari_rarepheno.core.training.augment import (
    AugmentConfig,
    augment_batch,
    sample_affine,
)


def test_identity_when_disabled():
    x = torch.rand(4, 2, 32, 40)
    assert torch.equal(augment_batch(x, AugmentConfig.none(), torch.Generator().manual_seed(0)), x)


def test_rot90_and_flips_are_exact_permutations():
    x = torch.rand(16, 2, 32, 32)
    y = augment_batch(x, AugmentConfig(rot90=True), torch.Generator().manual_seed(1))
    for a, b in zip(x, y):
        candidates = [torch.rot90(a.flip(-1) if f else a, k, (-2, -1)) for f in (0, 1) for k in range(4)]
        assert any(torch.equal(c, b) for c in candidates)


def test_paper_ranges():
    cfg = AugmentConfig.wscnn_paper()
    m = sample_affine(2000, 210, 280, cfg, torch.Generator().manual_seed(0))
    # translation within +-40 px
    tx = m[:, 0, 2] * 280 / 2
    ty = m[:, 1, 2] * 210 / 2
    assert tx.abs().max() <= 40 + 1e-4 and ty.abs().max() <= 40 + 1e-4
    # rotation angles fall in +-20 or 160..200 degrees (mod flips)
    a = m[:, 0, 0]
    d = m[:, 1, 0] * 210 / 280
    scale = torch.sqrt(a ** 2 + d ** 2)
    assert (1 / scale).min() >= 1 - 50 / 210 - 1e-3 and (1 / scale).max() <= 1 + 50 / 210 + 1e-3
    ang = torch.rad2deg(torch.atan2(d, a)).abs()
    ok = (ang <= 20.01) | ((ang >= 159.99) & (ang <= 180.01))
    assert ok.float().mean() > 0.99


def test_same_draws_for_ddp_share():
    x = torch.rand(8, 1, 48, 48)
    cfg = AugmentConfig.wscnn_paper()
    full = augment_batch(x, cfg, torch.Generator().manual_seed(5))
    half = augment_batch(x, cfg, torch.Generator().manual_seed(5), slice(4, 8))
    assert torch.allclose(full[4:], half, atol=1e-6)


def test_object_survives_rotation_by_180():
    x = torch.zeros(1, 1, 64, 64)
    x[0, 0, 10:20, 10:20] = 1
    cfg = AugmentConfig(hflip=False, vflip=False, rotation_ranges=[(180.0, 180.0)])
    y = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    assert math.isclose(float(y.sum()), 100.0, rel_tol=0.05)
    assert float(y[0, 0, 44:54, 44:54].mean()) > 0.9


def _geometry(m, h=210, w=280):
    a, d = m[:, 0, 0], m[:, 1, 0] * h / w
    tx, ty = m[:, 0, 2] * w / 2, m[:, 1, 2] * h / 2
    ang = torch.rad2deg(torch.atan2(d, a)).abs()
    rot = torch.minimum(ang, 180 - ang)          # distance from 0 or 180 degrees
    return rot, 1 / torch.sqrt(a ** 2 + d ** 2), torch.maximum(tx.abs(), ty.abs())


def test_ramp_narrows_geometry_then_reaches_the_paper_ranges():
    cfg = AugmentConfig.wscnn_paper()
    cfg.ramp_epochs = 4
    assert cfg.strength(0) == 0 and cfg.strength(1) == 0.25 and cfg.strength(4) == 1 and cfg.strength(9) == 1
    assert AugmentConfig.wscnn_paper().strength(0) == 1  # no ramp: full ranges from the start
    draws = {s: _geometry(sample_affine(2000, 210, 280, cfg, torch.Generator().manual_seed(0), s))
             for s in (0.0, 0.25, 1.0)}
    rot, scale, shift = draws[0.0]
    assert rot.max() < 1e-3 and (scale - 1).abs().max() < 1e-5 and shift.max() < 1e-4  # flips only
    rot, scale, shift = draws[0.25]
    assert 4.5 < rot.max() <= 5.01 and shift.max() <= 10 + 1e-3 and (scale - 1).abs().max() <= 12.5 / 210 + 1e-3
    rot, scale, shift = draws[1.0]
    assert rot.max() > 19 and shift.max() > 39 and (scale - 1).abs().max() > 45 / 210
