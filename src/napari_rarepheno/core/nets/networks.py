"""The two networks: WSCNN (Sailem et al. 2017) and DeepYeast (Pärnamaa & Parts 2017).

Both are plain ``nn.Module`` s built from a JSON-serialisable dataclass config,
so a model file can rebuild the network from its metadata without executing
anything but this module.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn
import torch.nn.functional as F

from ..errors import ModelFileError


# --------------------------------------------------------------------------- WSCNN
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


def _conv_bn_relu(cin: int, cout: int, k: int, pad: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


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
        layers += _pooled(_conv_bn_relu(cfg.in_channels, w1, 11, 0), pf)
        if cfg.depth == 6:
            layers += _conv_bn_relu(w1, w2, cfg.conv2_kernel, 0) + _pooled(_conv_bn_relu(w2, w2, 3, 1), pf)
            layers += _conv_bn_relu(w2, w3, 5, 1) + _pooled(_conv_bn_relu(w3, w3, 3, 1), pf)
        else:
            layers += _pooled(_conv_bn_relu(w1, w2, cfg.conv2_kernel, 0), pf)
            layers += _pooled(_conv_bn_relu(w2, w3, 5, 1), pf)
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


# ----------------------------------------------------------------------- DeepYeast
@dataclass
class DeepYeastConfig:
    """DeepYeast (paper Fig. 1): eight 3x3 convs (64,64,128,128,256,256,256,256) with BN
    before ReLU, 2x2 max pooling after conv 2, 4 and 8 (64 -> 32 -> 16 -> 8), then three
    fully connected layers (512, 512, n_classes) with BN and dropout 0.5 on the first two.
    Glorot-normal initialisation."""

    in_channels: int = 2
    n_classes: int = 12
    input_size: int = 64
    widths: tuple[int, ...] = (64, 64, 128, 128, 256, 256, 256, 256)
    fc_widths: tuple[int, int] = (512, 512)
    dropout: float = 0.5

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        self.fc_widths = tuple(int(w) for w in self.fc_widths)
        if len(self.widths) != 8:
            raise ValueError("DeepYeast has exactly eight convolutions")
        if self.input_size % 8:
            raise ValueError(f"DeepYeast input size must be a multiple of 8, got {self.input_size}")


class DeepYeast(nn.Module):
    kind = "deepyeast"
    POOL_AFTER = (1, 3, 7)  # zero-based conv indices followed by 2x2 max pooling

    def __init__(self, config: DeepYeastConfig | None = None):
        super().__init__()
        self.config = cfg = config or DeepYeastConfig()
        layers: list[nn.Module] = []
        cin = cfg.in_channels
        for i, w in enumerate(cfg.widths):
            layers += _conv_bn_relu(cin, w, 3, 1)
            if i in self.POOL_AFTER:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.features = nn.Sequential(*layers)
        side = cfg.input_size // 8
        f1, f2 = cfg.fc_widths
        self.fc1 = nn.Sequential(nn.Linear(cin * side * side, f1, bias=False), nn.BatchNorm1d(f1), nn.ReLU(inplace=True))
        self.fc2 = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(f1, f2, bias=False), nn.BatchNorm1d(f2),
                                 nn.ReLU(inplace=True))
        self.out = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(f2, cfg.n_classes))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    @property
    def min_input_size(self) -> int:
        return self.config.input_size

    def embed(self, x: torch.Tensor, layer: str = "fc1") -> torch.Tensor:
        """Activations of ``layer`` ('conv8' flattened, 'fc1', 'fc2' or 'logits')."""
        h = self.features(x).flatten(1)
        if layer == "conv8":
            return h
        h = self.fc1(h)
        if layer == "fc1":
            return h
        h = self.fc2(h)
        if layer == "fc2":
            return h
        if layer == "logits":
            return self.out(h)
        raise ValueError(f"unknown layer {layer!r}; choose conv8, fc1, fc2 or logits")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.fc2(self.fc1(self.features(x).flatten(1))))


# ------------------------------------------------------------------- construction
NETWORKS = {"wscnn": (WSCNN, WSCNNConfig), "deepyeast": (DeepYeast, DeepYeastConfig)}


def config_to_dict(config) -> dict:
    return asdict(config)


def build_model(kind: str, config: dict | WSCNNConfig | DeepYeastConfig) -> nn.Module:
    """Build a network from its kind and config (a dataclass or its dict form)."""
    if kind not in NETWORKS:
        raise ModelFileError(f"unknown network type {kind!r}; this version knows {sorted(NETWORKS)}")
    cls, cfg_cls = NETWORKS[kind]
    if isinstance(config, dict):
        known = set(cfg_cls.__dataclass_fields__)
        unknown = set(config) - known
        if unknown:
            raise ModelFileError(f"{kind} config has unknown fields {sorted(unknown)}")
        if kind == "wscnn" and "fc_relu" not in config:
            config = dict(config, fc_relu=True)  # written before the field: the fc head had the ReLU
        config = cfg_cls(**config)
    return cls(config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["WSCNN", "WSCNNConfig", "DeepYeast", "DeepYeastConfig", "build_model", "count_parameters",
           "config_to_dict", "NETWORKS"]
