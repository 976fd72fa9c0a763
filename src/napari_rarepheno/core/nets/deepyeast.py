"""DeepYeast (Pärnamaa & Parts 2017): an 11-layer CNN classifying single-cell crops;
its first fully connected layer (fc1) is the transfer feature."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import conv_bn_relu


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
            layers += conv_bn_relu(cin, w, 3, 1)
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
