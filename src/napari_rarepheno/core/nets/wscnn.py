"""WSCNN (Sailem et al. 2017): a small fully convolutional network whose class maps,
pooled by a global max, give an image-level score and localise its evidence."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .layers import conv_bn_relu


@dataclass
class WSCNNConfig:
    """WSCNN architecture (paper Fig. 2 and section 2.3).

    conv 11x11 (50) -> conv kxk (100; k=3, or 7 for cell images) -> conv 5x5 (100, pad 1)
    -> conv 5x5 (n_classes, pad 1); BN + ReLU on all but the last; 2x2 max pooling after
    each conv except the last; then a global max over each class map (``head='max'``).

    ``depth=6`` is the paper's deeper variant: two extra 3x3 (100, pad 1) BN+ReLU
    convolutions, one after conv 2 and one after conv 3, without extra pooling (so the
    class map keeps the same resolution and receptive-field stride).
    ``head='avg'`` (global average pooling) and ``head='fc'`` (a fully connected layer on
    the flattened class maps, needs a fixed ``input_size``) are the paper's ablations.

    ``pool_first``: in the blocks that end in a 2x2 max pooling, pool right after the
    convolution and apply BN + ReLU to the pooled map (conv -> pool -> BN -> ReLU) instead
    of conv -> BN -> ReLU -> pool. Both are the paper's text ("normalized using batch
    normalization, equipped with ReLU ... each convolutional layer is followed by max-pooling").
    Wherever a channel's BN scale is positive the two compute the same function (max pooling
    commutes with an increasing per-channel affine map and with ReLU); only the batch
    statistics differ (pooled vs. full-resolution values). Pooling first runs BN and ReLU on
    a quarter of the values: a CPU training step of the default network is ~24% faster
    (benchmarks/results). Model files written before this option have no such key and load
    with the paper order (False).
    """

    in_channels: int = 1
    n_classes: int = 2
    depth: int = 4
    head: Literal["max", "avg", "fc"] = "max"
    conv2_kernel: int = 3
    widths: tuple[int, int, int] = (50, 100, 100)
    input_size: tuple[int, int] | None = None  # (H, W), required for head="fc"
    pool_first: bool = False
    fc_relu: bool = False  # head="fc": ReLU on the class maps before the FC layer (older files)

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        if self.input_size is not None:
            self.input_size = tuple(int(s) for s in self.input_size)
        if self.depth not in (4, 6):
            raise ValueError(f"WSCNN depth must be 4 or 6, got {self.depth}")
        if self.head not in ("max", "avg", "fc"):
            raise ValueError(f"WSCNN head must be max, avg or fc, got {self.head!r}")
        if self.conv2_kernel not in (3, 5, 7):
            raise ValueError(f"conv2 kernel must be 3, 5 or 7, got {self.conv2_kernel}")
        if self.head == "fc" and self.input_size is None:
            raise ValueError("head='fc' needs a fixed input_size=(H, W)")



def _pooled(block: list[nn.Module], pool_first: bool) -> list[nn.Module]:
    """A conv-BN-ReLU block followed by 2x2 max pooling, in the configured order."""
    if pool_first:
        conv, bn, relu = block
        return [conv, nn.MaxPool2d(2), bn, relu]
    return block + [nn.MaxPool2d(2)]


class WSCNN(nn.Module):
    """Weakly supervised CNN whose class maps localise the evidence for each class."""

    kind = "wscnn"

    def __init__(self, config: WSCNNConfig | None = None):
        super().__init__()
        self.config = cfg = config or WSCNNConfig()
        w1, w2, w3 = cfg.widths
        pf = cfg.pool_first
        layers: list[nn.Module] = []
        layers += _pooled(conv_bn_relu(cfg.in_channels, w1, 11, 0), pf)
        if cfg.depth == 6:
            layers += conv_bn_relu(w1, w2, cfg.conv2_kernel, 0) + _pooled(conv_bn_relu(w2, w2, 3, 1), pf)
            layers += conv_bn_relu(w2, w3, 5, 1) + _pooled(conv_bn_relu(w3, w3, 3, 1), pf)
        else:
            layers += _pooled(conv_bn_relu(w1, w2, cfg.conv2_kernel, 0), pf)
            layers += _pooled(conv_bn_relu(w2, w3, 5, 1), pf)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(w3, cfg.n_classes, 5, padding=1)
        self.fc = None
        if cfg.head == "fc":
            h, w = self.class_map_size(*cfg.input_size)
            self.fc = nn.Linear(cfg.n_classes * h * w, cfg.n_classes)

    # geometry --------------------------------------------------------------
    def class_map_size(self, h: int, w: int) -> tuple[int, int]:
        """Spatial size of the class maps for an (h, w) input."""
        k2 = self.config.conv2_kernel

        def size(s: int) -> int:
            s = (s - 10) // 2          # conv 11x11 valid, pool
            s = (s - (k2 - 1)) // 2    # conv2 valid (extra 3x3 pad 1 keeps size), pool
            s = (s - 2) // 2           # conv 5x5 pad 1, pool
            return s - 2               # conv 5x5 pad 1
        return size(h), size(w)

    @property
    def min_input_size(self) -> int:
        """Smallest input side that still yields a 1x1 class map."""
        s = 1
        while min(self.class_map_size(s, s)) < 1:
            s += 1
        return s

    def receptive_field(self) -> tuple[int, int]:
        """(receptive field in px, stride in px) of one class-map unit."""
        rf, jump = 1, 1
        k2 = self.config.conv2_kernel
        ops = [(11, 1), (2, 2), (k2, 1)] + ([(3, 1)] if self.config.depth == 6 else []) + [(2, 2), (5, 1)]
        ops += ([(3, 1)] if self.config.depth == 6 else []) + [(2, 2), (5, 1)]
        for k, s in ops:
            rf += (k - 1) * jump
            jump *= s
        return rf, jump

    # forward ---------------------------------------------------------------
    def class_maps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-class detector maps a_k(x, y) before global pooling, (N, K, h, w)."""
        return self.classifier(self.features(x))

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        head = self.config.head
        if head == "max":
            return maps.amax(dim=(2, 3))
        if head == "avg":
            return maps.mean(dim=(2, 3))
        # the paper's last conv has no ReLU; with one, class maps that all start below zero
        # give the FC layer nothing but zeros and it never learns (fc_relu: older files)
        return self.fc((F.relu(maps) if self.config.fc_relu else maps).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.class_maps(x))
