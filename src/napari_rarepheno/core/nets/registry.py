"""Network construction by kind: a model file's metadata names the kind and holds the
config dict, so a file rebuilds its network without executing anything but this package."""
from __future__ import annotations

from dataclasses import asdict

from torch import nn

from ..errors import ModelFileError
from .deepyeast import DeepYeast, DeepYeastConfig
from .wscnn import WSCNN, WSCNNConfig

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
