"""Building blocks both networks share."""
from __future__ import annotations

from torch import nn


def conv_bn_relu(cin: int, cout: int, k: int, pad: int) -> list[nn.Module]:
    """Convolution without bias, batch norm, ReLU (the unit of both papers' networks)."""
    return [nn.Conv2d(cin, cout, k, padding=pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
